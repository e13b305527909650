//! CPU time of the bench's processes, for the stream bench's CPU per item.
//!
//! Items per second on this machine drift by 30 % and more from minute to minute, and say
//! nothing of which side a rate was lost to. The CPU each process spends on an item says that
//! (it drifts too, so compare figures of one run). The stream bench reads a process's CPU clock
//! around each run and divides by the items: this process (both nodes, or the consumer's node
//! alone in "a core each"), and the producer's node when it is a child process of its own.

use anyhow::Context as _;

/// The CPU clock of one process (`clock_gettime`): user and system time of all its threads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuClock {
    id: libc::clockid_t,
    /// What the process holds, for the printed figures: "both nodes", "the producer's node".
    pub(crate) holds: &'static str,
}

impl CpuClock {
    /// This process's clock.
    pub(crate) fn this_process(holds: &'static str) -> Self {
        Self {
            id: libc::CLOCK_PROCESS_CPUTIME_ID,
            holds,
        }
    }

    /// The clock of the process `pid`, one of this process's children.
    ///
    /// # Errors
    ///
    /// If the kernel has no clock for it (no such process, or it has exited).
    pub(crate) fn of_process(pid: u32, holds: &'static str) -> anyhow::Result<Self> {
        let pid = libc::pid_t::try_from(pid).context("a process id out of range")?;
        let mut id: libc::clockid_t = 0;
        // SAFETY: `id` is a valid place for the clock id; the call has no other memory effects.
        let err = unsafe { libc::clock_getcpuclockid(pid, &mut id) };
        anyhow::ensure!(err == 0, "no CPU clock for process {pid}: error {err}");
        // glibc makes the id without asking the kernel: reading it once tells.
        let clock = Self { id, holds };
        anyhow::ensure!(
            !clock.seconds().is_nan(),
            "process {pid} has no CPU clock: has it exited?"
        );
        Ok(clock)
    }

    /// CPU seconds so far; `NaN` if the clock cannot be read (its process has exited).
    pub(crate) fn seconds(&self) -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid place for the time; the call has no other memory effects.
        if unsafe { libc::clock_gettime(self.id, &mut ts) } != 0 {
            return f64::NAN;
        }
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    }
}

/// The CPU each of `clocks` spent while `f` ran, in seconds, and what `f` returned.
pub(crate) async fn spent<T>(
    clocks: &[CpuClock],
    f: impl std::future::Future<Output = T>,
) -> (Vec<f64>, T) {
    let before: Vec<f64> = clocks.iter().map(CpuClock::seconds).collect();
    let out = f.await;
    let spent = clocks
        .iter()
        .zip(before)
        .map(|(c, b)| c.seconds() - b)
        .collect();
    (spent, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_loop_shows_on_this_process_clock() {
        let clock = CpuClock::this_process("this test");
        let (spent, sum) = spent(&[clock], async {
            let started = std::time::Instant::now();
            let mut sum = 0u64;
            while started.elapsed() < std::time::Duration::from_millis(50) {
                sum = std::hint::black_box(sum.wrapping_add(1));
            }
            sum
        })
        .await;
        assert!(sum > 0);
        // 50 ms of wall time spinning: most of it is CPU, however busy the machine.
        assert!(spent[0] > 0.01, "{spent:?}");
    }

    #[test]
    fn a_busy_child_shows_on_its_clock_and_a_stranger_has_none() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh");
        let clock = CpuClock::of_process(child.id(), "a busy shell").expect("a clock");
        let mine = CpuClock::this_process("this test");
        let (before, mine_before) = (clock.seconds(), mine.seconds());
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (spent, mine_spent) = (clock.seconds() - before, mine.seconds() - mine_before);
        let _ = child.kill();
        let _ = child.wait();
        // The child spun while this thread slept: the clock is the child's, not this process's.
        assert!(spent > 0.05, "the child spent {spent} s");
        assert!(mine_spent < spent, "this process spent {mine_spent} s");
        // Past the kernel's largest process id (PID_MAX_LIMIT, 4 Mi on 64-bit).
        assert!(CpuClock::of_process((4 << 20) + 1, "nobody").is_err());
    }
}
