//! The connection layer's pool, with real nodes over mutual TLS: one connection to a peer for
//! gRPC and the invoke stream alike, used by both nodes whichever dialed it, at most
//! `max_peers` peers open, the least recently used closed first, idle peers closed and
//! reopened on the next call, and opens to peers that do not answer holding up nobody else.

use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{Node, NodeResult, Target};
use steinadler_test_modules as m;

mod common;
use common::{eventually, start, wait_for_members};

fn greet() -> Vec<u8> {
    Term::list([Term::from("World")]).encode()
}

fn hello_ok(results: &[NodeResult], node: &str) {
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].node, node);
    let value = results[0]
        .outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("{node}: {e}"));
    assert_eq!(Term::decode(value), Ok(Term::from("Hello, World!")));
}

async fn call(from: &Node, to: &str) -> Vec<NodeResult> {
    from.invoke(&Target::Node(to.to_owned()), "hello", "greet", &greet())
        .await
        .unwrap_or_else(|e| panic!("{} -> {to}: {e}", from.name()))
}

/// A node that joins `seed` with its token, built further by `f`.
async fn join(
    name: &str,
    seed: &Node,
    f: impl FnOnce(steinadler_node::NodeBuilder) -> steinadler_node::NodeBuilder,
) -> Node {
    f(Node::builder()
        .name(name)
        .seed(seed.grpc_addr())
        .token(seed.join_token().expect("the seed can sign joins")))
    .start()
    .await
    .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

/// Links between `a` and `b`, whichever opened them (peers also connect to each other, for
/// the registry's anti-entropy).
fn links(a: &Node, b: &Node) -> usize {
    let from = |to: &Node, by: &Node| {
        to.inbound_peers()
            .iter()
            .filter(|p| *p == by.name())
            .count()
    };
    from(a, b) + from(b, a)
}

/// Links between n1 and the peers, summed over `peers`.
fn links_of(n1: &Node, peers: &[&Node]) -> usize {
    peers.iter().map(|p| links(n1, p)).sum()
}

/// n1, and n2 joined to it, both seeing both.
async fn two_nodes() -> (Node, Node) {
    let n1 = Node::builder().name("n1").start().await.unwrap();
    let n2 = join("n2", &n1, |b| b).await;
    wait_for_members(&[&n1, &n2], 2).await;
    (n1, n2)
}

/// Waits until `a` and `b` hold one socket between them, in the kernel's table, and one link.
async fn one_connection_between(a: &Node, b: &Node) {
    eventually(
        Duration::from_secs(20),
        "one connection between the two nodes",
        || async { connections_to(port(a)) + connections_to(port(b)) == 1 && links(a, b) == 1 },
    )
    .await;
}

/// The port of `node`'s gRPC address.
fn port(node: &Node) -> u16 {
    node.grpc_addr()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Established TCP connections to `port` on 127.0.0.1, from the kernel's table: the sockets
/// that callers opened to the node listening there.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"01")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_to_a_peer_carries_grpc_and_the_invoke_stream() {
    let (n1, n2) = two_nodes().await;
    n2.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    // n1 runs hello itself, which pulls the module from n2 over gRPC (FetchModule), then calls
    // n2 on the invoke stream.
    eventually(
        Duration::from_secs(60),
        "n1 runs hello, fetched from n2",
        || async {
            n1.invoke(&Target::Node("n1".into()), "hello", "greet", &greet())
                .await
                .is_ok_and(|r| r.len() == 1 && r[0].outcome.is_ok())
        },
    )
    .await;
    assert!(
        n1.stats()
            .modules_fetched
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    hello_ok(&call(&n1, "n2").await, "n2");
    // Both went over one connection, where before this layer n1 held two (an HTTP/2 channel
    // and the framed stream). Which node dialed it depends on which called first (n2's
    // anti-entropy may have).
    one_connection_between(&n1, &n2).await;
    assert_eq!(n1.peer_pool().open_peers, 1);
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_call_each_other_share_one_connection() {
    let (n1, n2) = two_nodes().await;
    n1.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    // Each node calls the other on the invoke stream, and n2 pulls the module from n1 over
    // gRPC (FetchModule) to run it itself: both kinds of traffic, both ways.
    hello_ok(&call(&n1, "n2").await, "n2");
    hello_ok(&call(&n2, "n1").await, "n1");
    eventually(Duration::from_secs(60), "n2 runs hello itself", || async {
        n2.invoke(&Target::Node("n2".into()), "hello", "greet", &greet())
            .await
            .is_ok_and(|r| r.len() == 1 && r[0].outcome.is_ok())
    })
    .await;
    hello_ok(&call(&n2, "n1").await, "n1");
    hello_ok(&call(&n1, "n2").await, "n2");
    // One socket between them, where a connection per direction made two.
    one_connection_between(&n1, &n2).await;
    let (p1, p2) = (n1.peer_pool(), n2.peer_pool());
    assert_eq!((p1.open_peers, p2.open_peers), (1, 1), "{p1:?} {p2:?}");
    assert_eq!(
        p1.reverse_peers + p2.reverse_peers,
        1,
        "one of them calls over the link the other opened: {p1:?} {p2:?}"
    );
    // The link keeps working both ways.
    for _ in 0..3 {
        hello_ok(&call(&n1, "n2").await, "n2");
        hello_ok(&call(&n2, "n1").await, "n1");
    }
    assert_eq!(connections_to(port(&n1)) + connections_to(port(&n2)), 1);
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_holds_at_most_max_peers_and_closes_the_least_recently_used() {
    let n1 = Node::builder()
        .name("n1")
        .max_peers(2)
        .start()
        .await
        .unwrap();
    // The peers let their side of a link go soon after they stop using it, so that a link
    // n1 let go closes (a link stays open while either end uses it).
    let mut peers = Vec::new();
    for name in ["n2", "n3", "n4", "n5"] {
        peers.push(join(name, &n1, |b| b.peer_idle(Duration::from_secs(2))).await);
    }
    let all: Vec<&Node> = std::iter::once(&n1).chain(peers.iter()).collect();
    wait_for_members(&all, 5).await;
    n1.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    let peer_refs: Vec<&Node> = peers.iter().collect();

    // Twice round the four peers: each call opens its peer (a named node may always be
    // reached), and the pool closes the least recently used to stay at two.
    for round in 0..2 {
        for peer in &peers {
            hello_ok(&call(&n1, peer.name()).await, peer.name());
            let pool = n1.peer_pool();
            assert!(
                pool.open_peers <= 2,
                "round {round}, after {}: {pool:?}",
                peer.name()
            );
        }
    }
    assert_eq!(n1.peer_pool().open_peers, 2);
    // The closed peers' sockets really close, once the peers let go too.
    eventually(Duration::from_secs(20), "evicted links close", || async {
        links_of(&n1, &peer_refs) <= 2
    })
    .await;

    // The two most recently used stay open: calling them opens nothing new.
    let (n4, n5) = (&peers[2], &peers[3]);
    assert!(
        links(&n1, n4) >= 1 && links(&n1, n5) >= 1,
        "n4 and n5 were the last two called"
    );
    let dialed = n1.peer_pool().dialed;
    hello_ok(&call(&n1, "n4").await, "n4");
    hello_ok(&call(&n1, "n5").await, "n5");
    assert_eq!(n1.peer_pool().dialed, dialed, "n1 dialed again");
    for node in all {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_peer_is_closed_and_reopened_by_the_next_call() {
    let n1 = Node::builder()
        .name("n1")
        .peer_idle(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    // A link stays open while either end uses it: n2 lets go of its side as soon too.
    let n2 = join("n2", &n1, |b| b.peer_idle(Duration::from_secs(2))).await;
    wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    // The first call pulls and compiles the module on n2, which on a loaded machine may take
    // longer than the idle time: the link may have closed by its end.
    hello_ok(&call(&n1, "n2").await, "n2");
    // Anti-entropy may reopen a link meanwhile (using it does not keep it open), but no call
    // does: the link closes, on both ends.
    eventually(Duration::from_secs(20), "the idle peer closes", || async {
        links(&n1, &n2) == 0
    })
    .await;
    assert!(n1.peer_pool().open_peers <= 1);
    // The next call reconnects.
    hello_ok(&call(&n1, "n2").await, "n2");
    assert_eq!(n1.peer_pool().open_peers, 1);
    assert!(links(&n1, &n2) >= 1);
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_to_peers_that_do_not_answer_hold_up_no_other_peer() {
    // Three members whose gossiped gRPC address accepts TCP but never answers: a node that
    // hangs, or a firewall, before failure detection declares it dead. Each open to them
    // waits for its whole timeout.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap().to_string();
    let n1 = start("n1", "a", None).await;
    let n2 = start("n2", "a", Some(&n1)).await;
    let mut stuck = Vec::new();
    for name in ["s1", "s2", "s3"] {
        stuck.push(join(name, &n1, |b| b.advertise(hole_addr.clone())).await);
    }
    let mut all: Vec<&Node> = vec![&n1, &n2];
    all.extend(stuck.iter());
    wait_for_members(&all, 5).await;
    let hello = std::fs::read(m::HELLO).unwrap();
    n1.deploy("hello", &hello).await.unwrap();
    // n2 holds the module already, so calling it needs only the connection.
    n2.deploy("hello", &hello).await.unwrap();
    // The stuck members crash: gossip still lists them for a while, and their own links to
    // n1 (which n1 would call them on) are gone, so n1 must dial their address.
    for node in &stuck {
        node.kill().await;
    }
    eventually(
        Duration::from_secs(20),
        "the crashed members' links close",
        || async { stuck.iter().all(|s| links(&n1, s) == 0) },
    )
    .await;

    let n1 = std::sync::Arc::new(n1);
    let pending: Vec<_> = ["s1", "s2", "s3"]
        .into_iter()
        .map(|name| {
            let n1 = n1.clone();
            tokio::spawn(async move { call(&n1, name).await })
        })
        .collect();
    // Let the three opens start and take their peers' locks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hello_ok(&call(&n1, "n2").await, "n2");
    // Each stuck open lasts its whole timeout (5 s), so none of them can have ended yet: the
    // call to n2 did not wait on them.
    for (i, p) in pending.iter().enumerate() {
        assert!(!p.is_finished(), "the call to s{} ended before n2's", i + 1);
    }
    for p in pending {
        let results = p.await.unwrap();
        assert_eq!(results.len(), 1);
        let err = results[0]
            .outcome
            .as_ref()
            .expect_err("a stuck peer cannot answer");
        assert!(err.to_string().contains("invoke stream"), "{err}");
    }
    drop(hole);
    n2.shutdown().await;
    n1.shutdown().await;
}
