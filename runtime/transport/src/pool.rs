//! [`Transport`]: a node's connections to its peers, and the bookkeeping of what arrives.
//!
//! The pool holds, per peer name, at most one link ([`crate::link`]): one connection that
//! carries the invoke stream ([`Mux`]) and an HTTP/2 channel for the gRPC services, reused by
//! every call and reopened after it breaks. The link may be one this node dialed, or one the
//! peer dialed: either end calls on it, so two nodes that call each other hold one connection
//! ([`crate::table`]). It is bounded:
//! - at most [`TransportConfig::max_peers`] peers have links in use; opening one more
//!   first lets go of the least recently used peer's (a call to a named node always opens, and
//!   then counts toward the bound);
//! - a peer unused for [`TransportConfig::peer_idle`] is let go by [`Transport::maintain`].
//!
//! Background traffic (anti-entropy) uses [`Transport::background_channel`]: using a
//! connection does not keep it open, and it opens one only while the pool has room, so it
//! never closes a connection that calls use.
//!
//! Letting a peer go drops the pool's handles only: calls in flight, and streams that hold
//! their own channel, finish on the old connection, which closes after them, once the peer is
//! done with it too.
//!
//! Opening waits only on opens to the same peer: each peer has its own lock, so a dial to a
//! peer that does not answer never holds up calls to the others.
//!
//! [`endpoint`] is the only place a connection's HTTP/2 settings are made; TLS is layered on by
//! [`crate::connect`].

use crate::Credentials;
use crate::end::{Answering, Serve};
use crate::link::H2Pipe;
use crate::lock;
use crate::mux::Mux;
use crate::server::Handler;
use crate::table::{Link, Table};
use crate::tls::{self, TlsConn};
use crate::tunnel::{Tunnel, Tunnels};
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Settings of the connection layer.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// This node's name, which its openings claim (insecure clusters know a peer by it).
    pub name: String,
    /// The largest frame read from an invoke stream, in bytes.
    pub max_frame_bytes: usize,
    /// At most this many peers have open connections from this node.
    pub max_peers: usize,
    /// A peer's connections close after this long unused.
    pub peer_idle: Duration,
}

/// The default bound on open peer connections.
pub const DEFAULT_MAX_PEERS: usize = 32;
/// The default idle time after which a peer's connections close.
pub const DEFAULT_PEER_IDLE: Duration = Duration::from_secs(30);

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            max_frame_bytes: 64 << 20,
            max_peers: DEFAULT_MAX_PEERS,
            peer_idle: DEFAULT_PEER_IDLE,
        }
    }
}

/// A node's connection layer: "a connection to peer X" ([`Transport::channel`],
/// [`Transport::mux`]) and "serve what arrives" ([`Transport::incoming_tls`],
/// [`Transport::incoming_plain`]).
#[derive(Debug)]
pub struct Transport {
    config: TransportConfig,
    creds: Arc<dyn Credentials>,
    /// The links in use, by peer name.
    table: Arc<Table>,
    /// The invoke streams peers opened to this node, drained on shutdown.
    served: tokio_util::task::TaskTracker,
    /// Turns true on [`Transport::crash`]: served streams end at once, their calls dropped.
    crashed: watch::Sender<bool>,
    /// The links peers opened to this node and that it serves, by peer.
    links: Arc<crate::link::Served>,
    /// How links serve the peer's calls, once the node serves ([`Transport::incoming_tls`]).
    serve: OnceLock<Serve>,
    /// Links dialed so far.
    dialed: std::sync::atomic::AtomicU64,
    /// How peers that accept no connections are reached ([`Transport::set_tunnels`]).
    tunnels: OnceLock<Arc<dyn Tunnels>>,
}

/// Who uses a connection, which decides whether it counts as used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A call: the connection stays open while calls keep coming.
    Call,
    /// Background traffic: kept if opened, but using it does not keep it open.
    Background,
    /// Background traffic while the pool is full: an existing connection, or one not kept.
    Once,
}

/// A peer could not be connected to; the request was never sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {addr}: {detail}")]
pub struct ConnectError {
    /// The address tried.
    pub addr: String,
    /// The error with its causes (a certificate problem shows up only in the causes).
    pub detail: String,
}

/// What [`Transport::pool`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Peers with a link this node uses: one it opened, or one the peer opened.
    pub open_peers: usize,
    /// Of those, the peers reached over a link they opened.
    pub reverse_peers: usize,
    /// The bound on them.
    pub max_peers: usize,
    /// Links that peers opened to this node and that are still served.
    pub inbound_streams: usize,
    /// Open links from this node that have carried invoke frames (not only gRPC calls).
    pub open_streams: usize,
    /// Links this node has dialed since it started.
    pub dialed: u64,
}

impl Transport {
    /// A connection layer that dials with `creds`.
    pub fn new(config: TransportConfig, creds: Arc<dyn Credentials>) -> Self {
        Self {
            table: Arc::new(Table::new(config.max_peers)),
            config,
            creds,
            served: tokio_util::task::TaskTracker::new(),
            crashed: watch::Sender::new(false),
            links: Arc::default(),
            serve: OnceLock::new(),
            dialed: std::sync::atomic::AtomicU64::new(0),
            tunnels: OnceLock::new(),
        }
    }

    /// The peers whose links to this node it serves now, one name per link, sorted: the name
    /// each peer's certificate gives, or empty on insecure clusters.
    pub fn inbound_peers(&self) -> Vec<String> {
        self.links.peers()
    }

    /// The channel to the node `name` at `addr`, connecting first if there is none yet.
    /// With TLS on, the peer's certificate must be issued to `name`.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] if the peer cannot be reached or its handshake fails.
    pub async fn channel(&self, addr: &str, name: &str) -> Result<Channel, ConnectError> {
        self.channel_for(addr, name, Use::Call).await
    }

    /// As [`Transport::channel`], for background traffic (anti-entropy): using a connection
    /// does not keep it from closing when idle, and one is opened only while the pool has room
    /// ([`Transport::has_room`]); when it has none, the connection is not kept.
    ///
    /// # Errors
    ///
    /// As [`Transport::channel`].
    pub async fn background_channel(
        &self,
        addr: &str,
        name: &str,
    ) -> Result<Channel, ConnectError> {
        let how = if self.has_room() {
            Use::Background
        } else {
            Use::Once
        };
        self.channel_for(addr, name, how).await
    }

    async fn channel_for(&self, addr: &str, name: &str, how: Use) -> Result<Channel, ConnectError> {
        let touch = how == Use::Call;
        if let Some(channel) = self.table.lookup(addr, name, touch, |l| l.channel.clone()) {
            return Ok(channel);
        }
        if how == Use::Once {
            return Ok(self.open_link(addr, name, false).await?.channel);
        }
        Ok(self.link(addr, name, touch).await?.channel)
    }

    /// The link to `name`, opened (and kept) if there is none.
    async fn link(&self, addr: &str, name: &str, touch: bool) -> Result<Link, ConnectError> {
        // Boxed: every call's future would otherwise carry room for a TLS dial.
        Box::pin(async {
            let _opening = self.table.opening(addr, name).await;
            if let Some(link) = self.table.lookup(addr, name, touch, Link::clone) {
                return Ok(link);
            }
            let link = self.open_link(addr, name, true).await?;
            self.table.keep(addr, name, link.clone());
            Ok(link)
        })
        .await
    }

    /// Dials `name` at `addr` and opens a link: the invoke stream, then HTTP/2 on it. `kept`
    /// says whether this node keeps it in its pool, and so whether the peer may keep it in
    /// its own: a link for one call closes once that call is done.
    async fn open_link(&self, addr: &str, name: &str, kept: bool) -> Result<Link, ConnectError> {
        let failed = |detail: String| ConnectError {
            addr: addr.to_owned(),
            detail,
        };
        let tunnel = self.tunnels.get().map(|t| t.tunnel(name));
        let (mux, pipe) = Mux::open(
            (&*self.creds, tunnel),
            (&self.config.name, kept),
            (addr, name),
            self.config.max_frame_bytes,
            self.serve.get().cloned(),
            self.crashed.subscribe(),
        )
        .await
        .map_err(|s| failed(s.message().to_owned()))?;
        let channel = channel_over(addr, pipe)
            .await
            .map_err(|e| failed(tls::error_chain(&e)))?;
        self.dialed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Link {
            mux: Arc::new(mux),
            channel,
        })
    }

    /// As [`Transport::channel`], on the pooled connection if there is one, else on a new one
    /// that is not kept: for a rare call to a peer outside the connected ones.
    ///
    /// # Errors
    ///
    /// As [`Transport::channel`].
    pub async fn probe_channel(&self, addr: &str, name: &str) -> Result<Channel, ConnectError> {
        self.channel_for(addr, name, Use::Once).await
    }

    /// The names of the peers with links this node uses.
    pub fn connected(&self) -> Vec<String> {
        self.table.connected()
    }

    /// Whether one more peer can be opened without closing another's connections.
    pub fn has_room(&self) -> bool {
        self.table.has_room()
    }

    /// The invocation stream to the peer `name` at `addr`, opened on first use and again after
    /// it breaks.
    ///
    /// # Errors
    ///
    /// Why the stream could not be opened, as a message.
    pub async fn mux(&self, addr: &str, name: &str) -> Result<Arc<Mux>, String> {
        // Only the mux: cloning the channel too costs an allocation and two atomic updates
        // shared by every caller, on every call.
        if let Some(mux) = self.table.lookup(addr, name, true, |l| l.mux.clone()) {
            return Ok(mux);
        }
        self.link(addr, name, true)
            .await
            .map(|l| l.mux)
            .map_err(|e| format!("cannot open the invoke stream to {name}: {}", e.detail))
    }

    /// Lets go of the links of peers unused for the idle time; returns when the next one
    /// would be due, or `None` if no peer is open.
    pub fn close_idle(&self) -> Option<Instant> {
        self.table.close_idle(self.config.peer_idle)
    }

    /// Closes idle peers' connections as they fall due, until `stopping` turns true. Sleeps
    /// while no peer is open.
    pub async fn maintain(&self, mut stopping: watch::Receiver<bool>) {
        loop {
            let next = self.close_idle();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => self.table.added.notified().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    }

    /// The pool's occupancy now.
    pub fn pool(&self) -> PoolStats {
        let counts = self.table.counts();
        PoolStats {
            open_peers: counts.open,
            reverse_peers: counts.inbound,
            max_peers: self.config.max_peers,
            inbound_streams: self.served.len(),
            open_streams: counts.used_streams,
            dialed: self.dialed.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Forgets every channel and stream, so the next calls connect with fresh certificates.
    pub fn clear(&self) {
        self.table.clear();
    }

    /// Accepts connections on `listener` and runs their TLS handshakes until `stopped`:
    /// yields those that speak HTTP/2, for tonic, and serves invoke streams with `handler`.
    pub fn incoming_tls<H: Handler>(
        &self,
        handler: Arc<H>,
        listener: TcpListener,
        stopped: watch::Receiver<bool>,
    ) -> ReceiverStream<io::Result<TlsConn>> {
        let (serve, conns) = self.serving(handler.clone(), stopped.clone(), true);
        tls::incoming(handler, listener, stopped, serve);
        conns
    }

    /// As [`Transport::incoming_tls`], in plaintext (`--insecure` clusters).
    pub fn incoming_plain<H: Handler>(
        &self,
        handler: Arc<H>,
        listener: TcpListener,
        stopped: watch::Receiver<bool>,
    ) -> ReceiverStream<io::Result<TlsConn>> {
        let (serve, conns) = self.serving(handler, stopped.clone(), false);
        tls::plain_incoming(listener, stopped, serve);
        conns
    }

    /// Tells the pool how to reach peers that accept no connections: before it dials a peer
    /// it asks `tunnels` for a tunnel to it through a relay. Set once; later calls are
    /// ignored.
    pub fn set_tunnels(&self, tunnels: Arc<dyn Tunnels>) {
        let _ = self.tunnels.set(tunnels);
    }

    /// Serves a tunnel that a relay brought, as if this node's listener had accepted it: the
    /// TLS handshake, then the link's opening. For a node that accepts no connections
    /// (`--no-inbound`), its only way in. Does nothing before the node serves.
    pub fn accept_tunnel(&self, tunnel: Tunnel) {
        if let Some(serve) = self.serve.get().cloned() {
            tokio::spawn(crate::tunnel::serve(tunnel, serve));
        }
    }

    /// What served links share, and the stream of HTTP/2 connections for tonic. Links this
    /// node dials from now on serve the peer's calls with it too.
    fn serving<H: Handler>(
        &self,
        handler: Arc<H>,
        stopping: watch::Receiver<bool>,
        secure: bool,
    ) -> (Serve, ReceiverStream<io::Result<TlsConn>>) {
        let (h2, conns) = tokio::sync::mpsc::channel(64);
        let serving = crate::server::Serving {
            tracker: self.served.clone(),
            stopping,
            crashed: self.crashed.subscribe(),
            max_frame: self.config.max_frame_bytes,
            h2,
            served: self.links.clone(),
            table: self.table.clone(),
            creds: self.creds.clone(),
        };
        let serve = Serve {
            handler: Arc::new(Answering(handler)),
            serving,
            secure,
        };
        let _ = self.serve.set(serve.clone());
        (serve, ReceiverStream::new(conns))
    }

    /// Drops every connection at once, as a crash would: served invoke streams end without
    /// answering their calls in flight, and the pool forgets its peers. For tests of failure.
    pub fn crash(&self) {
        self.crashed.send_replace(true);
        self.clear();
    }

    /// Waits until the invoke streams peers opened to this node have finished their calls in
    /// flight (they stop reading when the node stops).
    pub async fn drain(&self) {
        self.served.close();
        self.served.wait().await;
    }
}

/// A tonic channel whose one connection is `pipe`, a link's HTTP/2 client side; `addr` names
/// the peer in the channel's URIs.
pub(crate) async fn channel_over(
    addr: &str,
    pipe: H2Pipe,
) -> Result<Channel, tonic::transport::Error> {
    let pipe = Arc::new(Mutex::new(Some(pipe)));
    let connector = tower::service_fn(move |_: http::Uri| {
        let pipe = lock(&pipe).take();
        async move {
            pipe.map(hyper_util::rt::TokioIo::new).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the link closed; the next call opens a new one",
                )
            })
        }
    });
    endpoint(addr)?.connect_with_connector(connector).await
}

/// The one place a connection is configured.
pub(crate) fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5)))
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
