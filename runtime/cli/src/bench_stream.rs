//! The stream half of `steinadler bench`: items/s across nodes, next to a bare tonic
//! server-streaming echo of the same bytes in the same batches.
//!
//! The stream is taken three ways: an item at a time with `StreamRef::next`, an item at a time
//! through `futures::StreamExt::next`, and a batch at a time with `StreamRef::next_batch`. The
//! echo's client runs the batch loop, so every consumer pays for decoding, and each adds the
//! items up (`weigh`) and checks the sum.
//!
//! The consumer (of the stream and of the echo alike) runs in one of two places: on the
//! bench's main thread, as `steinadler stream` consumes, beside the runtime's two workers; or
//! as a task on those workers, as a node's own code (a process, an embedder's task) consumes.
//! On two cores they differ: the main thread is a third thread for the OS to share out.

use futures::StreamExt;
use std::sync::Arc;
use std::time::Instant;
use steinadler_core::Term;
use steinadler_node::{Client, Node, StreamOptions};

/// How the consumer takes the items.
#[derive(Clone, Copy)]
enum Take {
    /// `StreamRef::next`, which inlines the common case into the loop.
    Items,
    /// `futures::StreamExt::next`, through the `futures::Stream` impl, as combinators take them.
    Trait,
    /// `StreamRef::next_batch`.
    Batches,
}

/// Where the consumer runs.
#[derive(Clone, Copy)]
enum Place {
    /// The bench's main thread (`block_on`).
    Main,
    /// A task on the runtime's workers.
    Task,
}

impl Place {
    /// Runs `f` here.
    async fn run<T: Send + 'static>(
        self,
        f: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    ) -> anyhow::Result<T> {
        match self {
            Place::Main => f.await,
            Place::Task => tokio::spawn(f).await?,
        }
    }
}

/// What the consumer does with an item: adds it to a sum (an integer, or a blob's length), as
/// a real consumer reads what it is given. The sum checks that every item arrived.
///
/// This matters to the measure. A consumer that moves each whole 48-byte `Term` somewhere
/// (`black_box(item)`) copies it out of the slot `poll_next` returned it in, and that copy
/// stalls on store forwarding; one that reads the item, as this does, does not.
#[inline]
fn weigh(item: &Term) -> i64 {
    match item {
        Term::Int(i) => *i,
        Term::Bytes(b) => b.len() as i64,
        _ => i64::MIN,
    }
}

/// Items per second through a stream from `nodes[1]` to `nodes[0]`, and their sum.
async fn through_stream(
    nodes: Vec<Arc<Node>>,
    function: &str,
    args: Term,
    window: u32,
    take: Take,
) -> anyhow::Result<(u64, i64, f64)> {
    let started = Instant::now();
    let mut stream = nodes[0]
        .open_stream(
            Some(nodes[1].name()),
            "range",
            function,
            &args,
            StreamOptions { window },
        )
        .await?;
    let (mut n, mut sum) = (0u64, 0i64);
    match take {
        Take::Items => {
            while let Some(item) = stream.next().await {
                sum = sum.wrapping_add(weigh(&item?));
                n += 1;
            }
        }
        Take::Trait => {
            while let Some(item) = StreamExt::next(&mut stream).await {
                sum = sum.wrapping_add(weigh(&item?));
                n += 1;
            }
        }
        Take::Batches => {
            while let Some(batch) = stream.next_batch().await {
                for item in batch? {
                    sum = sum.wrapping_add(weigh(&item?));
                    n += 1;
                }
            }
        }
    }
    Ok((n, sum, n as f64 / started.elapsed().as_secs_f64()))
}

/// Items per second through the bare echo of `batch` (holding `per` items), `count` times,
/// and their sum.
async fn through_echo(
    client: Client,
    batch: Vec<u8>,
    per: u64,
    count: u32,
) -> anyhow::Result<(u64, i64, f64)> {
    let started = Instant::now();
    let mut echo = client.stream_echo(batch.into(), count, per).await?;
    let (mut n, mut sum) = (0u64, 0i64);
    // As `through_stream` takes batches.
    while let Some(batch) = echo.next().await {
        for item in batch? {
            sum = sum.wrapping_add(weigh(&item?));
            n += 1;
        }
    }
    Ok((n, sum, n as f64 / started.elapsed().as_secs_f64()))
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Prints small-item and 64 KiB-item figures for one cluster. `client` talks to `nodes[1]`.
/// An `only` that starts with `stream ` picks the rows whose label contains it.
pub(crate) async fn run(
    nodes: &[Arc<Node>],
    client: &Client,
    mode: &str,
    rounds: usize,
    only: Option<&str>,
) -> anyhow::Result<()> {
    nodes[1]
        .deploy("range", steinadler_test_modules::RANGE_WASM)
        .await?;
    let small_n: i64 = 1 << 23;
    // The producer's batches: 4,096 integers (the node's most per batch), or 4 blobs of 64 KiB
    // (the batch's byte budget).
    let per_batch: i64 = 4096;
    let small_batch = Term::list((0..per_batch).map(|i| Term::Int(500_000 + i))).encode();
    let blob = Term::Bytes(vec![7u8; 64 << 10]);
    let big_batch = Term::list((0..4).map(|_| blob.clone())).encode();
    let big_n: i64 = 4000;
    // What each side's items add up to (see `weigh`): the stream's `range` yields 0 to n - 1.
    let small_sums = (
        small_n * (small_n - 1) / 2,
        (small_n / per_batch) * (0..per_batch).map(|i| 500_000 + i).sum::<i64>(),
    );
    let big_sums = (big_n * (64 << 10), big_n * (64 << 10));
    // The windows bound what is in flight: 256 Ki integers (about 1.3 MB), or 64 blobs (4 MiB).
    // The echo is bound only by HTTP/2 flow control: hyper's client grants each stream 2 MiB.
    for (label, function, args, window, batch, per, batches, bytes, sums) in [
        (
            "integers",
            "range",
            Term::list([Term::Int(0), Term::Int(small_n)]),
            262_144u32,
            small_batch,
            per_batch as u64,
            (small_n / per_batch) as u32,
            0usize,
            small_sums,
        ),
        (
            "64 KiB blobs",
            "blobs",
            Term::list([Term::Int(big_n), Term::Int(64 << 10)]),
            64,
            big_batch,
            4,
            (big_n / 4) as u32,
            64 << 10,
            big_sums,
        ),
    ] {
        if only.is_some_and(|o| o.starts_with("stream ") && !format!("stream {label}").contains(o))
        {
            continue;
        }
        for place in [Place::Main, Place::Task] {
            let (mut items, mut traited, mut batched, mut echoed) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds.max(1) {
                for (take, rates) in [
                    (Take::Items, &mut items),
                    (Take::Trait, &mut traited),
                    (Take::Batches, &mut batched),
                ] {
                    let run = through_stream(nodes.to_vec(), function, args.clone(), window, take);
                    let (n, sum, rate) = place.run(run).await?;
                    anyhow::ensure!(
                        (n, sum) == (batches as u64 * per, sums.0),
                        "the stream delivered {n} items adding up to {sum}"
                    );
                    rates.push(rate);
                }
                let run = through_echo(client.clone(), batch.clone(), per, batches);
                let (n, sum, rate) = place.run(run).await?;
                anyhow::ensure!(
                    (n, sum) == (batches as u64 * per, sums.1),
                    "the echo delivered {n} items adding up to {sum}"
                );
                echoed.push(rate);
            }
            let (s, t, b, e) = (
                median(items),
                median(traited),
                median(batched),
                median(echoed),
            );
            let mb = |r: f64| {
                if bytes == 0 {
                    String::new()
                } else {
                    format!(" ({:.0} MB/s)", r * bytes as f64 / 1e6)
                }
            };
            let place = match place {
                Place::Main => "main thread",
                Place::Task => "task",
            };
            println!(
                "{:<41} window {window:>6}: {:>10.0}{} items/s by item, {:.0}{} through \
                 StreamExt, {:.0}{} by batch; bare tonic stream echo {:.0}{}; \
                 ratio {:.2} / {:.2} / {:.2}",
                format!("stream {label} ({mode}, {place})"),
                s,
                mb(s),
                t,
                mb(t),
                b,
                mb(b),
                e,
                mb(e),
                s / e,
                t / e,
                b / e,
            );
        }
    }
    Ok(())
}
