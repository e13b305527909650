//! The cluster registry on real nodes over mutual TLS: global names reach their process from
//! every node, stay unique, vanish with their process or node, and a partition's conflict is
//! resolved the same way everywhere when it heals.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_core::{Pid, Term};
use steinadler_node::{Address, Node};
use steinadler_test_modules as m;

mod common;
use common::{eventually, msg};

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_name_reaches_its_process_from_every_node() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "b", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();

    let pid = n1.spawn("counter", Term::Int(10), None).await.unwrap();
    n1.register_global("ctr", &pid).await.unwrap();
    // Registering it again for the same process is a no-op.
    n1.register_global("ctr", &pid).await.unwrap();

    // At once, from another node: a lookup that misses locally asks the name's home.
    assert_eq!(n3.whereis_global("ctr").await, Some(pid.clone()));
    let by_name: Address = "ctr".parse().unwrap();
    n3.send(&by_name, "inc".into()).await.unwrap();
    assert_eq!(
        n3.call(&by_name, "get".into(), T).await.unwrap(),
        Term::Int(11)
    );

    // Every replica converges (anti-entropy plus the push on change).
    let took = eventually(
        Duration::from_secs(3),
        "not every node lists ctr",
        || async {
            [&n1, &n2, &n3]
                .iter()
                .all(|n| n.registry().iter().any(|e| e.name == "ctr" && e.pid == pid))
        },
    )
    .await;
    eprintln!("ctr reached every replica in {took:?}");

    // The name is unique: another process on another node cannot take it.
    n2.deploy("counter", m::COUNTER_WASM).await.unwrap();
    let other = n2.spawn("counter", Term::Int(0), None).await.unwrap();
    let err = n2.register_global("ctr", &other).await.unwrap_err();
    assert!(err.to_string().contains("taken by"), "{err}");
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
    // Nor through a client, for a process on a third node.
    let client = common::client(&n3).await;
    let err = client.register_global("ctr", &other).await.unwrap_err();
    assert!(err.to_string().contains("taken by"), "{err}");
    // A malformed name is refused with the rule.
    let err = client
        .register_global("no spaces", &other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a process name"), "{err}");
    assert_eq!(
        client.whereis_global("ctr").await.unwrap(),
        Some(pid.clone())
    );
    let listed = client.registry().await.unwrap();
    assert!(listed.iter().any(|e| e.name == "ctr" && e.pid == pid));
    // The replication calls are for nodes only: a client certificate cannot forge registry
    // state or grant itself a name.
    let mut raw = steinadler_proto::v1::registry_client::RegistryClient::new(client.channel());
    let denied = raw
        .sync(steinadler_proto::v1::SyncRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let denied = raw
        .claim(steinadler_proto::v1::ClaimRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // When the process ends, its name is free everywhere, and can be taken again.
    assert_eq!(
        n2.call(&by_name, "stop".into(), T).await.unwrap(),
        Term::Int(11)
    );
    eventually(Duration::from_secs(3), "ctr still resolves", || async {
        n2.whereis_global("ctr").await.is_none() && n3.whereis_global("ctr").await.is_none()
    })
    .await;
    client.register_global("ctr", &other).await.unwrap();
    assert_eq!(n1.whereis_global("ctr").await, Some(other.clone()));
    assert!(client.unregister_global("ctr").await.unwrap());
    eventually(Duration::from_secs(3), "ctr still resolves", || async {
        n1.whereis_global("ctr").await.is_none()
    })
    .await;

    for n in [n3, n2, n1] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_register_and_reach_global_names() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("kv", m::KV_WASM).await.unwrap();

    let store = n1.spawn("kv", Term::Nil, None).await.unwrap();
    let registered = n1
        .call(
            &Address::Pid(store.clone()),
            msg(&["register_global".into(), "store".into()]),
            T,
        )
        .await
        .unwrap();
    assert_eq!(registered, Term::Bool(true));

    // A guest on the other node reaches it by the bare name.
    let asker = n2.spawn("kv", Term::Nil, None).await.unwrap();
    let asker = Address::Pid(asker);
    let put = msg(&["put".into(), "k".into(), "v".into()]);
    n2.call(&asker, msg(&["call".into(), "store".into(), put]), T)
        .await
        .unwrap();
    assert_eq!(
        n2.call(&asker, msg(&["whereis".into(), "store".into()]), T)
            .await
            .unwrap(),
        Term::Pid(store.clone())
    );
    let get = msg(&["get".into(), "k".into()]);
    assert_eq!(
        n1.call(&Address::Pid(store), get, T).await.unwrap(),
        Term::from("v")
    );
    // A guest cannot take a taken name; it gets the node's reason.
    let refused = n2
        .call(&asker, msg(&["register_global".into(), "store".into()]), T)
        .await
        .unwrap();
    assert!(
        matches!(&refused, Term::String(s) if s.contains("taken by")),
        "{refused}"
    );
    n2.shutdown().await;
    n1.shutdown().await;
}

/// Splits the cluster in two: each side gossips with a key the other side does not hold, so
/// SWIM on each side declares the other side dead. Nothing routes to a node membership calls
/// dead, so the sides are cut off from each other.
fn partition(side_a: &[&Node], side_b: &[&Node]) -> [u8; 32] {
    let key_a = [7u8; 32];
    let old = side_a[0].membership().gossip_keys()[0];
    for n in side_a {
        n.membership().install_gossip_key(key_a).unwrap();
        n.membership().use_gossip_key(key_a).unwrap();
        n.membership().remove_gossip_key(old).unwrap();
    }
    let _ = side_b;
    old
}

/// Heals [`partition`]: every node holds both keys again, and reconnects on its own.
fn heal(side_a: &[&Node], side_b: &[&Node], old: [u8; 32]) {
    for n in side_a {
        n.membership().install_gossip_key(old).unwrap();
    }
    for n in side_b {
        n.membership().install_gossip_key([7u8; 32]).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_registered_on_both_sides_of_a_partition_has_one_holder_after_the_heal() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "b", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    for n in [&n1, &n2, &n3] {
        n.deploy("kv", m::KV_WASM).await.unwrap();
    }

    let old = partition(&[&n1, &n2], &[&n3]);
    eventually(
        Duration::from_secs(10),
        "the sides still see each other",
        || async {
            n1.members().await.len() == 2
                && n2.members().await.len() == 2
                && n3.members().await.len() == 1
        },
    )
    .await;

    // The same name on both sides: each side's home grants it.
    let first = n2.spawn("kv", Term::Nil, None).await.unwrap();
    n2.register_global("leader", &first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = n3.spawn("kv", Term::Nil, None).await.unwrap();
    n3.register_global("leader", &second).await.unwrap();
    assert_eq!(n1.whereis_global("leader").await, Some(first.clone()));
    assert_eq!(n3.whereis_global("leader").await, Some(second.clone()));

    heal(&[&n1, &n2], &[&n3], old);
    let took = eventually(
        Duration::from_secs(15),
        "the sides did not merge",
        || async { n1.members().await.len() == 3 && n3.members().await.len() == 3 },
    )
    .await;
    eprintln!("membership merged {took:?} after the heal");

    // The older registration keeps the name on every node; the loser's node drops it.
    eventually(
        Duration::from_secs(5),
        "the nodes disagree on leader",
        || async {
            let mut holders = Vec::new();
            for n in [&n1, &n2, &n3] {
                holders.push(n.whereis_global("leader").await);
                let listed: Vec<Pid> = n
                    .registry()
                    .into_iter()
                    .filter(|e| e.name == "leader")
                    .map(|e| e.pid)
                    .collect();
                if listed != [first.clone()] {
                    return false;
                }
            }
            holders.iter().all(|h| *h == Some(first.clone()))
        },
    )
    .await;
    // The loser was told, and keeps running.
    let loser = Address::Pid(second.clone());
    let notices = eventually(Duration::from_secs(5), "the loser was not told", || async {
        matches!(n3.call(&loser, "downs".into(), T).await, Ok(Term::List(l)) if !l.is_empty())
    })
    .await;
    let _ = notices;
    let notices = n3.call(&loser, "downs".into(), T).await.unwrap();
    assert_eq!(
        notices,
        Term::List(vec![msg(&[
            "name_lost".into(),
            "leader".into(),
            Term::Pid(first.clone())
        ])])
    );
    // A message to the name now reaches the winner from the loser's side.
    n3.call(
        &"leader".parse().unwrap(),
        msg(&["put".into(), "from".into(), "n3".into()]),
        T,
    )
    .await
    .unwrap();
    assert_eq!(
        n2.call(&Address::Pid(first), msg(&["get".into(), "from".into()]), T)
            .await
            .unwrap(),
        Term::from("n3")
    );
    for n in [n3, n2, n1] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lookup_returns_a_pid_on_a_node_declared_dead() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "a", Some(&n1)).await;
    let n4 = common::start("n4", "b", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3, &n4], 4).await;
    let nodes = Arc::new([n1, n2, n3, n4]);
    for n in nodes.iter() {
        n.deploy("kv", m::KV_WASM).await.unwrap();
    }
    // Names held on the node about to die.
    for i in 0..20 {
        let pid = nodes[3].spawn("kv", Term::Nil, None).await.unwrap();
        nodes[3]
            .register_global(&format!("doomed-{i}"), &pid)
            .await
            .unwrap();
    }

    // Each survivor registers names and looks up names from everywhere, nonstop, and notes
    // when its membership declares n4 dead.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..3 {
        let nodes = nodes.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let me = &nodes[w];
            let mut lookups: Vec<(Instant, Option<Pid>)> = Vec::new();
            let mut dead_at: Option<Instant> = None;
            let mut mine = std::collections::VecDeque::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let pid = me.spawn("kv", Term::Nil, None).await.unwrap();
                me.register_global(&format!("w{w}-{i}"), &pid)
                    .await
                    .unwrap();
                // At most 30 processes each: a node runs at most 256 instances.
                mine.push_back(pid);
                if mine.len() > 30 {
                    assert!(me.stop_process(&mine.pop_front().unwrap()));
                }
                for name in [
                    format!("doomed-{}", i % 20),
                    format!("w{}-{}", (w + 1) % 3, i / 2),
                ] {
                    let started = Instant::now();
                    lookups.push((started, me.whereis_global(&name).await));
                }
                if dead_at.is_none() && me.members().await.iter().all(|m| m.name != "n4") {
                    dead_at = Some(Instant::now());
                }
                i += 1;
            }
            (dead_at, lookups)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[3].kill().await;
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    // The bound: a node's view drops a dead node's names within one sync interval of its
    // membership declaring it dead (on the event itself, in practice).
    let bound = steinadler_node::SYNC_INTERVAL;
    let mut by_worker = HashMap::new();
    for (w, worker) in workers.into_iter().enumerate() {
        let (dead_at, lookups) = worker.await.unwrap();
        let dead_at = dead_at.unwrap_or_else(|| panic!("n{} never declared n4 dead", w + 1));
        let before = lookups.iter().filter(|(at, _)| *at < killed).count();
        let late: Vec<&(Instant, Option<Pid>)> = lookups
            .iter()
            .filter(|(at, pid)| {
                *at > dead_at + bound && pid.as_ref().is_some_and(|p| p.node == "n4")
            })
            .collect();
        assert!(
            late.is_empty(),
            "n{} returned {} PIDs on n4 after declaring it dead",
            w + 1,
            late.len()
        );
        let after = lookups.iter().filter(|(at, _)| *at > dead_at).count();
        assert!(before > 0 && after > 0, "the load did not span the death");
        by_worker.insert(w, (dead_at.duration_since(killed), lookups.len()));
    }
    eprintln!("n4 declared dead after / lookups per worker: {by_worker:?}");
    for n in nodes[..3].iter().rev() {
        n.shutdown().await;
    }
}
