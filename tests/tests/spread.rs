//! Spreading a module ahead of the first call, with real nodes over mutual TLS: every live node
//! fetches it once, through the fan-out tree, and the first call after it fetches nothing.

use std::sync::atomic::Ordering;
use steinadler_core::Term;
use steinadler_node::{Node, Target};
use steinadler_test_modules as m;

mod common;
use common::{client, wait_for_members};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_module_reaches_every_node_before_the_first_call() {
    // A fan-out of 2 over 5 peers: groups of 3 and 2, so the spread goes through relays.
    let n1 = Node::builder().name("n1").fanout(2).start().await.unwrap();
    let token = n1.join_token().unwrap();
    let mut nodes = Vec::new();
    for i in 2..=6 {
        nodes.push(
            Node::builder()
                .name(format!("n{i}"))
                .seed(n1.grpc_addr())
                .token(token.clone())
                .start()
                .await
                .unwrap(),
        );
    }
    let mut all: Vec<&Node> = vec![&n1];
    all.extend(nodes.iter());
    wait_for_members(&all, 6).await;

    let mut c1 = client(&n1).await;
    c1.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let results = c1
        .spread("hello", |done, total| seen.push((done, total)))
        .await
        .unwrap();
    let mut names: Vec<&str> = results.iter().map(|r| r.node.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["n1", "n2", "n3", "n4", "n5", "n6"], "{results:?}");
    for r in &results {
        assert!(r.outcome.is_ok(), "{}: {:?}", r.node, r.outcome);
    }
    assert_eq!(seen.first(), Some(&(1, 6)), "n1 holds it from the start");
    assert_eq!(seen.last(), Some(&(6, 6)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    for node in &nodes {
        assert_eq!(
            node.stats().modules_fetched.load(Ordering::Relaxed),
            1,
            "{} fetched it once",
            node.name()
        );
    }

    // The first call fetches nothing more.
    let greet = Term::list([Term::from("World")]).encode();
    let results = n1
        .invoke(&Target::All, "hello", "greet", &greet)
        .await
        .unwrap();
    assert_eq!(results.len(), 6);
    assert!(results.iter().all(|r| r.outcome.is_ok()), "{results:?}");
    for node in &nodes {
        assert_eq!(node.stats().modules_fetched.load(Ordering::Relaxed), 1);
    }

    // A module the node does not hold is refused with what to do.
    let err = c1.spread("nope", |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("deploy it here first"), "{err}");
    for node in all {
        node.shutdown().await;
    }
}
