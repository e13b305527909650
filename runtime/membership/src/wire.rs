//! How gossip travels: on its own UDP and TCP port ([`GossipWire::Udp`], memberlist's own
//! network transport), or on the node's authenticated peer connections
//! ([`GossipWire::Links`], the one-port mode).
//!
//! In the one-port mode this crate binds nothing. The node hands it a [`GossipLinks`], its
//! way of sending a packet to a peer and opening a byte stream to one (the node carries them
//! as gRPC calls on its links, under mutual TLS and the cluster cookie), and feeds what peers
//! send into the [`GossipInbox`] that [`Membership::inbox`](crate::Membership::inbox) returns.
//! The memberlist [`Transport`](memberlist::transport::Transport) between the two is
//! `crate::links`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use memberlist::transport::{PacketProducer, StreamProducer};
use smol_str::SmolStr;
use tokio::sync::mpsc;

use crate::links::{Instant, LinkConn};

/// How gossip travels between nodes.
#[derive(Clone, Default)]
pub enum GossipWire {
    /// On its own port: UDP for packets, TCP for streams, encrypted with the gossip keyring.
    #[default]
    Udp,
    /// As frames on the node's peer connections ([`GossipLinks`]): one port for everything.
    Links(Arc<dyn GossipLinks>),
}

impl fmt::Debug for GossipWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Udp => f.write_str("Udp"),
            Self::Links(_) => f.write_str("Links"),
        }
    }
}

/// A node's way of reaching its peers' gossip, for the one-port mode.
///
/// `to` is the peer's gossip address, which in this mode is its advertised gRPC address;
/// `name` is the peer's node name when gossip knows it (it does not yet for a seed), for the
/// TLS check of the peer's certificate.
pub trait GossipLinks: Send + Sync + 'static {
    /// Delivers one best-effort packet. The future may take as long as a connect; memberlist
    /// does not wait for it.
    fn send_packet(
        &self,
        to: SocketAddr,
        name: Option<SmolStr>,
        payload: Bytes,
    ) -> BoxFuture<'static, io::Result<()>>;

    /// Opens a reliable, ordered byte stream to the peer.
    fn open_stream(
        &self,
        to: SocketAddr,
        name: Option<SmolStr>,
    ) -> BoxFuture<'static, io::Result<GossipStream>>;

    /// Whether the links encrypt and authenticate (mutual TLS), so memberlist adds nothing.
    fn secure(&self) -> bool;
}

/// One gossip byte stream, as the node carries it.
#[derive(Debug)]
pub struct GossipStream {
    /// The peer's bytes, in order; an error or the channel's end ends the stream.
    pub incoming: mpsc::Receiver<io::Result<Bytes>>,
    /// This node's bytes to the peer; dropping it ends this side.
    pub outgoing: mpsc::Sender<Bytes>,
}

/// Who is at which gossip address, as gossip says: for the TLS check of a peer dialed by
/// address.
#[derive(Debug, Default)]
pub(crate) struct Names(RwLock<HashMap<SocketAddr, SmolStr>>);

impl Names {
    pub(crate) fn get(&self, addr: &SocketAddr) -> Option<SmolStr> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .cloned()
    }

    /// Records that gossip lists `name` at `addr`.
    pub(crate) fn set(&self, addr: SocketAddr, name: &SmolStr) {
        let mut names = self.0.write().unwrap_or_else(|e| e.into_inner());
        if names.get(&addr) != Some(name) {
            names.insert(addr, name.clone());
        }
    }

    /// Records `name` at `addr` unless gossip already names someone there.
    fn learn(&self, addr: SocketAddr, name: &str) {
        let mut names = self.0.write().unwrap_or_else(|e| e.into_inner());
        names.entry(addr).or_insert_with(|| SmolStr::new(name));
    }

    /// Forgets `addr` if `name` is the one there.
    pub(crate) fn forget(&self, addr: &SocketAddr, name: &SmolStr) {
        let mut names = self.0.write().unwrap_or_else(|e| e.into_inner());
        if names.get(addr) == Some(name) {
            names.remove(addr);
        }
    }
}

/// Where the node delivers the gossip that peers send it in the one-port mode. Cheap to
/// clone.
#[derive(Clone)]
pub struct GossipInbox {
    pub(crate) packets: PacketProducer<SocketAddr, Instant>,
    pub(crate) streams: StreamProducer<SocketAddr, LinkConn>,
    pub(crate) names: Arc<Names>,
}

impl fmt::Debug for GossipInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipInbox").finish_non_exhaustive()
    }
}

impl GossipInbox {
    /// Hands memberlist a packet from the node `sender` (as its certificate names it; `None`
    /// on an insecure cluster) at gossip address `from`. Returns false when it was dropped:
    /// memberlist's queue is full or it stopped. Packets are best-effort, as on UDP.
    pub fn packet(&self, from: SocketAddr, sender: Option<&str>, payload: Bytes) -> bool {
        if let Some(sender) = sender {
            self.names.learn(from, sender);
        }
        let now = <crate::links::Runtime as memberlist::agnostic::RuntimeLite>::now();
        self.packets
            .try_send(memberlist::transport::Packet::new(from, now, payload))
            .is_ok()
    }

    /// Hands memberlist a stream a peer opened.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::ConnectionAborted`] when memberlist stopped.
    pub async fn stream(
        &self,
        from: SocketAddr,
        sender: Option<&str>,
        stream: GossipStream,
    ) -> io::Result<()> {
        if let Some(sender) = sender {
            self.names.learn(from, sender);
        }
        self.streams
            .send(from, LinkConn::new(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::ConnectionAborted, "gossip stopped"))
    }
}
