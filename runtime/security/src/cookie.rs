//! Request cookies: the header a node puts on every node-to-node request ([`CookieSigner`]) and
//! the check the receiving node makes ([`CookieVerifier`]), proving the sender knows the
//! cluster secret and that the request is fresh and not replayed.
//!
//! Header value: `v1.<ts_ms>.<nonce, 32 hex>.<mac, 64 hex>`, where the MAC is HMAC-SHA256 keyed
//! by [`ClusterSecret::cookie_key`] over the gRPC method path, the timestamp, the nonce and
//! SHA-256 of the body, each length-prefixed.
//!
//! # Nonces and replay protection
//!
//! The 16-byte nonce is a **sender id** (8 random bytes drawn once per [`CookieSigner::new`])
//! followed by a **counter** (u64 big-endian, starting at 1, incremented atomically per cookie
//! and shared by a signer's clones). A nonce is therefore unique per signer without any
//! randomness on the signing path.
//!
//! The verifier keeps, per sender id, an IPsec-style anti-replay window (as in RFC 4303
//! §3.4.3, only wider): the highest counter accepted and a bitmap of the 65 536 counters up to
//! it (8 KiB). A counter above the highest slides the window; one inside it is accepted once;
//! one 65 536 or more below the highest is refused as [`AuthError::Replay`], since whether it
//! was seen can no longer be told. The window absorbs reordering between a sender's concurrent
//! requests. A signer's counter advances for requests to every destination, so the window
//! spans the sender's last 65 536 cookies overall: at 80 000 cookies a second, a request
//! overtaken by everything its node signed in the following 0.8 s is refused.
//!
//! Compared with a cache of every nonce seen, this is
//! - **exact**: nothing is forgotten while it could still be replayed, at any request rate (a
//!   bounded nonce cache lets an evicted nonce through again once it fills up);
//! - **O(1)** per request: a hash lookup of the sender and a few bit operations under a mutex
//!   held briefly (a jump far ahead clears at most the 8 KiB bitmap), with no allocation
//!   except for a new sender;
//! - **syscall-free** when signing: no operating-system randomness per cookie.
//!
//! Windows are touched only after the timestamp and the MAC check out, so only holders of the
//! cluster secret can add senders. A sender not seen for more than 2 × [`REPLAY_WINDOW`] is
//! forgotten (lazily, when a new sender arrives, at most once a second). That is safe: every
//! cookie of it that was accepted carries a timestamp at most [`REPLAY_WINDOW`] past the moment
//! it was accepted, so by then all of them fail the timestamp check. At most 16 384 senders
//! (about 130 MiB of windows) are tracked; a new sender beyond that is refused, rather than
//! forgetting the state of a known one early. Reaching it takes over 270 new signers a second,
//! sustained for a minute.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ring::hmac;

use crate::crypto::{mac, mac_ok, now_ms, random_bytes, sha256, skew_seconds_at};
use crate::{AuthError, ClusterSecret};

/// The gRPC metadata key that carries the cookie.
pub const COOKIE_HEADER: &str = "x-steinadler-cookie";
/// How far a cookie's timestamp may be from the receiver's clock, either way: 30 s.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(30);
/// Counters each sender's anti-replay window covers: 65 536, a bitmap of 8 KiB per sender.
const WINDOW_BITS: u64 = 1 << 16;
const WINDOW_WORDS: usize = 1 << 10;
/// Most senders a verifier tracks at once: at most about 130 MiB of windows.
const MAX_SENDERS: usize = 16_384;
/// Least time between two sweeps for idle senders.
const GC_EVERY_MS: u64 = 1_000;
const VERSION: &str = "v1";

const _: () = assert!(WINDOW_WORDS as u64 * 64 == WINDOW_BITS);

/// Eight random bytes naming one [`CookieSigner`] (and its clones).
type SenderId = [u8; 8];

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

fn make_nonce(sender: SenderId, counter: u64) -> [u8; 16] {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&sender);
    nonce[8..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

fn split_nonce(nonce: &[u8; 16]) -> (SenderId, u64) {
    let mut sender = [0u8; 8];
    sender.copy_from_slice(&nonce[..8]);
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&nonce[8..]);
    (sender, u64::from_be_bytes(counter))
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Signs outgoing node-to-node requests. Clones share the sender id and the counter, so their
/// nonces never repeat either.
#[derive(Clone)]
pub struct CookieSigner {
    key: hmac::Key,
    sender: SenderId,
    counter: Arc<AtomicU64>,
}

impl fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieSigner")
            .field("key", &"[redacted]")
            .field("sender", &hex::encode(self.sender))
            .field("next_counter", &self.counter.load(Ordering::Relaxed))
            .finish()
    }
}

impl CookieSigner {
    /// A signer keyed by the secret's cookie key, with a new random sender id. Create one per
    /// process (or share it): every signer is one more sender for the verifiers to track.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    #[must_use]
    pub fn new(secret: &ClusterSecret) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret.cookie_key()),
            sender: random_bytes(),
            counter: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The header value for a request to `method` (a gRPC path like
    /// "/steinadler.v1.Node/Invoke") carrying `body`.
    #[must_use]
    pub fn sign(&self, method: &str, body: &[u8]) -> String {
        self.sign_at(method, body, now_ms())
    }

    fn sign_at(&self, method: &str, body: &[u8], ts_ms: u64) -> String {
        // Uniqueness needs only atomicity; a u64 does not wrap in practice.
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let nonce = make_nonce(self.sender, counter);
        let tag = cookie_mac_fields(&self.key, method, ts_ms, &nonce, body, mac);
        // "v1." + up to 20 digits + "." + 32 hex + "." + 64 hex.
        let mut out = String::with_capacity(VERSION.len() + 20 + 2 * (16 + 32) + 3);
        out.push_str(VERSION);
        // Writing to a String cannot fail.
        let _ = write!(out, ".{ts_ms}.");
        push_hex(&mut out, &nonce);
        out.push('.');
        push_hex(&mut out, &tag);
        out
    }
}

/// What a sender's window says about a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not seen before; now marked as seen.
    Fresh,
    /// Inside the window and already seen.
    Seen,
    /// At least [`WINDOW_BITS`] below the highest counter seen: too old to tell.
    TooOld,
}

/// One sender's anti-replay window: the highest counter seen and, at bit `c % WINDOW_BITS`,
/// whether counter `c` in `highest - WINDOW_BITS + 1 ..= highest` was seen.
struct Window {
    highest: u64,
    /// The verifier's clock (ms) when the sender was last seen, for dropping idle senders.
    last_seen_ms: u64,
    bits: Box<[u64]>,
}

impl Window {
    /// A window whose only counter seen is `counter`.
    fn new(counter: u64, now_ms: u64) -> Self {
        let mut window = Self {
            highest: counter,
            last_seen_ms: now_ms,
            bits: vec![0; WINDOW_WORDS].into_boxed_slice(),
        };
        window.bits[Self::word(counter)] |= Self::mask(counter);
        window
    }

    fn word(counter: u64) -> usize {
        // Below WINDOW_WORDS, so the cast is lossless.
        ((counter % WINDOW_BITS) / 64) as usize
    }

    fn mask(counter: u64) -> u64 {
        1 << (counter % 64)
    }

    /// Checks `counter` and marks it seen if it is fresh.
    fn check(&mut self, counter: u64) -> Verdict {
        if counter > self.highest {
            let ahead = counter - self.highest;
            if ahead >= WINDOW_BITS {
                self.bits.fill(0);
            } else {
                // The slots of highest+1 ..= counter held counters that now leave the window.
                self.clear(self.highest + 1, ahead);
            }
            self.highest = counter;
        } else if self.highest - counter >= WINDOW_BITS {
            return Verdict::TooOld;
        }
        let (word, mask) = (Self::word(counter), Self::mask(counter));
        if self.bits[word] & mask != 0 {
            return Verdict::Seen;
        }
        self.bits[word] |= mask;
        Verdict::Fresh
    }

    /// Clears the bits of counters `first .. first + count` (`count` below [`WINDOW_BITS`]),
    /// a word at a time.
    fn clear(&mut self, mut first: u64, mut count: u64) {
        while count > 0 {
            let bit = first % 64;
            let n = (64 - bit).min(count);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1 << n) - 1) << bit
            };
            self.bits[Self::word(first)] &= !mask;
            first = first.wrapping_add(n);
            count -= n;
        }
    }
}

/// The windows of all senders seen recently.
struct Senders {
    windows: HashMap<SenderId, Window>,
    /// The verifier's clock (ms) at the last sweep for idle senders.
    last_gc_ms: u64,
    max: usize,
}

impl Senders {
    /// Checks `counter` from `sender` at time `now_ms`; `None` if the sender is new and there is
    /// no room to track it.
    fn check(&mut self, sender: SenderId, counter: u64, now_ms: u64) -> Option<Verdict> {
        if let Some(window) = self.windows.get_mut(&sender) {
            window.last_seen_ms = window.last_seen_ms.max(now_ms);
            return Some(window.check(counter));
        }
        // Either way round, so that a clock stepped back does not stop the sweeps.
        if now_ms.abs_diff(self.last_gc_ms) >= GC_EVERY_MS {
            self.last_gc_ms = now_ms;
            let idle_ms = 2 * window_ms();
            self.windows
                .retain(|_, w| now_ms <= w.last_seen_ms.saturating_add(idle_ms));
        }
        if self.windows.len() >= self.max {
            return None;
        }
        self.windows.insert(sender, Window::new(counter, now_ms));
        Some(Verdict::Fresh)
    }
}

/// Checks incoming node-to-node requests and keeps an anti-replay window per sender. Clones
/// share the windows, so one verifier (or its clones) must serve all of a node's endpoints.
#[derive(Clone)]
pub struct CookieVerifier {
    key: hmac::Key,
    senders: Arc<Mutex<Senders>>,
}

impl fmt::Debug for CookieVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieVerifier")
            .field("key", &"[redacted]")
            .field("senders", &self.senders().windows.len())
            .finish()
    }
}

impl CookieVerifier {
    /// A verifier keyed by the secret's cookie key, tracking no senders yet.
    #[must_use]
    pub fn new(secret: &ClusterSecret) -> Self {
        Self::with_max_senders(secret, MAX_SENDERS)
    }

    fn with_max_senders(secret: &ClusterSecret, max: usize) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret.cookie_key()),
            senders: Arc::new(Mutex::new(Senders {
                windows: HashMap::new(),
                last_gc_ms: 0,
                max,
            })),
        }
    }

    fn senders(&self) -> MutexGuard<'_, Senders> {
        // Every update leaves the windows consistent, so a panic elsewhere cannot corrupt them.
        self.senders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks the cookie `header` of a request to `method` carrying `body`: format, timestamp
    /// within [`REPLAY_WINDOW`], MAC (constant time), then the nonce against its sender's
    /// anti-replay window. Senders are tracked only once the MAC checks out, so garbage cannot
    /// add any.
    ///
    /// # Errors
    ///
    /// [`AuthError::Missing`], [`AuthError::Malformed`], [`AuthError::Skew`],
    /// [`AuthError::BadMac`] or [`AuthError::Replay`], in that order of checking.
    /// [`AuthError::Replay`] covers both a nonce seen before and one too far behind its
    /// sender's newest (more than 65 536 cookies back). [`AuthError::Malformed`] also refuses
    /// a new sender when this node already tracks the most it will.
    pub fn verify(&self, method: &str, body: &[u8], header: Option<&str>) -> Result<(), AuthError> {
        self.verify_at(method, body, header, now_ms())
    }

    fn verify_at(
        &self,
        method: &str,
        body: &[u8],
        header: Option<&str>,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let (ts_ms, nonce, tag) = parse(header)?;
        if let Some(seconds) = skew_seconds_at(ts_ms, window_ms(), now_ms) {
            return Err(AuthError::Skew { seconds });
        }
        let ok = cookie_mac_fields(&self.key, method, ts_ms, &nonce, body, |key, fields| {
            mac_ok(key, fields, &tag)
        });
        if !ok {
            return Err(AuthError::BadMac);
        }
        let (sender, counter) = split_nonce(&nonce);
        let verdict = self.senders().check(sender, counter, now_ms);
        match verdict {
            Some(Verdict::Fresh) => Ok(()),
            Some(Verdict::Seen) => Err(AuthError::Replay),
            Some(Verdict::TooOld) => {
                tracing::debug!(
                    sender = %hex::encode(sender),
                    counter,
                    "cookie counter is {WINDOW_BITS} or more behind its sender's newest; refused \
                     as a replay"
                );
                Err(AuthError::Replay)
            }
            None => Err(AuthError::Malformed(format!(
                "this node already tracks the most cookie senders it will ({}) seen within \
                 {} s and refuses new sender {}; retry later, and share one CookieSigner per \
                 process rather than creating one per request",
                self.senders().max,
                2 * REPLAY_WINDOW.as_secs(),
                hex::encode(sender)
            ))),
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
mod tests;
