//! Gives the allocator's free memory back to the system while a node runs.
//!
//! glibc's malloc keeps memory a process has freed: a node that joined a big cluster while the
//! machine was busy held 8 to 11 MB of anonymous memory once it was idle, against 3.6 MB after
//! one `malloc_trim(0)` (200 nodes on 2 cores, 2026-12-04). Nothing in the node holds that
//! memory; the peaks of joining (member lists, handshakes, gossip queues) left it in freed
//! chunks between live ones, where glibc does not return it by itself. So `node start` runs
//! [`spawn`], a thread that calls `malloc_trim(0)` every [`INTERVAL`]. The call walks the
//! free lists of every arena and returns whole free pages, which takes well under a
//! millisecond on a node's few MB of heap. A library user who embeds a node owns the process
//! and its allocator, so the library does not do this itself.

use std::time::{Duration, Instant};

/// How often the node gives free memory back.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Starts the thread, where the allocator is glibc's; elsewhere does nothing.
pub(crate) fn spawn() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::thread::Builder::new()
            .name("steinadler-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(INTERVAL);
                    let before = Instant::now();
                    // SAFETY: malloc_trim takes no pointers and is thread-safe; it only
                    // returns free pages of the allocator's own arenas to the kernel.
                    let released = unsafe { libc::malloc_trim(0) } == 1;
                    tracing::trace!(released, took = ?before.elapsed(), "malloc_trim");
                }
            });
        if let Err(e) = started {
            tracing::warn!(
                "cannot start the thread that returns free memory, so the node may hold more memory than it uses: {e}"
            );
        }
    }
}
