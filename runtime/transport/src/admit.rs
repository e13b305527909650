//! Admission of TLS handshakes, so that connections which never finish one cannot lock out
//! the callers that do.
//!
//! A connection goes through two rooms:
//! - **Waiting for its ClientHello** ([`client_hello`]): until the whole first TLS record has
//!   arrived, for at most [`HELLO_TIMEOUT`]. This costs a socket and a task, no TLS state, so
//!   the room is large ([`MAX_WAITING`]). Connections that send nothing, or a partial
//!   ClientHello, never leave it: they cannot take a handshake's place.
//! - **The handshake**: at most [`MAX_HANDSHAKES`] at once, [`PER_SOURCE`] from one address,
//!   each for at most [`HANDSHAKE_TIMEOUT`].
//!
//! A new connection is never turned away for want of room: when a room is full, it takes the
//! place of the oldest one in it (from its own address if that address is at its share, else
//! from any), which is cut off. So a flood of idle connections, reopened as fast as they are
//! closed, only cuts its own connections short, and a client's handshake completes among them.
//!
//! Refusals are logged at most once a second, with how many more there were
//! ([`RefusalLog`]): a flood must not become a flood of log lines.

use crate::lock;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a TLS handshake may take, from its ClientHello to its end.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many handshakes run at once.
pub(crate) const MAX_HANDSHAKES: usize = 256;
/// At most this many of them from one address.
pub(crate) const PER_SOURCE: usize = 64;
/// How long a new connection may take to send its whole ClientHello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many connections wait for their ClientHello at once.
pub(crate) const MAX_WAITING: usize = 4096;
/// At most this many of them from one address.
pub(crate) const WAITING_PER_SOURCE: usize = 1024;

/// The connections in one room, oldest first.
#[derive(Debug)]
pub(crate) struct Handshakes {
    running: Mutex<Running>,
    max: usize,
    per_source: usize,
}

#[derive(Debug, Default)]
struct Running {
    next: u64,
    slots: VecDeque<Slot>,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    source: IpAddr,
    cut: CancellationToken,
}

/// One handshake's place; it leaves when dropped. [`Admitted::cut`] fires if a newer
/// connection took its place.
#[derive(Debug)]
pub(crate) struct Admitted {
    handshakes: Arc<Handshakes>,
    id: u64,
    /// Cancelled when this handshake must stop.
    pub(crate) cut: CancellationToken,
}

impl Handshakes {
    /// A room for `max` connections, `per_source` from one address.
    pub(crate) fn new(max: usize, per_source: usize) -> Self {
        Self {
            running: Mutex::default(),
            max,
            per_source,
        }
    }

    /// Admits a connection from `source`, cutting off the oldest in the room if there is no
    /// room (see the module docs); returns its place and the address of the one it cut off.
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr) -> (Admitted, Option<IpAddr>) {
        let mut running = lock(&self.running);
        let same = running.slots.iter().filter(|s| s.source == source).count();
        let victim = if same >= self.per_source {
            running.slots.iter().position(|s| s.source == source)
        } else if running.slots.len() >= self.max {
            Some(0)
        } else {
            None
        };
        let cut_off = victim.and_then(|at| running.slots.remove(at)).map(|slot| {
            slot.cut.cancel();
            slot.source
        });
        let id = running.next;
        running.next += 1;
        let cut = CancellationToken::new();
        running.slots.push_back(Slot {
            id,
            source,
            cut: cut.clone(),
        });
        let admitted = Admitted {
            handshakes: self.clone(),
            id,
            cut,
        };
        (admitted, cut_off)
    }

    /// How many handshakes run now.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.running).slots.len()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut running = lock(&self.handshakes.running);
        if let Some(at) = running.slots.iter().position(|s| s.id == self.id) {
            running.slots.remove(at);
        }
    }
}

/// Waits until the whole first TLS record (the ClientHello) can be read from `tcp`, without
/// reading it.
///
/// # Errors
///
/// Why the connection is refused: it sent something other than a TLS handshake record, closed,
/// or did not send the record within [`HELLO_TIMEOUT`].
pub(crate) async fn client_hello(tcp: &tokio::net::TcpStream) -> Result<(), String> {
    let wait = async {
        // The largest record: a 5-byte header and 2^14 bytes (plus room for a compressed or
        // padded one, which the handshake refuses anyway).
        let mut buf = vec![0u8; 5 + (1 << 14) + 2048];
        let mut pause = Duration::from_millis(2);
        loop {
            let n = tcp.peek(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before its ClientHello".to_owned());
            }
            if buf[0] != 0x16 {
                return Err(
                    "not a TLS connection (a plaintext client, or no client at all?)".to_owned(),
                );
            }
            if n >= 5 {
                let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
                if n >= 5 + len || n == buf.len() {
                    return Ok(());
                }
            }
            // Part of the record is here: wait for the rest (`readable` would be ready at once).
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    };
    tokio::time::timeout(HELLO_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err(format!("no whole ClientHello within {HELLO_TIMEOUT:?}")))
}

/// Warnings about refused connections, at most one a second, each saying how many it stands
/// for.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new((None, 0)),
        }
    }

    /// Logs `why` for `peer`, unless a line went out less than a second ago; then counts it
    /// for the next line.
    pub(crate) fn refused(&self, peer: impl std::fmt::Display, why: &str) {
        let mut state = lock(&self.state);
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            *suppressed += 1;
            return;
        }
        let more = std::mem::take(suppressed);
        *last = Some(Instant::now());
        drop(state);
        if more == 0 {
            tracing::warn!(%peer, "rejected a TLS connection: {why}");
        } else {
            tracing::warn!(%peer, "rejected a TLS connection: {why} (and {more} more refused connections in the last second or more)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_room_cuts_the_oldest_and_a_busy_source_cuts_its_own() {
        let handshakes = Arc::new(Handshakes::new(MAX_HANDSHAKES, PER_SOURCE));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut held = Vec::new();
        // b's handshake first: the oldest.
        let (first_b, cut) = handshakes.admit(b);
        assert_eq!(cut, None);
        // a reaches its share: its next cuts a's oldest, never b's.
        for _ in 0..PER_SOURCE {
            held.push(handshakes.admit(a).0);
        }
        let (_, cut) = handshakes.admit(a);
        assert_eq!(cut, Some(a));
        assert!(held[0].cut.is_cancelled());
        assert!(!first_b.cut.is_cancelled());
        // Many sources fill the room: the next cuts the oldest of all, b's.
        for i in 0..MAX_HANDSHAKES {
            let source = IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8]);
            let (admitted, _) = handshakes.admit(source);
            held.push(admitted);
        }
        assert!(first_b.cut.is_cancelled(), "the oldest was cut");
        assert!(handshakes.len() <= MAX_HANDSHAKES);
        // A finished handshake leaves its place.
        held.clear();
        drop(first_b);
        assert_eq!(handshakes.len(), 0);
    }
}
