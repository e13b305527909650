//! The fault suite's handshake flood (issue 23 §1), between test hosts in network namespaces:
//! one host opens far more connections to a secure node than the node lets one address hold
//! (idle, or stopped inside a partial ClientHello), and reopens each as soon as the node closes
//! it. Meanwhile the node's members, on hosts of their own, must stay members, and a client on
//! another host must keep being served: at least 99 % of its calls succeed. The node's log
//! must not turn into a flood too: refusals are logged at most about once a second.
//!
//! The loopback variant (`tests/tests/handshake_flood.rs`) cannot tell the flood's address from
//! the client's; here each has its own, so the per-address share is what is tested. Without
//! root, `ip` and `nft` the test says so and passes.

mod netns;

use netns::{Hosts, PATIENCE, ok};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A ClientHello's first bytes: a handshake record header and the start of its body.
const PARTIAL_HELLO: &[u8] = &[0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3];
/// More connections than the node lets one address hold while they wait for their
/// ClientHello (1,024).
const FLOOD: u64 = 1500;
/// The client's calls, made while the flood runs.
const CALLS: usize = 100;

#[test]
fn a_flood_of_idle_handshakes_from_one_host_leaves_members_and_clients_served() {
    // Hosts 1 to 3 run nodes; host 4 runs only the flood.
    let Some(mut h) = Hosts::up_secure(4) else {
        return;
    };
    h.start(1);
    h.wait_members(1, &["n1"], PATIENCE);
    h.start(2);
    h.start(3);
    let all = ["n1", "n2", "n3"];
    for i in 1..=3 {
        h.wait_members(i, &all, PATIENCE);
    }
    ok(&h.cli(1, &["deploy", "--wait", steinadler_test_modules::HELLO]));

    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let target = h.grpc(1);
    let flood = {
        let (stop, opened) = (stop.clone(), opened.clone());
        h.in_host(4, move || flood(&target, &stop, &opened))
    };
    // The flood stops when the test ends, on a failed assertion too.
    let _stop = StopOnDrop(stop.clone());
    let started = Instant::now();
    while opened.load(Ordering::Relaxed) < FLOOD * 2 {
        assert!(
            started.elapsed() < PATIENCE,
            "the flood opened only {} connections",
            opened.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "flood: {} connections opened in {:.1?}",
        opened.load(Ordering::Relaxed),
        started.elapsed()
    );

    // A client on host 2 calls n1 (a TLS handshake each time) while the flood goes on.
    let calling = Instant::now();
    let mut failed = Vec::new();
    for _ in 0..CALLS {
        if let Err(e) = h.greet_all(2, 1, 3) {
            failed.push(e);
        }
    }
    let during = calling.elapsed();
    let total = opened.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    flood.join().expect("the flood thread");
    eprintln!(
        "flood: {CALLS} calls --on all from another host in {during:.1?}, {} failed; \
         {total} flood connections opened in all",
        failed.len()
    );
    assert!(
        failed.len() * 100 <= CALLS,
        "{} of {CALLS} calls failed: {failed:#?}",
        failed.len()
    );
    // The members stayed members all along.
    let logs = h.logs();
    assert!(
        !logs.contains("member failed"),
        "a member was lost:\n{logs}"
    );
    assert!(!logs.contains("panicked at"), "{logs}");
    for i in 1..=3 {
        h.wait_members(i, &all, PATIENCE);
    }
    // The node refused the flood, and said so at most about once a second.
    let n1 = std::fs::read_to_string(h.log(1)).unwrap();
    let refusals = n1.matches("rejected a TLS connection").count();
    let secs = started.elapsed().as_secs() as usize;
    eprintln!("flood: {refusals} log lines about refused connections in {secs} s");
    assert!(refusals >= 1, "the flood was never refused:\n{n1}");
    assert!(refusals <= secs + 5, "{refusals} lines in {secs} s:\n{n1}");
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `FLOOD` connections to `target`, half idle and half inside a partial ClientHello, each
/// reopened when the node closes it, until `stop`. Runs on the calling thread.
fn flood(target: &str, stop: &Arc<AtomicBool>, opened: &Arc<AtomicU64>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..FLOOD)
            .map(|i| {
                let (target, stop, opened) = (target.to_owned(), stop.clone(), opened.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut tcp) = tokio::net::TcpStream::connect(&target).await else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        opened.fetch_add(1, Ordering::Relaxed);
                        if i % 2 == 1 {
                            let _ = tcp.write_all(PARTIAL_HELLO).await;
                        }
                        // Hold it until the node closes it (or the test ends), then reopen.
                        let mut buf = [0u8; 256];
                        loop {
                            tokio::select! {
                                r = tcp.read(&mut buf) => if !matches!(r, Ok(n) if n > 0) { break },
                                () = tokio::time::sleep(Duration::from_millis(500)) => {
                                    if stop.load(Ordering::Relaxed) { return; }
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}
