//! The cluster secret ([`ClusterSecret`]): 32 random bytes every node shares, from which the
//! gossip encryption key and the request-cookie key are derived with HKDF-SHA256.

use std::fmt;

use ring::hkdf;

/// HKDF salt for all keys derived from the cluster secret.
const SALT: &[u8] = b"steinadler";
const GOSSIP_INFO: &[u8] = b"steinadler gossip v1";
const COOKIE_INFO: &[u8] = b"steinadler cookie v1";

/// The secret all nodes of a cluster share. `Debug` does not print it.
#[derive(Clone)]
pub struct ClusterSecret([u8; 32]);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret([redacted])")
    }
}

impl ClusterSecret {
    /// A fresh random secret.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    #[must_use]
    pub fn generate() -> Self {
        Self(crate::random_bytes())
    }

    /// The secret with these bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key that encrypts gossip: HKDF-SHA256(salt "steinadler", info "steinadler gossip v1").
    #[must_use]
    pub fn gossip_key(&self) -> [u8; 32] {
        self.derive(GOSSIP_INFO)
    }

    /// The key that signs request cookies: HKDF-SHA256(salt "steinadler", info
    /// "steinadler cookie v1").
    #[must_use]
    pub fn cookie_key(&self) -> [u8; 32] {
        self.derive(COOKIE_INFO)
    }

    fn derive(&self, info: &[u8]) -> [u8; 32] {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(&self.0);
        let info = [info];
        let okm = prk
            .expand(&info, hkdf::HKDF_SHA256)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut out = [0u8; 32];
        okm.fill(&mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_distinct_and_deterministic() {
        let secret = ClusterSecret::from_bytes([7; 32]);
        assert_ne!(secret.gossip_key(), secret.cookie_key());
        assert_ne!(secret.gossip_key(), *secret.as_bytes());
        let same = ClusterSecret::from_bytes([7; 32]);
        assert_eq!(secret.gossip_key(), same.gossip_key());
        assert_eq!(secret.cookie_key(), same.cookie_key());
        let other = ClusterSecret::from_bytes([8; 32]);
        assert_ne!(secret.gossip_key(), other.gossip_key());
        assert_ne!(
            ClusterSecret::generate().as_bytes(),
            ClusterSecret::generate().as_bytes()
        );
        assert!(!format!("{secret:?}").contains('7'));
    }
}
