//! Processes on real nodes over mutual TLS: spawn, send and call within a node and across
//! nodes, by PID and by name, ordering, crashes and bad messages.

use std::time::Duration;
use steinadler_core::{Pid, Term};
use steinadler_node::Address;
use steinadler_test_modules as m;

mod common;

const T: Duration = Duration::from_secs(5);
use common::{field_of, msg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_keeps_its_state_across_messages_and_nodes() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();

    let pid = n1.spawn("counter", Term::Int(10), Some("c")).await.unwrap();
    assert_eq!(pid.node, "n1");
    let here = Address::Pid(pid.clone());
    assert_eq!(
        n1.call(&here, "get".into(), T).await.unwrap(),
        Term::Int(10)
    );

    // 1,000 sends from another node, then a call: every one arrived, in order, exactly once.
    for _ in 0..1000 {
        n2.send(&here, "inc".into()).await.unwrap();
    }
    let by_name: Address = "c@n1".parse().unwrap();
    let got = n2
        .call(&by_name, msg(&["add".into(), Term::Int(5)]), T)
        .await
        .unwrap();
    assert_eq!(got, Term::Int(1015));

    let ps = n1.processes();
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].name.as_deref(), Some("c"));
    assert_eq!(ps[0].handled, 1002);
    assert!(ps[0].memory_bytes > 0);

    // A message of the wrong shape is refused, and the process keeps its state.
    let err = n1.call(&here, "bogus".into(), T).await.unwrap_err();
    assert!(err.to_string().contains("bad arguments"), "{err}");
    assert_eq!(
        n1.call(&here, "get".into(), T).await.unwrap(),
        Term::Int(1015)
    );

    // "stop" replies and ends the process normally; then it is gone.
    assert_eq!(
        n1.call(&here, "stop".into(), T).await.unwrap(),
        Term::Int(1015)
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = n2.call(&here, "get".into(), T).await.unwrap_err();
    assert!(err.to_string().contains("noproc"), "{err}");
    assert!(n1.processes().is_empty());
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_send_to_each_other_and_a_crash_leaves_the_node_serving() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();
    n1.deploy("kv", m::KV_WASM).await.unwrap();
    let counter = n1.spawn("counter", Term::Int(0), Some("c")).await.unwrap();
    // n2 has never seen the module: it fetches it from n1 and checks its hash.
    let kv = n2.spawn("kv", Term::Nil, Some("store")).await.unwrap();
    let kv_addr = Address::Pid(kv.clone());

    // State in the kv process.
    let put = msg(&["put".into(), "k".into(), Term::Int(1)]);
    assert_eq!(n1.call(&kv_addr, put, T).await.unwrap(), Term::Nil);
    let get = msg(&["get".into(), "k".into()]);
    assert_eq!(n1.call(&kv_addr, get, T).await.unwrap(), Term::Int(1));

    // A process sends to another node's process, by PID and by name.
    for to in [Term::Pid(counter.clone()), Term::from("c@n1")] {
        let forward = msg(&["forward".into(), to, "inc".into()]);
        assert_eq!(
            n1.call(&kv_addr, forward, T).await.unwrap(),
            Term::Bool(true)
        );
    }
    let deadline = std::time::Instant::now() + T;
    loop {
        let n = n2
            .call(&Address::Pid(counter.clone()), "get".into(), T)
            .await
            .unwrap();
        if n == Term::Int(2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "forwarded messages lost: {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A panic crashes the process with its message; the node goes on serving.
    let err = n1.call(&kv_addr, "crash".into(), T).await.unwrap_err();
    assert!(
        err.to_string().contains("trap") || err.to_string().contains("panic"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(n2.processes().is_empty());
    let again = n2.spawn("kv", Term::Nil, Some("store")).await.unwrap();
    assert_ne!(again, kv);
    assert_eq!(
        n1.call(&Address::Pid(again), "keys".into(), T)
            .await
            .unwrap(),
        Term::List(vec![])
    );

    // A name is unique on its node; a PID of an earlier incarnation is noproc.
    let err = n2.spawn("kv", Term::Nil, Some("store")).await.unwrap_err();
    assert!(err.to_string().contains("already"), "{err}");
    let stale = Address::Pid(Pid {
        incarnation: counter.incarnation - 1,
        ..counter.clone()
    });
    let err = n2.send(&stale, "inc".into()).await.unwrap_err();
    assert!(err.to_string().contains("noproc"), "{err}");
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_report_normal_exits_crashes_noproc_and_dead_nodes() {
    use steinadler_node::ExitReason;
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "b", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();
    n1.deploy("kv", m::KV_WASM).await.unwrap();

    // Local, normal exit.
    let c = n1.spawn("counter", Term::Int(0), None).await.unwrap();
    let watch = n1.monitor(&c);
    n1.call(&Address::Pid(c.clone()), "stop".into(), T)
        .await
        .unwrap();
    assert_eq!(watch.down().await, ExitReason::Normal);

    // Remote, crash: the reason carries the panic's message.
    let kv = n2.spawn("kv", Term::Nil, None).await.unwrap();
    let watch = n1.monitor(&kv);
    // Let the watch reach n2 before the crash.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = n1.call(&Address::Pid(kv.clone()), "crash".into(), T).await;
    match tokio::time::timeout(T, watch.down()).await.unwrap() {
        ExitReason::Crash(why) => assert!(why.contains("crash"), "{why}"),
        other => panic!("expected a crash, got {other}"),
    }

    // A process that does not exist, here and there.
    assert_eq!(n1.monitor(&c).down().await, ExitReason::NoProc);
    assert_eq!(n1.monitor(&kv).down().await, ExitReason::NoProc);

    // A demonitored watch is simply dropped; the process goes on.
    let c2 = n2.spawn("counter", Term::Int(1), None).await.unwrap();
    drop(n1.monitor(&c2));
    assert_eq!(
        n1.call(&Address::Pid(c2), "get".into(), T).await.unwrap(),
        Term::Int(1)
    );

    // The node dies: noconnection, within the failure detector's bound.
    let on3 = n3.spawn("counter", Term::Int(0), None).await.unwrap();
    let watch = n1.monitor(&on3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::time::Instant::now();
    n3.kill().await;
    let reason = tokio::time::timeout(Duration::from_secs(10), watch.down())
        .await
        .expect("no DOWN after the node died");
    assert_eq!(reason, ExitReason::NoConnection);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_process_gets_100_000_messages_from_three_nodes_once_each_in_order() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    let n3 = common::start("n3", "b", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    n1.deploy("sink", m::SINK_WASM).await.unwrap();
    // 30 µs of work per message: slower than the three senders together, so the mailbox
    // fills, local sends wait and remote ones are refused and retried.
    let sink = n1.spawn("sink", Term::Int(30), Some("sink")).await.unwrap();
    let nodes = std::sync::Arc::new([n1, n2, n3]);
    const PER_SENDER: i64 = 33_334; // 100,002 in all
    let watcher = {
        let nodes = nodes.clone();
        tokio::spawn(async move {
            let (mut deepest, mut largest) = (0, 0);
            for _ in 0..400 {
                if let Some(p) = nodes[0].processes().first() {
                    deepest = deepest.max(p.mailbox);
                    largest = largest.max(p.memory_bytes);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (deepest, largest)
        })
    };
    let senders: Vec<_> = (0..3)
        .map(|i| {
            let nodes = nodes.clone();
            tokio::spawn(async move {
                let node = &nodes[i];
                let to: Address = "sink@n1".parse().unwrap();
                for n in 1..=PER_SENDER {
                    let m = msg(&["seq".into(), node.name().into(), Term::Int(n)]);
                    node.send(&to, m).await.unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let stats = nodes[1]
        .call(&Address::Pid(sink.clone()), "stats".into(), T)
        .await
        .unwrap();
    assert_eq!(
        field_of(&stats, "received"),
        Term::Int(3 * PER_SENDER),
        "{stats}"
    );
    assert_eq!(field_of(&stats, "out_of_order"), Term::Int(0), "{stats}");
    let (deepest, largest) = watcher.await.unwrap();
    assert!(
        deepest <= steinadler_node::MAILBOX_CAPACITY,
        "mailbox {deepest}"
    );
    assert!(largest < 16 << 20, "the process grew to {largest} bytes");

    // Now a process far slower than its senders (2 ms a message): the mailbox fills to its
    // bound, remote senders are refused and retry, and still nothing is lost or reordered.
    let slow = nodes[0].spawn("sink", Term::Int(2000), None).await.unwrap();
    let to = Address::Pid(slow.clone());
    let watcher = {
        let nodes = nodes.clone();
        tokio::spawn(async move {
            let mut deepest = 0;
            for _ in 0..200 {
                for p in nodes[0].processes() {
                    deepest = deepest.max(p.mailbox);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            deepest
        })
    };
    let senders: Vec<_> = (1..3)
        .map(|i| {
            let (nodes, to) = (nodes.clone(), to.clone());
            tokio::spawn(async move {
                let node = &nodes[i];
                for n in 1..=1500 {
                    let m = msg(&["seq".into(), node.name().into(), Term::Int(n)]);
                    node.send(&to, m).await.unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    let deepest = watcher.await.unwrap();
    assert!(
        deepest >= steinadler_node::MAILBOX_CAPACITY - 8,
        "the mailbox never filled (deepest {deepest}): the test did not exercise backpressure"
    );
    let stats = nodes[0]
        .call(&to, "stats".into(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(field_of(&stats, "received"), Term::Int(3000), "{stats}");
    assert_eq!(field_of(&stats, "out_of_order"), Term::Int(0), "{stats}");
    for n in nodes.iter().rev() {
        n.shutdown().await;
    }
}
