//! `steinadler bench`: the remote-invoke hot path next to its baselines, in one run.
//!
//! Everything runs in this process on one tokio runtime, over real loopback sockets: a raw TCP
//! echo, then, on a 5-node plaintext cluster and a 5-node mutual-TLS cluster side by side, a bare
//! tonic unary echo (the node's `Ping`), a remote invoke of the `noop` module from node n1 on node
//! n2, and a fan-out to all 5 nodes. Each is measured at 1, 16 and 64 calls in flight, in rounds
//! that alternate between the two clusters, reporting the median round's p50, p99 and calls/s.
//!
//! Then processes, streams and the registry, and a section against Erlang Distribution, run
//! beside these rounds when `erl` is on the PATH ([`bench_erlang`](crate::bench_erlang)).
//!
//! `--only scale` runs the scale harness instead, and nothing else: `--nodes` node processes
//! (see [`bench_scale`](crate::bench_scale)). A plain `steinadler bench` does not run it.

use crate::Failure;
use anyhow::anyhow;
use clap::Args;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_node::{Client, ClientAuth, Node, Target};
use steinadler_security::{ClientCredentials, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Calls per measurement.
    #[arg(long, default_value_t = 4000)]
    calls: usize,
    /// Rounds per figure; plaintext and mTLS alternate, and each figure is the median round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only the benchmarks whose label contains this text; `processes`, `streams`,
    /// `registry`, `relay` and `erlang` pick those sections; `scale` runs the scale harness alone.
    #[arg(long)]
    only: Option<String>,
    /// Node processes for `--only scale`.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// How the `--only scale` nodes gossip (`node start --gossip-wire`).
    #[arg(long, value_enum, value_name = "udp|tls", default_value = "udp")]
    gossip_wire: crate::node_cmd::WireArg,
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), Failure> {
    if args.only.as_deref() == Some("scale") {
        if args.nodes < 2 {
            return Err(Failure::Usage(anyhow!(
                "--nodes must be at least 2: the scale bench kills one node and keeps n1"
            )));
        }
        return crate::bench_scale::run(args.nodes, args.rounds, args.gossip_wire)
            .await
            .map_err(Failure::Runtime);
    }
    bench(args).await.map_err(Failure::Runtime)
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let tcp = Scenario::Tcp(tcp_echo_server().await?);
    // Two clusters side by side: plaintext, and mutual TLS with the cluster cookie. Their
    // measurements alternate, so that drift in this noisy machine hits both alike.
    let (plain_nodes, plain_ping) = start_cluster(false).await?;
    let (tls_nodes, tls_ping) = start_cluster(true).await?;
    let (plain_client, tls_client) = (plain_ping.clone(), tls_ping.clone());
    let noop_args = steinadler_core::Term::List(vec![]).encode();
    for n in [&plain_nodes[0], &tls_nodes[0]] {
        // Warm: every node fetches and compiles the module once.
        n.invoke(&Target::All, "noop", "noop", &noop_args).await?;
    }
    let invoke = |nodes: &[Arc<Node>], target: Target| {
        Scenario::Invoke(nodes[0].clone(), target, noop_args.clone())
    };
    let pairs = [
        (
            "tonic unary Ping, 64 B",
            Scenario::Ping(plain_ping),
            Scenario::Ping(tls_ping),
        ),
        (
            "remote invoke noop, n1->n2",
            invoke(&plain_nodes, Target::Node("n2".into())),
            invoke(&tls_nodes, Target::Node("n2".into())),
        ),
        (
            "fan-out noop, n1->all 5",
            invoke(&plain_nodes, Target::All),
            invoke(&tls_nodes, Target::All),
        ),
    ];
    println!(
        "{:<28} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "benchmark", "flight", "p50", "p99", "calls/s", "mTLS p50", "mTLS /s"
    );
    let selected = |label: &str| args.only.as_deref().is_none_or(|o| label.contains(o));
    for inflight in [1, 16, 64] {
        if !selected("raw TCP echo, 64 B") {
            break;
        }
        let figures = crate::progress::while_waiting(
            format!("bench: raw TCP echo, {inflight} in flight"),
            median(args.rounds, || measure(&tcp, inflight, args.calls)),
        )
        .await?;
        println!(
            "{:<28} {inflight:>6} {:>10.1?} {:>10.1?} {:>10.0}",
            "raw TCP echo, 64 B", figures.p50, figures.p99, figures.rate
        );
    }
    for (label, plain, tls) in pairs.iter().filter(|p| selected(p.0)) {
        for inflight in [1, 16, 64] {
            let mut plain_rounds = Vec::new();
            let mut tls_rounds = Vec::new();
            let rounds = async {
                for _ in 0..args.rounds.max(1) {
                    plain_rounds.push(measure(plain, inflight, args.calls).await?);
                    tls_rounds.push(measure(tls, inflight, args.calls).await?);
                }
                Ok::<_, anyhow::Error>(())
            };
            let doing = format!("bench: {label}, {inflight} in flight");
            crate::progress::while_waiting(doing, rounds).await?;
            let p = Figures::median_of(plain_rounds);
            let t = Figures::median_of(tls_rounds);
            println!(
                "{label:<28} {inflight:>6} {:>10.1?} {:>10.1?} {:>10.0} {:>10.1?} {:>10.0}",
                p.p50, p.p99, p.rate, t.p50, t.rate
            );
        }
    }
    if selected("processes") {
        println!("\nprocesses (messages/s for sends; calls/s for sequential calls):");
        crate::bench_proc::run(&plain_nodes, "plain", args.calls).await?;
        crate::bench_proc::run(&tls_nodes, "mTLS", args.calls).await?;
    }
    // `--only "stream integers"` picks rows of both stream sections.
    let stream_rows = args
        .only
        .as_deref()
        .is_some_and(|o| o.starts_with("stream "));
    if selected("streams") || stream_rows {
        println!(
            "\nstreams n2 -> n1 (the echo sends the same batches from n2 to a client; ratios: by item / through StreamExt / typed through StreamExt / by batch):"
        );
        let only = args.only.as_deref();
        crate::bench_stream::run(&plain_nodes, &plain_client, "plain", args.rounds, only).await?;
        crate::bench_stream::run(&tls_nodes, &tls_client, "mTLS", args.rounds, only).await?;
    }
    if selected("registry") {
        println!("\nregistry (5 nodes; the name is registered on each node in turn):");
        crate::bench_registry::run(&plain_nodes, "plain", 100).await?;
        crate::bench_registry::run(&tls_nodes, "mTLS", 100).await?;
    }
    if selected("relay") {
        println!(
            "\nrelay (mTLS, gossip on the TLS port; d accepts no connections, and r is its relay):"
        );
        crate::bench_relay::run(args.rounds, args.calls).await?;
    }
    if selected("erlang") {
        println!(
            "\nagainst Erlang Distribution (its rounds interleaved with these; n1 -> n2 in this process, and apart: to a node in a process of its own):"
        );
        crate::bench_erlang::run(&tls_nodes, args.rounds, args.calls).await?;
    }
    // Last, because once done it starts the bench's quiet shutdown (`shutting_down`).
    if selected("streams apart") || stream_rows {
        println!(
            "\nstreams apart: the same, with the producer's node in a process of its own, each node held to a core of its own:"
        );
        crate::bench_stream_apart::run(args.rounds, args.only.clone()).await?;
    }
    crate::shutting_down();
    for n in plain_nodes.iter().chain(&tls_nodes) {
        n.shutdown().await;
    }
    Ok(())
}

/// One measurement's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) rate: f64,
}

impl Figures {
    /// The round with the median throughput.
    pub(crate) fn median_of(mut rounds: Vec<Figures>) -> Figures {
        rounds.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        rounds[rounds.len() / 2]
    }
}

async fn median<F, Fut>(rounds: usize, mut f: F) -> anyhow::Result<Figures>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Figures>>,
{
    let mut all = Vec::new();
    for _ in 0..rounds.max(1) {
        all.push(f().await?);
    }
    Ok(Figures::median_of(all))
}

/// Five nodes with `noop` deployed on n1, and a client of n2 for the Ping baseline.
async fn start_cluster(secure: bool) -> anyhow::Result<(Vec<Arc<Node>>, Client)> {
    let builder = |name: String| {
        let b = Node::builder().name(name);
        if secure { b } else { b.insecure() }
    };
    let n1 = builder("n1".into()).start().await?;
    let token = n1.join_token();
    let mut nodes = vec![Arc::new(n1)];
    for i in 2..=5 {
        let mut b = builder(format!("n{i}")).seed(nodes[0].grpc_addr());
        if let Some(token) = &token {
            b = b.token(token.clone());
        }
        nodes.push(Arc::new(b.start().await?));
    }
    nodes[0]
        .wait_for_members(5, Duration::from_secs(10))
        .await?;
    nodes[0]
        .deploy("noop", steinadler_test_modules::NOOP_WASM)
        .await?;
    let auth = client_auth(nodes[0].grpc_addr(), token.as_deref()).await?;
    let ping = Client::connect(nodes[1].grpc_addr(), &auth).await?;
    Ok((nodes, ping))
}

/// A client's credentials for a cluster: none without a join `token`, else a certificate that
/// the node at `addr` issues for the token.
pub(crate) async fn client_auth(addr: &str, token: Option<&str>) -> anyhow::Result<ClientAuth> {
    Ok(match token {
        None => ClientAuth::Insecure,
        Some(token) => {
            let joined =
                steinadler_node::request_certificate(addr, &token.parse()?, Role::Client, "bench")
                    .await?;
            ClientAuth::Certificate(Arc::new(ClientCredentials {
                ca_cert_pem: joined.reply.ca_cert_pem,
                cert_pem: joined.reply.cert_pem,
                key_pem: joined.key_pem,
            }))
        }
    })
}

/// What one call is.
#[derive(Clone)]
pub(crate) enum Scenario {
    Tcp(std::net::SocketAddr),
    Ping(Client),
    Invoke(Arc<Node>, Target, Vec<u8>),
}

/// Runs `calls` calls from `inflight` concurrent workers.
pub(crate) async fn measure(
    scenario: &Scenario,
    inflight: usize,
    calls: usize,
) -> anyhow::Result<Figures> {
    let per_worker = calls.div_ceil(inflight).max(1);
    let started = Instant::now();
    let workers: Vec<_> = (0..inflight)
        .map(|_| tokio::spawn(worker(scenario.clone(), per_worker)))
        .collect();
    let mut samples = Vec::with_capacity(per_worker * inflight);
    for w in workers {
        samples.extend(w.await??);
    }
    let wall = started.elapsed();
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    Ok(Figures {
        p50: pct(50),
        p99: pct(99),
        rate: samples.len() as f64 / wall.as_secs_f64(),
    })
}

async fn worker(scenario: Scenario, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(calls);
    match scenario {
        Scenario::Tcp(addr) => {
            let mut conn = tokio::net::TcpStream::connect(addr).await?;
            conn.set_nodelay(true)?;
            let mut buf = [0u8; 64];
            for _ in 0..calls {
                let t = Instant::now();
                conn.write_all(&[7; 64]).await?;
                conn.read_exact(&mut buf).await?;
                samples.push(t.elapsed());
            }
        }
        Scenario::Ping(mut client) => {
            let payload = bytes::Bytes::from_static(&[7; 64]);
            for _ in 0..calls {
                let t = Instant::now();
                client.ping(payload.clone()).await?;
                samples.push(t.elapsed());
            }
        }
        Scenario::Invoke(node, target, args) => {
            for _ in 0..calls {
                let t = Instant::now();
                let results = node.invoke(&target, "noop", "noop", &args).await?;
                samples.push(t.elapsed());
                if let Some(bad) = results.iter().find(|r| r.outcome.is_err()) {
                    return Err(anyhow!("{}: {:?}", bad.node, bad.outcome));
                }
            }
        }
    }
    Ok(samples)
}

/// A raw TCP echo of 64-byte messages, one task per connection.
async fn tcp_echo_server() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while conn.read_exact(&mut buf).await.is_ok() {
                    if conn.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}
