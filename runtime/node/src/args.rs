//! Content-addressed argument caching.
//!
//! Argument payloads of at least the threshold are named by their SHA-256. A receiving node keeps
//! them in a moka cache bounded by bytes and TTL ([`ArgsCache`]); a sender remembers which peers
//! it believes hold which payloads ([`SentArgs`]) and then sends only the hash. A receiver that
//! lacks the payload answers `ARGS_MISSING` and the sender resends the body.

use bytes::Bytes;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub(crate) type ArgsHash = [u8; 32];

pub(crate) fn hash(args: &[u8]) -> ArgsHash {
    Sha256::digest(args).into()
}

/// Payloads this node holds, by hash.
#[derive(Debug, Clone)]
pub(crate) struct ArgsCache {
    cache: Cache<ArgsHash, Bytes>,
}

impl ArgsCache {
    pub(crate) fn new(max_bytes: u64, ttl: Duration) -> Self {
        let cache = Cache::builder()
            .weigher(|_, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .max_capacity(max_bytes)
            .time_to_live(ttl)
            .build();
        Self { cache }
    }

    pub(crate) fn get(&self, hash: &ArgsHash) -> Option<Bytes> {
        self.cache.get(hash)
    }

    /// Stores a payload under the hash this node computes itself, so no sender can poison it.
    pub(crate) fn insert(&self, body: Bytes) -> ArgsHash {
        let h = hash(&body);
        self.cache.insert(h, body);
        h
    }
}

/// Which peers this node believes hold which payloads. Expires before the receivers' caches
/// usually do; a wrong belief costs one `ARGS_MISSING` round trip.
#[derive(Debug, Clone)]
pub(crate) struct SentArgs {
    known: Cache<(String, ArgsHash), ()>,
}

impl SentArgs {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            known: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub(crate) fn believes(&self, peer: &str, hash: &ArgsHash) -> bool {
        self.known.contains_key(&(peer.to_owned(), *hash))
    }

    pub(crate) fn record(&self, peer: &str, hash: ArgsHash) {
        self.known.insert((peer.to_owned(), hash), ());
    }

    pub(crate) fn forget(&self, peer: &str, hash: &ArgsHash) {
        self.known.invalidate(&(peer.to_owned(), *hash));
    }
}
