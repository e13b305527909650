//! `noop.noop`: does nothing, so benchmarks measure only the invocation itself.

/// Returns nil.
#[steinadler::function]
fn noop() {}
