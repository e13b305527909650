//! Steinadler's connection layer: how nodes reach each other and what arrives at a node.
//!
//! This crate owns every byte between two nodes below the gRPC services and the invoke
//! semantics:
//! - **TLS** ([`tls`](crate::connect)): the server's accept loop, which runs the mutual-TLS
//!   handshake itself, counts refusals and tells HTTP/2 from framed connections; and the
//!   client's dialers, for tonic channels ([`connect`]) and raw byte streams ([`dial`]);
//! - **frames** ([`framing`]): length-prefixed protobuf frames with a writer that needs no
//!   writer task in the common case;
//! - **the link** ([`link`](crate::Transport::channel)): the one connection between two nodes,
//!   opened by either and used by both, carrying the invoke stream and an HTTP/2 connection for
//!   every gRPC service side by side, each once per direction; each end reads it with one task
//!   (`end`);
//! - **the invoke stream** ([`Mux`], and its serving side): invocations, process sends and
//!   calls between nodes, multiplexed on the link and matched by id;
//! - **the peer pool** ([`Transport`]): one link per peer, the one this node dialed or the
//!   one the peer dialed, reused by every call and reopened after it breaks; at most
//!   [`max_peers`](TransportConfig::max_peers) peers open, the least recently used closed
//!   first, and idle peers closed after [`peer_idle`](TransportConfig::peer_idle).
//!
//! - **tunnels** ([`Tunnels`]): links to and from a peer that accepts no connections, run
//!   end to end over a byte stream another node relays.
//!
//! It knows nothing of wasm, the registry or processes. A node gives it two narrow handles:
//! [`Credentials`], which says how to dial a peer (its TLS configuration and the opening's
//! cookie), and a [`Handler`], which authorizes and answers what arrives on invoke streams.
//! Everything else about a call (what an [`InvokeFrame`](steinadler_proto::v1::InvokeFrame)
//! means) stays in the node.
//!
//! # Examples
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn example(creds: Arc<dyn steinadler_transport::Credentials>) -> Result<(), Box<dyn std::error::Error>> {
//! use steinadler_transport::{Transport, TransportConfig};
//! let transport = Transport::new(TransportConfig::default(), creds);
//! let mux = transport.mux("127.0.0.1:7200", "n2").await?;
//! # let _ = mux;
//! # Ok(())
//! # }
//! ```

mod admit;
mod end;
pub mod framing;
mod link;
mod mux;
mod pool;
mod server;
mod table;
mod tls;
mod tunnel;

pub use mux::{Body, Mux, NOT_SENT};
pub use pool::{
    ConnectError, DEFAULT_MAX_PEERS, DEFAULT_PEER_IDLE, PoolStats, Transport, TransportConfig,
};
pub use server::{Handler, INVOKE_STREAM, MAGIC, result_of};
pub use tls::{
    ClientTls, Conn, PeerInfo, TlsConn, TlsRefusal, connect, connect_over, dial, error_chain,
};
pub use tunnel::{ChunkConn, Opening, Tunnel, Tunnels};

/// Locks `m`, going on after a panic elsewhere (every lock here guards bookkeeping that stays
/// consistent between statements).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a node dials its peers: the handle the pool holds on the node's security.
pub trait Credentials: Send + Sync + std::fmt::Debug + 'static {
    /// How to secure a connection to the node `peer`: plaintext on insecure clusters, else
    /// TLS that checks the peer's certificate is issued to `peer`.
    fn client_tls(&self, peer: &str) -> ClientTls;

    /// The cluster cookie for the opening of an invoke stream to `peer`, signed for
    /// [`INVOKE_STREAM`]; empty on insecure clusters.
    fn opening_cookie(&self, peer: &str) -> Vec<u8>;
}
