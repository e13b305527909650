//! Steinadler's cluster membership: SWIM gossip over the [`memberlist`] crate.
//!
//! This crate owns who is in the cluster and what each node advertises about itself:
//! - [`Membership`]: start a node (bind, join seeds), list the live [`Member`]s, re-advertise
//!   [`NodeMeta`], subscribe to [`MemberEvent`]s, leave gracefully or shut down like a crash;
//! - [`NodeMeta`]: the node's gRPC address, labels, module-set digest and load hint, gossiped as
//!   compact MessagePack within memberlist's 512-byte cap ([`META_MAX_SIZE`]);
//! - [`Profile`]: failure-detector timings (`Local` for loopback and tests, `Lan` otherwise);
//! - [`MembershipError`], the typed error.
//!
//! Node ids are the node names. A node restarted under its old name at a new address is accepted
//! once the others have had it dead for the profile's reclaim time (0.5 s `Local`, 10 s `Lan`):
//! a joining node re-advertises itself once after that time for this reason. RPC, placement and the module index live in the node crate, which
//! uses this one for discovery and failure detection only.
//!
//! # Failure detection with [`Profile::Local`]
//!
//! Chosen values (see [`Profile`] for the reasoning): probe interval 300 ms (400 ms before
//! 2026-12-04), probe timeout
//! 200 ms, 3 indirect probes, `suspicion_mult` 3 (a suspect is declared dead 0.9 s × `log10(n)`
//! later once one other node has suspected it too, 6 times that without a confirmation; before
//! 2026-12-02 it was 2, with no confirmation needed), gossip interval 100 ms, retransmit
//! multiplier 4 (memberlist's `local()` has 2, which left a joiner unknown to one node of four
//! for up to 20 s in about 3% of our starts), push/pull every 5 s.
//!
//! Measured (with `suspicion_mult` 2 and probes every 400 ms, before both changes; not
//! remeasured) on the 2-core
//! development VM over loopback, all nodes in one process, a crash
//! simulated with [`Membership::shutdown`], 30 crashes per row; the time is until *every*
//! survivor had dropped the node from [`Membership::members`]:
//!
//! | cluster | idle: min / median / p90 / max | 2 busy-looping processes: min / median / p90 / max |
//! |---|---|---|
//! | 3 nodes | 1.21 / 1.34 / 1.74 / 1.89 s | 1.26 / 1.54 / 1.74 / 2.26 s |
//! | 4 nodes | 1.24 / 1.54 / 1.80 / 2.14 s | 1.24 / 1.52 / 1.91 / 1.99 s |
//! | 5 nodes | 1.28 / 1.43 / 1.78 / 2.36 s | 1.24 / 1.53 / 2.12 / 2.56 s |
//!
//! The floor is one probe interval plus the 800 ms suspicion timeout. No live node was ever
//! dropped in those runs, nor in a 90 s soak of 5 nodes next to 4 busy-looping processes. A
//! graceful [`Membership::leave`] is noticed by the survivors in about 50 ms. The measurement is
//! `measure_detection` in `tests/detection.rs` (ignored by default).
//!
//! # Wires
//!
//! Gossip travels on its own UDP and TCP port ([`GossipWire::Udp`], memberlist's network
//! transport), or as gRPC calls on the node's authenticated peer links ([`GossipWire::Links`],
//! the one-port mode; see `wire` and `links`). In the one-port mode the links' mutual TLS
//! encrypts and authenticates gossip, and no gossip keyring is used.
//!
//! # Security
//!
//! On its own port, gossip is plaintext unless [`MembershipConfig::gossip_key`] is set, which turns on memberlist's
//! AES-256-GCM for every packet and stream (with incoming verification, so nodes without the key
//! cannot join).
//!
//! ## Key rotation
//!
//! Each node has a keyring: one primary key, which encrypts everything it sends, and any number
//! of secondary keys ([`MembershipConfig::extra_gossip_keys`]), which it accepts for decryption.
//! Keyrings are per node and are not gossiped, so a rotation is three rounds over all nodes, each
//! round finished on every node before the next starts:
//!
//! 1. [`Membership::install_gossip_key`] the new key everywhere (every node can now read it);
//! 2. [`Membership::use_gossip_key`] it everywhere, node by node (each node now sends with it;
//!    the old key is still installed, so traffic from nodes not yet switched is still read);
//! 3. [`Membership::remove_gossip_key`] the old key everywhere.
//!
//! Skipping ahead splits the cluster: a node that used a key the others had not installed was
//! dropped by them, and dropped them, within 1.5–2.5 s on loopback. Keys set at runtime are not
//! persisted: restart a node during a rotation with both keys (the one it was sending with as
//! `gossip_key`, the other in `extra_gossip_keys`), and put only the new key in the configuration
//! once the rotation is done. Measured on loopback with [`Profile::Local`]
//! (`tests/keys.rs`), a 3-node rotation with a 3 s pause after each step lost no member and
//! raised no join or leave event; afterwards a node with only the old key could not join. The crate does not enable memberlist's `tls` feature: it would bring rustls with a
//! second crypto provider (aws-lc-rs) next to tonic's ring, and it covers only the TCP streams.
//!
//! # Examples
//!
//! ```no_run
//! use steinadler_membership::{Membership, MembershipConfig, NodeMeta, Profile};
//!
//! # async fn example() -> Result<(), steinadler_membership::MembershipError> {
//! let node = Membership::start(MembershipConfig {
//!     name: "node-a".to_owned(),
//!     gossip: steinadler_membership::GossipWire::Udp,
//!     gossip_addr: "127.0.0.1:0".parse().unwrap(),
//!     gossip_advertise: None,
//!     seeds: vec!["127.0.0.1:7946".parse().unwrap()],
//!     meta: NodeMeta { grpc_addr: "127.0.0.1:50051".to_owned(), ..NodeMeta::default() },
//!     profile: Profile::Local,
//!     gossip_key: None,
//!     extra_gossip_keys: Vec::new(),
//! })
//! .await?;
//! let mut events = node.subscribe();
//! for member in node.members().await {
//!     println!("{} at {}", member.name, member.meta.grpc_addr);
//! }
//! # let _ = events.recv().await;
//! node.leave(std::time::Duration::from_secs(1)).await?;
//! # Ok(())
//! # }
//! ```

mod delegate;
mod error;
mod links;
mod membership;
mod meta;
mod ml;
mod profile;
mod wire;

use std::net::SocketAddr;

pub use error::MembershipError;
pub use links::{LinkConn, LinkReader, LinkWriter};
pub use membership::{EVENT_CAPACITY, Membership};
pub use meta::{META_MAX_SIZE, NodeMeta};
pub use profile::{
    LOCAL_GOSSIP_INTERVAL, LOCAL_PROBE_INTERVAL, LOCAL_PROBE_TIMEOUT, LOCAL_SUSPICION_MULT, Profile,
};
pub use smol_str::SmolStr;
pub use wire::{GossipInbox, GossipLinks, GossipStream, GossipWire};

/// How to start a [`Membership`].
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// The node's name, unique in the cluster; it is the node's id in gossip.
    pub name: String,
    /// How gossip travels: its own port (the default), or the node's links.
    pub gossip: GossipWire,
    /// Where to bind gossip (UDP and TCP on the same port). Port 0 picks a free port; read it back
    /// with [`Membership::gossip_addr`]. With [`GossipWire::Links`] nothing is bound: this is
    /// the address peers know the node by on its links (its advertised gRPC address), and
    /// [`gossip_advertise`](Self::gossip_advertise) is not used.
    pub gossip_addr: SocketAddr,
    /// The gossip address other nodes reach this one at, when it differs from the bound one (a
    /// port-forward, NAT, a container). `None` advertises the bound address, or for an
    /// unspecified IP (`0.0.0.0`) memberlist's pick, the machine's first private address.
    pub gossip_advertise: Option<SocketAddr>,
    /// Gossip addresses of existing members to join through; empty starts a new cluster.
    pub seeds: Vec<SocketAddr>,
    /// What this node advertises.
    pub meta: NodeMeta,
    /// Failure-detector timings.
    pub profile: Profile,
    /// The primary gossip key: a 32-byte AES-256-GCM key shared by the cluster, used to encrypt
    /// everything this node sends (and tried first to decrypt). `None` gossips in plaintext. A
    /// node that cannot decrypt the others' traffic, or whose traffic they cannot decrypt, cannot
    /// join.
    pub gossip_key: Option<[u8; 32]>,
    /// Secondary gossip keys, accepted for decryption only (never used to encrypt). Usually
    /// empty; during a key rotation a node restarted mid-way lists the other key of the pair
    /// here (see "Key rotation" in the crate docs). Requires [`gossip_key`](Self::gossip_key):
    /// keys without a primary are [`MembershipError::InvalidConfig`]. Duplicates and a copy of
    /// the primary key are ignored.
    pub extra_gossip_keys: Vec<[u8; 32]>,
}

/// A live member of the cluster, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's unique name.
    pub name: String,
    /// The member's gossip address.
    pub gossip_addr: SocketAddr,
    /// What the member advertises.
    pub meta: NodeMeta,
}

/// Who answered a reachability check ([`Membership::reachable`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachable {
    /// The members alive and not suspect, this node included, sorted by name.
    pub alive: Vec<String>,
    /// How many of the others were pinged.
    pub asked: usize,
    /// How many of those acknowledged.
    pub answered: usize,
}

impl Reachable {
    /// How many members answer, estimated from the sample: this node, and the other alive
    /// members in the share that acknowledged (all of them, if none was asked).
    pub fn answering(&self) -> usize {
        let others = self.alive.len().saturating_sub(1);
        if self.asked == 0 {
            return self.alive.len();
        }
        1 + others * self.answered / self.asked
    }
}

/// How many members a node knows, by state ([`Membership::member_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCounts {
    /// Alive and not suspect, this node included.
    pub alive: usize,
    /// Suspected of failure: missed a probe, not yet declared dead.
    pub suspect: usize,
    /// Declared dead or departed, and not yet reclaimed.
    pub down: usize,
}

/// A change in the cluster, about a node other than the local one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A node joined (or came back after being declared dead).
    Joined(Member),
    /// A node advertised new metadata.
    Updated(Member),
    /// A node left gracefully or was declared failed.
    Left {
        /// The departed node's name.
        name: String,
        /// Its gossip address.
        gossip_addr: SocketAddr,
        /// True when it was declared failed (a crash or a partition), false when it left
        /// gracefully.
        failed: bool,
    },
}
