//! The deadline, timed. This test has a binary of its own so that no other test of the suite
//! competes with it for the CPU while it measures.

use std::time::{Duration, Instant};
use steinadler_core::InvokeError;
use steinadler_host::InvokeLimits;
use steinadler_test_modules as m;
use steinadler_tests::{host, load};

#[test]
fn endless_loop_times_out_within_deadline_plus_100ms() {
    let host = host();
    let spin = load(&host, m::SPIN);
    for deadline in [Duration::from_millis(200), Duration::from_secs(1)] {
        let limits = InvokeLimits {
            deadline,
            ..InvokeLimits::default()
        };
        let started = Instant::now();
        let err = host
            .invoke_term(&spin, "forever", &[], &limits)
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(
            err,
            InvokeError::Timeout {
                limit_ms: deadline.as_millis() as u64
            }
        );
        assert!(took >= deadline, "stopped early: {took:?} < {deadline:?}");
        assert!(
            took <= deadline + Duration::from_millis(100),
            "took {took:?} for a {deadline:?} deadline"
        );
    }
}
