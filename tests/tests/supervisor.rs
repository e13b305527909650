//! The distributed supervisor on real nodes over mutual TLS: restarts by policy, giving up,
//! placement, stopping, and children that move when their node dies.

use std::time::{Duration, Instant};
use steinadler_core::{Pid, Term};
use steinadler_node::{Address, ChildSpec, ChildState, Node, Placement, Restart};
use steinadler_test_modules as m;

mod common;

const T: Duration = Duration::from_secs(5);

fn running(child: &steinadler_node::Child) -> Pid {
    match &child.state {
        ChildState::Running(pid) => pid.clone(),
        other => panic!("child {} is {other}, not running", child.id),
    }
}

/// The child `id` as `node` sees it.
fn child_on(node: &Node, id: &str) -> steinadler_node::Child {
    known_on(node, id).unwrap_or_else(|| panic!("{} does not know child {id}", node.name()))
}

/// The child `id` as `node` sees it, if its record has reached `node` yet: for loops that
/// wait, since a child started through another node reaches this one by replication.
fn known_on(node: &Node, id: &str) -> Option<steinadler_node::Child> {
    node.children().into_iter().find(|c| c.id == id)
}

/// Waits until `node` sees child `id` running as a PID other than `old`; returns it.
async fn restarted(node: &Node, id: &str, old: &Pid, within: Duration) -> Pid {
    let started = Instant::now();
    loop {
        if let Some(ChildState::Running(pid)) = known_on(node, id).map(|c| c.state)
            && pid != *old
        {
            return pid;
        }
        assert!(
            started.elapsed() < within,
            "child {id} not restarted within {within:?}: {:?}",
            known_on(node, id)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_restart_by_policy_and_the_supervisor_gives_up_on_a_crash_loop() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "b", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("kv", m::KV_WASM).await.unwrap();
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();

    // Permanent, named, placed by label on n2: started from n1, runs on n2.
    let spec = ChildSpec {
        name: Some("cache".into()),
        placement: "label:zone=b".parse().unwrap(),
        max_restarts: 2,
        max_seconds: 30,
        ..ChildSpec::new("kv", Term::Nil)
    };
    let child = n1.start_child(spec).await.unwrap();
    let first = running(&child);
    assert_eq!(first.node, "n2");
    assert_eq!(n1.whereis_global("cache").await, Some(first.clone()));

    // A crash restarts it, and the name follows the new process.
    let err = n1.call(&"cache".parse().unwrap(), "crash".into(), T).await;
    assert!(err.is_err());
    let second = restarted(&n1, &child.id, &first, T).await;
    assert_eq!(child_on(&n1, &child.id).restarts, 1);
    let put = common::msg(&["put".into(), "k".into(), 1.into()]);
    let started = Instant::now();
    loop {
        if n1.whereis_global("cache").await == Some(second.clone()) {
            break;
        }
        assert!(started.elapsed() < T, "the name did not follow the restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n1.call(&"cache".parse().unwrap(), put, T).await.unwrap();

    // Two more crashes within the window: more than max_restarts (2), so it gives up.
    let _ = n2
        .call(&Address::Pid(second.clone()), "crash".into(), T)
        .await;
    let third = restarted(&n2, &child.id, &second, T).await;
    let _ = n2.call(&Address::Pid(third), "crash".into(), T).await;
    let started = Instant::now();
    loop {
        match known_on(&n1, &child.id).map(|c| c.state) {
            Some(ChildState::GaveUp(why)) => {
                assert!(why.contains("more than 2 restarts within 30 s"), "{why}");
                break;
            }
            _ => assert!(started.elapsed() < T, "the supervisor did not give up"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Transient: a normal exit ends it for good.
    let transient = n2
        .start_child(ChildSpec {
            restart: Restart::Transient,
            ..ChildSpec::new("counter", Term::Int(1))
        })
        .await
        .unwrap();
    let pid = running(&transient);
    let on = if pid.node == "n1" { &n1 } else { &n2 };
    on.call(&Address::Pid(pid), "stop".into(), T).await.unwrap();
    let started = Instant::now();
    // It was started through n2: n1 learns of it by replication, so it may not know it yet.
    let on_n1 = || n1.children().into_iter().find(|c| c.id == transient.id);
    while !on_n1().is_some_and(|c| matches!(c.state, ChildState::Done(_))) {
        assert!(started.elapsed() < T, "{:?}", on_n1());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Bad specs get clear errors and leave the nodes serving.
    let err = n1
        .start_child(ChildSpec::new("no-such-module", Term::Nil))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-module"), "{err}");
    let err = n1
        .start_child(ChildSpec {
            placement: Placement::Labels([("zone".into(), "mars".into())].into()),
            ..ChildSpec::new("kv", Term::Nil)
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no live node fits"), "{err}");

    // Stop: the process ends, its name goes, and the record says stopped everywhere.
    let kept = n1
        .start_child(ChildSpec {
            name: Some("kept".into()),
            ..ChildSpec::new("kv", Term::Nil)
        })
        .await
        .unwrap();
    let kept_pid = running(&kept);
    let stopped = n2.stop_child(&kept.id).await.unwrap();
    assert_eq!(stopped.state, ChildState::Stopped);
    let started = Instant::now();
    loop {
        let gone = n1.whereis_global("kept").await.is_none()
            && known_on(&n1, &kept.id).map(|c| c.state) == Some(ChildState::Stopped)
            && n1
                .processes()
                .iter()
                .chain(n2.processes().iter())
                .all(|p| p.pid != kept_pid);
        if gone {
            break;
        }
        assert!(started.elapsed() < T, "the stopped child lingers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = n1.stop_child("0000000000000000").await.unwrap_err();
    assert!(err.to_string().contains("sup ls"), "{err}");

    // A client sees the same children.
    let client = common::client(&n2).await;
    let listed = client.children().await.unwrap();
    assert_eq!(listed.len(), n2.children().len());
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_a_dead_node_restart_elsewhere_and_keep_their_names() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "a", Some(&n1)).await;
    let nodes = [n1, n2, n3];
    common::wait_for_members(&nodes.iter().collect::<Vec<_>>(), 3).await;
    nodes[0].deploy("counter", m::COUNTER_WASM).await.unwrap();

    // Children keyed so that at least one lands on each node; all named.
    let mut children = Vec::new();
    for i in 0..9 {
        let child = nodes[0]
            .start_child(ChildSpec {
                name: Some(format!("c{i}")),
                placement: Placement::Key(format!("k{i}")),
                ..ChildSpec::new("counter", Term::Int(i))
            })
            .await
            .unwrap();
        children.push(child);
    }
    // Kill the node that runs the most children (never n1, which we ask).
    let count = |n: &str| children.iter().filter(|c| running(c).node == n).count();
    let victim = if count("n2") >= count("n3") { 1 } else { 2 };
    let victim_name = nodes[victim].name().to_owned();
    let moved: Vec<_> = children
        .iter()
        .filter(|c| running(c).node == victim_name)
        .cloned()
        .collect();
    assert!(!moved.is_empty());
    nodes[victim].kill().await;
    let killed = Instant::now();

    // Every child that ran there runs again on a survivor, within detection + 5 s, and its
    // name resolves to the new process from every survivor.
    let survivor = &nodes[3 - victim];
    for child in &moved {
        let old = running(child);
        let new = restarted(&nodes[0], &child.id, &old, Duration::from_secs(10)).await;
        assert_ne!(new.node, victim_name);
        let name = child.spec.name.clone().unwrap();
        let started = Instant::now();
        loop {
            let here = nodes[0].whereis_global(&name).await;
            let there = survivor.whereis_global(&name).await;
            if here == Some(new.clone()) && there == Some(new.clone()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name} resolves to {here:?} / {there:?}, not {new}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A message by name reaches the new process, which started afresh from its spec.
        let by_name: Address = name.parse().unwrap();
        survivor.send(&by_name, "inc".into()).await.unwrap();
        let Term::Int(start) = child.spec.args else {
            panic!()
        };
        assert_eq!(
            nodes[0].call(&by_name, "get".into(), T).await.unwrap(),
            Term::Int(start + 1)
        );
    }
    eprintln!(
        "{} children moved and answer by name {:?} after the kill",
        moved.len(),
        killed.elapsed()
    );
    // The others never moved.
    for child in children.iter().filter(|c| running(c).node != victim_name) {
        assert_eq!(
            child_on(&nodes[0], &child.id).state,
            ChildState::Running(running(child))
        );
    }
    survivor.shutdown().await;
    nodes[0].shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalancing_is_off_by_default_and_moves_children_to_a_new_node_when_on() {
    for rebalance in [false, true] {
        let start = |name: &'static str, seed: Option<&Node>| {
            let mut b = Node::builder()
                .name(name)
                .label("zone", "a")
                .rebalance_children(rebalance);
            if let Some(seed) = seed {
                b = b.seed(seed.grpc_addr()).token(seed.join_token().unwrap());
            }
            async move { b.start().await.unwrap() }
        };
        let n1 = start("n1", None).await;
        let n2 = start("n2", Some(&n1)).await;
        common::wait_for_members(&[&n1, &n2], 2).await;
        n1.deploy("counter", m::COUNTER_WASM).await.unwrap();
        let mut children = Vec::new();
        for i in 0..12 {
            let spec = ChildSpec {
                placement: Placement::Key(format!("k{i}")),
                ..ChildSpec::new("counter", Term::Int(i))
            };
            children.push(n1.start_child(spec).await.unwrap());
        }
        let n3 = start("n3", Some(&n1)).await;
        common::wait_for_members(&[&n1, &n2, &n3], 3).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let on_n3 = || {
            n1.children()
                .iter()
                .filter(|c| matches!(&c.state, ChildState::Running(p) if p.node == "n3"))
                .count()
        };
        if rebalance {
            // Rendezvous hashing gives the new node about a third of the keys.
            let started = Instant::now();
            while on_n3() == 0 {
                assert!(started.elapsed() < T, "no child moved to n3");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Every child still runs exactly once.
            let started = Instant::now();
            while !n1
                .children()
                .iter()
                .all(|c| matches!(c.state, ChildState::Running(_)))
            {
                assert!(started.elapsed() < T, "{:?}", n1.children());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let running: usize = [&n1, &n2, &n3].iter().map(|n| n.processes().len()).sum();
            assert_eq!(running, 12);
        } else {
            assert_eq!(on_n3(), 0, "a child moved although rebalancing is off");
            for c in &children {
                assert_eq!(child_on(&n1, &c.id).state, c.state);
            }
        }
        for n in [n3, n2, n1] {
            n.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_whose_node_died_is_listed_as_node_down_not_running() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "c", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();
    // Placed by label on n3 alone: once n3 dies, no other node may restart it.
    let spec = ChildSpec {
        placement: "label:zone=c".parse().unwrap(),
        ..ChildSpec::new("counter", Term::Int(0))
    };
    let child = n1.start_child(spec).await.unwrap();
    let pid = running(&child);
    assert_eq!(pid.node, "n3");
    common::eventually(Duration::from_secs(20), "n2 sees the child run", || async {
        known_on(&n2, &child.id).is_some_and(|c| c.state == ChildState::Running(pid.clone()))
    })
    .await;

    n3.kill().await;
    // Once membership declares n3 dead, neither survivor lists the child as running: it is
    // "node down", with the PID it had, here and through the client API (`sup ls`).
    let down = ChildState::NodeDown(pid.clone());
    common::eventually(
        Duration::from_secs(30),
        "both survivors list it as node down",
        || async {
            [&n1, &n2]
                .iter()
                .all(|n| child_on(n, &child.id).state == down)
        },
    )
    .await;
    let listed = common::client(&n2).await.children().await.unwrap();
    let seen = listed.iter().find(|c| c.id == child.id).unwrap();
    assert_eq!(seen.state, down);
    assert_eq!(seen.state.to_string(), "node down");
    n2.shutdown().await;
    n1.shutdown().await;
}
