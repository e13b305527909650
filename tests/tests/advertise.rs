//! Advertised addresses (issue 21 §1): a node reached through a port-forward gossips the
//! forwarded address, and others join and call it there; a node bound to every address never
//! gossips the wildcard; an address nobody can dial is refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use steinadler_core::Term;
use steinadler_node::{Node, NodeError, Target};
use steinadler_test_modules as m;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod common;
use common::hello_ok;

/// A TCP port-forward on 127.0.0.1, as a router's DNAT rule: every connection to its address
/// is relayed to the target, once the target is set.
struct Forward {
    addr: SocketAddr,
    target: watch::Sender<Option<String>>,
    accepted: Arc<AtomicUsize>,
}

impl Forward {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (target, mut known) = watch::channel(None::<String>);
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let to = known
                .wait_for(Option::is_some)
                .await
                .unwrap()
                .clone()
                .unwrap();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let to = to.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            addr,
            target,
            accepted,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_port_forward_is_joined_and_called_at_its_advertised_address() {
    let forward = Forward::start().await;
    let advertised = forward.addr.to_string();
    let n1 = Node::builder()
        .name("n1")
        .advertise(advertised.clone())
        .start()
        .await
        .unwrap();
    assert_eq!(n1.advertised_addr(), advertised);
    assert_ne!(n1.grpc_addr(), advertised);
    forward.target.send_replace(Some(n1.grpc_addr().to_owned()));

    // n2 knows only the forwarded address: it gets its certificate and joins through it.
    let n2 = Node::builder()
        .name("n2")
        .seed(advertised.clone())
        .token(n1.join_token().unwrap())
        .start()
        .await
        .unwrap();
    common::wait_for_members(&[&n1, &n2], 2).await;
    assert!(forward.accepted.load(Ordering::SeqCst) >= 1);
    let seen = n2.members().await;
    let n1_seen = seen.iter().find(|m| m.name == "n1").unwrap();
    assert_eq!(n1_seen.meta.grpc_addr, advertised, "n2 sees n1 at {seen:?}");

    n1.deploy("hello", m::HELLO_WASM).await.unwrap();
    let args = Term::list([Term::from("World")]).encode();
    let results = n2
        .invoke(&Target::Node("n1".into()), "hello", "greet", &args)
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    hello_ok(&results[0]);
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_bound_to_every_address_never_advertises_the_wildcard() {
    let started = Node::builder()
        .name("w1")
        .listen("0.0.0.0:0".parse().unwrap())
        .gossip("0.0.0.0:0".parse().unwrap())
        .start()
        .await;
    match started {
        Ok(node) => {
            let grpc: SocketAddr = node.advertised_addr().parse().unwrap();
            assert!(
                !grpc.ip().is_unspecified() && !grpc.ip().is_loopback(),
                "{grpc}"
            );
            assert_eq!(
                grpc.port(),
                node.grpc_addr().parse::<SocketAddr>().unwrap().port()
            );
            assert!(
                !node.gossip_addr().ip().is_unspecified(),
                "{}",
                node.gossip_addr()
            );
            node.shutdown().await;
        }
        // A machine with only loopback: the node must say so rather than gossip 0.0.0.0.
        Err(NodeError::Advertise(why)) => assert!(why.contains("--advertise"), "{why}"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_nobody_can_dial_is_refused_before_the_node_starts() {
    for bad in ["0.0.0.0:7100", "no-port", "[::]:1"] {
        let err = Node::builder()
            .name("bad")
            .advertise(bad)
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, NodeError::Advertise(_)), "{bad}: {err}");
    }
    let err = Node::builder()
        .name("bad")
        .advertise_gossip("0.0.0.0:7101".parse().unwrap())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Advertise(_)), "{err}");
}
