//! What uses a link past the pool's idle time, on real nodes over mutual TLS: a remote monitor
//! and a stream keep working after both nodes' pools let their link go, and a process send or
//! call after that opens a new link.

use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{Address, ExitReason, Node, StreamOptions};
use steinadler_test_modules as m;

mod common;
use common::{args, eventually, wait_for_members};

const T: Duration = Duration::from_secs(10);
/// Both nodes let a link go after this long unused.
const IDLE: Duration = Duration::from_secs(1);

/// n1 and n2, each letting its links go after [`IDLE`], with `counter`, `kv` and `range` on n1.
async fn pair() -> (Node, Node) {
    let n1 = Node::builder()
        .name("n1")
        .peer_idle(IDLE)
        .start()
        .await
        .unwrap();
    let n2 = Node::builder()
        .name("n2")
        .peer_idle(IDLE)
        .seed(n1.grpc_addr())
        .token(n1.join_token().unwrap())
        .start()
        .await
        .unwrap();
    wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();
    n1.deploy("kv", m::KV_WASM).await.unwrap();
    n1.deploy("range", m::RANGE_WASM).await.unwrap();
    (n1, n2)
}

/// Whether neither node's pool holds a link to the other.
fn let_go(n1: &Node, n2: &Node) -> bool {
    n1.peer_pool().open_peers == 0 && n2.peer_pool().open_peers == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_and_calls_after_the_link_idled_out_open_a_new_one() {
    let (n1, n2) = pair().await;
    let pid = n2.spawn("counter", Term::Int(0), None).await.unwrap();
    let to = Address::Pid(pid);
    for round in 0..3 {
        n1.send(&to, "inc".into()).await.unwrap();
        assert_eq!(
            n1.call(&to, "get".into(), T).await.unwrap(),
            Term::Int(round + 1)
        );
        // Nothing uses the link now: both pools let it go.
        eventually(
            Duration::from_secs(30),
            "both pools let the link go",
            || async { let_go(&n1, &n2) },
        )
        .await;
    }
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_monitor_outlives_the_pools_idle_time() {
    let (n1, n2) = pair().await;
    let kv = n2.spawn("kv", Term::Nil, None).await.unwrap();
    let watch = n1.monitor(&kv);
    // Past the idle time, n1's pool lets go of its link to n2 (the registry's anti-entropy
    // may reopen one soon after, which does not count as use), while the monitor's stream
    // still holds the link it was set on.
    tokio::time::sleep(IDLE * 2).await;
    eventually(
        Duration::from_secs(30),
        "n1's pool lets go of n2",
        || async { n1.peer_pool().open_peers == 0 },
    )
    .await;
    let _ = n1.call(&Address::Pid(kv.clone()), "crash".into(), T).await;
    match tokio::time::timeout(T, watch.down()).await.unwrap() {
        ExitReason::Crash(why) => assert!(why.contains("crash"), "{why}"),
        other => panic!("expected the crash, got {other}"),
    }
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outlives_the_pools_idle_time() {
    let (n1, n2) = pair().await;
    let mut stream = n2
        .open_stream(
            Some("n1"),
            "range",
            "range",
            &args(&[0, 100]),
            StreamOptions { window: 8 },
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 50 {
        match stream.next().await {
            Some(Ok(Term::Int(i))) => got.push(i),
            other => panic!("item {}: {other:?}", got.len()),
        }
    }
    // The consumer pauses well past the idle time of both pools.
    tokio::time::sleep(IDLE * 4).await;
    while let Some(item) = stream.next().await {
        match item {
            Ok(Term::Int(i)) => got.push(i),
            other => panic!("item {}: {other:?}", got.len()),
        }
    }
    assert_eq!(got, (0..100).collect::<Vec<i64>>());
    n1.shutdown().await;
    n2.shutdown().await;
}
