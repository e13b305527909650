//! The node's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The node's wall-clock time.
///
/// # Examples
///
/// ```
/// let now = steinadler::time::now();
/// assert!(now > std::time::UNIX_EPOCH);
/// ```
pub fn now() -> SystemTime {
    let nanos = unix_nanos();
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// The node's wall-clock time in nanoseconds since the Unix epoch.
pub fn unix_nanos() -> i64 {
    crate::imports::clock_unix_nanos()
}
