//! The stream half of `steinadler bench`: items/s across nodes, next to a bare tonic
//! server-streaming echo of the same bytes in the same batches.

use futures::StreamExt;
use std::sync::Arc;
use std::time::Instant;
use steinadler_core::Term;
use steinadler_node::{Client, Node, StreamOptions};

/// Items per second through a stream from `nodes[1]` to `nodes[0]`.
async fn through_stream(
    nodes: &[Arc<Node>],
    function: &str,
    args: Term,
) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut stream = nodes[0]
        .open_stream(
            Some(nodes[1].name()),
            "range",
            function,
            &args,
            StreamOptions { window: 4096 },
        )
        .await?;
    let mut n = 0u64;
    while let Some(item) = stream.next().await {
        item?;
        n += 1;
    }
    Ok((n, n as f64 / started.elapsed().as_secs_f64()))
}

/// Items per second through the bare echo of `batch` (holding `per` items), `count` times.
async fn through_echo(
    client: &Client,
    batch: Vec<u8>,
    per: u64,
    count: u32,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let n = client.stream_echo(batch.into(), count, per).await?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Prints small-item and 64 KiB-item figures for one cluster. `client` talks to `nodes[1]`.
pub(crate) async fn run(
    nodes: &[Arc<Node>],
    client: &Client,
    mode: &str,
    rounds: usize,
) -> anyhow::Result<()> {
    nodes[1]
        .deploy("range", steinadler_test_modules::RANGE_WASM)
        .await?;
    let small_n: i64 = 1 << 20;
    // The producer's batches: 1,024 integers, or 4 blobs of 64 KiB (the batch's byte budget).
    let small_batch = Term::list((0..1024).map(|i| Term::Int(500_000 + i))).encode();
    let blob = Term::Bytes(vec![7u8; 64 << 10]);
    let big_batch = Term::list((0..4).map(|_| blob.clone())).encode();
    let big_n: i64 = 4000;
    let mut rows = Vec::new();
    for (label, function, args, batch, per, batches, bytes) in [
        (
            "integers",
            "range",
            Term::list([Term::Int(0), Term::Int(small_n)]),
            small_batch,
            1024u64,
            (small_n / 1024) as u32,
            0usize,
        ),
        (
            "64 KiB blobs",
            "blobs",
            Term::list([Term::Int(big_n), Term::Int(64 << 10)]),
            big_batch,
            4,
            (big_n / 4) as u32,
            64 << 10,
        ),
    ] {
        let mut stream_rates = Vec::new();
        let mut echo_rates = Vec::new();
        for _ in 0..rounds.max(1) {
            let (n, rate) = through_stream(nodes, function, args.clone()).await?;
            anyhow::ensure!(n == batches as u64 * per, "the stream delivered {n} items");
            stream_rates.push(rate);
            echo_rates.push(through_echo(client, batch.clone(), per, batches).await?);
        }
        stream_rates.sort_by(f64::total_cmp);
        echo_rates.sort_by(f64::total_cmp);
        let s = stream_rates[stream_rates.len() / 2];
        let e = echo_rates[echo_rates.len() / 2];
        rows.push((label, s, e, bytes));
    }
    for (label, s, e, bytes) in rows {
        let mb = |r: f64| {
            if bytes == 0 {
                String::new()
            } else {
                format!(" ({:.0} MB/s)", r * bytes as f64 / 1e6)
            }
        };
        println!(
            "{:<28} {:>14.0}{} items/s; bare tonic stream echo {:.0}{} items/s; ratio {:.2}",
            format!("stream {label} ({mode})"),
            s,
            mb(s),
            e,
            mb(e),
            s / e
        );
    }
    Ok(())
}
