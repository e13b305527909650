//! Request cookies: the header a node puts on every node-to-node request ([`CookieSigner`]) and
//! the check the receiving node makes ([`CookieVerifier`]), proving the sender knows the
//! cluster secret and that the request is fresh and not replayed.
//!
//! Header value: `v1.<ts_ms>.<nonce, 32 hex>.<mac, 64 hex>`, where the MAC is HMAC-SHA256 keyed
//! by [`ClusterSecret::cookie_key`] over the gRPC method path, the timestamp, the nonce and
//! SHA-256 of the body, each length-prefixed.

use std::fmt;
use std::time::Duration;

use moka::sync::Cache;
use ring::hmac;

use crate::crypto::{mac, mac_ok, now_ms, random_bytes, sha256, skew_seconds};
use crate::{AuthError, ClusterSecret};

/// The gRPC metadata key that carries the cookie.
pub const COOKIE_HEADER: &str = "x-steinadler-cookie";
/// How far a cookie's timestamp may be from the receiver's clock, either way: 30 s.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(30);
/// Upper bound on remembered nonces (about 64 MiB at most). Past it the cache evicts, which
/// could let a replay of an evicted nonce through within the window; at 60 s of retention it
/// takes over 15 000 requests per second to get there.
const MAX_NONCES: u64 = 1 << 20;
const VERSION: &str = "v1";

fn window_ms() -> u64 {
    u64::try_from(REPLAY_WINDOW.as_millis()).unwrap_or(u64::MAX)
}

fn cookie_mac_fields<R>(
    key: &hmac::Key,
    method: &str,
    ts_ms: u64,
    nonce: &[u8; 16],
    body: &[u8],
    then: impl FnOnce(&hmac::Key, &[&[u8]]) -> R,
) -> R {
    let body_hash = sha256(body);
    let ts = ts_ms.to_be_bytes();
    then(key, &[method.as_bytes(), &ts, nonce, &body_hash])
}

/// Signs outgoing node-to-node requests.
#[derive(Clone)]
pub struct CookieSigner {
    key: hmac::Key,
}

impl fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSigner { key: [redacted] }")
    }
}

impl CookieSigner {
    /// A signer keyed by the secret's cookie key.
    #[must_use]
    pub fn new(secret: &ClusterSecret) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret.cookie_key()),
        }
    }

    /// The header value for a request to `method` (a gRPC path like
    /// "/steinadler.v1.Node/Invoke") carrying `body`.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    #[must_use]
    pub fn sign(&self, method: &str, body: &[u8]) -> String {
        self.sign_at(method, body, now_ms())
    }

    fn sign_at(&self, method: &str, body: &[u8], ts_ms: u64) -> String {
        let nonce: [u8; 16] = random_bytes();
        let tag = cookie_mac_fields(&self.key, method, ts_ms, &nonce, body, mac);
        format!(
            "{VERSION}.{ts_ms}.{}.{}",
            hex::encode(nonce),
            hex::encode(tag)
        )
    }
}

/// Checks incoming node-to-node requests and remembers their nonces. Clones share the nonce
/// cache, so one verifier (or its clones) must serve all of a node's endpoints.
#[derive(Clone)]
pub struct CookieVerifier {
    key: hmac::Key,
    seen: Cache<[u8; 16], ()>,
}

impl fmt::Debug for CookieVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieVerifier")
            .field("key", &"[redacted]")
            .field("seen_nonces", &self.seen.entry_count())
            .finish()
    }
}

impl CookieVerifier {
    /// A verifier keyed by the secret's cookie key, with an empty nonce cache.
    #[must_use]
    pub fn new(secret: &ClusterSecret) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret.cookie_key()),
            seen: Cache::builder()
                .max_capacity(MAX_NONCES)
                .time_to_live(2 * REPLAY_WINDOW)
                .build(),
        }
    }

    /// Checks the cookie `header` of a request to `method` carrying `body`: format, timestamp
    /// within [`REPLAY_WINDOW`], MAC (constant time), then that the nonce is new. Nonces are
    /// remembered only once the MAC checks out, so garbage cannot fill the cache.
    ///
    /// # Errors
    ///
    /// [`AuthError::Missing`], [`AuthError::Malformed`], [`AuthError::Skew`],
    /// [`AuthError::BadMac`] or [`AuthError::Replay`], in that order of checking.
    pub fn verify(&self, method: &str, body: &[u8], header: Option<&str>) -> Result<(), AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let (ts_ms, nonce, tag) = parse(header)?;
        if let Some(seconds) = skew_seconds(ts_ms, window_ms()) {
            return Err(AuthError::Skew { seconds });
        }
        let ok = cookie_mac_fields(&self.key, method, ts_ms, &nonce, body, |key, fields| {
            mac_ok(key, fields, &tag)
        });
        if !ok {
            return Err(AuthError::BadMac);
        }
        if self.seen.entry(nonce).or_insert(()).is_fresh() {
            Ok(())
        } else {
            Err(AuthError::Replay)
        }
    }
}

fn parse(header: &str) -> Result<(u64, [u8; 16], [u8; 32]), AuthError> {
    let malformed =
        |why: &str| AuthError::Malformed(format!("{why} (expected v1.<ms>.<32 hex>.<64 hex>)"));
    let mut parts = header.split('.');
    let (Some(version), Some(ts), Some(nonce_hex), Some(tag_hex), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(malformed("not four dot-separated parts"));
    };
    if version != VERSION {
        return Err(malformed(&format!("unknown version {version:?}")));
    }
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("the timestamp is not a number"));
    }
    let ts_ms = ts
        .parse::<u64>()
        .map_err(|_| malformed("the timestamp is out of range"))?;
    let mut nonce = [0u8; 16];
    hex::decode_to_slice(nonce_hex, &mut nonce)
        .map_err(|_| malformed("the nonce is not 32 hex digits"))?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(tag_hex, &mut tag)
        .map_err(|_| malformed("the MAC is not 64 hex digits"))?;
    Ok((ts_ms, nonce, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    const METHOD: &str = "/steinadler.v1.Node/Invoke";

    fn pair() -> (CookieSigner, CookieVerifier) {
        let secret = ClusterSecret::from_bytes([5; 32]);
        (CookieSigner::new(&secret), CookieVerifier::new(&secret))
    }

    #[test]
    fn ok_then_replay() {
        let (signer, verifier) = pair();
        let cookie = signer.sign(METHOD, b"body");
        assert!(cookie.starts_with("v1."));
        verifier.verify(METHOD, b"body", Some(&cookie)).unwrap();
        assert_eq!(
            verifier.verify(METHOD, b"body", Some(&cookie)),
            Err(AuthError::Replay)
        );
        // A fresh cookie for the same request is fine.
        verifier
            .verify(METHOD, b"body", Some(&signer.sign(METHOD, b"body")))
            .unwrap();
    }

    #[test]
    fn wrong_secret_method_or_body_is_bad_mac() {
        let (signer, verifier) = pair();
        let other = CookieSigner::new(&ClusterSecret::from_bytes([6; 32]));
        let err = verifier
            .verify(METHOD, b"b", Some(&other.sign(METHOD, b"b")))
            .unwrap_err();
        assert_eq!(err, AuthError::BadMac);
        assert!(err.to_string().contains("wrong cluster cookie"));
        let cookie = signer.sign(METHOD, b"b");
        assert_eq!(
            verifier.verify("/other", b"b", Some(&cookie)),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            verifier.verify(METHOD, b"c", Some(&cookie)),
            Err(AuthError::BadMac)
        );
        // The failed attempts did not burn the nonce.
        verifier.verify(METHOD, b"b", Some(&cookie)).unwrap();
    }

    #[test]
    fn skew_both_ways() {
        let (signer, verifier) = pair();
        let old = signer.sign_at(METHOD, b"", now_ms() - 45_000);
        let err = verifier.verify(METHOD, b"", Some(&old)).unwrap_err();
        assert!(
            matches!(err, AuthError::Skew { seconds: -45 | -46 }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "request timestamp is 45 s away from this node's clock; the window is ±30 s (check \
             the clocks, e.g. NTP)"
        );
        let future = signer.sign_at(METHOD, b"", now_ms() + 60_000);
        assert!(matches!(
            verifier.verify(METHOD, b"", Some(&future)),
            Err(AuthError::Skew { seconds: 59 | 60 })
        ));
        // Within the window is fine.
        let near = signer.sign_at(METHOD, b"", now_ms() - 20_000);
        verifier.verify(METHOD, b"", Some(&near)).unwrap();
    }

    #[test]
    fn missing_and_malformed() {
        let (signer, verifier) = pair();
        assert_eq!(verifier.verify(METHOD, b"", None), Err(AuthError::Missing));
        let good = signer.sign(METHOD, b"");
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            String::new(),
            "garbage".to_owned(),
            format!("v2.{}.{}.{}", parts[1], parts[2], parts[3]),
            format!("v1.x{}.{}.{}", parts[1], parts[2], parts[3]),
            format!("v1.{}.{}.{}", parts[1], &parts[2][1..], parts[3]),
            format!("v1.{}.{}.{}0", parts[1], parts[2], parts[3]),
            format!("{good}.extra"),
            "v1.99999999999999999999999.00.00".to_owned(),
        ];
        for case in cases {
            assert!(
                matches!(
                    verifier.verify(METHOD, b"", Some(&case)),
                    Err(AuthError::Malformed(_))
                ),
                "{case:?}"
            );
        }
        verifier.seen.run_pending_tasks();
        assert_eq!(verifier.seen.entry_count(), 0);
    }
}
