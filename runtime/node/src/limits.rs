//! What a caller may ask of this node: a call's limits as they come off the wire, checked
//! against the node's maximums ([`NodeConfig::max_memory_bytes`], [`NodeConfig::max_timeout`]),
//! and the time a caller waits for an answer past a guest's deadline.
//!
//! Clients and peers send [`pb::Limits`]; this module is the one place where they become the
//! host's [`InvokeLimits`]. A caller may lower the node's limits, never raise them past its
//! maximums: a request over one gets `INVALID_ARGUMENT` naming the maximum. The coordinator
//! checks a client's request against its own maximums before it fans out, and every node checks
//! again against its own before it runs the guest, since maximums may differ between nodes.
//!
//! [`NodeConfig::max_memory_bytes`]: crate::NodeConfig::max_memory_bytes
//! [`NodeConfig::max_timeout`]: crate::NodeConfig::max_timeout

use std::time::Duration;
use steinadler_host::InvokeLimits;
use steinadler_proto::v1 as pb;
use tonic::Status;

/// The default ceiling on a call's guest memory, in bytes (256 MiB).
pub const DEFAULT_MAX_MEMORY: u64 = 256 << 20;
/// The default ceiling on a call's deadline (60 s).
pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// A node's ceilings on what one call may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Maximums {
    pub(crate) memory_bytes: u64,
    pub(crate) timeout: Duration,
}

impl Maximums {
    /// Checks `wire` against these maximums without building limits: what the coordinator does
    /// before it fans a client's call out.
    pub(crate) fn check(&self, wire: &pb::Limits) -> Result<(), Status> {
        if wire.memory_bytes > self.memory_bytes {
            return Err(Status::invalid_argument(format!(
                "the call asks for {} of guest memory, over this node's maximum of {} \
                 (raise it with `steinadler node start --max-memory`)",
                size(wire.memory_bytes),
                size(self.memory_bytes)
            )));
        }
        if u128::from(wire.deadline_ms) > self.timeout.as_millis() {
            return Err(Status::invalid_argument(format!(
                "the call asks for a deadline of {} ms, over this node's maximum of {} ms \
                 (raise it with `steinadler node start --max-timeout`)",
                wire.deadline_ms,
                self.timeout.as_millis()
            )));
        }
        Ok(())
    }

    /// The limits one call runs under: `defaults`, lowered or raised (up to these maximums) by
    /// what the caller sent. Zero in a field means the default.
    pub(crate) fn apply(
        &self,
        wire: Option<&pb::Limits>,
        defaults: InvokeLimits,
    ) -> Result<InvokeLimits, Status> {
        let mut limits = defaults;
        if let Some(l) = wire {
            self.check(l)?;
            if l.deadline_ms > 0 {
                limits.deadline = Duration::from_millis(l.deadline_ms);
            }
            if l.memory_bytes > 0 {
                limits.memory_bytes = l.memory_bytes;
            }
        }
        Ok(limits)
    }
}

/// How long a caller waits for the answer to a call whose guest may run for `deadline`: the
/// deadline plus a margin for the answer to travel back (a tenth of it, and 250 ms).
///
/// A guest that overruns its deadline is stopped at the deadline and its node answers with a
/// typed timeout. Waiting exactly the deadline would race that answer, and the caller would
/// report an unreachable node instead.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert_eq!(
///     steinadler_node::answer_within(Duration::from_secs(5)),
///     Duration::from_millis(5_750)
/// );
/// ```
pub fn answer_within(deadline: Duration) -> Duration {
    deadline
        .saturating_add(deadline / 10)
        .saturating_add(Duration::from_millis(250))
}

/// The inverse of [`answer_within`]: the longest guest deadline whose answer a caller waiting
/// `wait` still receives.
pub(crate) fn guest_within(wait: Duration) -> Duration {
    wait.saturating_sub(Duration::from_millis(250))
        .mul_f64(10.0 / 11.0)
}

/// `bytes` for a message: in MiB when whole, else in bytes.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const MAX: Maximums = Maximums {
        memory_bytes: 256 << 20,
        timeout: Duration::from_secs(60),
    };

    fn wire(deadline_ms: u64, memory_bytes: u64) -> pb::Limits {
        pb::Limits {
            deadline_ms,
            memory_bytes,
        }
    }

    #[test]
    fn zero_means_the_default_and_lower_limits_apply() {
        let defaults = InvokeLimits::default();
        assert_eq!(MAX.apply(None, defaults.clone()).unwrap(), defaults);
        assert_eq!(
            MAX.apply(Some(&wire(0, 0)), defaults.clone()).unwrap(),
            defaults
        );
        let lowered = MAX
            .apply(Some(&wire(100, 1 << 20)), defaults.clone())
            .unwrap();
        assert_eq!(lowered.deadline, Duration::from_millis(100));
        assert_eq!(lowered.memory_bytes, 1 << 20);
        assert_eq!(lowered.max_output_bytes, defaults.max_output_bytes);
    }

    #[test]
    fn limits_up_to_the_maximums_are_granted() {
        let at = MAX
            .apply(Some(&wire(60_000, 256 << 20)), InvokeLimits::default())
            .unwrap();
        assert_eq!(at.deadline, Duration::from_secs(60));
        assert_eq!(at.memory_bytes, 256 << 20);
    }

    #[test]
    fn limits_past_the_maximums_are_refused_naming_the_maximum() {
        let memory = MAX.check(&wire(0, 2 << 30)).unwrap_err();
        assert_eq!(memory.code(), Code::InvalidArgument);
        assert!(
            memory.message().contains("2048 MiB"),
            "{}",
            memory.message()
        );
        assert!(
            memory.message().contains("maximum of 256 MiB"),
            "{}",
            memory.message()
        );
        assert!(
            memory.message().contains("--max-memory"),
            "{}",
            memory.message()
        );

        let time = MAX
            .apply(Some(&wire(600_000, 0)), InvokeLimits::default())
            .unwrap_err();
        assert_eq!(time.code(), Code::InvalidArgument);
        assert!(
            time.message().contains("maximum of 60000 ms"),
            "{}",
            time.message()
        );
        assert_eq!(
            MAX.check(&wire(60_001, 0)).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert!(MAX.check(&wire(0, (256 << 20) + 1)).is_err());
    }

    #[test]
    fn the_answer_is_awaited_past_the_deadline() {
        for ms in [0, 1, 100, 5_000, 60_000] {
            let d = Duration::from_millis(ms);
            assert!(answer_within(d) >= d + Duration::from_millis(250));
        }
        assert_eq!(answer_within(Duration::MAX), Duration::MAX);
        for ms in [0u64, 1, 100, 5_000, 60_000] {
            let d = Duration::from_millis(ms);
            let back = guest_within(answer_within(d));
            assert!(
                back.abs_diff(d) < Duration::from_millis(1),
                "{ms} ms -> {back:?}"
            );
        }
        assert_eq!(guest_within(Duration::from_millis(100)), Duration::ZERO);
    }
}
