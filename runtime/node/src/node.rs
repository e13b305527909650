//! The [`Node`]: start-up, shared state, links to peers and graceful shutdown. Running
//! functions on this node is in [`crate::local`].

use crate::admission::Admission;
use crate::args::{ArgsCache, SentArgs};
use crate::config::{GossipMode, NodeBuilder, NodeConfig};
use crate::coordinator::NodeResult;
use crate::security::Security;
pub use crate::stats::Stats;
use crate::target::Target;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steinadler_core::{InvokeError, ModuleId};
use steinadler_host::{Host, HostError, LoadedModule};
use steinadler_membership::{GossipWire, Membership, MembershipConfig, MembershipError, NodeMeta};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::node_client::NodeClient;
use steinadler_transport::{ConnectError, Mux, Transport, TransportConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The wasm host could not start.
    #[error(transparent)]
    Host(#[from] HostError),
    /// Gossip could not start or join.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The gRPC address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A request named something that does not exist, or the cluster cannot serve it.
    #[error("{0}")]
    Request(String),
    /// The security material is missing, unreadable or does not fit this node.
    #[error("{0}")]
    Security(String),
    /// Joining with a token failed.
    #[error(transparent)]
    Join(#[from] crate::join::JoinError),
    /// The node cannot tell which address to advertise, or was told one nobody can dial.
    #[error("{0}")]
    Advertise(String),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// What the node knows about a module it holds.
#[derive(Debug, Clone)]
pub(crate) struct ModuleEntry {
    pub(crate) names: Vec<String>,
    pub(crate) size: usize,
    pub(crate) functions: Vec<String>,
}

/// State shared by the gRPC service, the coordinator and background tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: NodeConfig,
    /// The gRPC address gossiped to peers: advertised, or else bound.
    pub(crate) advertised_addr: String,
    /// The bound gRPC address.
    pub(crate) listen_addr: String,
    pub(crate) host: Arc<Host>,
    pub(crate) membership: Membership,
    /// The connection layer: channels and invoke streams to peers, and what arrives.
    pub(crate) peers: Transport,
    pub(crate) security: Arc<Security>,
    pub(crate) processes: crate::processes::Processes,
    pub(crate) registry: crate::registry::Registry,
    pub(crate) supervisor: crate::supervisor::Supervisor,
    /// The members this node knows, for the majority rule of restarts.
    pub(crate) quorum: crate::quorum::Quorum,
    pub(crate) admission: Admission,
    /// Told when what this node advertises in gossip (its load, its modules) may have changed.
    pub(crate) meta_changed: Arc<tokio::sync::Notify>,
    pub(crate) args: ArgsCache,
    pub(crate) sent: SentArgs,
    pub(crate) fetches: moka::future::Cache<ModuleId, Arc<LoadedModule>>,
    pub(crate) modules: Mutex<BTreeMap<ModuleId, ModuleEntry>>,
    pub(crate) stats: Stats,
    /// The dial-out-only nodes this node relays for, and this node's own relays.
    pub(crate) relay: Arc<crate::relay::Switchboard>,
    /// The streams this node's processes serve.
    pub(crate) outlets: crate::streams::outlet::Outlets,
    /// Turns true when the node stops; long-lived streams end then.
    pub(crate) stopping: watch::Receiver<bool>,
}

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
    ticker: JoinHandle<()>,
    watcher: JoinHandle<()>,
    /// The registry's anti-entropy and the supervisor's loop.
    background: Vec<JoinHandle<()>>,
    created_cluster: bool,
    /// Where `/metrics` is served, if it is.
    metrics_addr: Option<SocketAddr>,
}

impl Node {
    /// A builder with default settings: 127.0.0.1 with free ports, no seeds.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    pub(crate) async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Listen {
                addr: config.listen,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
        let listen_addr = local.to_string();
        // Before anything that must be undone: a refusal here leaves nothing running.
        let exporter = match config.metrics {
            Some(addr) => Some(crate::metrics::bind(addr).await?),
            None => None,
        };
        let metrics_addr = exporter.as_ref().and_then(|e| e.local_addr());
        let grpc_addr = if config.no_inbound {
            crate::addresses::no_inbound(&config)?
        } else {
            crate::addresses::grpc(local, config.advertise.as_deref())?
        };
        let gossip_advertise = crate::addresses::gossip(config.gossip, config.gossip_advertise)?;
        let setup = crate::setup::prepare(&config, local, &grpc_addr).await?;
        let host = Arc::new(Host::new(config.host.clone())?);
        let mut seeds = config.join.clone();
        seeds.extend(setup.gossip_seeds.iter().copied());
        // On the TLS port, gossip needs the server up to hear back from the seeds: it joins
        // once the node serves, below.
        let (gossip, gossip_addr, links) = match config.gossip_mode {
            GossipMode::Udp => (GossipWire::Udp, config.gossip, None),
            GossipMode::Tls => {
                let wire = crate::gossip::Wire::new(setup.security.is_secure());
                let addr = crate::addresses::gossip_on_links(&grpc_addr).await?;
                (GossipWire::Links(wire.clone()), addr, Some(wire))
            }
        };
        let on_links = links.is_some();
        // On the links TLS protects gossip: no keyring (docs/topology.md).
        let keys: &[[u8; 32]] = if on_links { &[] } else { &setup.gossip_keys };
        let membership = Membership::start(MembershipConfig {
            name: config.name.clone(),
            gossip,
            gossip_addr,
            gossip_advertise,
            seeds: if on_links { Vec::new() } else { seeds.clone() },
            meta: NodeMeta {
                grpc_addr: grpc_addr.clone(),
                labels: config.labels.clone(),
                modules_digest: 0,
                load: 0,
                relays: Vec::new(),
                ca_holder: crate::ca_holders::holds_key(&setup.security),
            },
            profile: config.profile,
            gossip_key: keys.first().copied(),
            extra_gossip_keys: keys.iter().skip(1).copied().collect(),
        })
        .await?;
        if setup.security.is_secure() && !on_links && !membership.encryption_enabled() {
            let _ = membership.shutdown().await;
            return Err(NodeError::Security(
                "gossip encryption did not turn on although a key was set; refusing to run with plaintext gossip".into(),
            ));
        }
        let (stop, stopped) = watch::channel(false);
        let security = Arc::new(setup.security);
        let peers = Transport::new(
            TransportConfig {
                name: config.name.clone(),
                max_frame_bytes: config.max_message_bytes,
                max_peers: config.max_peers,
                peer_idle: config.peer_idle,
            },
            security.clone(),
        );
        let processes = crate::processes::Processes::new();
        let meta_changed = Arc::new(tokio::sync::Notify::new());
        let inner = Arc::new(Inner {
            advertised_addr: grpc_addr,
            listen_addr,
            host,
            membership,
            peers,
            security,
            registry: crate::registry::Registry::new(&config.name, processes.incarnation),
            supervisor: crate::supervisor::Supervisor::new(&config.name),
            quorum: crate::quorum::Quorum::new(&config.name),
            processes,
            admission: Admission::new(
                config.max_concurrent,
                config.max_queued,
                meta_changed.clone(),
            ),
            meta_changed,
            args: ArgsCache::new(config.args_cache_bytes, config.args_cache_ttl),
            sent: SentArgs::new(config.args_cache_ttl / 2),
            fetches: moka::future::Cache::builder()
                .max_capacity(1024)
                .time_to_live(Duration::from_secs(30))
                .build(),
            modules: Mutex::new(BTreeMap::new()),
            stats: Stats::default(),
            relay: Arc::default(),
            outlets: Default::default(),
            stopping: stopped.clone(),
            config,
        });
        inner
            .peers
            .set_tunnels(crate::dial_out::Dialer::new(&inner));
        let server = tokio::spawn(crate::server::serve(inner.clone(), listener, stopped));
        let ticker = tokio::spawn(crate::local::advertise(inner.clone()));
        let watcher = tokio::spawn(crate::setup::watch_certificates(inner.clone()));
        let mut background = vec![
            tokio::spawn(crate::registry::sync::run(inner.clone())),
            tokio::spawn(crate::supervisor::run::run(inner.clone())),
            tokio::spawn(crate::reconnect::run(inner.clone())),
            tokio::spawn(crate::renew::run(inner.clone())),
            tokio::spawn(crate::tokens::run(inner.clone())),
            tokio::spawn({
                let inner = inner.clone();
                async move { inner.peers.maintain(inner.stopping.clone()).await }
            }),
        ];
        if inner.config.no_inbound {
            background.push(tokio::spawn(crate::dial_out::run(inner.clone())));
        }
        if let Some(exporter) = exporter {
            background.push(crate::metrics::serve(exporter, Arc::downgrade(&inner)));
        }
        tracing::info!(
            node = %inner.config.name, grpc = %inner.advertised_addr,
            gossip = %inner.membership.gossip_addr(), secure = inner.security.is_secure(),
            "node started"
        );
        let node = Self {
            inner,
            stop,
            server: Mutex::new(Some(server)),
            ticker,
            watcher,
            background,
            created_cluster: setup.created,
            metrics_addr,
        };
        if let Some(links) = links {
            links.bind(&node.inner);
            if let Err(e) = node.inner.membership.join_cluster(&seeds).await {
                node.kill().await;
                return Err(e.into());
            }
        }
        Ok(node)
    }

    /// Whether links use mutual TLS (false only with [`SecurityMode::Insecure`](crate::SecurityMode)).
    pub fn is_secure(&self) -> bool {
        self.inner.security.is_secure()
    }

    /// A token that admits new nodes and CLI users through this node, if it may sign.
    pub fn join_token(&self) -> Option<String> {
        self.inner
            .security
            .loaded()
            .and_then(|l| l.material.token())
            .map(|t| t.to_string())
    }

    /// True when this node created a new cluster at start (no material and no token).
    pub fn created_cluster(&self) -> bool {
        self.created_cluster
    }

    /// Re-reads the certificates from disk now, as SIGHUP does.
    ///
    /// # Errors
    ///
    /// [`NodeError::Security`] if the files cannot be read; the old certificates stay.
    pub fn reload_certificates(&self) -> Result<(), NodeError> {
        self.inner
            .security
            .reload()
            .map_err(|e| NodeError::Security(e.to_string()))?;
        self.inner.peers.clear();
        Ok(())
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> &str {
        &self.inner.listen_addr
    }

    /// The gRPC address gossiped to peers: the advertised one, or else the bound one.
    pub fn advertised_addr(&self) -> &str {
        &self.inner.advertised_addr
    }

    /// Whether this node accepts no connections from peers ([`NodeConfig::no_inbound`]).
    pub fn accepts_no_connections(&self) -> bool {
        self.inner.config.no_inbound
    }

    /// How many peers this node holds open connections to, and the bound.
    pub fn peer_pool(&self) -> steinadler_transport::PoolStats {
        self.inner.peers.pool()
    }

    /// The peers whose connections (links) to this node it serves now, one name per
    /// connection, sorted; empty names on insecure clusters.
    pub fn inbound_peers(&self) -> Vec<String> {
        self.inner.peers.inbound_peers()
    }

    /// Where this node serves Prometheus metrics (`http://ADDR/metrics`), if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The bound gossip address, for others to `--join`.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.inner.membership.gossip_addr()
    }

    /// How many invocations run on this node now: the load it advertises to its peers.
    pub fn load(&self) -> u32 {
        self.inner.admission.load()
    }

    /// This node's traffic counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The gossip layer: its keys, events and failure detector.
    pub fn membership(&self) -> &Membership {
        &self.inner.membership
    }

    /// The live members as this node sees them, itself included.
    pub async fn members(&self) -> Vec<steinadler_membership::Member> {
        self.inner.membership.members().await
    }

    /// Waits until this node sees at least `count` live members, itself included.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if that does not happen within `timeout`.
    pub async fn wait_for_members(&self, count: usize, timeout: Duration) -> Result<(), NodeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.members().await.len();
            if seen >= count {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NodeError::Request(format!(
                    "{} sees {seen} of {count} members after {timeout:?}; check the --join addresses",
                    self.name()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Loads a module on this node and names it.
    ///
    /// # Errors
    ///
    /// [`InvokeError::InvalidModule`] for bytes that are not a Steinadler module.
    pub async fn deploy(&self, name: &str, bytes: &[u8]) -> Result<ModuleId, InvokeError> {
        let module = self.inner.load(bytes.to_vec()).await?;
        self.inner.name_module(name, &module);
        Ok(module.id())
    }

    /// Runs `function` of `module` (a name or id) on the nodes `target` selects, concurrently.
    ///
    /// # Errors
    ///
    /// [`NodeError::Request`] if the module is unknown in the cluster or no live node matches;
    /// each node's own failure is in its [`NodeResult`].
    pub async fn invoke(
        &self,
        target: &Target,
        module: &str,
        function: &str,
        args: &[u8],
    ) -> Result<Vec<NodeResult>, NodeError> {
        let request = crate::coordinator::Request {
            target: target.clone(),
            module: module.to_owned(),
            function: function.to_owned(),
            args: Bytes::copy_from_slice(args),
            limits: pb::Limits::default(),
            idempotent: false,
        };
        crate::coordinator::invoke_on(&self.inner, request)
            .await
            .map_err(|s| NodeError::Request(s.message().to_owned()))
    }

    /// Leaves the cluster, stops accepting calls, and drains in-flight calls up to the
    /// configured timeout.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.membership.leave(Duration::from_secs(1)).await {
            tracing::warn!("leaving the cluster: {e}");
        }
        let _ = self.stop.send(true);
        // Our streams to peers end too, so that their servers can drain.
        self.inner.peers.clear();
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server
            && tokio::time::timeout(self.inner.config.drain_timeout, server)
                .await
                .is_err()
        {
            tracing::warn!("in-flight calls did not drain within the timeout");
        }
        self.ticker.abort();
        self.watcher.abort();
        self.background.iter().for_each(JoinHandle::abort);
        tracing::info!(node = %self.inner.config.name, "node stopped");
    }

    /// Stops gossip and the server at once, without leaving: a crash, for tests. Calls in
    /// flight are dropped unanswered, and every connection closes.
    pub async fn kill(&self) {
        self.inner.peers.crash();
        let _ = self.inner.membership.shutdown().await;
        let _ = self.stop.send(true);
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server {
            server.abort();
        }
        self.ticker.abort();
        self.watcher.abort();
        self.background.iter().for_each(JoinHandle::abort);
    }
}

impl Inner {
    /// The invocation stream to the peer `name` at `addr`, opened on first use and again after
    /// it breaks.
    pub(crate) async fn mux(&self, addr: &str, name: &str) -> Result<Arc<Mux>, String> {
        self.peers.mux(addr, name).await
    }

    /// A client for the peer `name` at `addr`, over TLS unless the node is insecure.
    pub(crate) async fn peer(
        &self,
        addr: &str,
        name: &str,
    ) -> Result<NodeClient<Channel>, ConnectError> {
        let channel = self.peer_channel(addr, name).await?;
        Ok(NodeClient::new(channel)
            .max_decoding_message_size(self.config.max_message_bytes)
            .max_encoding_message_size(self.config.max_message_bytes))
    }

    /// The channel to the peer `name` at `addr`, for any of the node's services.
    pub(crate) async fn peer_channel(
        &self,
        addr: &str,
        name: &str,
    ) -> Result<Channel, ConnectError> {
        self.peers.channel(addr, name).await
    }
}
