//! What a caller may ask of a node: limits past the node's maximums are refused with
//! `INVALID_ARGUMENT` naming the maximum, and a guest that overruns its deadline is reported as
//! a timeout by every node, not as an unreachable one. Real nodes, mutual TLS, a logged-in client.

mod common;

use std::time::Duration;
use steinadler_core::{InvokeError, Term};
use steinadler_node::wire::RemoteError;
use steinadler_node::{Node, NodeResult};
use steinadler_proto::v1 as pb;
use steinadler_test_modules as m;

/// Starts `name` with the given maximums; with a seed, it joins the seed's cluster.
async fn start(name: &str, max_memory: u64, max_timeout: Duration, seed: Option<&Node>) -> Node {
    let mut b = Node::builder()
        .name(name)
        .max_limits(max_memory, max_timeout);
    if let Some(seed) = seed {
        b = b
            .seed(seed.grpc_addr())
            .token(seed.join_token().expect("the seed can sign joins"));
    }
    b.start()
        .await
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

fn invoke_on(
    target: &str,
    module: &str,
    deadline_ms: u64,
    memory_bytes: u64,
) -> pb::InvokeOnRequest {
    let (function, args) = match module {
        "spin" => ("forever", Term::list([]).encode()),
        _ => ("greet", Term::list([Term::from("World")]).encode()),
    };
    pb::InvokeOnRequest {
        target: target.into(),
        module: module.into(),
        function: function.into(),
        args: args.into(),
        limits: Some(pb::Limits {
            deadline_ms,
            memory_bytes,
        }),
        idempotent: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_cannot_raise_a_calls_limits_past_the_nodes_maximums() {
    let n1 = start("n1", 256 << 20, Duration::from_secs(2), None).await;
    // n2 allows less memory than n1, so a call n1 accepts is refused by n2 alone.
    let n2 = start("n2", 32 << 20, Duration::from_secs(2), Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    let client = common::client(&n1).await;
    let mut raw = client.raw();

    // 2 GiB of guest memory, as in the issue: refused before any node runs anything.
    let refused = raw
        .invoke_on(invoke_on("all", "hello", 0, 2 << 30))
        .await
        .expect_err("2 GiB is over the maximum");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("maximum of 256 MiB")
            && refused.message().contains("--max-memory"),
        "{}",
        refused.message()
    );
    // A 600 s deadline.
    let refused = raw
        .invoke_on(invoke_on("all", "hello", 600_000, 0))
        .await
        .expect_err("600 s is over the maximum");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("maximum of 2000 ms")
            && refused.message().contains("--max-timeout"),
        "{}",
        refused.message()
    );
    // One past the maximum is refused too; the maximum itself is granted.
    let refused = raw
        .invoke_on(invoke_on("node:n1", "hello", 2_001, 0))
        .await
        .expect_err("2001 ms is over the maximum");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    // 128 MiB: n1 grants it, n2 refuses it with its own maximum, and says so in its result.
    let reply = raw
        .invoke_on(invoke_on("all", "hello", 2_000, 128 << 20))
        .await
        .unwrap()
        .into_inner();
    let mut results: Vec<NodeResult> = reply
        .results
        .into_iter()
        .map(NodeResult::from_reply)
        .collect();
    results.sort_by(|a, b| a.node.cmp(&b.node));
    assert_eq!(results.len(), 2, "{results:?}");
    common::hello_ok(&results[0]);
    match &results[1].outcome {
        Err(RemoteError::Invoke(InvokeError::BadArguments(msg))) => {
            assert_eq!(results[1].node, "n2");
            assert!(msg.contains("maximum of 32 MiB"), "{msg}");
        }
        other => panic!("n2 ran a call over its maximum: {other:?}"),
    }

    // Both nodes serve on, within their maximums.
    let reply = raw
        .invoke_on(invoke_on("all", "hello", 1_000, 16 << 20))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.results.len(), 2);
    for r in reply.results {
        common::hello_ok(&NodeResult::from_reply(r));
    }
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guest_past_its_deadline_is_reported_as_a_timeout_by_every_node() {
    let n1 = start("n1", 256 << 20, Duration::from_secs(60), None).await;
    let n2 = start("n2", 256 << 20, Duration::from_secs(60), Some(&n1)).await;
    let n3 = start("n3", 256 << 20, Duration::from_secs(60), Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    for n in [&n1, &n2, &n3] {
        n.deploy("spin", &std::fs::read(m::SPIN).unwrap())
            .await
            .unwrap();
    }
    let client = common::client(&n1).await;
    let mut raw = client.raw();
    // The guest never returns; each node stops it at 200 ms. Rounds of two calls at once, so
    // that the nodes are busy as in the 150 runs.
    let mut wrong = Vec::new();
    for _ in 0..15 {
        let mut other = raw.clone();
        let (a, b) = tokio::join!(
            other.invoke_on(invoke_on("all", "spin", 200, 0)),
            raw.invoke_on(invoke_on("all", "spin", 200, 0)),
        );
        for reply in [a, b] {
            let reply = reply.unwrap().into_inner();
            assert_eq!(reply.results.len(), 3, "{reply:?}");
            for r in reply.results {
                let r = NodeResult::from_reply(r);
                if !matches!(
                    r.outcome,
                    Err(RemoteError::Invoke(InvokeError::Timeout { limit_ms: 200 }))
                ) {
                    wrong.push(format!("{}: {:?}", r.node, r.outcome));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 90 results were not a timeout: {wrong:?}",
        wrong.len()
    );
    for n in [n3, n2, n1] {
        n.shutdown().await;
    }
}
