//! A node under a flood of connections that never finish their TLS handshake keeps serving:
//! 300 connections, idle or holding a partial ClientHello, each reopened as soon as the node
//! closes it, while authenticated clients connect and call (issue 23, §1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use steinadler_node::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

/// A ClientHello's first bytes: a handshake record header and the start of its body.
const PARTIAL_HELLO: &[u8] = &[0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_partial_handshakes_do_not_lock_out_clients() {
    let n1 = common::start("n1", "a", None).await;
    let n2 = common::start("n2", "a", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2], 2).await;
    let auth = common::login(&n1, "tester").await;
    let addr = n1.grpc_addr().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..300)
        .map(|i| {
            let (addr, stop, opened) = (addr.clone(), stop.clone(), opened.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    if i % 2 == 1 {
                        let _ = tcp.write_all(PARTIAL_HELLO).await;
                    }
                    // Hold it until the node closes it, then open the next at once.
                    let mut buf = [0u8; 256];
                    while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
                    // A pause, so the attackers' own loop does not starve the test's process
                    // (the nodes run in it too).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    // Let the flood take every handshake the node would run, and the node close each of
    // them at least once (they are reopened at once).
    common::eventually(Duration::from_secs(60), "300 connections open", || async {
        opened.load(Ordering::Relaxed) >= 300
    })
    .await;
    common::eventually(
        Duration::from_secs(60),
        "300 flood connections refused",
        || async { n1.stats().rejected_tls.load(Ordering::Relaxed) >= 300 },
    )
    .await;

    // Authenticated clients, each on a new connection, as `steinadler nodes` makes.
    let (mut ok, mut failures) = (0, Vec::new());
    let total = 100;
    for _ in 0..total {
        let call = async {
            let mut client = Client::connect(&addr, &auth)
                .await
                .map_err(|e| e.to_string())?;
            client.members().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(30), call).await {
            Ok(Ok(reply)) if reply.members.len() == 2 => ok += 1,
            Ok(Ok(reply)) => failures.push(format!("{} members", reply.members.len())),
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("no answer in 30 s".into()),
        }
    }
    let flood = opened.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    attackers.iter().for_each(|a| a.abort());
    assert!(
        ok >= 99,
        "{ok} of {total} client calls succeeded while {flood} flood connections were opened: {failures:?}"
    );
    // Members kept each other too.
    assert_eq!(n2.members().await.len(), 2);
    n2.shutdown().await;
    n1.shutdown().await;
}
