//! Fan-out as a tree, with 24 real nodes over mutual TLS and a fan-out of 3, so that the call
//! goes three hops deep: one result per node, the caller holding streams to its three relays
//! only, the group of a relay that dies mid-call told `noconnection`, and a relay that cannot be
//! reached replaced by the next member of its group.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{Node, NodeResult, Target};
use steinadler_test_modules as m;

mod common;
use common::{client, hello_ok, wait_for_members};

const NODES: usize = 24;
const K: usize = 3;

fn name(i: usize) -> String {
    format!("n{i:02}")
}

fn by_node(results: &[NodeResult]) -> BTreeSet<String> {
    results.iter().map(|r| r.node.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_many_nodes_goes_through_a_tree_of_relays() {
    let n1 = Node::builder()
        .name(name(1))
        .label("zone", "a")
        .fanout(K)
        .start()
        .await
        .unwrap();
    let token = n1.join_token().unwrap();
    let mut nodes = vec![Arc::new(n1)];
    for i in 2..=NODES {
        let node = Node::builder()
            .name(name(i))
            .label("zone", if i <= 9 { "a" } else { "b" })
            .seed(nodes[0].grpc_addr())
            .token(token.clone())
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting {}: {e}", name(i)));
        nodes.push(Arc::new(node));
    }
    let refs: Vec<&Node> = nodes.iter().map(|n| &**n).collect();
    wait_for_members(&refs, NODES).await;
    let n1 = nodes[0].clone();
    let all: BTreeSet<String> = (1..=NODES).map(name).collect();
    n1.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();

    // One result per node, every one of them the value. The first call fetches and compiles
    // the module on 23 nodes of this one process at once, so it gets a long deadline.
    let greet = Term::list([Term::from("World")]).encode();
    let mut c1 = client(&n1).await;
    let warm = c1
        .invoke(
            "all",
            "hello",
            "greet",
            greet.clone(),
            Duration::from_secs(60),
            false,
        )
        .await
        .unwrap();
    assert_eq!(by_node(&warm), all, "{warm:?}");
    let results = n1
        .invoke(&Target::All, "hello", "greet", &greet)
        .await
        .unwrap();
    assert_eq!(results.len(), NODES, "{results:?}");
    assert_eq!(by_node(&results), all);
    results.iter().for_each(hello_ok);
    // The caller sent invoke frames to its K relays only (groups of 8, 8 and 7 in name
    // order: n02, n10 and n18); n02 relayed its 7 through relays of its own (n03, n06, n08),
    // and n03 called n04 and n05 itself: three hops.
    assert!(
        n1.peer_pool().open_streams <= K,
        "the caller holds {:?}",
        n1.peer_pool()
    );
    let node = |n: &str| nodes.iter().find(|x| x.name() == n).unwrap().clone();
    assert!(node("n02").peer_pool().open_streams >= K, "n02 relays");
    assert!(node("n03").peer_pool().open_streams >= 2, "n03 relays");
    assert_eq!(node("n04").peer_pool().open_streams, 0, "n04 is a leaf");

    // A relay that cannot be reached has run nothing: the next member of its group relays.
    // n10 relays the second group; once n01 has seen its stream end, the call goes on.
    node("n10").kill().await;
    common::eventually(
        Duration::from_secs(10),
        "n01 sees n10's stream end",
        || async { n1.peer_pool().open_streams < K },
    )
    .await;
    let results = n1
        .invoke(&Target::All, "hello", "greet", &greet)
        .await
        .unwrap();
    assert_eq!(
        by_node(&results).len(),
        results.len(),
        "one result per node: {results:?}"
    );
    let without_n10: BTreeSet<String> = all.iter().filter(|n| *n != "n10").cloned().collect();
    assert!(without_n10.is_subset(&by_node(&results)), "{results:?}");
    for r in &results {
        match &r.outcome {
            Ok(value) => assert_eq!(Term::decode(value), Ok(Term::from("Hello, World!"))),
            Err(e) => {
                assert_eq!(r.node, "n10", "{}: {e}", r.node);
                assert!(e.to_string().contains("unreachable"), "{e}");
            }
        }
    }

    // A relay that dies mid-call: its group may have run the call, and is told so. The nine
    // nodes of zone a are n01 and the groups n02 {n03, n04}, n05 {n06, n07}, n08 {n09}; each
    // spins until its deadline.
    for n in nodes.iter().take(9) {
        n.deploy("spin", &std::fs::read(m::SPIN).unwrap())
            .await
            .unwrap();
    }
    let spin = |deadline| {
        let mut c = c1.clone();
        async move {
            c.invoke(
                "label:zone=a",
                "spin",
                "forever",
                Term::list([]).encode(),
                deadline,
                false,
            )
            .await
            .unwrap()
        }
    };
    let call = tokio::spawn(spin(Duration::from_secs(3)));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    node("n02").kill().await;
    let results = call.await.unwrap();
    let zone_a: BTreeSet<String> = (1..=9).map(name).collect();
    assert_eq!(by_node(&results), zone_a, "{results:?}");
    for r in &results {
        let err = r
            .outcome
            .as_ref()
            .expect_err("spin never returns")
            .to_string();
        if ["n02", "n03", "n04"].contains(&r.node.as_str()) {
            assert!(err.contains("noconnection"), "{}: {err}", r.node);
        } else {
            assert!(!err.contains("noconnection"), "{}: {err}", r.node);
        }
    }
    for node in &nodes {
        if !["n02", "n10"].contains(&node.name()) {
            node.shutdown().await;
        }
    }
}
