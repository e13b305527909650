//! The deadline clock: advances the epoch of every engine in the process, so that guests past
//! their deadline are interrupted and long calls yield to the executor.
//!
//! One thread per tick length serves all the hosts of a process that use it. A process with
//! many nodes (the tests, the bench, an embedder running several) would otherwise wake one
//! thread per node each tick: ten nodes at the default 2 ms tick made 5,000 wake-ups a second.
//! A thread exits at the first tick after its last engine is gone.
//!
//! The clock ticks only while guests run: each guest call holds an [`Awake`], and a clock that
//! has seen none for [`GRACE`] parks until the next one starts. An idle node then wakes no
//! thread at all for its deadlines (it used to tick 500 times a second), while back-to-back
//! calls never pay for waking the clock, since it parks only after a quiet spell. A deadline is
//! checked against the wall clock at each tick, so a parked clock delays nothing it must stop.

use crate::HostError;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// How long a clock goes on ticking after the last guest call ended.
pub(crate) const GRACE: Duration = Duration::from_millis(50);

/// Guest calls running now, in every engine of the process.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Whether some clock thread is parked, waiting for a guest call.
static PARKED: AtomicBool = AtomicBool::new(false);
static PARK: Mutex<()> = Mutex::new(());
static WAKE: Condvar = Condvar::new();

/// Held while a guest runs: the clocks tick meanwhile.
#[derive(Debug)]
pub(crate) struct Awake(());

impl Awake {
    pub(crate) fn new() -> Self {
        // SeqCst pairs with the parking thread's: either it sees this call running, or this
        // call sees it parked and wakes it.
        if RUNNING.fetch_add(1, Ordering::SeqCst) == 0 && PARKED.load(Ordering::SeqCst) {
            let _park = PARK.lock().unwrap_or_else(|e| e.into_inner());
            WAKE.notify_all();
        }
        Self(())
    }
}

impl Drop for Awake {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Parks the calling clock thread while no guest runs, rechecking every second whether its
/// engines are gone.
fn park_while_idle() {
    let mut park = PARK.lock().unwrap_or_else(|e| e.into_inner());
    PARKED.store(true, Ordering::SeqCst);
    if RUNNING.load(Ordering::SeqCst) == 0 {
        park = WAKE
            .wait_timeout(park, Duration::from_secs(1))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    PARKED.store(false, Ordering::SeqCst);
    drop(park);
}

/// The engines each clock thread advances, by tick length.
type Clocks = BTreeMap<Duration, Vec<(u64, Engine)>>;

static CLOCKS: Mutex<Clocks> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn clocks() -> std::sync::MutexGuard<'static, Clocks> {
    CLOCKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// An engine's place on the clock: its epoch advances every `tick` until this is dropped.
#[derive(Debug)]
pub(crate) struct Ticker {
    tick: Duration,
    id: u64,
}

impl Ticker {
    /// Puts `engine` on the clock for `tick`, starting that clock's thread if none runs.
    pub(crate) fn start(engine: Engine, tick: Duration) -> Result<Self, HostError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut clocks = clocks();
        if let Some(engines) = clocks.get_mut(&tick) {
            engines.push((id, engine));
        } else {
            std::thread::Builder::new()
                .name("steinadler-epoch".into())
                .spawn(move || run(tick))
                .map_err(|e| {
                    HostError::Engine(wasmtime::format_err!(
                        "cannot start the deadline clock: {e}"
                    ))
                })?;
            clocks.insert(tick, vec![(id, engine)]);
        }
        Ok(Self { tick, id })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(engines) = clocks().get_mut(&self.tick) {
            engines.retain(|(id, _)| *id != self.id);
        }
    }
}

/// A clock thread: ticks until no engine is left on its clock, then removes the clock. Both
/// happen under the lock `Ticker::start` takes, so an engine is never put on a clock whose
/// thread has gone.
fn run(tick: Duration) {
    let mut last_busy = Instant::now();
    loop {
        std::thread::sleep(tick);
        if RUNNING.load(Ordering::SeqCst) > 0 {
            last_busy = Instant::now();
        } else if last_busy.elapsed() >= GRACE {
            park_while_idle();
        }
        let mut clocks = clocks();
        match clocks.get(&tick) {
            Some(engines) if !engines.is_empty() => {
                for (_, engine) in engines {
                    engine.increment_epoch();
                }
            }
            _ => {
                clocks.remove(&tick);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_with_one_tick_share_a_clock_that_ends_with_them() {
        // A tick no other test uses, so that this clock is this test's own.
        let tick = Duration::from_micros(1733);
        let tickers: Vec<Ticker> = (0..5)
            .map(|_| Ticker::start(Engine::default(), tick).unwrap())
            .collect();
        assert_eq!(clocks()[&tick].len(), 5);
        drop(tickers);
        // The thread sees its clock empty at its next tick and goes.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while clocks().contains_key(&tick) {
            assert!(
                std::time::Instant::now() < deadline,
                "the clock did not stop"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
