//! `steinadler bench`'s relay section: what a node that accepts no connections (`--no-inbound`)
//! costs its callers. Three nodes in this process gossip on the TLS port; `d1` and `d2` dial
//! out only, and `r` is their relay. `d1` calls `r` directly, and `d2` through `r`: neither of
//! the two can dial the other, so that call's link runs over a tunnel, which the relay's
//! counter confirms. `c`, which accepts connections, calls `r` too, and `u2` calls `u1` in a
//! cluster that gossips on UDP, as the rest of the bench: the baselines. All over mutual TLS.

use crate::bench::{Figures, Scenario, measure};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use steinadler_core::Term;
use steinadler_node::{GossipMode, Node, Target};

/// Prints remote invoke `d1 -> r` (direct) and `d1 -> d2` (relayed) at 1 and 16 in flight,
/// each the median of `rounds` rounds that alternate between the two.
pub(crate) async fn run(rounds: usize, calls: usize) -> anyhow::Result<()> {
    let builder = |name: &str| Node::builder().name(name).gossip_mode(GossipMode::Tls);
    let r = Arc::new(builder("r").start().await?);
    let token = r.join_token().unwrap_or_default();
    let join = |b: steinadler_node::NodeBuilder| b.seed(r.grpc_addr()).token(token.clone());
    let d1 = Arc::new(join(builder("d1").no_inbound(true)).start().await?);
    let d2 = Arc::new(join(builder("d2").no_inbound(true)).start().await?);
    let c = Arc::new(join(builder("c")).start().await?);
    // The same call between two nodes that gossip on UDP, as the rest of the bench.
    let u1 = Arc::new(Node::builder().name("u1").start().await?);
    let u2 = Node::builder().name("u2").seed(u1.grpc_addr());
    let u2 = Arc::new(
        u2.token(u1.join_token().unwrap_or_default())
            .start()
            .await?,
    );
    let measured = async {
        u2.wait_for_members(2, Duration::from_secs(30)).await?;
        // On every node: a caller that does not hold the module by name asks for it first.
        for node in [&u1, &u2] {
            node.deploy("noop", steinadler_test_modules::NOOP_WASM)
                .await?;
        }
        for node in [&r, &d1, &d2, &c] {
            node.wait_for_members(4, Duration::from_secs(30)).await?;
        }
        for node in [&r, &d1, &d2, &c] {
            node.deploy("noop", steinadler_test_modules::NOOP_WASM)
                .await?;
        }
        let noop = Term::List(vec![]).encode();
        // Warm: d2 fetches the module (through r), and d1's link to d2 is made, once d2 has
        // attached to r.
        let started = Instant::now();
        while d1
            .invoke(&Target::Node("d2".into()), "noop", "noop", &noop)
            .await
            .map_or(true, |r| r.iter().any(|r| r.outcome.is_err()))
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "d2 never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let relayed = || r.stats().tunnels_relayed.load(Ordering::Relaxed);
        let before = relayed();
        let call = |from: &Arc<Node>, to: &str| {
            Scenario::Invoke(from.clone(), Target::Node(to.into()), noop.clone())
        };
        let (plain, direct, through) = (call(&c, "r"), call(&d1, "r"), call(&d1, "d2"));
        let udp = call(&u2, "u1");
        let _ = measure(&plain, 1, 200).await?;
        let _ = measure(&udp, 1, 200).await?;
        for inflight in [1, 16] {
            let (mut us, mut ps, mut ds, mut ts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds.max(1) {
                us.push(measure(&udp, inflight, calls).await?);
                ps.push(measure(&plain, inflight, calls).await?);
                ds.push(measure(&direct, inflight, calls).await?);
                ts.push(measure(&through, inflight, calls).await?);
            }
            let [um, pm, dm, tm] = [us, ps, ds, ts].map(Figures::median_of);
            for (label, f) in [
                ("remote invoke u2->u1 (udp)", um),
                ("c->r", pm),
                ("d1->r, direct", dm),
                ("d1->d2, through r", tm),
            ] {
                println!(
                    "{label:<28} {inflight:>6} {:>10.1?} {:>10.1?} {:>10.0}",
                    f.p50, f.p99, f.rate
                );
            }
            println!(
                "{:<28} {inflight:>6} {:>10.2} {:>10} {:>10.2}",
                "  through r / direct",
                tm.p50.as_secs_f64() / dm.p50.as_secs_f64(),
                "",
                tm.rate / dm.rate
            );
        }
        println!(
            "  (r relayed {} tunnels in all, {} during the measurement: a tunnel carries a link, which every call reuses)",
            relayed(),
            relayed() - before
        );
        anyhow::Ok(())
    }
    .await;
    for node in [&u2, &u1, &c, &d2, &d1, &r] {
        node.shutdown().await;
    }
    measured
}
