//! The process half of `steinadler bench`: cross-node sends and calls to a `counter` process.

use anyhow::anyhow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_core::Term;
use steinadler_node::{Address, Node};

/// What one measurement of a process found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcFigures {
    pub(crate) call_p50: Duration,
    pub(crate) call_p99: Duration,
    pub(crate) calls_per_s: f64,
    /// Messages a second, from 8 senders.
    pub(crate) sends_per_s: f64,
}

/// Spawns a counter on `nodes[1]` and drives it from `nodes[0]`; prints sends/s with 8 senders
/// and the call round trip.
pub(crate) async fn run(nodes: &[Arc<Node>], mode: &str, calls: usize) -> anyhow::Result<()> {
    let (from, on) = (&nodes[0], &nodes[1]);
    on.deploy("counter", steinadler_test_modules::COUNTER_WASM)
        .await?;
    let pid = on.spawn("counter", Term::Int(0), None).await?;
    let f = measure(from, &Address::Pid(pid), calls).await?;
    println!(
        "{:<28} {:>6} {:>10.1?} {:>10.1?} {:>10.0}",
        format!("process call n1->n2 ({mode})"),
        1,
        f.call_p50,
        f.call_p99,
        f.calls_per_s
    );
    println!(
        "{:<28} {:>6} {:>10} {:>10} {:>10.0}",
        format!("process send n1->n2 ({mode})"),
        8,
        "",
        "",
        f.sends_per_s
    );
    Ok(())
}

/// Sequential calls from `from` to the counter `to`, then 8 senders and one call that returns
/// only after every send was handled (which checks that none was lost).
pub(crate) async fn measure(
    from: &Arc<Node>,
    to: &Address,
    calls: usize,
) -> anyhow::Result<ProcFigures> {
    let timeout = Duration::from_secs(10);
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        from.call(to, "get".into(), timeout).await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    let (call_p50, call_p99) = (pct(50), pct(99));
    let calls_per_s = samples.len() as f64 / samples.iter().sum::<Duration>().as_secs_f64();

    let before = match from.call(to, "get".into(), timeout).await? {
        Term::Int(n) => n,
        other => return Err(anyhow!("counter answered {other}")),
    };
    let per_sender = calls.div_ceil(8);
    let started = Instant::now();
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let from = from.clone();
            let to = to.clone();
            tokio::spawn(async move {
                for _ in 0..per_sender {
                    from.send(&to, "inc".into()).await?;
                }
                Ok::<_, steinadler_node::NodeError>(())
            })
        })
        .collect();
    for s in senders {
        s.await??;
    }
    let after = from.call(to, "get".into(), timeout).await?;
    let wall = started.elapsed();
    if after != Term::Int(before + (per_sender * 8) as i64) {
        return Err(anyhow!(
            "lost messages: {before} + {} sends gave {after}",
            per_sender * 8
        ));
    }
    Ok(ProcFigures {
        call_p50,
        call_p99,
        calls_per_s,
        sends_per_s: (per_sender * 8) as f64 / wall.as_secs_f64(),
    })
}
