//! Gossip on the TLS port (issue 21 §2, `--gossip-wire tls`): nodes that bind one TCP port
//! each join over mutual TLS, call each other, hold one connection per pair, and notice a
//! crash; a node that gossips the other way is refused with the flag to use.

use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{GossipMode, Node, NodeError, Target};
use steinadler_test_modules as m;

mod common;
use common::hello_ok;

async fn start(name: &str, seed: Option<&Node>, mode: GossipMode) -> Result<Node, NodeError> {
    common::through(Node::builder().name(name).gossip_mode(mode), seed)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_gossiping_on_their_tls_port_join_call_and_notice_a_crash() {
    let n1 = start("n1", None, GossipMode::Tls).await.unwrap();
    let n2 = start("n2", Some(&n1), GossipMode::Tls).await.unwrap();
    let n3 = start("n3", Some(&n1), GossipMode::Tls).await.unwrap();
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;

    for node in [&n1, &n2, &n3] {
        // Gossip's address is the gRPC port, and nothing took its UDP twin: one port.
        assert_eq!(node.gossip_addr().to_string(), node.grpc_addr());
        std::net::UdpSocket::bind(node.gossip_addr()).unwrap_or_else(|e| {
            panic!(
                "{}: gossip bound UDP {}: {e}",
                node.name(),
                node.gossip_addr()
            )
        });
        let seen = node.members().await;
        for member in &seen {
            assert_eq!(
                member.gossip_addr.to_string(),
                member.meta.grpc_addr,
                "{seen:?}"
            );
        }
    }

    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    let args = Term::list([Term::from("World")]).encode();
    let results = n2
        .invoke(&Target::All, "hello", "greet", &args)
        .await
        .unwrap();
    assert_eq!(results.len(), 3, "{results:?}");
    results.iter().for_each(hello_ok);

    // Gossip, the call and the module fetch shared each pair's one link.
    for node in [&n1, &n2, &n3] {
        let pool = node.peer_pool();
        assert!(pool.open_peers <= 2, "{}: {pool:?}", node.name());
        assert!(
            node.inbound_peers().len() <= 2,
            "{}: {:?}",
            node.name(),
            node.inbound_peers()
        );
    }

    n3.kill().await;
    let noticed = common::eventually(Duration::from_secs(20), "n3 still listed", || async {
        n1.members().await.len() == 2 && n2.members().await.len() == 2
    })
    .await;
    eprintln!("a kill noticed by both survivors after {noticed:?}");
    let results = n1
        .invoke(&Target::All, "hello", "greet", &args)
        .await
        .unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    results.iter().for_each(hello_ok);

    // A node restarted under the crashed one's name joins again.
    let again = start("n3", Some(&n1), GossipMode::Tls).await.unwrap();
    common::wait_for_members(&[&n1, &n2, &again], 3).await;
    for node in [&again, &n2, &n1] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_gossips_the_other_way_is_refused_with_the_flag_to_use() {
    let tls = start("t1", None, GossipMode::Tls).await.unwrap();
    let err = start("u1", Some(&tls), GossipMode::Udp).await.unwrap_err();
    assert!(err.to_string().contains("--gossip-wire tls"), "{err}");

    let udp = start("u2", None, GossipMode::Udp).await.unwrap();
    let err = start("t2", Some(&udp), GossipMode::Tls).await.unwrap_err();
    assert!(err.to_string().contains("--gossip-wire udp"), "{err}");

    // Both still serve.
    assert_eq!(tls.members().await.len(), 1);
    assert_eq!(udp.members().await.len(), 1);
    tls.shutdown().await;
    udp.shutdown().await;
}
