//! Small crypto primitives the other modules share: SHA-256, randomness, wall-clock
//! milliseconds, and length-prefixed HMAC input so that fields cannot be shifted into each other.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// `N` bytes from the operating system's CSPRNG.
///
/// # Panics
///
/// If the operating system has no randomness to give, which leaves nothing secure to do.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random number generator failed");
    out
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ts_ms - now_ms` in whole seconds, rounded towards zero, if it exceeds `window_ms`.
pub(crate) fn skew_seconds(ts_ms: u64, window_ms: u64) -> Option<i64> {
    skew_seconds_at(ts_ms, window_ms, now_ms())
}

/// [`skew_seconds`] against the clock reading `now` (milliseconds since the Unix epoch).
pub(crate) fn skew_seconds_at(ts_ms: u64, window_ms: u64, now: u64) -> Option<i64> {
    let diff = i128::from(ts_ms) - i128::from(now);
    if diff.unsigned_abs() <= u128::from(window_ms) {
        None
    } else {
        Some(i64::try_from(diff / 1000).unwrap_or(i64::MAX))
    }
}

/// The HMAC input for `fields`: each field as a u32 big-endian length and then its bytes, so
/// that no field can be shifted into its neighbour.
pub(crate) fn mac_input(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for field in fields {
        let len = u32::try_from(field.len()).expect("MAC field longer than 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// HMAC-SHA256 of [`mac_input`]`(fields)`.
pub(crate) fn mac(key: &hmac::Key, fields: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(key, &mac_input(fields)).as_ref());
    out
}

/// Constant-time check of `tag` against the HMAC of `fields`.
pub(crate) fn mac_ok(key: &hmac::Key, fields: &[&[u8]], tag: &[u8]) -> bool {
    hmac::verify(key, &mac_input(fields), tag).is_ok()
}
