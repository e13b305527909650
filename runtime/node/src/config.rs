//! Node settings and the builder that starts a [`Node`](crate::Node).

use crate::limits::{DEFAULT_MAX_MEMORY, DEFAULT_MAX_TIMEOUT, Maximums};
use crate::node::{Node, NodeError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use steinadler_host::HostConfig;
use steinadler_membership::Profile;

/// Everything a node needs to start. Build one with [`Node::builder`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// The gRPC listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The gRPC address other nodes reach this one at, gossiped to them; `None` for the
    /// bound address.
    pub advertise: Option<String>,
    /// The gossip bind address; port 0 picks a free port.
    pub gossip: SocketAddr,
    /// The gossip address other nodes reach this one at, gossiped to them; `None` for the
    /// bound address (for a wildcard bind, the machine's first non-loopback address).
    pub gossip_advertise: Option<SocketAddr>,
    /// How gossip travels: on its own port ([`GossipMode::Udp`]) or on the gRPC port's TLS
    /// links ([`GossipMode::Tls`], one port for everything). Every node of a cluster must use
    /// the same.
    pub gossip_mode: GossipMode,
    /// Accept no connections from peers (`--no-inbound`): for a node behind NAT without a
    /// port-forward, or a firewall that lets nothing in. It advertises no address (its
    /// listener serves only clients that reach it where it runs), keeps connections open to
    /// members it can reach (its relays, its seeds first), and is reached through them
    /// (`docs/topology.md`). Needs [`GossipMode::Tls`].
    pub no_inbound: bool,
    /// Gossip addresses of nodes to join. Empty for the first node.
    pub join: Vec<SocketAddr>,
    /// gRPC addresses of running members. The node asks them for the gossip addresses to join,
    /// and, with a token, for its certificate.
    pub seeds: Vec<String>,
    /// How the node secures its links: mutual TLS unless [`SecurityMode::Insecure`].
    pub security: SecurityMode,
    /// Labels for target selection, like `zone=a`.
    pub labels: BTreeMap<String, String>,
    /// The wasm host's settings, including its data directory.
    pub host: HostConfig,
    /// Failure-detector timings.
    pub profile: Profile,
    /// At most this many invocations run at once on this node.
    pub max_concurrent: usize,
    /// At most this many more wait for a slot; past that, callers get `RESOURCE_EXHAUSTED`.
    pub max_queued: usize,
    /// The largest gRPC message accepted or sent, in bytes. Modules are streamed in chunks, so
    /// this bounds arguments and results, not modules.
    pub max_message_bytes: usize,
    /// The largest module accepted by deploy or fetch, in bytes.
    pub max_module_bytes: usize,
    /// Argument payloads at least this large are content-addressed and cached by receivers.
    pub args_cache_threshold: usize,
    /// How many bytes of cached arguments a node keeps.
    pub args_cache_bytes: u64,
    /// How long a cached argument lives.
    pub args_cache_ttl: Duration,
    /// How long a graceful shutdown waits for in-flight calls.
    pub drain_timeout: Duration,
    /// Move supervised children to the node their placement picks when the membership changes
    /// (a node joined). Off by default: a running child stays where it runs.
    pub rebalance_children: bool,
    /// At most this many peers have open connections from this node; opening one more closes
    /// the least recently used peer's first.
    pub max_peers: usize,
    /// A peer's connections close after this long unused.
    pub peer_idle: Duration,
    /// A call to more nodes than this goes as a tree: to at most this many relays, which
    /// forward it to the rest ([`crate::tree`]).
    pub fanout: usize,
    /// The most guest memory one call may ask for, in bytes (default 256 MiB). A request over
    /// it gets `INVALID_ARGUMENT`. Capped by [`HostConfig::max_memory_bytes`].
    pub max_memory_bytes: u64,
    /// The longest deadline one call may ask for (default 60 s). A request over it gets
    /// `INVALID_ARGUMENT`.
    pub max_timeout: Duration,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (plain HTTP); `None`, the default,
    /// serves none. The recorder is process-wide: one node per process may set it at a time.
    pub metrics: Option<SocketAddr>,
    /// How long the node certificates this node signs live, as a CA holder: for joining
    /// nodes, for renewals, and for its own first certificate when it creates a cluster
    /// (default 7 days). Every node renews its own at two thirds of its lifetime.
    pub cert_lifetime: Duration,
    /// How long the client certificates this node signs (`steinadler login`) live (default
    /// 30 days).
    pub client_cert_lifetime: Duration,
    /// How long a join token this node makes lives: the cluster's first (when this node
    /// creates it) and any `cluster token --new` run against it without `--ttl` (default 24 h).
    pub token_ttl: Duration,
    /// Ask to become a CA holder when joining with a token (`--ca-holder`), even when three
    /// live holders are already known. Without it a joining node holds the CA key and the
    /// token secret only while fewer than three live holders are known
    /// ([`crate::ca_holders`]).
    pub ca_holder: bool,
}

impl NodeConfig {
    /// The ceilings on what one call may ask for.
    pub(crate) fn maximums(&self) -> Maximums {
        Maximums {
            memory_bytes: self.max_memory_bytes.min(self.host.max_memory_bytes),
            timeout: self.max_timeout,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            name: "node".to_owned(),
            listen: localhost,
            advertise: None,
            gossip: localhost,
            gossip_advertise: None,
            gossip_mode: GossipMode::default(),
            no_inbound: false,
            join: Vec::new(),
            seeds: Vec::new(),
            security: SecurityMode::default(),
            labels: BTreeMap::new(),
            host: HostConfig::default(),
            profile: Profile::Local,
            max_concurrent: 64,
            max_queued: 1024,
            max_message_bytes: 64 << 20,
            max_module_bytes: 64 << 20,
            args_cache_threshold: 4 << 10,
            args_cache_bytes: 256 << 20,
            args_cache_ttl: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(10),
            rebalance_children: false,
            max_peers: steinadler_transport::DEFAULT_MAX_PEERS,
            peer_idle: steinadler_transport::DEFAULT_PEER_IDLE,
            fanout: DEFAULT_FANOUT,
            max_memory_bytes: DEFAULT_MAX_MEMORY,
            max_timeout: DEFAULT_MAX_TIMEOUT,
            metrics: None,
            cert_lifetime: steinadler_security::NODE_CERT_VALIDITY,
            client_cert_lifetime: steinadler_security::CLIENT_CERT_VALIDITY,
            token_ttl: steinadler_security::DEFAULT_TOKEN_TTL,
            ca_holder: false,
        }
    }
}

/// How gossip travels between nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GossipMode {
    /// On its own port (`--gossip`): UDP packets and TCP streams, encrypted with the cluster's
    /// gossip key.
    #[default]
    Udp,
    /// On the gRPC port, as calls on the mutual-TLS links between nodes: one TCP port per
    /// node, and `--gossip` is not bound. The node's gossip address is its advertised gRPC
    /// address.
    Tls,
}

impl GossipMode {
    /// The mode's name on the wire and on the command line: `udp` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tls => "tls",
        }
    }

    /// The mode a peer reported; an empty name is an older node's, which gossiped on UDP.
    pub(crate) fn from_wire(name: &str) -> Option<Self> {
        match name {
            "" | "udp" => Some(Self::Udp),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }

    /// Checks that the cluster behind `seed`, which reported `reported`, gossips as this node.
    pub(crate) fn check_seed(self, seed: &str, reported: &str) -> Result<(), NodeError> {
        let theirs = Self::from_wire(reported);
        if theirs == Some(self) {
            return Ok(());
        }
        let theirs = theirs.map_or(reported, |m| m.as_str());
        Err(NodeError::Request(format!(
            "the cluster at {seed} gossips with --gossip-wire {theirs}, and this node with \
             --gossip-wire {}: start it with --gossip-wire {theirs}, as every node of a cluster \
             must gossip the same way",
            self.as_str()
        )))
    }
}

/// The default fan-out: a call to more nodes than this goes as a tree.
pub const DEFAULT_FANOUT: usize = 16;

/// How a node secures its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityMode {
    /// Mutual TLS with the material in `<data dir>/security`. If there is none yet, a node with
    /// a `token` gets its certificate from a seed; a node without one creates a new cluster
    /// (a CA, its certificate, a cluster secret and a join token). Without a data dir the
    /// material lives in memory only.
    Auto {
        /// A join token (`SA1-...`), from `steinadler cluster token` on a member.
        token: Option<String>,
    },
    /// Mutual TLS with the material in this directory, as `steinadler cluster issue` writes it.
    Dir(PathBuf),
    /// Plaintext and unauthenticated. The node logs a warning; for trusted networks and
    /// comparisons only.
    Insecure,
}

impl Default for SecurityMode {
    fn default() -> Self {
        Self::Auto { token: None }
    }
}

/// Builds and starts a [`Node`].
#[derive(Debug, Default, Clone)]
pub struct NodeBuilder {
    config: NodeConfig,
}

impl NodeBuilder {
    /// Starts from a full configuration.
    pub fn from_config(config: NodeConfig) -> Self {
        Self { config }
    }

    /// Sets the node's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self.config.host.node_name = self.config.name.clone();
        self
    }

    /// Sets the gRPC listen address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Sets the gRPC address that other nodes reach this one at, when it differs from the
    /// bound one (a port-forward, a container, a load balancer).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.config.advertise = Some(addr.into());
        self
    }

    /// Sets the gossip address that other nodes reach this one at, when it differs from the
    /// bound one.
    pub fn advertise_gossip(mut self, addr: SocketAddr) -> Self {
        self.config.gossip_advertise = Some(addr);
        self
    }

    /// Sets how gossip travels (default [`GossipMode::Udp`]).
    pub fn gossip_mode(mut self, mode: GossipMode) -> Self {
        self.config.gossip_mode = mode;
        self
    }

    /// Accepts no connections: reached through relays ([`NodeConfig::no_inbound`]).
    pub fn no_inbound(mut self, on: bool) -> Self {
        self.config.no_inbound = on;
        self
    }

    /// Bounds the peers with open connections from this node (default 32).
    pub fn max_peers(mut self, max: usize) -> Self {
        self.config.max_peers = max;
        self
    }

    /// Closes a peer's connections after this long unused (default 30 s).
    pub fn peer_idle(mut self, idle: Duration) -> Self {
        self.config.peer_idle = idle;
        self
    }

    /// Sends calls to more than `k` nodes as a tree of relays, at most `k` wide (default 16).
    pub fn fanout(mut self, k: usize) -> Self {
        self.config.fanout = k.max(1);
        self
    }

    /// Serves Prometheus metrics at `http://addr/metrics`; port 0 picks a free port
    /// ([`Node::metrics_addr`](crate::Node::metrics_addr)). Off by default.
    pub fn metrics(mut self, addr: SocketAddr) -> Self {
        self.config.metrics = Some(addr);
        self
    }

    /// Sets how long the node and client certificates this node signs live (defaults 7 and
    /// 30 days).
    pub fn cert_lifetimes(mut self, node: Duration, client: Duration) -> Self {
        self.config.cert_lifetime = node;
        self.config.client_cert_lifetime = client;
        self
    }

    /// Asks to become a CA holder when joining with a token (`--ca-holder`).
    pub fn ca_holder(mut self, yes: bool) -> Self {
        self.config.ca_holder = yes;
        self
    }

    /// Sets how long the join tokens this node makes live (default 24 h).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.config.token_ttl = ttl;
        self
    }

    /// Sets the gossip bind address.
    pub fn gossip(mut self, addr: SocketAddr) -> Self {
        self.config.gossip = addr;
        self
    }

    /// Adds a gossip address to join.
    pub fn join(mut self, addr: SocketAddr) -> Self {
        self.config.join.push(addr);
        self
    }

    /// Adds the gRPC address of a running member to join through.
    pub fn seed(mut self, addr: impl Into<String>) -> Self {
        self.config.seeds.push(addr.into());
        self
    }

    /// Joins an existing cluster with a token (needs a [`seed`](Self::seed)).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.security = SecurityMode::Auto {
            token: Some(token.into()),
        };
        self
    }

    /// Runs without TLS or authentication.
    pub fn insecure(mut self) -> Self {
        self.config.security = SecurityMode::Insecure;
        self
    }

    /// Uses the security material in `dir` (offline PKI).
    pub fn secure_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.security = SecurityMode::Dir(dir.into());
        self
    }

    /// Moves supervised children running here to the node their placement now picks, when
    /// that changes (a node joined). Off by default.
    pub fn rebalance_children(mut self, on: bool) -> Self {
        self.config.rebalance_children = on;
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.labels.insert(key.into(), value.into());
        self
    }

    /// Keeps modules and precompiled artifacts in `dir`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.host.data_dir = Some(dir.into());
        self
    }

    /// Caps what one call may ask for: at most `memory_bytes` of guest memory and a deadline
    /// of at most `timeout` (defaults 256 MiB and 60 s). The default limits are lowered to
    /// these when they are higher.
    pub fn max_limits(mut self, memory_bytes: u64, timeout: Duration) -> Self {
        self.config.max_memory_bytes = memory_bytes;
        self.config.max_timeout = timeout;
        self
    }

    /// Changes any other setting.
    pub fn configure(mut self, f: impl FnOnce(&mut NodeConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Starts the node: binds gRPC, joins the cluster, and serves.
    ///
    /// # Errors
    ///
    /// [`NodeError`] if an address cannot be bound, the host cannot start, or no seed answers.
    pub async fn start(mut self) -> Result<Node, NodeError> {
        self.config.host.node_name = self.config.name.clone();
        // No call runs under more than the maximums, including one that asks for nothing.
        let max = self.config.maximums();
        let defaults = &mut self.config.host.default_limits;
        defaults.memory_bytes = defaults.memory_bytes.min(max.memory_bytes);
        defaults.deadline = defaults.deadline.min(max.timeout);
        Node::start(self.config).await
    }
}
