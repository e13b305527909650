//! Functional tests of `Membership` on real memberlist nodes over loopback: joining, agreement,
//! metadata updates, startup errors and encryption. Timing-sensitive failure detection is in
//! `detection.rs`, a separate test binary so it never shares the CPU with these.

mod common;

use std::time::Duration;

use common::{cluster, config, converge, expected, meta, stop, wait_for};
use steinadler_membership::{
    META_MAX_SIZE, MemberEvent, Membership, MembershipError, NodeMeta, Profile,
};

const AGREE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_names_and_metadata() {
    let nodes = cluster(3).await;
    for node in &nodes {
        assert_ne!(node.gossip_addr().port(), 0, "port 0 must be read back");
    }
    converge(&nodes, &expected(&nodes), AGREE).await;
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_update_reaches_the_others() {
    let nodes = cluster(3).await;
    converge(&nodes, &expected(&nodes), AGREE).await;
    let mut events = nodes[0].subscribe();

    let mut updated = meta("node-1", 50_001);
    updated.load = 42;
    updated.modules_digest = 7;
    updated.labels.insert("zone".to_owned(), "b".to_owned());
    nodes[1].update_meta(updated.clone()).await.unwrap();

    let mut want = expected(&nodes);
    want[1].meta = updated.clone();
    converge(&nodes, &want, AGREE).await;

    let event = tokio::time::timeout(AGREE, async {
        loop {
            match events.recv().await.unwrap() {
                MemberEvent::Updated(member) if member.name == "node-1" => return member,
                _ => {}
            }
        }
    })
    .await
    .expect("an Updated event");
    assert_eq!(event.meta, updated);
    stop(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_events_name_the_newcomer() {
    let first = Membership::start(config("first", &[])).await.unwrap();
    let mut events = first.subscribe();
    let second = Membership::start(config("second", &[first.gossip_addr()]))
        .await
        .unwrap();
    let joined = tokio::time::timeout(AGREE, events.recv())
        .await
        .expect("a Joined event")
        .unwrap();
    match joined {
        MemberEvent::Joined(member) => {
            assert_eq!(member.name, "second");
            assert_eq!(member.gossip_addr, second.gossip_addr());
            assert_eq!(member.meta, meta("second", 50_000));
        }
        other => panic!("expected Joined, got {other:?}"),
    }
    stop(&[first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_profile_nodes_join() {
    let mut a = config("lan-a", &[]);
    a.profile = Profile::Lan;
    let a = Membership::start(a).await.unwrap();
    let mut b = config("lan-b", &[a.gossip_addr()]);
    b.profile = Profile::Lan;
    let b = Membership::start(b).await.unwrap();
    let both = wait_for(AGREE, || async {
        common::names(&a).await == ["lan-a", "lan-b"]
            && common::names(&b).await == ["lan-a", "lan-b"]
    })
    .await;
    assert!(both.is_some(), "LAN-profile nodes did not agree");
    stop(&[a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_seed_is_a_typed_error() {
    // A port that was free a moment ago: nothing listens there, so the TCP join is refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Membership::start(config("lonely", &[dead]))
        .await
        .unwrap_err();
    match &err {
        MembershipError::JoinFailed { seeds, .. } => assert_eq!(seeds, &[dead]),
        other => panic!("expected JoinFailed, got {other:?}"),
    }
    assert!(err.to_string().contains("--join"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_address_as_seed_is_skipped() {
    let first = Membership::start(config("first", &[])).await.unwrap();
    assert_eq!(first.join(&[first.gossip_addr()]).await.unwrap(), 0);
    assert_eq!(common::names(&first).await, ["first"]);
    first.shutdown().await.unwrap();
}

fn oversized() -> NodeMeta {
    let mut meta = meta("big", 1);
    meta.labels
        .insert("blob".to_owned(), "x".repeat(META_MAX_SIZE));
    meta
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_metadata_is_an_error_not_a_panic() {
    let mut big = config("big", &[]);
    big.meta = oversized();
    let err = Membership::start(big).await.unwrap_err();
    assert!(
        matches!(err, MembershipError::MetaTooLarge { size } if size > META_MAX_SIZE),
        "{err:?}"
    );

    let node = Membership::start(config("small", &[])).await.unwrap();
    let err = node.update_meta(oversized()).await.unwrap_err();
    assert!(
        matches!(err, MembershipError::MetaTooLarge { .. }),
        "{err:?}"
    );
    // The old metadata is still advertised.
    assert_eq!(node.members().await[0].meta, meta("small", 50_000));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_reports_not_running() {
    let node = Membership::start(config("gone", &[])).await.unwrap();
    node.shutdown().await.unwrap();
    node.shutdown().await.unwrap();
    assert!(matches!(
        node.update_meta(meta("gone", 1)).await,
        Err(MembershipError::NotRunning)
    ));
    assert!(matches!(
        node.join(&["127.0.0.1:9".parse().unwrap()]).await,
        Err(MembershipError::NotRunning)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_name_is_rejected() {
    let err = Membership::start(config("  ", &[])).await.unwrap_err();
    assert!(matches!(err, MembershipError::InvalidConfig(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_cluster_admits_only_key_holders() {
    let key = [7u8; 32];
    let mut a = config("enc-a", &[]);
    a.gossip_key = Some(key);
    let a = Membership::start(a).await.unwrap();
    assert!(a.encryption_enabled());

    let mut b = config("enc-b", &[a.gossip_addr()]);
    b.gossip_key = Some(key);
    let b = Membership::start(b).await.unwrap();
    assert!(b.encryption_enabled());
    let both = wait_for(AGREE, || async {
        common::names(&a).await == ["enc-a", "enc-b"]
            && common::names(&b).await == ["enc-a", "enc-b"]
    })
    .await;
    assert!(both.is_some(), "keyed nodes did not agree");

    let err = Membership::start(config("plain", &[a.gossip_addr()]))
        .await
        .unwrap_err();
    assert!(matches!(err, MembershipError::JoinFailed { .. }), "{err:?}");

    let mut wrong = config("wrong-key", &[a.gossip_addr()]);
    wrong.gossip_key = Some([8u8; 32]);
    let err = Membership::start(wrong).await.unwrap_err();
    assert!(matches!(err, MembershipError::JoinFailed { .. }), "{err:?}");

    assert_eq!(common::names(&a).await, ["enc-a", "enc-b"]);
    stop(&[a, b]).await;
}

/// A free port on every IPv4 address, for UDP and TCP both (gossip binds the two on one port).
fn free_gossip_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advertised_gossip_address_is_the_one_members_see_and_probe() {
    // Bound to every address, advertised as another loopback address (all of 127/8 reaches
    // the socket), as a node behind a port-forward advertises the router's address.
    let port = free_gossip_port();
    let advertised: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let mut a = config("adv-a", &[]);
    a.gossip_addr = format!("0.0.0.0:{port}").parse().unwrap();
    a.gossip_advertise = Some(advertised);
    let a = Membership::start(a).await.unwrap();
    assert_eq!(a.gossip_addr(), advertised);

    let b = Membership::start(config(
        "adv-b",
        &[format!("127.0.0.1:{port}").parse().unwrap()],
    ))
    .await
    .unwrap();
    let seen = wait_for(AGREE, || async {
        b.members()
            .await
            .iter()
            .any(|m| m.name == "adv-a" && m.gossip_addr == advertised)
    })
    .await;
    assert!(seen.is_some(), "adv-b never saw adv-a at {advertised}");
    // adv-b probes adv-a at the advertised address: several probe rounds later it is alive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(common::names(&b).await, ["adv-a", "adv-b"]);
    assert_eq!(common::names(&a).await, ["adv-a", "adv-b"]);
    stop(&[a, b]).await;
}

/// Whether the `Left` event for `name` on `events`, within `limit`, says it failed.
async fn left_event(
    events: &mut tokio::sync::broadcast::Receiver<MemberEvent>,
    name: &str,
    limit: Duration,
) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            match events.recv().await.unwrap() {
                MemberEvent::Left {
                    name: left, failed, ..
                } if left == name => return failed,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no Left event for {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_is_told_apart_from_a_crash() {
    // The supervisor's majority rule counts a member that left differently from one that
    // failed, so the event must say which.
    let nodes = cluster(3).await;
    converge(&nodes, &expected(&nodes), AGREE).await;
    let mut events = nodes[0].subscribe();
    nodes[1].leave(AGREE).await.unwrap();
    let left = left_event(&mut events, "node-1", AGREE).await;
    assert!(!left, "a leave was reported as a failure");
    // With no third node to confirm the suspicion, the Local profile waits its longest
    // suspicion timeout, about 7 s.
    nodes[2].shutdown().await.unwrap();
    let crashed = left_event(&mut events, "node-2", Duration::from_secs(30)).await;
    assert!(crashed, "a crash was reported as a leave");
    nodes[0].shutdown().await.unwrap();
}
