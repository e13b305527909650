//! Rate-limited log lines for a chatty dependency. memberlist logs an ERROR for every gossip
//! packet it fails to send; under packet loss, or with outgoing packets dropped by a firewall
//! ("Operation not permitted"), that is hundreds of lines a second for what the protocol is
//! built to tolerate. [`RateLimit`] lets at most [`BURST`] events of one callsite (one line of
//! memberlist's source) through per [`PERIOD`], counts the rest, and a reporter thread says
//! every period how many were dropped.
//!
//! It is a per-layer filter ([`tracing_subscriber::layer::Filter`]) on the CLI's log output;
//! the node library itself never installs a subscriber.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// Events of one callsite let through per [`PERIOD`].
pub(crate) const BURST: u32 = 3;
/// The window of the limit, and how often the reporter speaks.
pub(crate) const PERIOD: Duration = Duration::from_secs(10);

/// Limits the events of targets that start with a prefix.
pub(crate) struct RateLimit {
    prefix: &'static str,
    windows: Windows<tracing::callsite::Identifier>,
    dropped: &'static AtomicU64,
    reporter: std::sync::Once,
}

impl RateLimit {
    /// Limits events whose target starts with `prefix`.
    pub(crate) fn new(prefix: &'static str) -> Self {
        static DROPPED: AtomicU64 = AtomicU64::new(0);
        Self {
            prefix,
            windows: Windows::new(BURST, PERIOD),
            dropped: &DROPPED,
            reporter: std::sync::Once::new(),
        }
    }

    /// Starts, on the first drop, a thread that reports the dropped lines every period.
    fn start_reporter(&self) {
        let (dropped, prefix) = (self.dropped, self.prefix);
        self.reporter.call_once(|| {
            let _ = std::thread::Builder::new()
                .name("log-limit".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(PERIOD);
                        let n = dropped.swap(0, Ordering::Relaxed);
                        if n > 0 {
                            tracing::warn!(
                                "dropped {n} repeated {prefix} log lines in the last {}s \
                                 (at most {BURST} a message each {}s are shown)",
                                PERIOD.as_secs(),
                                PERIOD.as_secs()
                            );
                        }
                    }
                });
        });
    }
}

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.target().starts_with(self.prefix) {
            // Asked again for every event, so that event_enabled can count them.
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !meta.target().starts_with(self.prefix) {
            return true;
        }
        if self.windows.admit(meta.callsite(), Instant::now()) {
            return true;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.start_reporter();
        false
    }
}

/// A fixed window per key: at most `burst` admissions per `period`.
struct Windows<K> {
    burst: u32,
    period: Duration,
    state: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Hash + Eq> Windows<K> {
    fn new(burst: u32, period: Duration) -> Self {
        Self {
            burst,
            period,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one more event of `key` at `now` is let through.
    fn admit(&self, key: K, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (started, passed) = state.entry(key).or_insert((now, 0));
        if now.duration_since(*started) >= self.period {
            (*started, *passed) = (now, 0);
        }
        *passed += 1;
        *passed <= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_its_burst_per_period() {
        let w = Windows::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let passed: Vec<bool> = (0..5)
            .map(|i| w.admit("send", t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(passed, [true, true, true, false, false]);
        // Another callsite has its own budget.
        assert!(w.admit("probe", t0 + Duration::from_millis(6)));
        // Still within the window: dropped.
        assert!(!w.admit("send", t0 + Duration::from_secs(9)));
        // The next window lets a burst through again.
        let later = t0 + Duration::from_secs(10);
        assert!(w.admit("send", later));
        assert!(w.admit("send", later));
        assert!(w.admit("send", later));
        assert!(!w.admit("send", later));
    }
}
