//! Proof that a join token, or a request for a new one, comes from a CA holder
//! ([`TokenAuthority`]).
//!
//! Any node certificate with the cluster cookie may call node-only methods, but only a CA
//! holder (a node with the CA key) may set the cluster's join token: a token admits joiners,
//! and a joining node receives the CA key. So an offered token and a `cluster token --new`
//! request carry an HMAC keyed by a key derived from the CA private key, which only CA holders
//! can make.

use ring::hmac;
use rustls_pki_types::PrivateKeyDer;

use crate::crypto::{mac, mac_ok, sha256};
use crate::{SecurityError, TokenPolicy, private_key_from_pem};

const KEY_CONTEXT: &[u8] = b"steinadler-token-authority-v1";
const STATE_CONTEXT: &[u8] = b"steinadler-token-state-v1";
const REQUEST_CONTEXT: &[u8] = b"steinadler-new-token-v1";

/// The HMAC key of the CA holders, derived from the CA private key. `Debug` shows nothing.
pub struct TokenAuthority(hmac::Key);

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAuthority([redacted])")
    }
}

impl TokenAuthority {
    /// The key of the CA whose private key is `ca_key_pem`.
    ///
    /// # Errors
    ///
    /// [`SecurityError::Pem`] if the key does not parse.
    pub fn from_ca_key_pem(ca_key_pem: &str) -> Result<TokenAuthority, SecurityError> {
        let key = private_key_from_pem(ca_key_pem)?;
        let der: &[u8] = match &key {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der(),
            PrivateKeyDer::Sec1(k) => k.secret_sec1_der(),
            PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der(),
            _ => &[],
        };
        let seed = sha256(&[KEY_CONTEXT, der].concat());
        Ok(TokenAuthority(hmac::Key::new(hmac::HMAC_SHA256, &seed)))
    }

    /// The HMAC over a token's secret and policy.
    #[must_use]
    pub fn sign_state(&self, secret: &[u8], policy: &TokenPolicy) -> [u8; 32] {
        with_state_fields(secret, policy, |fields| mac(&self.0, fields))
    }

    /// Whether `tag` is the HMAC of this secret and policy.
    #[must_use]
    pub fn state_ok(&self, secret: &[u8], policy: &TokenPolicy, tag: &[u8]) -> bool {
        with_state_fields(secret, policy, |fields| mac_ok(&self.0, fields, tag))
    }

    /// The HMAC over a request for a new token living `ttl_ms` for `max_uses` joins.
    #[must_use]
    pub fn sign_request(&self, ttl_ms: u64, max_uses: u32) -> [u8; 32] {
        let (ttl, uses) = (ttl_ms.to_be_bytes(), max_uses.to_be_bytes());
        mac(&self.0, &[REQUEST_CONTEXT, &ttl, &uses])
    }

    /// Whether `tag` is the HMAC of that request.
    #[must_use]
    pub fn request_ok(&self, ttl_ms: u64, max_uses: u32, tag: &[u8]) -> bool {
        let (ttl, uses) = (ttl_ms.to_be_bytes(), max_uses.to_be_bytes());
        mac_ok(&self.0, &[REQUEST_CONTEXT, &ttl, &uses], tag)
    }
}

fn with_state_fields<R>(secret: &[u8], p: &TokenPolicy, then: impl FnOnce(&[&[u8]]) -> R) -> R {
    let generation = p.generation.to_be_bytes();
    let minted_at = p.minted_at_ms.to_be_bytes();
    let expires = p.expires_at_ms.unwrap_or(0).to_be_bytes();
    let uses = p.max_uses.unwrap_or(0).to_be_bytes();
    then(&[
        STATE_CONTEXT,
        secret,
        &generation,
        p.minted_by.as_bytes(),
        &minted_at,
        &expires,
        &uses,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_ca_key_proves_a_token() {
        let ca = crate::Ca::generate().unwrap();
        let other = crate::Ca::generate().unwrap();
        let a = TokenAuthority::from_ca_key_pem(&ca.key_pem()).unwrap();
        let again = TokenAuthority::from_ca_key_pem(&ca.key_pem()).unwrap();
        let b = TokenAuthority::from_ca_key_pem(&other.key_pem()).unwrap();
        let policy = TokenPolicy::mint(2, "n1", None, Some(1));
        let tag = a.sign_state(&[1; 32], &policy);
        assert!(again.state_ok(&[1; 32], &policy, &tag));
        assert!(!b.state_ok(&[1; 32], &policy, &tag));
        assert!(!a.state_ok(&[2; 32], &policy, &tag));
        let longer = TokenPolicy {
            max_uses: Some(2),
            ..policy.clone()
        };
        assert!(!a.state_ok(&[1; 32], &longer, &tag));
        let tag = a.sign_request(1000, 0);
        assert!(again.request_ok(1000, 0, &tag));
        assert!(!again.request_ok(1000, 1, &tag));
        assert!(!b.request_ok(1000, 0, &tag));
    }
}
