//! Typed streams between real nodes over mutual TLS (`StreamRef::typed`): items decode as the
//! consumer's Rust type, integers and anything else, and an item that is not of that type
//! ends the stream with an error naming the type, leaving both nodes serving.

use futures::{StreamExt, TryStreamExt};
use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{StreamError, StreamOptions};
use steinadler_test_modules as m;

mod common;
use common::{args, eventually, garbled_from_n1, open_streams, pair, range_from_n1};

const T: Duration = Duration::from_secs(5);

/// The stream's error, which must be a producer error whose message contains `part`.
fn assert_error(item: Option<Result<impl std::fmt::Debug, StreamError>>, part: &str) {
    match item {
        Some(Err(StreamError::Producer(message))) => {
            assert!(message.contains(part), "{message:?} lacks {part:?}")
        }
        other => panic!("expected an error with {part:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_items_arrive_in_order_through_combinators() {
    let (n1, n2) = pair().await;
    // Integers, on their inlined path, across many batches and demand grants.
    let n = 100_000u64;
    let stream = range_from_n1(&n2, 0, n as i64, 1_000).await;
    let got: Vec<u64> = stream.typed::<u64>().try_collect().await.unwrap();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    // Narrower and signed types, where every item fits.
    let stream = range_from_n1(&n2, 250, 256, 16).await;
    let got: Vec<u8> = stream.typed::<u8>().try_collect().await.unwrap();
    assert_eq!(got, (250..=255).collect::<Vec<u8>>());
    let stream = range_from_n1(&n2, 0, 3, 16).await;
    let got: Vec<i32> = stream.typed::<i32>().try_collect().await.unwrap();
    assert_eq!(got, [0, 1, 2]);
    // Strings, through serde: the same lines as the `Term`s give.
    let fifty = args(&[50]);
    let lines = || {
        n2.open_stream(
            Some("n1"),
            "range",
            "lines",
            &fifty,
            StreamOptions { window: 8 },
        )
    };
    let typed: Vec<String> = lines().await.unwrap().typed().try_collect().await.unwrap();
    let terms: Vec<Term> = lines().await.unwrap().try_collect().await.unwrap();
    assert_eq!(typed.len(), 50);
    assert!(typed[0].starts_with("line 1: "), "{}", typed[0]);
    assert_eq!(
        typed.into_iter().map(Term::String).collect::<Vec<_>>(),
        terms
    );
    n2.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_of_another_type_ends_the_stream_and_both_nodes_serve_on() {
    let (n1, n2) = pair().await;
    // 65,536 is no `u16`: the items before it arrive, then the error, then the end.
    let mut items = range_from_n1(&n2, 65_534, 70_000, 64).await.typed::<u16>();
    assert_eq!(items.next().await.unwrap().unwrap(), 65_534);
    assert_eq!(items.next().await.unwrap().unwrap(), 65_535);
    assert_error(items.next().await, "an item is not a `u16`");
    assert!(items.next().await.is_none());
    // Dropping it cancels the producer, as dropping a `StreamRef` does.
    drop(items);
    eventually(T, "the producer still runs", || async {
        open_streams(&n1) == 0
    })
    .await;
    // Integers are no strings.
    let mut items = range_from_n1(&n2, 0, 10, 16).await.typed::<String>();
    assert_error(
        items.next().await,
        "an item is not a `alloc::string::String`",
    );
    assert!(items.next().await.is_none());
    // A batch that is not well-formed is an error whatever the type.
    n1.deploy("crash", m::CRASH_WASM).await.unwrap();
    let mut items = garbled_from_n1(&n2).await.unwrap().typed::<i64>();
    assert_eq!(items.next().await.unwrap().unwrap(), 1);
    assert_error(items.next().await, "a batch of items did not decode");
    assert!(items.next().await.is_none());
    // Both nodes go on serving, and `into_inner` gives the `Term`s back.
    let mut items = range_from_n1(&n2, 7, 10, 16).await.typed::<i64>();
    assert_eq!(items.next().await.unwrap().unwrap(), 7);
    let mut stream = items.into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap(), Term::Int(8));
    assert_eq!(stream.next().await.unwrap().unwrap(), Term::Int(9));
    assert!(stream.next().await.is_none());
    n2.shutdown().await;
    n1.shutdown().await;
}
