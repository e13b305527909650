//! Admission control: a bounded number of invocations run at once, a bounded number wait, and
//! the rest are refused with `RESOURCE_EXHAUSTED` so that callers back off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tonic::Status;

#[derive(Debug)]
pub(crate) struct Admission {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    in_flight: Arc<AtomicU32>,
    /// Told each time the advertised [`level`] changes, so the advertiser need not poll it.
    changed: Arc<Notify>,
    /// The bounds: running, and running plus waiting.
    max_running: usize,
    max_admitted: usize,
}

/// Held while an invocation runs; frees its slot on drop.
#[derive(Debug)]
pub(crate) struct Ticket {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
    in_flight: Arc<AtomicU32>,
    changed: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let before = self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if level(before) != level(before - 1) {
            self.changed.notify_one();
        }
    }
}

/// The load a node advertises in gossip for `in_flight` running invocations: 0 under
/// [`LEVEL_FLOOR`], else `in_flight` rounded down to a power of two.
///
/// Every change of a node's metadata is an alive broadcast that every member receives. The exact
/// count changes with every call, so under a steady load each node re-advertised about twice a
/// second and a 200-node cluster gossiped O(N²); the level changes only when a node's concurrency
/// doubles or halves, and a node serving a few calls at a time never changes it. "Any" placement
/// still tells an idle node from a busy one.
pub(crate) fn level(in_flight: u32) -> u32 {
    if in_flight < LEVEL_FLOOR {
        0
    } else {
        1 << in_flight.ilog2()
    }
}

/// Below this many running invocations a node advertises a load of 0.
pub(crate) const LEVEL_FLOOR: u32 = 4;

impl Admission {
    /// Admission for `max_concurrent` running and `max_queued` waiting calls; `changed` is told
    /// whenever the load changes.
    pub(crate) fn new(max_concurrent: usize, max_queued: usize, changed: Arc<Notify>) -> Self {
        Self {
            admitted: Arc::new(Semaphore::new(max_concurrent + max_queued)),
            running: Arc::new(Semaphore::new(max_concurrent)),
            in_flight: Arc::new(AtomicU32::new(0)),
            changed,
            max_running: max_concurrent,
            max_admitted: max_concurrent + max_queued,
        }
    }

    /// Admits a call, waiting for a running slot if the queue has room.
    pub(crate) async fn admit(&self) -> Result<Ticket, Status> {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            crate::metrics::admission_rejected();
            Status::resource_exhausted("the node is at its invocation limit; retry with backoff")
        })?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        if level(before) != level(before + 1) {
            self.changed.notify_one();
        }
        Ok(Ticket {
            _admitted: admitted,
            _running: running,
            in_flight: self.in_flight.clone(),
            changed: self.changed.clone(),
        })
    }

    /// Invocations running now.
    pub(crate) fn load(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The load to advertise: [`level`] of [`load`](Self::load).
    pub(crate) fn level(&self) -> u32 {
        level(self.load())
    }

    /// Invocations holding a running slot, and those admitted that wait for one.
    pub(crate) fn depth(&self) -> (usize, usize) {
        let running = self.max_running - self.running.available_permits().min(self.max_running);
        let admitted = self.max_admitted - self.admitted.available_permits().min(self.max_admitted);
        (running, admitted.saturating_sub(running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_level_changes_only_when_concurrency_doubles() {
        let levels: Vec<u32> = (0..=17).map(level).collect();
        assert_eq!(
            levels,
            [0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 16, 16]
        );
    }

    #[tokio::test]
    async fn a_few_calls_at_a_time_do_not_wake_the_advertiser() {
        let changed = Arc::new(Notify::new());
        let admission = Admission::new(16, 16, changed.clone());
        let woken = || {
            let changed = changed.clone();
            async move {
                tokio::time::timeout(std::time::Duration::from_millis(50), changed.notified())
                    .await
                    .is_ok()
            }
        };
        let few: Vec<Ticket> = admit_n(&admission, 3).await;
        assert!(!woken().await, "3 calls changed the advertised level");
        drop(few);
        assert!(!woken().await);
        let many = admit_n(&admission, 4).await;
        assert_eq!(admission.level(), 4);
        assert!(woken().await, "the 4th call must be advertised");
        drop(many);
        assert_eq!(admission.level(), 0);
        assert!(woken().await, "falling back to 0 must be advertised");
    }

    async fn admit_n(admission: &Admission, n: usize) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        for _ in 0..n {
            tickets.push(admission.admit().await.unwrap());
        }
        tickets
    }
}
