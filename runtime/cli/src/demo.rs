//! `steinadler demo`: a local 3-node cluster, a deploy, invocations on one, some and all nodes,
//! a latency summary, and a clean shutdown.

use crate::Failure;
use anyhow::anyhow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_core::Term;
use steinadler_node::{Client, ClientAuth, Node, NodeResult};
use steinadler_security::{ClientCredentials, Role};

pub(crate) async fn run() -> Result<(), Failure> {
    demo().await.map_err(Failure::Runtime)
}

async fn demo() -> anyhow::Result<()> {
    println!("starting a 3-node cluster on 127.0.0.1, secured by token join ...");
    let n1 = Node::builder()
        .name("n1")
        .label("zone", "a")
        .start()
        .await?;
    let token = n1
        .join_token()
        .ok_or_else(|| anyhow!("n1 created no join token"))?;
    println!(
        "  n1 created a cluster CA and a join token ({}...)",
        &token[..12]
    );
    let n2 = Node::builder()
        .name("n2")
        .label("zone", "a")
        .seed(n1.grpc_addr())
        .token(token.clone())
        .start()
        .await?;
    let n3 = Node::builder()
        .name("n3")
        .label("zone", "b")
        .seed(n1.grpc_addr())
        .token(token.clone())
        .start()
        .await?;
    println!(
        "  n2 and n3 checked n1's CA against the token, got certificates, and joined over mutual TLS"
    );
    let nodes = [&n1, &n2, &n3];
    for (node, zone) in nodes.iter().zip(["a", "a", "b"]) {
        println!(
            "  {}  grpc {}  gossip {}  zone={zone}",
            node.name(),
            node.grpc_addr(),
            node.gossip_addr()
        );
    }
    let started = Instant::now();
    for node in nodes {
        node.wait_for_members(3, Duration::from_secs(10)).await?;
    }
    println!(
        "all 3 nodes agree on membership ({:.0?})",
        started.elapsed()
    );

    // The demo's CLI user logs in with the same token, as `steinadler login` does.
    let joined =
        steinadler_node::request_certificate(n1.grpc_addr(), &token.parse()?, Role::Client, "demo")
            .await?;
    let creds = ClientCredentials {
        ca_cert_pem: joined.reply.ca_cert_pem,
        cert_pem: joined.reply.cert_pem,
        key_pem: joined.key_pem,
    };
    let mut client =
        Client::connect(n1.grpc_addr(), &ClientAuth::Certificate(Arc::new(creds))).await?;
    println!("  the demo user logged in: it holds a client certificate from the cluster CA");
    let (id, _) = client
        .deploy("hello", steinadler_test_modules::HELLO_WASM)
        .await?;
    println!("deployed hello ({}) to n1 over gRPC\n", id.short());

    let args = Term::list([Term::from("World")]).encode();
    let timeout = Duration::from_secs(5);
    for target in ["node:n2", "zone=a", "all"] {
        println!("greet on {target}:");
        let results = client
            .invoke(target, "hello", "greet", args.clone(), timeout, false)
            .await?;
        print_results(&results);
    }

    println!("\nlatency, client -> n1 -> target, 200 sequential calls each:");
    for target in ["node:n1", "node:n2", "all"] {
        let mut samples = Vec::with_capacity(200);
        for _ in 0..200 {
            let t = Instant::now();
            let results = client
                .invoke(target, "hello", "greet", args.clone(), timeout, false)
                .await?;
            samples.push(t.elapsed());
            if let Some(bad) = results.iter().find(|r| r.outcome.is_err()) {
                return Err(anyhow!("{} failed: {:?}", bad.node, bad.outcome));
            }
        }
        samples.sort();
        println!(
            "  {target:<8} p50 {:>9.1?}  p99 {:>9.1?}",
            samples[samples.len() / 2],
            samples[samples.len() * 99 / 100]
        );
    }

    println!("\nshutting down ...");
    crate::shutting_down();
    for node in nodes {
        node.shutdown().await;
    }
    println!("done");
    Ok(())
}

fn print_results(results: &[NodeResult]) {
    for r in results {
        let shown = match &r.outcome {
            Ok(bytes) => {
                Term::decode(bytes).map_or_else(|e| format!("undecodable: {e}"), |t| t.to_string())
            }
            Err(e) => format!("error: {e}"),
        };
        println!("  {:<4} {:>9.1?}  {shown}", r.node, r.elapsed);
    }
}
