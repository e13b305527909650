//! [`Stats`]: the counters a node keeps about its traffic and the requests it refused.

use std::sync::atomic::Ordering;

/// Counters a node keeps about its traffic.
#[derive(Debug, Default)]
pub struct Stats {
    /// Invocations that arrived carrying an argument body at or over the caching threshold.
    pub args_bodies_received: std::sync::atomic::AtomicU64,
    /// Invocations that arrived carrying only an argument hash, served from the cache.
    pub args_cache_hits: std::sync::atomic::AtomicU64,
    /// Modules fetched from peers.
    pub modules_fetched: std::sync::atomic::AtomicU64,
    /// Connections refused during or right after the TLS handshake: plain TCP or HTTP/2, a
    /// foreign CA, an expired or not-yet-valid certificate.
    pub rejected_tls: std::sync::atomic::AtomicU64,
    /// Requests without a client certificate on a method that needs one.
    pub rejected_unauthenticated: std::sync::atomic::AtomicU64,
    /// Client certificates on node-only methods.
    pub rejected_role: std::sync::atomic::AtomicU64,
    /// Node requests with a wrong, stale or replayed cookie.
    pub rejected_cookie: std::sync::atomic::AtomicU64,
    /// Join requests with a bad HMAC, a stale timestamp or a replayed nonce.
    pub rejected_join: std::sync::atomic::AtomicU64,
    /// Renewal requests for a name other than the caller's own, refused.
    pub rejected_renewal: std::sync::atomic::AtomicU64,
    /// Times this node renewed its own certificate.
    pub renewals: std::sync::atomic::AtomicU64,
    /// Attempts to renew this node's certificate that failed (each is retried with backoff).
    pub renewal_failures: std::sync::atomic::AtomicU64,
    /// Streams this node produces right now.
    pub streams_open: std::sync::atomic::AtomicU64,
    /// Items this node's stream producers have produced.
    pub stream_items_produced: std::sync::atomic::AtomicU64,
    /// Tunnels this node relayed for nodes that accept no connections (`--no-inbound`).
    pub tunnels_relayed: std::sync::atomic::AtomicU64,
}

impl Stats {
    /// All rejections of every kind.
    pub fn rejections(&self) -> u64 {
        [
            &self.rejected_tls,
            &self.rejected_unauthenticated,
            &self.rejected_role,
            &self.rejected_cookie,
            &self.rejected_join,
            &self.rejected_renewal,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}
