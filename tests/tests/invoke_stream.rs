//! `InvokeOnStream` through `Client::invoke_streaming`: the count of selected nodes first, then
//! each node's result as it arrives, so a slow node does not hold back the others' results.
//! Real nodes, mutual TLS, a logged-in client.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use steinadler_core::Term;
use steinadler_node::{ClientError, Node};
use steinadler_test_modules as m;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_arrive_as_each_node_answers() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    // n3 runs one call at a time: while it spins, its hello waits.
    let n3 = Node::builder()
        .name("n3")
        .label("zone", "b")
        .seed(n1.grpc_addr())
        .token(n1.join_token().unwrap())
        .configure(|c| {
            c.max_concurrent = 1;
            c.max_queued = 4;
        })
        .start()
        .await
        .unwrap();
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    for n in [&n1, &n2, &n3] {
        n.deploy("hello", &std::fs::read(m::HELLO).unwrap())
            .await
            .unwrap();
    }
    n3.deploy("spin", &std::fs::read(m::SPIN).unwrap())
        .await
        .unwrap();
    let mut client = common::client(&n1).await;

    let spin_done = Arc::new(AtomicBool::new(false));
    let spin_started = Instant::now();
    let spin = tokio::spawn({
        let mut c = client.clone();
        let done = spin_done.clone();
        async move {
            let r = c
                .invoke(
                    "node:n3",
                    "spin",
                    "forever",
                    Term::list([]).encode(),
                    Duration::from_secs(8),
                    false,
                )
                .await;
            done.store(true, Ordering::SeqCst);
            r
        }
    });
    // The spin holds n3's one slot once n3 reports a call in flight.
    common::eventually(Duration::from_secs(30), "n3 spins", || async {
        n3.load() > 0
    })
    .await;

    let mut results = client
        .invoke_streaming(
            "all",
            "hello",
            "greet",
            Term::list([Term::from("World")]).encode(),
            Duration::from_secs(30),
            false,
        )
        .await
        .unwrap();
    assert_eq!(results.selected(), 3);
    let mut order = Vec::new();
    let mut n3_at = None;
    while let Some(r) = results.next().await {
        let r = r.unwrap();
        common::hello_ok(&r);
        if r.node == "n3" {
            n3_at = Some(Instant::now());
        }
        order.push((r.node.clone(), spin_done.load(Ordering::SeqCst)));
        assert_eq!(results.received(), order.len());
    }
    assert!(results.next().await.is_none());
    assert_eq!(order.len(), 3, "{order:?}");
    // n1's and n2's results came while n3 was still spinning; n3's after.
    let early: Vec<&str> = order
        .iter()
        .filter(|(_, after_spin)| !after_spin)
        .map(|(n, _)| n.as_str())
        .collect();
    // n3's result and the spin's reply leave n3 in the same moment, when the spin's deadline
    // ends it: either may reach this task first, so n3's result may count as early, but n1's and
    // n2's came while n3 was still spinning, and n3's came last, after the spin's deadline.
    assert!(early.contains(&"n1") && early.contains(&"n2"), "{order:?}");
    assert_eq!(order[2].0, "n3", "{order:?}");
    assert!(
        n3_at.expect("n3 answered") >= spin_started + Duration::from_secs(7),
        "n3 answered before its spin's deadline: {order:?}"
    );
    spin.await.unwrap().unwrap();

    // A refusal comes before any result, as the call's error.
    let refused = client
        .invoke_streaming(
            "all",
            "hello",
            "greet",
            Term::list([]).encode(),
            Duration::from_secs(3600),
            false,
        )
        .await
        .expect_err("a deadline over the maximum is refused");
    match refused {
        ClientError::Status(s) => assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}"),
        other => panic!("{other}"),
    }
    for n in [n3, n2, n1] {
        n.shutdown().await;
    }
}
