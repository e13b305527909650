//! Nodes that crash, stay dead until gossip forgets them, then rejoin under the same names: no
//! survivor panics (issue 23 §3: memberlist-core 0.8.5's `reset_nodes` left stale indexes,
//! patched in `vendor/memberlist-core`), and every survivor sees the rejoined nodes. Its own
//! binary: it installs a panic hook that records every panic of the process, in any task.

mod common;

use std::sync::Mutex;
use std::time::Duration;
use steinadler_node::Node;

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.to_string());
        default(info);
    }));
}

fn panics() -> Vec<String> {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

async fn live_members(node: &Node) -> usize {
    node.members().await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survivors_of_crashes_do_not_panic_when_the_dead_rejoin() {
    record_panics();
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    // Six nodes that crash at once: a survivor's next reset reaps six entries, which moves its
    // live entries about its node list (where the stale indexes came from).
    let mut extras = Vec::new();
    for i in 1..=6 {
        extras.push(common::start(&format!("e{i}"), "b", Some(&n1)).await);
    }
    common::wait_for_members(&[&n1, &n2], 8).await;
    for e in &extras {
        e.kill().await;
    }
    drop(extras);
    for n in [&n1, &n2] {
        common::eventually(
            Duration::from_secs(60),
            "the six are declared dead",
            || async { live_members(n).await == 2 },
        )
        .await;
    }
    // memberlist reaps a dead entry 15 s after its death (gossip_to_the_dead_time of the
    // local profile), at the next wrap of its probe round.
    tokio::time::sleep(Duration::from_secs(22)).await;

    let mut back = Vec::new();
    for i in 1..=3 {
        back.push(common::start(&format!("e{i}"), "b", Some(&n1)).await);
    }
    for n in [&n1, &n2] {
        common::eventually(Duration::from_secs(60), "three rejoined", || async {
            live_members(n).await == 5
        })
        .await;
    }
    // A push-pull round (every 15 s) merges every member's state on each survivor.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let seen = panics();
    assert!(seen.is_empty(), "{} panics: {seen:#?}", seen.len());
    for n in [&n1, &n2].into_iter().chain(back.iter()) {
        assert_eq!(live_members(n).await, 5, "{}", n.name());
    }
    for n in back {
        n.shutdown().await;
    }
    n2.shutdown().await;
    n1.shutdown().await;
}
