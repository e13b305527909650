//! The stream half of `steinadler bench`: items/s across nodes, next to a bare tonic
//! server-streaming echo of the same bytes in the same batches.
//!
//! The stream is taken four ways: an item at a time with `StreamRef::next`, an item at a time
//! through `futures::StreamExt::next`, as `Term`s and typed (`StreamRef::typed`, as `i64`s or
//! byte strings), and a batch at a time with `StreamRef::next_batch`. The echo's client runs
//! the batch loop, so every consumer pays for decoding, and each adds the items up (`weigh`)
//! and checks the sum.
//!
//! The consumer (of the stream and of the echo alike) runs in one of two places: on the
//! bench's main thread, as `steinadler stream` consumes, beside the runtime's two workers; or
//! as a task on those workers, as a node's own code (a process, an embedder's task) consumes.
//! On two cores they differ: the main thread is a third thread for the OS to share out.

use crate::bench_cpu::{self, CpuClock};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Instant;
use steinadler_core::Term;
use steinadler_core::codec::Sequence;
use steinadler_node::{Client, Node, StreamError, StreamOptions};

/// How the consumer takes the items.
#[derive(Clone, Copy)]
enum Take {
    /// `StreamRef::next`, which inlines the common case into the loop.
    Items,
    /// `futures::StreamExt::next`, through the `futures::Stream` impl, as combinators take them.
    Trait,
    /// `futures::StreamExt::next` on `StreamRef::typed`: `i64`s, or byte strings.
    Typed,
    /// `StreamRef::next_batch`.
    Batches,
}

/// The ways a round takes the stream, in the order of a row; the echo's column comes after.
const TAKES: [Take; 4] = [Take::Items, Take::Trait, Take::Typed, Take::Batches];
/// The echo's column in a row, after each of [`TAKES`].
const ECHO: usize = TAKES.len();
/// The columns of a row: each of [`TAKES`], then the echo.
const COLUMNS: usize = ECHO + 1;

/// Where the consumer runs.
#[derive(Clone, Copy)]
pub(crate) enum Place {
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

/// Takes every item of `batch`, counting them and adding them up: the one loop of the stream
/// taken a batch at a time and of the echo.
///
/// One function, not inlined, so that both run the very same machine code, whatever the
/// compiler makes of each caller.
#[inline(never)]
fn take_batch(batch: Sequence<Bytes>, n: &mut u64, sum: &mut i64) -> anyhow::Result<()> {
    for item in batch {
        *sum = sum.wrapping_add(weigh(&item?));
        *n += 1;
    }
    Ok(())
}

/// Items per second through a stream of `case` that `consumer` takes from the node named
/// `producer`, and their count and sum.
async fn through_stream(
    consumer: Arc<Node>,
    producer: String,
    case: Arc<Case>,
    take: Take,
) -> anyhow::Result<(u64, i64, f64)> {
    let started = Instant::now();
    let mut stream = consumer
        .open_stream(
            Some(&producer),
            "range",
            case.function,
            &case.args,
            StreamOptions {
                window: case.window,
            },
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
        Take::Trait => take_each(&mut stream, weigh, &mut n, &mut sum).await?,
        Take::Typed if case.bytes == 0 => {
            take_each(stream.typed::<i64>(), |i| *i, &mut n, &mut sum).await?;
        }
        Take::Typed => {
            let items = stream.typed::<serde_bytes::ByteBuf>();
            take_each(items, |b| b.len() as i64, &mut n, &mut sum).await?;
        }
        Take::Batches => {
            while let Some(batch) = stream.next_batch().await {
                take_batch(batch?, &mut n, &mut sum)?;
            }
        }
    }
    Ok((n, sum, n as f64 / started.elapsed().as_secs_f64()))
}

/// Takes every item of `items` through `futures::StreamExt::next`, counting them and adding up
/// their `weight`: the loop of the stream taken through a `futures::Stream` impl, as `Term`s
/// or typed.
async fn take_each<T>(
    mut items: impl futures::Stream<Item = Result<T, StreamError>> + Unpin,
    weight: impl Fn(&T) -> i64,
    n: &mut u64,
    sum: &mut i64,
) -> anyhow::Result<()> {
    while let Some(item) = StreamExt::next(&mut items).await {
        *sum = sum.wrapping_add(weight(&item?));
        *n += 1;
    }
    Ok(())
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
        take_batch(batch?, &mut n, &mut sum)?;
    }
    Ok((n, sum, n as f64 / started.elapsed().as_secs_f64()))
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// One kind of item the bench streams, with its echo of the same bytes.
pub(crate) struct Case {
    pub(crate) label: &'static str,
    /// The stream function in `range`, and its arguments.
    pub(crate) function: &'static str,
    pub(crate) args: Term,
    /// The consumer's window: what is in flight at most.
    pub(crate) window: u32,
    /// The echo's batch, `per` items, sent `batches` times.
    pub(crate) batch: Vec<u8>,
    pub(crate) per: u64,
    pub(crate) batches: u32,
    /// Bytes an item, for MB/s (0 for integers).
    pub(crate) bytes: usize,
    /// What the stream's and the echo's items add up to (see `weigh`).
    pub(crate) sums: (i64, i64),
}

impl Case {
    /// Whether `--only` picks this case: an `only` that starts with `stream ` picks the rows
    /// whose label contains it.
    pub(crate) fn selected(&self, only: Option<&str>) -> bool {
        !only.is_some_and(|o| {
            o.starts_with("stream ") && !format!("stream {}", self.label).contains(o)
        })
    }

    /// Checks that `what` (the stream, or the echo) delivered every item, adding up to `sum`.
    fn check(&self, what: &str, want: i64, (n, sum): (u64, i64)) -> anyhow::Result<()> {
        anyhow::ensure!(
            (n, sum) == (self.batches as u64 * self.per, want),
            "the {what} delivered {n} items adding up to {sum}"
        );
        Ok(())
    }

    /// Prints the median `rates` (in the order of [`TAKES`], then the echo's) as one row,
    /// labelled `stream LABEL (where)`, then a line for each process's CPU an item.
    pub(crate) fn print_row(&self, place: &str, measured: &Measured) {
        let [s, t, y, b, e] = measured.rates.map(|r| format!("{r:.0}{}", self.mb(r)));
        let [rs, rt, ry, rb] = measured.ratios;
        println!(
            "{:<41} window {:>6}: {s:>10} items/s by item, {t} through StreamExt, {y} typed \
             through StreamExt, {b} by batch; bare tonic stream echo {e}; ratio {rs:.2} / \
             {rt:.2} / {ry:.2} / {rb:.2}",
            format!("stream {} ({place})", self.label),
            self.window,
        );
        for (holds, cpu) in &measured.cpu {
            let [s, t, y, b, e] = cpu.map(duration);
            println!(
                "{:<41} CPU an item, {holds}: {s} by item, {t} through StreamExt, {y} typed, \
                 {b} by batch; echo {e}",
                ""
            );
        }
    }

    /// ` (N MB/s)` for a rate of items of `bytes` each; nothing for integers.
    fn mb(&self, rate: f64) -> String {
        if self.bytes == 0 {
            String::new()
        } else {
            format!(" ({:.0} MB/s)", rate * self.bytes as f64 / 1e6)
        }
    }
}

/// `ns` nanoseconds, in µs past 10,000.
fn duration(ns: f64) -> String {
    if ns < 1e4 {
        format!("{ns:.1} ns")
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

/// Small integers and 64 KiB blobs.
pub(crate) fn cases() -> [Arc<Case>; 2] {
    let small_n: i64 = 1 << 23;
    // The producer's batches: 4,096 integers (the node's most per batch), or 4 blobs of 64 KiB
    // (the batch's byte budget).
    let per_batch: i64 = 4096;
    let small_batch = Term::list((0..per_batch).map(|i| Term::Int(500_000 + i))).encode();
    let blob = Term::Bytes(vec![7u8; 64 << 10]);
    let big_batch = Term::list((0..4).map(|_| blob.clone())).encode();
    let big_n: i64 = 4000;
    // The windows bound what is in flight: 256 Ki integers (about 1.3 MB), or 64 blobs (4 MiB).
    // The echo is bound only by HTTP/2 flow control: hyper's client grants each stream 2 MiB.
    [
        Arc::new(Case {
            label: "integers",
            function: "range",
            args: Term::list([Term::Int(0), Term::Int(small_n)]),
            window: 262_144,
            batch: small_batch,
            per: per_batch as u64,
            batches: (small_n / per_batch) as u32,
            bytes: 0,
            // The stream's `range` yields 0 to n - 1.
            sums: (
                small_n * (small_n - 1) / 2,
                (small_n / per_batch) * (0..per_batch).map(|i| 500_000 + i).sum::<i64>(),
            ),
        }),
        Arc::new(Case {
            label: "64 KiB blobs",
            function: "blobs",
            args: Term::list([Term::Int(big_n), Term::Int(64 << 10)]),
            window: 64,
            batch: big_batch,
            per: 4,
            batches: (big_n / 4) as u32,
            bytes: 64 << 10,
            sums: (big_n * (64 << 10), big_n * (64 << 10)),
        }),
    ]
}

/// Prints small-item and 64 KiB-item figures for one cluster: `nodes[0]` takes streams from
/// `nodes[1]`, and `client` talks to `nodes[1]`.
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
    // Both nodes are in this process.
    let clocks = [CpuClock::this_process("both nodes")];
    for case in cases().iter().filter(|c| c.selected(only)) {
        for place in [Place::Main, Place::Task] {
            let (consumer, producer) = (&nodes[0], nodes[1].name());
            let rates = measure(consumer, producer, client, case, rounds, place, &clocks).await?;
            let place = match place {
                Place::Main => "main thread",
                Place::Task => "task",
            };
            case.print_row(&format!("{mode}, {place}"), &rates);
        }
    }
    Ok(())
}

/// What [`measure`] measured: the median rates (in the order of [`TAKES`], then the echo's),
/// the median of each round's ratios to the echo, and for each process measured
/// (what it holds) the median CPU an item, in ns, in the same order as the rates.
///
/// A ratio is taken within a round, where the stream and the echo ran a second apart, so that
/// the machine's drift from round to round (often 30 % here) does not enter it.
pub(crate) struct Measured {
    pub(crate) rates: [f64; COLUMNS],
    pub(crate) ratios: [f64; TAKES.len()],
    pub(crate) cpu: Vec<(&'static str, [f64; COLUMNS])>,
}

/// The median rates of `rounds` rounds, each taking a stream of `case` from `producer` to
/// `consumer` in each way of [`TAKES`], then the echo of
/// the same batches through `client`, with the consumer running in `place`; and the CPU that
/// each of `clocks` spent an item in each.
pub(crate) async fn measure(
    consumer: &Arc<Node>,
    producer: &str,
    client: &Client,
    case: &Arc<Case>,
    rounds: usize,
    place: Place,
    clocks: &[CpuClock],
) -> anyhow::Result<Measured> {
    let mut rates: [Vec<f64>; COLUMNS] = Default::default();
    let mut ratios: [Vec<f64>; TAKES.len()] = Default::default();
    let mut cpu: Vec<[Vec<f64>; COLUMNS]> = clocks.iter().map(|_| Default::default()).collect();
    // Adds one run's CPU an item, for each clock, to the figures of column `i`.
    let mut add_cpu = |i: usize, spent: Vec<f64>, items: u64| {
        for (all, s) in cpu.iter_mut().zip(spent) {
            all[i].push(s * 1e9 / items as f64);
        }
    };
    for _ in 0..rounds.max(1) {
        // This round's rates, in the order of `rates`.
        let mut round = [0.0; COLUMNS];
        for (i, take) in TAKES.into_iter().enumerate() {
            let run = through_stream(consumer.clone(), producer.to_owned(), case.clone(), take);
            let (spent, result) = bench_cpu::spent(clocks, place.run(run)).await;
            let (n, sum, rate) = result?;
            case.check("stream", case.sums.0, (n, sum))?;
            add_cpu(i, spent, n);
            round[i] = rate;
        }
        let run = through_echo(client.clone(), case.batch.clone(), case.per, case.batches);
        let (spent, result) = bench_cpu::spent(clocks, place.run(run)).await;
        let (n, sum, rate) = result?;
        case.check("echo", case.sums.1, (n, sum))?;
        add_cpu(ECHO, spent, n);
        round[ECHO] = rate;
        for (all, rate) in rates.iter_mut().zip(round) {
            all.push(rate);
        }
        for (all, stream) in ratios.iter_mut().zip(round) {
            all.push(stream / round[ECHO]);
        }
    }
    Ok(Measured {
        rates: rates.map(median),
        ratios: ratios.map(median),
        cpu: clocks
            .iter()
            .zip(cpu)
            .map(|(c, all)| (c.holds, all.map(median)))
            .collect(),
    })
}
