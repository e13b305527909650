//! Shared by the cluster tests: nodes that join with a token over mutual TLS, as users run them,
//! and clients that log in with the same token.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;
use steinadler_node::{Client, ClientAuth, Node, NodeBuilder};
use steinadler_security::{ClientCredentials, Role};

/// Starts `name`; with a seed, it joins the seed's cluster with the seed's token.
pub async fn start(name: &str, zone: &str, seed: Option<&Node>) -> Node {
    through(Node::builder().name(name).label("zone", zone), seed)
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

/// `b`, joining `seed`'s cluster with the seed's token when there is a seed.
pub fn through(b: NodeBuilder, seed: Option<&Node>) -> NodeBuilder {
    match seed {
        Some(seed) => b
            .seed(seed.grpc_addr())
            .token(seed.join_token().expect("the seed can sign joins")),
        None => b,
    }
}

pub async fn wait_for_members(nodes: &[&Node], n: usize) {
    for node in nodes {
        node.wait_for_members(n, Duration::from_secs(10))
            .await
            .unwrap();
    }
}

/// Client credentials from `node`, as `steinadler login` gets them.
pub async fn login(node: &Node, user: &str) -> ClientAuth {
    let token = node.join_token().expect("the node can sign joins");
    let joined = steinadler_node::request_certificate(
        node.grpc_addr(),
        &token.parse().unwrap(),
        Role::Client,
        user,
    )
    .await
    .unwrap();
    ClientAuth::Certificate(Arc::new(ClientCredentials {
        ca_cert_pem: joined.reply.ca_cert_pem,
        cert_pem: joined.reply.cert_pem,
        key_pem: joined.key_pem,
    }))
}

/// A logged-in client of `node`.
pub async fn client(node: &Node) -> Client {
    let auth = login(node, "tester").await;
    Client::connect(node.grpc_addr(), &auth).await.unwrap()
}

/// Checks that `r` is `hello.greet("World")`'s value.
pub fn hello_ok(r: &steinadler_node::NodeResult) {
    let value = r
        .outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("{}: {e}", r.node));
    assert_eq!(
        steinadler_core::Term::decode(value),
        Ok(steinadler_core::Term::from("Hello, World!")),
        "{}",
        r.node
    );
}

/// A list Term, for process messages like `["add", 5]`.
pub fn msg(parts: &[steinadler_core::Term]) -> steinadler_core::Term {
    steinadler_core::Term::List(parts.to_vec())
}

/// A field of a map Term with string keys.
pub fn field_of(map: &steinadler_core::Term, k: &str) -> steinadler_core::Term {
    use steinadler_core::Term;
    match map {
        Term::Map(entries) => entries
            .iter()
            .find(|(key, _)| *key == Term::from(k))
            .map(|(_, v)| v.clone())
            .unwrap_or(Term::Nil),
        other => panic!("not a map: {other}"),
    }
}

/// An argument array of integers, for the `range` module's streams.
pub fn args(items: &[i64]) -> steinadler_core::Term {
    steinadler_core::Term::list(items.iter().map(|i| steinadler_core::Term::Int(*i)))
}

/// Waits until `check` holds, polling every 10 ms; fails with `what` after `within`. Returns
/// how long it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what} after {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Streams open on `node`, as producer: function instances and process outlets.
pub fn open_streams(node: &Node) -> u64 {
    node.stats()
        .streams_open
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Opens `range.range(start, end)` on n1 (as [`pair`] deploys it) for `consumer`.
pub async fn range_from_n1(
    consumer: &Node,
    start: i64,
    end: i64,
    window: u32,
) -> steinadler_node::StreamRef {
    consumer
        .open_stream(
            Some("n1"),
            "range",
            "range",
            &args(&[start, end]),
            steinadler_node::StreamOptions { window },
        )
        .await
        .unwrap()
}

/// Opens `crash.garbled` on n1 for `consumer` (the caller deploys `crash` there): the integer
/// 1, then bytes that do not decode.
pub async fn garbled_from_n1(
    consumer: &Node,
) -> Result<steinadler_node::StreamRef, steinadler_node::NodeError> {
    consumer
        .open_stream(
            Some("n1"),
            "crash",
            "garbled",
            &steinadler_core::Term::list([]),
            steinadler_node::StreamOptions::default(),
        )
        .await
}

/// Items `node`'s stream producers have produced so far.
pub fn produced(node: &Node) -> u64 {
    node.stats()
        .stream_items_produced
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Two nodes, n2 joined to n1, with the `range` stream module deployed on n1.
pub async fn pair() -> (Node, Node) {
    let n1 = start("n1", "a", None).await;
    let n2 = start("n2", "a", Some(&n1)).await;
    wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("range", steinadler_test_modules::RANGE_WASM)
        .await
        .unwrap();
    (n1, n2)
}
