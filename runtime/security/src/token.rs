//! Join tokens ([`Token`], `SA1-<CA hash>-<secret>`) and the MAC a joining node sends with its
//! CSR ([`join_mac`], [`verify_join_mac`]).
//!
//! The token's CA hash lets the joiner pin the cluster CA before trusting anything; its secret
//! proves to the signing node that the joiner was invited, and authorises the name it asks for.

use std::fmt;
use std::str::FromStr;

use ring::hmac;

use crate::crypto::{mac, mac_ok, sha256, skew_seconds};
use crate::{AuthError, Role, TokenError};

/// Domain separation for the join MAC.
const JOIN_CONTEXT: &[u8] = b"steinadler-join-v1";
/// How far a join request's timestamp may be from the signer's clock: 30 s.
const JOIN_WINDOW_MS: u64 = 30_000;
const PREFIX: &str = "SA1-";

/// A join token: the SHA-256 of the cluster CA certificate and a 32-byte secret.
/// `Display` prints the whole token (secret included); `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// SHA-256 of the CA certificate DER.
    pub ca_hash: [u8; 32],
    /// The shared join secret.
    pub secret: [u8; 32],
}

impl Token {
    /// A token for the CA with this hash and a fresh random secret.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    #[must_use]
    pub fn generate(ca_hash: [u8; 32]) -> Token {
        Token {
            ca_hash,
            secret: crate::random_bytes(),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &hex::encode(self.ca_hash))
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}-{}",
            hex::encode(self.ca_hash),
            hex::encode(self.secret)
        )
    }
}

impl FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.trim().strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        let (hash, secret) = rest.split_once('-').ok_or(TokenError::Shape)?;
        if hash.len() != 64 || secret.len() != 64 {
            return Err(TokenError::Shape);
        }
        let mut token = Token {
            ca_hash: [0; 32],
            secret: [0; 32],
        };
        hex::decode_to_slice(hash, &mut token.ca_hash)
            .map_err(|_| TokenError::Hex { part: "CA hash" })?;
        hex::decode_to_slice(secret, &mut token.secret)
            .map_err(|_| TokenError::Hex { part: "secret" })?;
        Ok(token)
    }
}

fn join_fields<R>(
    secret: &[u8; 32],
    role: Role,
    name: &str,
    csr_der: &[u8],
    ts_ms: u64,
    nonce: &[u8; 16],
    then: impl FnOnce(&hmac::Key, &[&[u8]]) -> R,
) -> R {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let csr_hash = sha256(csr_der);
    let ts = ts_ms.to_be_bytes();
    let fields: [&[u8]; 6] = [
        JOIN_CONTEXT,
        role.as_str().as_bytes(),
        name.as_bytes(),
        &csr_hash,
        &ts,
        nonce,
    ];
    then(&key, &fields)
}

/// HMAC-SHA256 keyed by the token secret over "steinadler-join-v1", role, name,
/// SHA-256(csr_der), `ts_ms` (u64 big-endian) and `nonce`, each length-prefixed.
#[must_use]
pub fn join_mac(
    secret: &[u8; 32],
    role: Role,
    name: &str,
    csr_der: &[u8],
    ts_ms: u64,
    nonce: &[u8; 16],
) -> [u8; 32] {
    join_fields(secret, role, name, csr_der, ts_ms, nonce, mac)
}

/// Checks a join MAC: the timestamp within ±30 s of this clock, then the MAC in constant time.
///
/// # Errors
///
/// [`AuthError::Skew`] for a timestamp outside the window, [`AuthError::BadMac`] for a MAC that
/// does not match (wrong token, or any field changed).
pub fn verify_join_mac(
    secret: &[u8; 32],
    role: Role,
    name: &str,
    csr_der: &[u8],
    ts_ms: u64,
    nonce: &[u8; 16],
    mac: &[u8],
) -> Result<(), AuthError> {
    if let Some(seconds) = skew_seconds(ts_ms, JOIN_WINDOW_MS) {
        return Err(AuthError::Skew { seconds });
    }
    let ok = join_fields(secret, role, name, csr_der, ts_ms, nonce, |key, fields| {
        mac_ok(key, fields, mac)
    });
    if ok { Ok(()) } else { Err(AuthError::BadMac) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::now_ms;

    #[test]
    fn token_round_trip() {
        let token = Token::generate([0xab; 32]);
        let text = token.to_string();
        assert!(text.starts_with("SA1-abab"));
        assert_eq!(text.len(), 4 + 64 + 1 + 64);
        assert_eq!(text.parse::<Token>().unwrap(), token);
        assert_eq!(format!("  {text}\n").parse::<Token>().unwrap(), token);
        assert_eq!(text.to_uppercase().parse::<Token>().unwrap(), token);
        assert!(!format!("{token:?}").contains(&hex::encode(token.secret)));
    }

    #[test]
    fn token_parse_errors() {
        let good = Token::generate([1; 32]).to_string();
        assert_eq!("SA2-00".parse::<Token>(), Err(TokenError::Prefix));
        assert_eq!("SA1-abc".parse::<Token>(), Err(TokenError::Shape));
        assert_eq!(
            good[..good.len() - 1].parse::<Token>(),
            Err(TokenError::Shape)
        );
        let bad_hash = format!("SA1-{}-{}", "g".repeat(64), "0".repeat(64));
        assert_eq!(
            bad_hash.parse::<Token>(),
            Err(TokenError::Hex { part: "CA hash" })
        );
        let bad_secret = format!("SA1-{}-{}", "0".repeat(64), "z".repeat(64));
        assert_eq!(
            bad_secret.parse::<Token>(),
            Err(TokenError::Hex { part: "secret" })
        );
        let msg = TokenError::Shape.to_string();
        assert!(msg.contains("SA1-<64 hex>-<64 hex>"), "{msg}");
    }

    #[test]
    fn join_mac_checks() {
        let secret = [9; 32];
        let nonce = [3; 16];
        let csr = b"csr bytes";
        let ts = now_ms();
        let mac = join_mac(&secret, Role::Node, "n2", csr, ts, &nonce);
        verify_join_mac(&secret, Role::Node, "n2", csr, ts, &nonce, &mac).unwrap();

        let bad = |r: Result<(), AuthError>| assert_eq!(r, Err(AuthError::BadMac));
        bad(verify_join_mac(
            &[8; 32],
            Role::Node,
            "n2",
            csr,
            ts,
            &nonce,
            &mac,
        ));
        bad(verify_join_mac(
            &secret,
            Role::Client,
            "n2",
            csr,
            ts,
            &nonce,
            &mac,
        ));
        bad(verify_join_mac(
            &secret,
            Role::Node,
            "n3",
            csr,
            ts,
            &nonce,
            &mac,
        ));
        bad(verify_join_mac(
            &secret,
            Role::Node,
            "n2",
            b"other",
            ts,
            &nonce,
            &mac,
        ));
        bad(verify_join_mac(
            &secret,
            Role::Node,
            "n2",
            csr,
            ts + 1,
            &nonce,
            &mac,
        ));
        bad(verify_join_mac(
            &secret,
            Role::Node,
            "n2",
            csr,
            ts,
            &[4; 16],
            &mac,
        ));
        bad(verify_join_mac(
            &secret,
            Role::Node,
            "n2",
            csr,
            ts,
            &nonce,
            &mac[..31],
        ));

        let old = ts - 45_000;
        let mac = join_mac(&secret, Role::Node, "n2", csr, old, &nonce);
        let err = verify_join_mac(&secret, Role::Node, "n2", csr, old, &nonce, &mac).unwrap_err();
        assert!(matches!(err, AuthError::Skew { seconds } if (-46..=-44).contains(&seconds)));
        assert!(err.to_string().contains("45 s away"), "{err}");
    }
}
