//! A process as a stream's producer, over mutual TLS between real nodes: it emits within the
//! consumer's demand (the node refuses more), it learns of a cancel, its exit reaches the
//! consumer, and another process can consume what it emits.

use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{Address, Node, StreamError, StreamOptions, StreamRef};
use steinadler_test_modules as m;

mod common;
use common::{args, eventually, msg, open_streams, pair, produced};

/// Room for a loaded machine: every wait here ends as soon as its condition holds.
const T: Duration = Duration::from_secs(30);

fn numbers(node: &str, name: &str) -> Address {
    format!("{name}@{node}").parse().unwrap()
}

/// The `Numbers` process's `"stats"` reply, as (open, cancelled, emitted).
async fn stats(node: &Node, name: &str) -> (i64, i64, i64) {
    let reply = node
        .call(&numbers(node.name(), name), "stats".into(), T)
        .await
        .unwrap();
    let Term::Map(pairs) = reply else {
        panic!("stats: {reply}")
    };
    let get = |k: &str| match pairs.iter().find(|(key, _)| *key == Term::from(k)) {
        Some((_, Term::Int(v))) => *v,
        _ => panic!("no {k}"),
    };
    (get("open"), get("cancelled"), get("emitted"))
}

/// Takes items until the stream fails; panics if it ends well.
async fn first_error(stream: &mut StreamRef) -> StreamError {
    loop {
        match tokio::time::timeout(T, stream.next()).await.unwrap() {
            Some(Ok(_)) => {}
            Some(Err(e)) => return e,
            None => panic!("the stream ended well"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_emits_within_demand_and_the_node_refuses_more() {
    let (n1, n2) = pair().await;
    n1.spawn("range", Term::Nil, Some("numbers")).await.unwrap();
    let window = 64;
    let options = StreamOptions { window };
    let mut stream = n2
        .open_process_stream(&numbers("n1", "numbers"), &args(&[0, 5000]), options)
        .await
        .unwrap();
    for i in 0..5000 {
        let item = tokio::time::timeout(T, stream.next()).await.unwrap();
        assert_eq!(item.unwrap().unwrap(), Term::Int(i));
        let ahead = produced(&n1) - (i as u64 + 1);
        assert!(ahead <= u64::from(window), "{ahead} items ahead at {i}");
    }
    assert!(stream.next().await.is_none(), "the stream did not end");

    // A producer that emits twice what is asked for is refused, and the consumer told.
    let greedy = Term::list([0.into(), 1000.into(), "greedy".into()]);
    let mut stream = n2
        .open_process_stream(&numbers("n1", "numbers"), &greedy, options)
        .await
        .unwrap();
    let error = first_error(&mut stream).await;
    assert!(
        matches!(&error, StreamError::Producer(m) if m.contains("asked for")),
        "{error:?}"
    );
    // A process that is not there.
    let missing = n2
        .open_process_stream(&numbers("n1", "nobody"), &args(&[0, 1]), options)
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("no process"), "{missing}");
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_process_and_its_exit_reaches_the_consumer() {
    let (n1, n2) = pair().await;
    let pid = n1.spawn("range", Term::Nil, Some("numbers")).await.unwrap();
    let options = StreamOptions { window: 128 };
    let endless = args(&[0, i64::MAX]);
    let mut stream = n2
        .open_process_stream(&numbers("n1", "numbers"), &endless, options)
        .await
        .unwrap();
    for i in 0..1000 {
        assert_eq!(stream.next().await.unwrap().unwrap(), Term::Int(i));
    }
    drop(stream);
    eventually(T, "the process was not told of the cancel", || async {
        let (open, cancelled, _) = stats(&n1, "numbers").await;
        open == 0 && cancelled == 1
    })
    .await;
    let (_, _, emitted) = stats(&n1, "numbers").await;
    assert!(emitted <= 1000 + 128, "{emitted} emitted for 1,000 taken");

    // The producer exits mid-stream: the consumer gets an error that says so.
    let mut stream = n2
        .open_process_stream(&numbers("n1", "numbers"), &endless, options)
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), Term::Int(0));
    assert!(n1.stop_process(&pid));
    let error = first_error(&mut stream).await;
    assert!(
        matches!(&error, StreamError::Producer(m) if m.contains("exited") && m.contains("shutdown")),
        "{error:?}"
    );
    eventually(T, "the outlet is still open", || async {
        open_streams(&n1) == 0
    })
    .await;
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_consumes_what_a_process_on_another_node_emits() {
    let (n1, n2) = pair().await;
    n1.spawn("range", Term::Nil, Some("numbers")).await.unwrap();
    n2.deploy("kv", m::KV_WASM).await.unwrap();
    let kv = Address::Pid(n2.spawn("kv", Term::Nil, None).await.unwrap());
    let open = msg(&["stream_from".into(), "numbers@n1".into(), args(&[0, 3000])]);
    let reference = n2.call(&kv, open, T).await.unwrap();
    assert!(matches!(reference, Term::Ref(_)), "{reference}");
    let end = Term::List(vec![msg(&["stream_end".into(), reference, "ok".into()])]);
    eventually(T, "no end", || async {
        n2.call(&kv, "downs".into(), T).await.unwrap() == end
    })
    .await;
    let streamed = n2.call(&kv, "streamed".into(), T).await.unwrap();
    assert_eq!(streamed, Term::list((0..3000).map(Term::Int)));
    n2.shutdown().await;
    n1.shutdown().await;
}
