//! A million items cross nodes to a slow consumer: all arrive in order, the producer never
//! runs more than the window ahead, and memory stays flat. Alone in its test binary, so that
//! the process's resident memory is this test's alone.

use std::time::Duration;
use steinadler_core::Term;

mod common;
use common::{pair, produced, range_from_n1};

/// Resident memory of this test process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_items_reach_a_slow_consumer_in_order_with_the_producer_bounded() {
    let (n1, n2) = pair().await;
    let window = 1024;
    let mut stream = range_from_n1(&n2, 0, 1_000_000, window).await;
    let mut rss_start = 0;
    let mut rss_max = 0;
    let mut next = 0i64;
    let mut ahead_max = 0;
    while let Some(item) = stream.next().await {
        assert_eq!(item.unwrap(), Term::Int(next), "out of order or lost");
        next += 1;
        // The producer never runs further ahead than the window.
        let ahead = produced(&n1) - next as u64;
        ahead_max = ahead_max.max(ahead);
        assert!(ahead <= u64::from(window), "{ahead} items ahead");
        // Deliberately slow: a pause every 10,000 items, while the producer could run on.
        if next % 10_000 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
            // From the first pause on: by then the stream, the instance and the caches are warm.
            if rss_start == 0 {
                rss_start = rss();
            }
            rss_max = rss_max.max(rss());
        }
    }
    assert_eq!(next, 1_000_000);
    assert_eq!(produced(&n1), 1_000_000);
    let growth = rss_max.saturating_sub(rss_start);
    eprintln!(
        "at most {ahead_max} items ahead; memory grew by {} KiB",
        growth >> 10
    );
    assert!(growth < 64 << 20, "memory grew by {growth} bytes");
    n2.shutdown().await;
    n1.shutdown().await;
}
