//! The crate's one error type, [`MembershipError`].
//!
//! memberlist's own error is generic over the transport and delegate types; it is rendered to text
//! here so callers match on our variants and never name memberlist's types.

use std::net::SocketAddr;

/// Everything that can go wrong starting, running or stopping cluster membership.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The encoded [`NodeMeta`](crate::NodeMeta) is larger than memberlist's 512-byte cap.
    ///
    /// memberlist panics on oversized metadata; this crate checks first. Shorten the labels.
    #[error(
        "node metadata is {size} bytes encoded, over the {max}-byte gossip limit; use fewer or shorter labels",
        max = crate::META_MAX_SIZE
    )]
    MetaTooLarge {
        /// The encoded size in bytes.
        size: usize,
    },

    /// [`NodeMeta`](crate::NodeMeta) could not be encoded.
    #[error("could not encode node metadata: {0}")]
    MetaEncode(String),

    /// The configuration is unusable (for example an empty node name).
    #[error("invalid membership configuration: {0}")]
    InvalidConfig(String),

    /// The gossip sockets could not be bound or memberlist could not start.
    #[error("could not start gossip on {addr}: {reason}")]
    Start {
        /// The requested bind address.
        addr: SocketAddr,
        /// memberlist's error, as text.
        reason: String,
    },

    /// None of the seed addresses could be joined.
    #[error(
        "could not join the cluster through any of the seed addresses {seeds:?}: {reason}; \
         check the --join addresses and that those nodes are running (and share the gossip key)"
    )]
    JoinFailed {
        /// The seeds that were tried.
        seeds: Vec<SocketAddr>,
        /// memberlist's error, as text.
        reason: String,
    },

    /// The local node has left or was shut down.
    #[error("membership is not running (the node has left or was shut down)")]
    NotRunning,

    /// The leave message could not be confirmed as sent before the timeout; the node was still
    /// shut down, and the others will detect it by probing instead.
    #[error("timed out broadcasting the leave message; peers will detect the departure by probing")]
    LeaveTimeout,

    /// Gossip encryption was requested but memberlist did not enable it.
    #[error("gossip encryption was configured but memberlist reports it disabled")]
    EncryptionNotEnabled,

    /// A gossip key operation on a node started without a gossip key (plaintext gossip).
    ///
    /// Encryption cannot be switched on at runtime; restart the node with
    /// [`MembershipConfig::gossip_key`](crate::MembershipConfig::gossip_key) set.
    #[error(
        "gossip encryption is off on this node; restart it with a gossip key to use key rotation"
    )]
    GossipEncryptionOff,

    /// The node gossips on its TLS links, which mutual TLS protects: there is no gossip key.
    #[error(
        "this node gossips on its TLS port (--gossip-wire tls), which mutual TLS protects: it has no gossip key to rotate"
    )]
    GossipOnTls,

    /// The gossip key is not in this node's keyring.
    #[error("that gossip key is not installed on this node; install it first")]
    GossipKeyNotInstalled,

    /// The gossip key to remove is this node's primary key, which it encrypts with.
    #[error("cannot remove the primary gossip key; use another key first")]
    RemovePrimaryGossipKey,

    /// Any other memberlist failure, as text.
    #[error("memberlist: {0}")]
    Memberlist(String),
}
