//! `steinadler node start`: run a node until SIGINT or SIGTERM.

use crate::Failure;
use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use steinadler_node::{GossipMode, NodeBuilder, NodeConfig, SecurityMode};

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Start a node and serve until SIGINT or SIGTERM.
    Start(StartArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// A TOML file with the same settings (name, listen, advertise, gossip, advertise_gossip,
    /// gossip_wire, no_inbound, join, labels, data_dir, max_peers, peer_idle, fanout,
    /// max_memory, max_timeout, compile, ca_holder, metrics, otlp, cert_lifetime,
    /// client_cert_lifetime); flags
    /// override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The node's name, unique in the cluster.
    #[arg(long)]
    name: Option<String>,
    /// The gRPC listen address [default: 127.0.0.1:7100].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The gRPC address other nodes and clients reach this node at, HOST:PORT, when it differs
    /// from --listen: a port-forward, NAT, a container, a load balancer [default: the --listen
    /// address; for 0.0.0.0 or [::], the machine's first non-loopback address].
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// The gossip address [default: 127.0.0.1:7101]. Not bound with --gossip-wire tls.
    #[arg(long)]
    gossip: Option<SocketAddr>,
    /// How gossip travels: `udp` on its own port (--gossip, UDP and TCP), or `tls` on the gRPC
    /// port, as calls on the mutual-TLS links between nodes (one TCP port per node). Every
    /// node of a cluster must use the same [default: udp].
    #[arg(long, value_enum, value_name = "udp|tls")]
    gossip_wire: Option<WireArg>,
    /// Accept no connections from peers: for a node behind NAT without a port-forward, or a
    /// firewall that lets nothing in. It dials out to its relays (the --join members first,
    /// then others) and keeps those connections; peers reach it through them, with mutual TLS
    /// end to end. --listen then serves only clients on this machine. Needs --gossip-wire tls
    /// on every node.
    #[arg(long)]
    no_inbound: bool,
    /// The gossip address (UDP and TCP) other nodes reach this node at, IP:PORT, when it
    /// differs from --gossip [default: the --gossip address; for 0.0.0.0 or [::], the
    /// machine's first non-loopback address].
    #[arg(long, value_name = "IP:PORT")]
    advertise_gossip: Option<SocketAddr>,
    /// The gRPC address of a running member to join through, repeatable. `dns:NAME:PORT` tries
    /// every A/AAAA record of NAME (a Kubernetes headless service, for example).
    #[arg(long)]
    join: Vec<String>,
    /// The join token a member printed (`steinadler cluster token`); the first start of a new
    /// node uses it to get its certificate.
    #[arg(long, env = "STEINADLER_TOKEN")]
    token: Option<String>,
    /// Use the certificates in DIR (from `steinadler cluster issue`) instead of a token.
    #[arg(long, conflicts_with_all = ["token", "insecure"])]
    secure: Option<PathBuf>,
    /// Run without TLS or authentication. Anyone who reaches the ports controls the node.
    #[arg(long, conflicts_with = "token")]
    insecure: bool,
    /// A label `k=v`, repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// Where modules and precompiled artifacts are kept.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Move supervised children to the node their placement picks when nodes join (off: a
    /// running child stays where it runs).
    #[arg(long)]
    rebalance: bool,
    /// At most this many peers have open connections from this node; opening one more closes
    /// the least recently used one's first [default: 32].
    #[arg(long)]
    max_peers: Option<usize>,
    /// Close a peer's connections after this long unused, like 30s [default: 30s].
    #[arg(long, value_parser = crate::parse::duration)]
    peer_idle: Option<Duration>,
    /// A call this node coordinates to more nodes than this goes as a tree: to at most this
    /// many relays, which forward it to the rest [default: 16].
    #[arg(long)]
    fanout: Option<usize>,
    /// The most guest memory one call may ask for, like 256MiB; a call asking for more is
    /// refused [default: 256MiB].
    #[arg(long, value_parser = crate::parse::size)]
    max_memory: Option<u64>,
    /// The longest deadline one call may ask for, like 60s; a call asking for more is refused
    /// [default: 60s].
    #[arg(long, value_parser = crate::parse::duration)]
    max_timeout: Option<Duration>,
    /// Where this node compiles modules: `child`, a short-lived process of this binary with
    /// its own memory and CPU limits, which keeps the compiler out of the node's memory; or
    /// `in-process` [default: child].
    #[arg(long, value_enum)]
    compile: Option<CompileArg>,
    /// How long the node certificates this node signs live, like 7d, when it holds the CA key:
    /// for joining nodes, for renewals, and its own first one when it creates a cluster.
    /// Every node renews its certificate at two thirds of its lifetime [default: 7d].
    #[arg(long, value_parser = crate::parse::duration)]
    cert_lifetime: Option<Duration>,
    /// How long the client certificates this node signs (`steinadler login`) live, like 30d
    /// [default: 30d].
    #[arg(long, value_parser = crate::parse::duration)]
    client_cert_lifetime: Option<Duration>,
    /// How long the join tokens this node makes admit joins, like 24h: the cluster's first,
    /// when this node creates it, and `cluster token --new` without --ttl [default: 24h].
    #[arg(long, value_parser = crate::parse::duration)]
    token_ttl: Option<Duration>,
    /// When joining with a token, become a CA holder: receive the cluster CA key and the token
    /// secret, and sign joins, logins and renewals. Without it a joining node becomes one only
    /// while fewer than three live CA holders are known; the others forward to a holder.
    #[arg(long)]
    ca_holder: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, in plain HTTP on a port of its own,
    /// like 127.0.0.1:9464 [default: off].
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Export traces to the OTLP/gRPC collector at ENDPOINT, like http://127.0.0.1:4317: one
    /// trace per call across the nodes it touched. The node runs the same without a collector
    /// [default: off].
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
}

/// The shortest certificate lifetime accepted.
const MIN_CERT_LIFETIME: Duration = Duration::from_secs(10);

/// The `--config` file.
/// `--gossip-wire`, and `gossip_wire` in the file.
#[derive(Debug, Clone, Copy, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WireArg {
    Udp,
    Tls,
}

impl WireArg {
    /// The flag's value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tls => "tls",
        }
    }
}

/// `--compile`, and `compile` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CompileArg {
    Child,
    InProcess,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    gossip: Option<SocketAddr>,
    advertise_gossip: Option<SocketAddr>,
    gossip_wire: Option<WireArg>,
    /// "child" or "in-process".
    compile: Option<CompileArg>,
    #[serde(default)]
    ca_holder: bool,
    #[serde(default)]
    no_inbound: bool,
    #[serde(default)]
    join: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    data_dir: Option<PathBuf>,
    secure: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    rebalance: bool,
    max_peers: Option<usize>,
    /// Like "30s".
    peer_idle: Option<String>,
    fanout: Option<usize>,
    /// Like "256MiB".
    max_memory: Option<String>,
    /// Like "60s".
    max_timeout: Option<String>,
    /// Like "127.0.0.1:9464".
    metrics: Option<SocketAddr>,
    /// Like "http://127.0.0.1:4317".
    otlp: Option<String>,
    /// Like "7d".
    cert_lifetime: Option<String>,
    /// Like "30d".
    client_cert_lifetime: Option<String>,
}

/// A duration from the file, like "30s", or `None`; an error names the setting.
fn file_duration(value: Option<&str>, what: &str) -> anyhow::Result<Option<Duration>> {
    value
        .map(crate::parse::duration)
        .transpose()
        .map_err(|e| anyhow!("{what} in --config: {e}"))
}

pub(crate) async fn run(cmd: NodeCommand) -> Result<(), Failure> {
    match cmd {
        NodeCommand::Start(args) => start(args).await,
    }
}

/// The OTLP endpoint `node start` exports traces to: `--otlp`, else `otlp` in its `--config`
/// file (a file that cannot be read is reported when the node starts, not here).
pub(crate) fn otlp_endpoint(cmd: &NodeCommand) -> Option<String> {
    let NodeCommand::Start(args) = cmd;
    otlp_of(args)
}

fn otlp_of(args: &StartArgs) -> Option<String> {
    args.otlp.clone().or_else(|| {
        let text = std::fs::read_to_string(args.config.as_ref()?).ok()?;
        toml::from_str::<FileConfig>(&text).ok()?.otlp
    })
}

async fn start(args: StartArgs) -> Result<(), Failure> {
    let otlp = otlp_of(&args);
    let config = node_config(args).await.map_err(Failure::Usage)?;
    let name = config.name.clone();
    let starting = if config.seeds.is_empty() && config.join.is_empty() {
        format!("starting node {name}")
    } else {
        let through: Vec<String> = if config.seeds.is_empty() {
            config.join.iter().map(ToString::to_string).collect()
        } else {
            config.seeds.clone()
        };
        format!(
            "node {name} joining the cluster through {}",
            through.join(", ")
        )
    };
    let node = crate::progress::while_waiting(starting, NodeBuilder::from_config(config).start())
        .await
        .map_err(|e| Failure::Runtime(anyhow!(e).context(format!("cannot start node {name}"))))?;
    let advertised = if node.accepts_no_connections() {
        " (for clients here only: it accepts no connections from peers, which reach it through its relays)".to_owned()
    } else if node.advertised_addr() == node.grpc_addr() {
        String::new()
    } else {
        format!(" (advertised as {})", node.advertised_addr())
    };
    let mut banner = format!(
        "node {} serving gRPC on {}{advertised} and gossip on {}{}\n",
        node.name(),
        node.grpc_addr(),
        node.gossip_addr(),
        if node.is_secure() {
            " (mutual TLS)"
        } else {
            " (INSECURE: plaintext, unauthenticated)"
        }
    );
    if node.created_cluster()
        && let Some(token) = node.join_token()
    {
        banner.push_str(&format!(
            "created a new cluster. Join token (keep it secret):\n  {token}\n\
             add a node:    steinadler node start --name NAME --join {addr} --token {token}\n\
             log in a user: steinadler login --node {addr} --token {token}\n\
             this token: {}; make another with `steinadler cluster token --new --data-dir DIR`\n",
            node.join_token_policy()
                .map_or_else(String::new, |p| p.describe()),
            addr = node.advertised_addr()
        ));
    }
    // After the token lines, which scripts read right after the first line.
    if let Some(addr) = node.metrics_addr() {
        banner.push_str(&format!("metrics on http://{addr}/metrics\n"));
    }
    if let Some(endpoint) = otlp {
        banner.push_str(&format!("traces to {endpoint} (OTLP/gRPC)\n"));
    }
    // One write, and no panic if whoever started the node stopped reading its output.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes());
        let _ = out.flush();
    }
    crate::trim::spawn();
    wait_for_signal().await;
    tracing::info!("shutting down: leaving the cluster and draining calls");
    crate::shutting_down();
    node.shutdown().await;
    Ok(())
}

async fn node_config(args: StartArgs) -> anyhow::Result<NodeConfig> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --config {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("--config {} is not a valid node file", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut config = NodeConfig {
        name: args
            .name
            .or(file.name)
            .ok_or_else(|| anyhow!("a node needs a name: pass --name NAME"))?,
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7100))),
        gossip: args
            .gossip
            .or(file.gossip)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7101))),
        advertise: args.advertise.or(file.advertise),
        gossip_advertise: args.advertise_gossip.or(file.advertise_gossip),
        gossip_mode: match args.gossip_wire.or(file.gossip_wire) {
            Some(WireArg::Tls) => GossipMode::Tls,
            Some(WireArg::Udp) | None => GossipMode::Udp,
        },
        no_inbound: args.no_inbound || file.no_inbound,
        metrics: args.metrics.or(file.metrics),
        ..NodeConfig::default()
    };
    config.labels = file.labels;
    for label in &args.label {
        let (k, v) = label
            .split_once('=')
            .ok_or_else(|| anyhow!("--label {label:?} is not k=v"))?;
        config.labels.insert(k.to_owned(), v.to_owned());
    }
    let joins = if args.join.is_empty() {
        file.join
    } else {
        args.join
    };
    for seed in &joins {
        config
            .seeds
            .extend(resolve_seed(seed).await?.iter().map(ToString::to_string));
    }
    config.host.data_dir = args.data_dir.or(file.data_dir);
    if args.compile.or(file.compile).unwrap_or(CompileArg::Child) == CompileArg::Child {
        config.host.compiler = steinadler_host::Compiler::this_executable(["compile-child"]);
    }
    config.rebalance_children = args.rebalance || file.rebalance;
    if let Some(max) = args.max_peers.or(file.max_peers) {
        if max == 0 {
            return Err(anyhow!("--max-peers must be at least 1"));
        }
        config.max_peers = max;
    }
    let file_idle = file_duration(file.peer_idle.as_deref(), "peer_idle")?;
    if let Some(idle) = args.peer_idle.or(file_idle) {
        config.peer_idle = idle;
    }
    if let Some(k) = args.fanout.or(file.fanout) {
        if k == 0 {
            return Err(anyhow!("--fanout must be at least 1"));
        }
        config.fanout = k;
    }
    let file_memory = file
        .max_memory
        .as_deref()
        .map(crate::parse::size)
        .transpose()
        .map_err(|e| anyhow!("max_memory in --config: {e}"))?;
    if let Some(max) = args.max_memory.or(file_memory) {
        if max < 1 << 20 {
            return Err(anyhow!(
                "--max-memory must be at least 1MiB, as a guest needs a few wasm pages"
            ));
        }
        config.max_memory_bytes = max;
    }
    let file_timeout = file_duration(file.max_timeout.as_deref(), "max_timeout")?;
    if let Some(max) = args.max_timeout.or(file_timeout) {
        if max.is_zero() {
            return Err(anyhow!("--max-timeout must be more than zero, like 60s"));
        }
        config.max_timeout = max;
    }
    for (flag, arg, from_file, slot) in [
        (
            "--cert-lifetime",
            args.cert_lifetime,
            file_duration(file.cert_lifetime.as_deref(), "cert_lifetime")?,
            &mut config.cert_lifetime,
        ),
        (
            "--client-cert-lifetime",
            args.client_cert_lifetime,
            file_duration(file.client_cert_lifetime.as_deref(), "client_cert_lifetime")?,
            &mut config.client_cert_lifetime,
        ),
    ] {
        if let Some(lifetime) = arg.or(from_file) {
            if lifetime < MIN_CERT_LIFETIME {
                return Err(anyhow!(
                    "{flag} must be at least 10s: a certificate is renewed at two thirds of its \
                     lifetime, and the renewal needs time to happen"
                ));
            }
            *slot = lifetime;
        }
    }
    config.ca_holder = args.ca_holder || file.ca_holder;
    if let Some(ttl) = args.token_ttl {
        if ttl.is_zero() {
            return Err(anyhow!("--token-ttl must be more than zero, like 24h"));
        }
        config.token_ttl = ttl;
    }
    config.security = if args.insecure || file.insecure {
        SecurityMode::Insecure
    } else if let Some(dir) = args.secure.or(file.secure) {
        SecurityMode::Dir(dir)
    } else {
        if config.host.data_dir.is_none() {
            tracing::warn!(
                "no --data-dir: this node's certificate lives in memory only, and a restart makes it a stranger to the cluster"
            );
        }
        SecurityMode::Auto { token: args.token }
    };
    config.host.node_name = config.name.clone();
    Ok(config)
}

/// `ADDR`, `HOST:PORT`, or `dns:NAME:PORT` (every A/AAAA record).
async fn resolve_seed(seed: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let name = seed.strip_prefix("dns:").unwrap_or(seed);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(name)
        .await
        .with_context(|| {
            format!("cannot resolve --join {seed}: expected ADDR:PORT or dns:NAME:PORT")
        })?
        .collect();
    if addrs.is_empty() {
        return Err(anyhow!("--join {seed} resolved to no address"));
    }
    Ok(addrs)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
#[path = "node_cmd_tests.rs"]
mod tests;
