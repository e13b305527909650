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
    /// Told each time the load changes, so the advertiser need not poll it.
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
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_one();
    }
}

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
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
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

    /// Invocations holding a running slot, and those admitted that wait for one.
    pub(crate) fn depth(&self) -> (usize, usize) {
        let running = self.max_running - self.running.available_permits().min(self.max_running);
        let admitted = self.max_admitted - self.admitted.available_permits().min(self.max_admitted);
        (running, admitted.saturating_sub(running))
    }
}
