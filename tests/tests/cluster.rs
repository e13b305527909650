//! Real in-process nodes on 127.0.0.1 with port 0: gossip, gRPC, deploy, fan-out, module
//! fetch with hash checks, argument caching and node death.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use steinadler_core::{InvokeError, Term};
use steinadler_node::wire::RemoteError;
use steinadler_node::{Node, NodeResult};
use steinadler_test_modules as m;

mod common;
use common::{client, hello_ok, start, wait_for_members};

async fn cluster() -> (Node, Node, Node) {
    let n1 = start("n1", "a", None).await;
    let n2 = start("n2", "a", Some(&n1)).await;
    let n3 = start("n3", "b", Some(&n1)).await;
    wait_for_members(&[&n1, &n2, &n3], 3).await;
    (n1, n2, n3)
}

fn greet_args() -> Vec<u8> {
    Term::list([Term::from("World")]).encode()
}

fn names(results: &[NodeResult]) -> Vec<&str> {
    let mut names: Vec<&str> = results.iter().map(|r| r.node.as_str()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_once_invoke_on_one_some_and_all() {
    let (n1, n2, n3) = cluster().await;
    let hello = std::fs::read(m::HELLO).unwrap();

    // Deploy to n1 over real gRPC; coordinate from n2, which has never seen the module.
    let mut c1 = client(&n1).await;
    let (id, functions) = c1.deploy("hello", &hello).await.unwrap();
    assert_eq!(functions, vec!["greet".to_owned()]);
    let mut c2 = client(&n2).await;
    let timeout = Duration::from_secs(5);

    let all = c2
        .invoke("all", "hello", "greet", greet_args(), timeout, false)
        .await
        .unwrap();
    assert_eq!(names(&all), ["n1", "n2", "n3"]);
    all.iter().for_each(hello_ok);
    // n2 and n3 pulled the module and verified its hash; n1 had it.
    assert_eq!(n1.stats().modules_fetched.load(Ordering::Relaxed), 0);
    assert_eq!(n2.stats().modules_fetched.load(Ordering::Relaxed), 1);
    assert_eq!(n3.stats().modules_fetched.load(Ordering::Relaxed), 1);

    let zone_a = c2
        .invoke("zone=a", "hello", "greet", greet_args(), timeout, false)
        .await
        .unwrap();
    assert_eq!(names(&zone_a), ["n1", "n2"]);
    let zone_b = c2
        .invoke(
            "label:zone=b",
            &id.to_string(),
            "greet",
            greet_args(),
            timeout,
            false,
        )
        .await
        .unwrap();
    assert_eq!(names(&zone_b), ["n3"]);
    let one = c2
        .invoke("node:n3", "hello", "greet", greet_args(), timeout, false)
        .await
        .unwrap();
    assert_eq!(names(&one), ["n3"]);
    hello_ok(&one[0]);
    let any = c2
        .invoke("any", "hello", "greet", greet_args(), timeout, false)
        .await
        .unwrap();
    assert_eq!(any.len(), 1);
    hello_ok(&any[0]);

    // Typed errors travel per node.
    let bad = c2
        .invoke("all", "hello", "nope", greet_args(), timeout, false)
        .await
        .unwrap();
    for r in &bad {
        assert!(
            matches!(&r.outcome, Err(RemoteError::Invoke(InvokeError::FunctionNotFound { available, .. })) if available == "greet"),
            "{r:?}"
        );
    }
    let err = c2
        .invoke("zone=c", "hello", "greet", greet_args(), timeout, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no live node matches"), "{err}");
    let err = c2
        .invoke("all", "nosuch", "greet", greet_args(), timeout, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deploy it first"), "{err}");

    for n in [&n1, &n2, &n3] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_argument_crosses_the_wire_about_once_per_peer() {
    let (n1, n2, n3) = cluster().await;
    n1.deploy("echo", &std::fs::read(m::ECHO).unwrap())
        .await
        .unwrap();
    let big = Term::Bytes(vec![42; 1 << 20]);
    let args = Term::list([big.clone()]).encode();
    for _ in 0..100 {
        let results = n1
            .invoke(&"all".parse().unwrap(), "echo", "echo", &args)
            .await
            .unwrap();
        assert_eq!(results.len(), 3);
        for r in &results {
            assert_eq!(Term::decode(r.outcome.as_ref().unwrap()).as_ref(), Ok(&big));
        }
    }
    for peer in [&n2, &n3] {
        let bodies = peer.stats().args_bodies_received.load(Ordering::Relaxed);
        let hits = peer.stats().args_cache_hits.load(Ordering::Relaxed);
        assert!(
            bodies <= 2,
            "{}: the body crossed {bodies} times",
            peer.name()
        );
        assert_eq!(bodies + hits, 100, "{}", peer.name());
    }
    for n in [&n1, &n2, &n3] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_dropped_and_calls_to_it_fail_fast() {
    let (n1, n2, n3) = cluster().await;
    n1.deploy("math", &std::fs::read(m::MATH).unwrap())
        .await
        .unwrap();
    let add = Term::list([Term::Int(1), Term::Int(2)]).encode();
    // Warm every node, so each holds the module.
    let warm = n1
        .invoke(&"all".parse().unwrap(), "math", "add", &add)
        .await
        .unwrap();
    assert_eq!(warm.len(), 3);

    let killed = Instant::now();
    n3.kill().await;
    // Calls to live nodes keep succeeding while n3 is being detected.
    let mut live_calls = 0;
    loop {
        for r in n1
            .invoke(&"zone=a".parse().unwrap(), "math", "add", &add)
            .await
            .unwrap()
        {
            assert_eq!(Term::decode(r.outcome.as_ref().unwrap()), Ok(Term::Int(3)));
            live_calls += 1;
        }
        let gone = n1.members().await.len() == 2 && n2.members().await.len() == 2;
        if gone {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "n3 still listed after 5 s"
        );
    }
    let detected = killed.elapsed();
    eprintln!("n3 dropped by both survivors after {detected:?}, {live_calls} live calls meanwhile");
    assert!(detected < Duration::from_millis(3500), "took {detected:?}");

    // A call that names the dead node fails clearly, well before its deadline.
    let started = Instant::now();
    let results = n1
        .invoke(&"node:n3".parse().unwrap(), "math", "add", &add)
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    assert!(
        matches!(&results[0].outcome, Err(RemoteError::Unavailable(msg)) if msg.contains("not a live member")),
        "{results:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    n1.shutdown().await;
    n2.shutdown().await;
}

/// `bytes` with a custom section of `extra` bytes appended: still a valid module, with a new id.
fn padded(bytes: &[u8], extra: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"padding";
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    leb(1 + name.len() + extra, &mut out);
    leb(name.len(), &mut out);
    out.extend_from_slice(name);
    out.resize(out.len() + extra, 0xab);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_mib_module_deploys_by_streaming_and_oversize_is_refused() {
    let node = Node::builder()
        .name("big")
        .configure(|c| c.max_module_bytes = 20 << 20)
        .start()
        .await
        .unwrap();
    let mut client = client(&node).await;
    let big = padded(&std::fs::read(m::HELLO).unwrap(), 16 << 20);
    let (id, functions) = client.deploy("big-hello", &big).await.unwrap();
    assert_eq!(id, steinadler_core::ModuleId::of(&big));
    assert_eq!(functions, ["greet"]);
    let out = client
        .invoke(
            "all",
            "big-hello",
            "greet",
            greet_args(),
            Duration::from_secs(5),
            false,
        )
        .await
        .unwrap();
    hello_ok(&out[0]);

    let huge = padded(&std::fs::read(m::HELLO).unwrap(), 21 << 20);
    let err = client.deploy("huge", &huge).await.unwrap_err();
    assert!(
        err.to_string().contains("larger than the node's limit"),
        "{err}"
    );
    // The node still serves.
    let out = client
        .invoke(
            "all",
            "big-hello",
            "greet",
            greet_args(),
            Duration::from_secs(5),
            false,
        )
        .await
        .unwrap();
    hello_ok(&out[0]);
    node.shutdown().await;
}

mod fake_peer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_body_that_does_not_match_its_hash_is_refused() {
    // Insecure, so that a raw client and a plaintext fake peer can reach it.
    let node = Node::builder()
        .name("victim")
        .insecure()
        .start()
        .await
        .unwrap();
    let hello = std::fs::read(m::HELLO).unwrap();
    // The liar serves `math` when asked for `hello`.
    let liar = fake_peer::serve(std::fs::read(m::MATH).unwrap()).await;
    let mut client = steinadler_proto::v1::node_client::NodeClient::connect(format!(
        "http://{}",
        node.grpc_addr()
    ))
    .await
    .unwrap();
    let reply = client
        .invoke(steinadler_proto::v1::InvokeRequest {
            module_id: steinadler_core::ModuleId::of(&hello)
                .as_bytes()
                .to_vec()
                .into(),
            function: "greet".into(),
            args: greet_args().into(),
            origin: liar,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let result = steinadler_node::wire::error_from_wire(match &reply.outcome {
        Some(steinadler_proto::v1::invoke_reply::Outcome::Error(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    });
    assert!(
        matches!(&result, RemoteError::Invoke(InvokeError::ModuleNotFound(msg)) if msg.contains("refused")),
        "{result:?}"
    );
    assert_eq!(node.stats().modules_fetched.load(Ordering::Relaxed), 0);
    // The node keeps serving, and holds nothing it should not.
    assert!(
        node.invoke(&"all".parse().unwrap(), "math", "add", &[])
            .await
            .is_err()
    );
    node.deploy("hello", &hello).await.unwrap();
    let ok = node
        .invoke(&"all".parse().unwrap(), "hello", "greet", &greet_args())
        .await
        .unwrap();
    hello_ok(&ok[0]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_that_need_a_missing_module_share_one_fetch() {
    let n1 = start("n1", "a", None).await;
    let n2 = start("n2", "a", Some(&n1)).await;
    wait_for_members(&[&n1, &n2], 2).await;
    n1.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    let target: steinadler_node::Target = "node:n2".parse().unwrap();
    let args = greet_args();
    let calls = (0..20).map(|_| n1.invoke(&target, "hello", "greet", &args));
    for results in futures::future::join_all(calls).await {
        hello_ok(&results.unwrap()[0]);
    }
    assert_eq!(n2.stats().modules_fetched.load(Ordering::Relaxed), 1);
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_limit_a_node_answers_resource_exhausted_and_keeps_serving() {
    let node = Node::builder()
        .name("tight")
        .insecure()
        .configure(|c| {
            c.max_concurrent = 1;
            c.max_queued = 0;
        })
        .start()
        .await
        .unwrap();
    let spin = node
        .deploy("spin", &std::fs::read(m::SPIN).unwrap())
        .await
        .unwrap();
    let hello = node
        .deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    let url = format!("http://{}", node.grpc_addr());
    let request = |id: steinadler_core::ModuleId, function: &str, args: Vec<u8>| {
        steinadler_proto::v1::InvokeRequest {
            module_id: id.as_bytes().to_vec().into(),
            function: function.into(),
            args: args.into(),
            limits: Some(steinadler_proto::v1::Limits {
                deadline_ms: 1000,
                memory_bytes: 0,
            }),
            ..Default::default()
        }
    };
    let mut busy = steinadler_proto::v1::node_client::NodeClient::connect(url.clone())
        .await
        .unwrap();
    let spin_call = tokio::spawn({
        let req = request(spin, "forever", Term::List(vec![]).encode());
        async move { busy.invoke(req).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut other = steinadler_proto::v1::node_client::NodeClient::connect(url)
        .await
        .unwrap();
    let refused = other
        .invoke(request(hello, "greet", greet_args()))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    // The spinning call times out on its own deadline, then the node serves again.
    let timed_out = spin_call.await.unwrap().unwrap().into_inner();
    assert!(matches!(
        steinadler_node::NodeResult::from_reply(timed_out).outcome,
        Err(RemoteError::Invoke(InvokeError::Timeout { limit_ms: 1000 }))
    ));
    let ok = other
        .invoke(request(hello, "greet", greet_args()))
        .await
        .unwrap()
        .into_inner();
    hello_ok(&steinadler_node::NodeResult::from_reply(ok));
    node.shutdown().await;
}
