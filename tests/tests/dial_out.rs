//! Nodes that accept no connections (issue 21 §3, `--no-inbound`): they advertise an address
//! that reaches nothing, so on loopback too the only way to them is through the relays they
//! dial, and every call that reaches them went through a relay. Invocations by
//! name, label and on all nodes, streams both ways, process calls, sends and monitors, a
//! supervised child placed on one, and a client reach them; two of them call each other; a relay's death moves a node to another
//! relay; a dead one is noticed.

use std::sync::atomic::Ordering;
use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{
    Address, ChildSpec, ChildState, Client, ExitReason, GossipMode, Node, StreamOptions, Target,
};
use steinadler_test_modules as m;

mod common;
use common::{hello_ok, msg};

const T: Duration = Duration::from_secs(10);

async fn start(name: &str, seeds: &[&Node], no_inbound: bool) -> Node {
    let mut b = common::through(
        Node::builder()
            .name(name)
            .gossip_mode(GossipMode::Tls)
            .label("name", name)
            .no_inbound(no_inbound),
        seeds.first().copied(),
    );
    for seed in seeds.iter().skip(1) {
        b = b.seed(seed.grpc_addr());
    }
    b.start()
        .await
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"))
}

/// The relays `of` advertises, as `seen_by` sees them.
async fn relays(seen_by: &Node, of: &str) -> Vec<String> {
    seen_by
        .members()
        .await
        .into_iter()
        .find(|m| m.name == of)
        .map(|m| m.meta.relays)
        .unwrap_or_default()
}

async fn greet(from: &Node, on: &str) -> Result<(), String> {
    let args = Term::list([Term::from("World")]).encode();
    let results = from
        .invoke(&Target::Node(on.to_owned()), "hello", "greet", &args)
        .await
        .map_err(|e| e.to_string())?;
    match results.as_slice() {
        [one] if one.outcome.is_ok() => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_accept_no_connections_are_reached_through_their_relays() {
    let r1 = start("r1", &[], false).await;
    let r2 = start("r2", &[&r1], false).await;
    let d1 = start("d1", &[&r1, &r2], true).await;
    let d2 = start("d2", &[&r2], true).await;
    let all = [&r1, &r2, &d1, &d2];
    for node in all {
        node.wait_for_members(4, Duration::from_secs(30))
            .await
            .unwrap();
    }
    // Their advertised address reaches nothing, and they name their relays.
    for d in [&d1, &d2] {
        let addr: std::net::SocketAddr = d.advertised_addr().parse().unwrap();
        assert!(
            addr.is_ipv6() && addr.ip().to_string().starts_with("100::"),
            "{addr}"
        );
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    }
    common::eventually(T, "d1 names its two relays", || async {
        relays(&r2, "d1").await == ["r1", "r2"]
    })
    .await;
    common::eventually(T, "d2 names its relay", || async {
        relays(&r1, "d2").await == ["r2"]
    })
    .await;

    // On a relay, and on a node that accepts no connections: the others fetch it from both.
    r1.deploy("hello", m::HELLO_WASM).await.unwrap();
    d2.deploy("hello", m::HELLO_WASM).await.unwrap();
    let args = Term::list([Term::from("World")]).encode();
    let results = r1
        .invoke(&Target::All, "hello", "greet", &args)
        .await
        .unwrap();
    assert_eq!(results.len(), 4, "{results:?}");
    results.iter().for_each(hello_ok);
    // By name, from a relay of the target, from a member that is not, and between the two
    // nodes that accept no connections.
    greet(&r1, "d1").await.unwrap();
    greet(&r1, "d2").await.unwrap();
    greet(&d1, "d2").await.unwrap();
    greet(&d2, "d1").await.unwrap();
    // Neither can dial the other: their link (made for these calls or for gossip before) went
    // through a relay.
    let relayed = |n: &Node| n.stats().tunnels_relayed.load(Ordering::Relaxed);
    assert!(relayed(&r1) + relayed(&r2) > 0);

    // By label.
    let on_d2 = Target::Labels([("name".to_owned(), "d2".to_owned())].into());
    let results = r1.invoke(&on_d2, "hello", "greet", &args).await.unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    results.iter().for_each(hello_ok);

    // Streams from d1 to r2, and from r2 to d1 (r2 fetches the module from d1 for it).
    d1.deploy("range", m::RANGE_WASM).await.unwrap();
    for (consumer, producer) in [(&r2, "d1"), (&d1, "r2")] {
        let mut stream = consumer
            .open_stream(
                Some(producer),
                "range",
                "range",
                &common::args(&[0, 300]),
                StreamOptions { window: 16 },
            )
            .await
            .unwrap();
        for i in 0..300 {
            let item = tokio::time::timeout(T, stream.next()).await.unwrap();
            assert_eq!(item.unwrap().unwrap(), Term::Int(i), "from {producer}");
        }
        assert!(stream.next().await.is_none(), "from {producer}");
    }

    // A process on d1, called and sent to from r2 and from d2.
    d1.deploy("counter", m::COUNTER_WASM).await.unwrap();
    let pid = d1.spawn("counter", Term::Int(0), Some("c")).await.unwrap();
    let by_name: Address = "c@d1".parse().unwrap();
    for _ in 0..100 {
        r2.send(&Address::Pid(pid.clone()), "inc".into())
            .await
            .unwrap();
        d2.send(&by_name, "inc".into()).await.unwrap();
    }
    let got = r2
        .call(&by_name, msg(&["add".into(), Term::Int(1)]), T)
        .await
        .unwrap();
    assert_eq!(got, Term::Int(201));
    // A monitor from r2 sees a process on d1 stop. The watch is set on d1 asynchronously: a
    // process that stops before it is set gives NoProc, so wait longer before stopping.
    let mut down = ExitReason::NoProc;
    for attempt in 1..=5 {
        let short = d1.spawn("counter", Term::Int(0), None).await.unwrap();
        let watch = r2.monitor(&short);
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        r2.call(&Address::Pid(short.clone()), "stop".into(), T)
            .await
            .unwrap();
        down = tokio::time::timeout(T, watch.down()).await.unwrap();
        if down != ExitReason::NoProc {
            break;
        }
    }
    assert_eq!(down, ExitReason::Normal);

    // A supervised child placed on d1 from r2, named globally, called by name from d2, and
    // restarted on d1 after a crash.
    let spec = ChildSpec {
        name: Some("kept".into()),
        placement: "label:name=d1".parse().unwrap(),
        ..ChildSpec::new("counter", Term::Int(7))
    };
    let child = r2.start_child(spec).await.unwrap();
    let ChildState::Running(first) = child.state.clone() else {
        panic!("{child:?}");
    };
    assert_eq!(first.node, "d1");
    let kept: Address = "kept".parse().unwrap();
    common::eventually(T, "d2 resolves kept", || async {
        d2.whereis_global("kept").await == Some(first.clone())
    })
    .await;
    assert_eq!(d2.call(&kept, "get".into(), T).await.unwrap(), Term::Int(7));
    // Past i64::MAX the counter crashes.
    let overflow = msg(&["add".into(), Term::Int(i64::MAX)]);
    assert!(d2.call(&kept, overflow, T).await.is_err());
    common::eventually(T, "kept restarted on d1", || async {
        r2.children().into_iter().any(|c| {
            c.id == child.id
                && matches!(&c.state, ChildState::Running(pid) if *pid != first && pid.node == "d1")
        })
    })
    .await;

    // A client (the CLI) reaches d1 through a relay too, with TLS to d1 itself.
    let auth = common::login(&r1, "tester").await;
    let listed = Client::connect(r2.grpc_addr(), &auth)
        .await
        .unwrap()
        .members()
        .await
        .unwrap()
        .members;
    let d1_listed = listed.iter().find(|m| m.name == "d1").unwrap();
    assert_eq!(d1_listed.relay_addrs.len(), 2, "{d1_listed:?}");
    let mut on_d1 = Client::connect_through(&d1_listed.relay_addrs, "d1", &auth)
        .await
        .unwrap();
    let processes = on_d1.processes().await.unwrap();
    assert_eq!(processes.node, "d1");
    assert!(
        processes.processes.iter().any(|p| p.name == "c"),
        "{processes:?}"
    );
    // A relay that a node is not attached to says so.
    let err = Client::connect_through(&[r1.grpc_addr().to_owned()], "d2", &auth)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not attached"), "{err}");

    // r1 dies: d1 stays reachable through r2, and attaches to no dead relay.
    r1.kill().await;
    let moved = common::eventually(
        Duration::from_secs(30),
        "d1 reachable after r1 died",
        || async {
            greet(&d2, "d1").await.is_ok()
                && greet(&r2, "d1").await.is_ok()
                && relays(&r2, "d1").await == ["r2"]
        },
    )
    .await;
    eprintln!("d1 answered through r2 alone {moved:?} after r1 died");
    assert_eq!(
        d2.call(&by_name, "get".into(), T).await.unwrap(),
        Term::Int(201)
    );

    // d2 dies: the others notice, as for any node.
    d2.kill().await;
    let noticed = common::eventually(Duration::from_secs(30), "d2 still listed", || async {
        r2.members().await.len() == 2 && d1.members().await.len() == 2
    })
    .await;
    eprintln!("d2's death noticed after {noticed:?}");
    for node in [&d1, &r2] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_inbound_refuses_gossip_on_its_own_port_and_an_advertised_address() {
    let seed = start("s1", &[], false).await;
    let err = common::through(Node::builder().name("x1").no_inbound(true), Some(&seed))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--gossip-wire tls"), "{err}");
    let err = common::through(
        Node::builder()
            .name("x2")
            .gossip_mode(GossipMode::Tls)
            .no_inbound(true)
            .advertise("10.0.0.1:7100"),
        Some(&seed),
    )
    .start()
    .await
    .unwrap_err();
    assert!(err.to_string().contains("drop --advertise"), "{err}");
    assert_eq!(seed.members().await.len(), 1);
    seed.shutdown().await;
}
