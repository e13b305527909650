//! Processes that act while they run: a guest's own send, call, spawn, register, whereis and
//! monitors, and the per-message deadline and per-process memory limit.

use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::Address;
use steinadler_test_modules as m;

mod common;
use common::{field_of, msg};

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_use_self_pid_send_call_spawn_register_and_whereis() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("kv", m::KV_WASM).await.unwrap();
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();
    let kv = n1.spawn("kv", Term::Nil, None).await.unwrap();
    let at = Address::Pid(kv.clone());
    let ask = |m: Term| n1.call(&at, m, T);

    assert_eq!(ask("whoami".into()).await.unwrap(), Term::Pid(kv.clone()));
    // Register itself, then find itself by name.
    assert_eq!(
        ask(msg(&["register".into(), "store".into()]))
            .await
            .unwrap(),
        Term::Bool(true)
    );
    assert_eq!(n1.whereis("store"), Some(kv.clone()));
    assert_eq!(
        ask(msg(&["whereis".into(), "store".into()])).await.unwrap(),
        Term::Pid(kv.clone())
    );
    // Spawn a counter from the guest, on its own node.
    let counter = match ask(msg(&["spawn".into(), "counter".into(), Term::Int(40)]))
        .await
        .unwrap()
    {
        Term::Pid(pid) => pid,
        other => panic!("spawn answered {other}"),
    };
    assert_eq!(counter.node, "n1");
    // A counter on the other node, named; the guest sends to it at once and then calls it.
    let remote = n2.spawn("counter", Term::Int(0), Some("c")).await.unwrap();
    assert_eq!(
        ask(msg(&["whereis".into(), "c@n2".into()])).await.unwrap(),
        Term::Pid(remote.clone())
    );
    assert_eq!(
        ask(msg(&["send_now".into(), "c@n2".into(), "inc".into()]))
            .await
            .unwrap(),
        Term::Bool(true)
    );
    let reply = ask(msg(&[
        "call".into(),
        Term::Pid(remote),
        msg(&["add".into(), Term::Int(2)]),
    ]))
    .await
    .unwrap();
    assert_eq!(reply, Term::Int(3));
    let local = ask(msg(&["call".into(), Term::Pid(counter), "get".into()]))
        .await
        .unwrap();
    assert_eq!(local, Term::Int(40));
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_monitors_processes_and_receives_down_messages() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("kv", m::KV_WASM).await.unwrap();
    n1.deploy("counter", m::COUNTER_WASM).await.unwrap();
    let watcher = n1.spawn("kv", Term::Nil, None).await.unwrap();
    let at = Address::Pid(watcher.clone());
    let local = n1.spawn("counter", Term::Int(0), None).await.unwrap();
    let remote = n2.spawn("kv", Term::Nil, None).await.unwrap();
    let cancelled = n2.spawn("counter", Term::Int(0), None).await.unwrap();
    let mut refs = Vec::new();
    for pid in [&local, &remote, &cancelled] {
        let r = n1
            .call(&at, msg(&["monitor".into(), Term::Pid(pid.clone())]), T)
            .await
            .unwrap();
        assert!(matches!(r, Term::Ref(_)), "{r}");
        refs.push(r);
    }
    assert_eq!(
        n1.call(&at, msg(&["demonitor".into(), refs[2].clone()]), T)
            .await
            .unwrap(),
        Term::Bool(true)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    n1.call(&Address::Pid(local.clone()), "stop".into(), T)
        .await
        .unwrap();
    let _ = n1
        .call(&Address::Pid(remote.clone()), "crash".into(), T)
        .await;
    n1.call(&Address::Pid(cancelled), "stop".into(), T)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + T;
    let downs = loop {
        let downs = n1.call(&at, "downs".into(), T).await.unwrap();
        if matches!(&downs, Term::List(d) if d.len() >= 2) {
            break downs;
        }
        assert!(std::time::Instant::now() < deadline, "no DOWN: {downs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let Term::List(downs) = n1.call(&at, "downs".into(), T).await.unwrap() else {
        panic!("downs: {downs}");
    };
    assert_eq!(
        downs.len(),
        2,
        "the demonitored one must not report: {downs:?}"
    );
    let normal = msg(&[
        "DOWN".into(),
        refs[0].clone(),
        Term::Pid(local),
        "normal".into(),
    ]);
    assert!(downs.contains(&normal), "{downs:?}");
    let crash = downs
        .iter()
        .find(|d| matches!(d, Term::List(p) if p.get(2) == Some(&Term::Pid(remote.clone()))))
        .expect("the crash's DOWN");
    assert!(crash.to_string().contains("crash"), "{crash}");
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_holds_per_message_and_the_memory_limit_per_process() {
    let node = steinadler_node::Node::builder()
        .name("n1")
        .configure(|c| {
            c.host.default_limits.deadline = Duration::from_millis(300);
            c.host.default_limits.memory_bytes = 8 << 20;
        })
        .start()
        .await
        .unwrap();
    node.deploy("sink", m::SINK_WASM).await.unwrap();
    node.deploy("kv", m::KV_WASM).await.unwrap();

    // 200 ms of work per message: each message fits the 300 ms deadline, however many come.
    let slow = node.spawn("sink", Term::Int(200_000), None).await.unwrap();
    let to = Address::Pid(slow.clone());
    for n in 1..=3 {
        let m = msg(&["seq".into(), "t".into(), Term::Int(n)]);
        node.call(&to, m, T).await.unwrap();
    }
    // A process whose state outgrows the memory limit crashes with OutOfMemory.
    let kv = node.spawn("kv", Term::Nil, None).await.unwrap();
    let watch = node.monitor(&kv);
    let big = Term::Bytes(vec![7; 1 << 20]);
    let mut failed = None;
    for i in 0..16 {
        let put = msg(&[
            "put".into(),
            Term::from(format!("k{i}").as_str()),
            big.clone(),
        ]);
        if let Err(e) = node.call(&Address::Pid(kv.clone()), put, T).await {
            failed = Some(e.to_string());
            break;
        }
    }
    let failed = failed.expect("16 MiB fit in an 8 MiB process");
    assert!(failed.contains("memory"), "{failed}");
    match watch.down().await {
        steinadler_node::ExitReason::Crash(why) => assert!(why.contains("memory"), "{why}"),
        other => panic!("{other}"),
    }
    // A message that takes longer than the deadline crashes that process with a timeout.
    let slower = node
        .spawn("sink", Term::Int(1_000_000), None)
        .await
        .unwrap();
    let err = node
        .call(
            &Address::Pid(slower),
            msg(&["seq".into(), "t".into(), Term::Int(1)]),
            T,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("timed out") || err.to_string().contains("deadline"),
        "{err}"
    );
    // The node and the first process go on.
    let stats = node.call(&to, "stats".into(), T).await.unwrap();
    assert_eq!(field_of(&stats, "received"), Term::Int(3));
    node.shutdown().await;
}
