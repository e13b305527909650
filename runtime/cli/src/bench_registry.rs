//! The registry half of `steinadler bench`: how long a global name takes to reach every
//! replica of a 5-node cluster, what a registration costs, and lookups by name.

use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_core::Term;
use steinadler_node::{Address, Node};

fn pct(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

/// Registers `count` names, each from a different node in turn, and measures the registration
/// and the time until every node lists the name; then lookups and calls by name.
pub(crate) async fn run(nodes: &[Arc<Node>], mode: &str, count: usize) -> anyhow::Result<()> {
    for n in nodes {
        n.deploy("counter", steinadler_test_modules::COUNTER_WASM)
            .await?;
    }
    let mut register = Vec::with_capacity(count);
    let mut converge = Vec::with_capacity(count);
    let mut pids = Vec::with_capacity(count);
    for i in 0..count {
        let on = &nodes[i % nodes.len()];
        let pid = on.spawn("counter", Term::Int(0), None).await?;
        let name = format!("bench-{mode}-{i}");
        let t = Instant::now();
        on.register_global(&name, &pid).await?;
        register.push(t.elapsed());
        while !nodes
            .iter()
            .all(|n| n.registry().iter().any(|e| e.name == name))
        {
            if t.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("{name} did not reach every node in 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        converge.push(t.elapsed());
        pids.push((on.clone(), pid));
    }
    println!(
        "{:<28} {:>6} {:>10.1?} {:>10.1?}",
        format!("register_global ({mode})"),
        1,
        pct(&mut register, 50),
        pct(&mut register, 99)
    );
    println!(
        "{:<28} {:>6} {:>10.1?} {:>10.1?} {:>10.1?} max",
        format!("name on all 5 nodes ({mode})"),
        1,
        pct(&mut converge, 50),
        pct(&mut converge, 99),
        converge.iter().max().copied().unwrap_or_default()
    );
    // Lookups from the node that registered none of these in the last round.
    let from = &nodes[1];
    let t = Instant::now();
    let lookups = count * 100;
    for i in 0..lookups {
        from.whereis_global(&format!("bench-{mode}-{}", i % count))
            .await
            .ok_or_else(|| anyhow::anyhow!("a registered name did not resolve"))?;
    }
    println!(
        "{:<28} {:>6} {:>10} {:>10} {:>10.0}",
        format!("whereis_global ({mode})"),
        1,
        "",
        "",
        lookups as f64 / t.elapsed().as_secs_f64()
    );
    let by_name: Address = format!("bench-{mode}-0").parse()?;
    let by_pid = Address::Pid(pids[0].1.clone());
    for (label, to) in [("call by global name", &by_name), ("call by PID", &by_pid)] {
        let mut samples = Vec::with_capacity(count * 10);
        for _ in 0..count * 10 {
            let t = Instant::now();
            nodes[2]
                .call(to, "get".into(), Duration::from_secs(5))
                .await?;
            samples.push(t.elapsed());
        }
        println!(
            "{:<28} {:>6} {:>10.1?} {:>10.1?}",
            format!("{label} ({mode})"),
            1,
            pct(&mut samples, 50),
            pct(&mut samples, 99)
        );
    }
    for (on, pid) in pids {
        on.stop_process(&pid);
    }
    Ok(())
}
