//! Streams between real nodes over mutual TLS: demand bounds the producer, items arrive in
//! order, cancel stops the producer, and failures on either side are reported.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use steinadler_core::Term;
use steinadler_node::{Address, StreamError, StreamOptions};
use steinadler_test_modules as m;

mod common;
use common::{args, eventually, garbled_from_n1, msg, open_streams, pair, produced, range_from_n1};

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_the_producer_within_a_window() {
    let (n1, n2) = pair().await;
    let window = 256;
    let mut stream = range_from_n1(&n2, 0, 10_000_000, window).await;
    // The inherent `next` and the `futures::Stream` impl take from one cursor: alternate them,
    // across batch boundaries (the window is 256).
    for i in 0..5_000 {
        let item = if i % 2 == 0 {
            stream.next().await
        } else {
            futures::StreamExt::next(&mut stream).await
        };
        assert_eq!(item.unwrap().unwrap(), Term::Int(i));
    }
    assert_eq!(open_streams(&n1), 1);
    stream.cancel().await;
    eventually(T, "the producer still runs", || async {
        open_streams(&n1) == 0
    })
    .await;
    let total = produced(&n1);
    assert!(
        total <= 5_000 + 2 * u64::from(window),
        "{total} items produced for 5,000 taken"
    );
    // Dropping a stream cancels it too.
    let mut stream = n2
        .open_stream(
            Some("n1"),
            "range",
            "lines",
            &args(&[1_000_000]),
            StreamOptions::default(),
        )
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(
        matches!(&first, Term::String(s) if s.starts_with("line 1: ")),
        "{first}"
    );
    drop(stream);
    eventually(T, "the dropped stream's producer still runs", || async {
        open_streams(&n1) == 0
    })
    .await;
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_does_not_decode_ends_the_stream_with_an_error() {
    let (n1, n2) = pair().await;
    n1.deploy("crash", m::CRASH_WASM).await.unwrap();
    // The items before the bad one arrive; the bad one is the stream's error, and the end.
    let mut stream = garbled_from_n1(&n2).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), Term::Int(1));
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(
        matches!(&err, StreamError::Producer(m) if m.starts_with("a batch of items did not decode")),
        "{err}"
    );
    assert!(stream.next().await.is_none());
    // The same, taken a batch at a time: the batch's sequence reports it.
    let mut stream = garbled_from_n1(&n2).await.unwrap();
    let mut batch = stream.next_batch().await.unwrap().unwrap();
    assert_eq!(batch.next().unwrap().unwrap(), Term::Int(1));
    assert!(batch.next().unwrap().is_err());
    // Both nodes go on serving.
    let mut stream = range_from_n1(&n2, 0, 3, 16).await;
    for i in 0..3 {
        assert_eq!(stream.next().await.unwrap().unwrap(), Term::Int(i));
    }
    assert!(stream.next().await.is_none());
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_and_a_dead_producer_reach_the_consumer_as_errors() {
    let (n1, n2) = pair().await;
    // A trap: the items before it, then the panic's message.
    let mut stream = n2
        .open_stream(
            Some("n1"),
            "range",
            "boom",
            &args(&[1000]),
            StreamOptions::default(),
        )
        .await
        .unwrap();
    let mut items = 0;
    let err = loop {
        match stream.next().await {
            Some(Ok(_)) => items += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without the trap"),
        }
    };
    // The items of the batch in which the producer trapped are lost with the instance; every
    // earlier batch arrived.
    assert!(items <= 1000 && items % 256 == 0, "{items} items");
    assert!(
        matches!(&err, StreamError::Producer(m) if m.contains("boom after 1000 items")),
        "{err}"
    );
    assert!(stream.next().await.is_none());

    // Bad requests are refused with the reason, and the node goes on serving.
    for (module, function, a, want) in [
        ("nothing", "range", args(&[0, 1]), "nothing"),
        ("range", "nope", args(&[0, 1]), "has no stream \"nope\""),
        ("range", "range", args(&[5, 1]), "start 5 is past end 1"),
        ("range", "range", Term::from("x"), "bad arguments"),
    ] {
        let err = n2
            .open_stream(Some("n1"), module, function, &a, StreamOptions::default())
            .await;
        let text = match err {
            Err(e) => e.to_string(),
            Ok(mut s) => match s.next().await {
                Some(Err(e)) => e.to_string(),
                other => panic!("{module}.{function} was accepted: {other:?}"),
            },
        };
        assert!(text.contains(want), "{text}");
    }

    // The producer's node dies: the consumer hears it at once, long before membership does.
    let n3 = common::start("n3", "b", Some(&n1)).await;
    common::wait_for_members(&[&n2, &n3], 3).await;
    n3.deploy("range", m::RANGE_WASM).await.unwrap();
    let mut stream = n2
        .open_stream(
            Some("n3"),
            "range",
            "range",
            &args(&[0, 10_000_000]),
            StreamOptions { window: 64 },
        )
        .await
        .unwrap();
    for _ in 0..100 {
        stream.next().await.unwrap().unwrap();
    }
    n3.kill().await;
    let killed = Instant::now();
    let err = loop {
        match tokio::time::timeout(T, stream.next()).await {
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => break e,
            other => panic!("no error after the producer died: {other:?}"),
        }
    };
    let took = killed.elapsed();
    let still_listed = n2.members().await.iter().any(|m| m.name == "n3");
    eprintln!("the consumer heard of the death after {took:?}: {err}");
    assert!(matches!(err, StreamError::Link(_)), "{err}");
    assert!(
        still_listed,
        "membership dropped n3 before the stream failed"
    );
    // Both survivors still serve streams.
    let mut stream = n2
        .open_stream(
            Some("n1"),
            "range",
            "range",
            &args(&[0, 3]),
            StreamOptions::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        got.push(item.unwrap());
    }
    assert_eq!(got, [Term::Int(0), Term::Int(1), Term::Int(2)]);
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_consumes_a_stream_and_its_nodes_death_frees_the_producer() {
    let (n1, n2) = pair().await;
    n2.deploy("kv", m::KV_WASM).await.unwrap();
    let kv = Address::Pid(n2.spawn("kv", Term::Nil, None).await.unwrap());
    let open = msg(&[
        "stream".into(),
        "range".into(),
        "range".into(),
        args(&[0, 3000]),
        "n1".into(),
    ]);
    let reference = n2.call(&kv, open, T).await.unwrap();
    assert!(matches!(reference, Term::Ref(_)), "{reference}");
    let started = Instant::now();
    loop {
        let downs = n2.call(&kv, "downs".into(), T).await.unwrap();
        if downs
            == Term::List(vec![msg(&[
                "stream_end".into(),
                reference.clone(),
                "ok".into(),
            ])])
        {
            break;
        }
        assert!(started.elapsed() < T, "no end: {downs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let streamed = n2.call(&kv, "streamed".into(), T).await.unwrap();
    assert_eq!(streamed, Term::list((0..3000).map(Term::Int)));

    // A consumer whose node dies: the producer is cancelled and its instance freed.
    let endless = msg(&[
        "stream".into(),
        "range".into(),
        "range".into(),
        args(&[0, i64::MAX]),
        "n1".into(),
    ]);
    n2.call(&kv, endless, T).await.unwrap();
    eventually(T, "the stream did not open", || async {
        open_streams(&n1) == 1
    })
    .await;
    n2.kill().await;
    let freed = eventually(T, "the producer outlived its consumer's node", || async {
        open_streams(&n1) == 0
    })
    .await;
    eprintln!("producer freed {freed:?} after the consumer's node died");
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_streams_between_two_nodes_do_not_starve_one_another() {
    let (n1, n2) = pair().await;
    let n2 = std::sync::Arc::new(n2);
    let per = 50_000u64;
    let progress: std::sync::Arc<Vec<std::sync::atomic::AtomicU64>> = std::sync::Arc::new(
        (0..10)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let first_done = std::sync::Arc::new(std::sync::OnceLock::new());
    let mut tasks = Vec::new();
    for s in 0..10 {
        let n2 = n2.clone();
        let progress = progress.clone();
        let first_done = first_done.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = range_from_n1(&n2, 0, per as i64, 256).await;
            let mut n = 0u64;
            while let Some(item) = stream.next().await {
                assert_eq!(item.unwrap(), Term::Int(n as i64));
                n += 1;
                progress[s].store(n, Ordering::Relaxed);
            }
            // The first stream to finish notes how far every stream had come.
            let others: Vec<u64> = progress.iter().map(|p| p.load(Ordering::Relaxed)).collect();
            let _ = first_done.set(others);
            n
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), per);
    }
    let snapshot = first_done.get().unwrap();
    eprintln!("when the first stream finished, the ten had: {snapshot:?}");
    assert!(
        snapshot.iter().all(|n| *n >= per / 5),
        "a stream starved: {snapshot:?}"
    );
    n2.shutdown().await;
    n1.shutdown().await;
}

/// How fast the guest alone produces: `cargo test --release --test streams -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn producer_speed() {
    let host = steinadler_host::Host::new(steinadler_host::HostConfig::default()).unwrap();
    let module = host.load(&std::fs::read(m::RANGE).unwrap()).unwrap();
    let limits = host.default_limits();
    let started = Instant::now();
    let mut producer = host
        .open_stream(&module, "range", &args(&[0, 1 << 20]).encode(), &limits)
        .await
        .unwrap();
    let mut n = 0u64;
    let mut decode = Duration::ZERO;
    loop {
        let batch = producer.next(1024, 256 << 10).await.unwrap();
        let t = Instant::now();
        let Term::List(items) = Term::decode(batch.items()).unwrap() else {
            panic!()
        };
        decode += t.elapsed();
        n += items.len() as u64;
        if batch.done {
            break;
        }
    }
    let all = started.elapsed();
    eprintln!(
        "{n} items: {:.1} M/s produced+decoded, decode alone {:.1} M/s",
        n as f64 / all.as_secs_f64() / 1e6,
        n as f64 / decode.as_secs_f64() / 1e6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_the_items_in_order_and_within_the_window() {
    let (n1, n2) = pair().await;
    let window = 512;
    let mut stream = range_from_n1(&n2, 0, 100_000, window).await;
    // One item through the `futures::Stream` first: `next_batch` goes on with the rest of
    // that batch.
    assert_eq!(stream.next().await.unwrap().unwrap(), Term::Int(0));
    let mut expected = 1;
    let mut batches = 0;
    while let Some(batch) = stream.next_batch().await {
        let batch = batch.unwrap();
        assert!(batch.remaining() <= window, "{} items", batch.remaining());
        for item in batch {
            assert_eq!(item.unwrap(), Term::Int(expected));
            expected += 1;
        }
        // The producer never runs past what was taken plus the window.
        let ahead = produced(&n1) - expected as u64;
        assert!(ahead <= u64::from(window), "{ahead} items ahead");
        batches += 1;
    }
    assert_eq!(expected, 100_000);
    assert!(batches >= 100_000 / window as usize, "{batches} batches");
    n2.shutdown().await;
    n1.shutdown().await;
}
