//! The host keeps serving after many traps, and its memory does not grow with them.
//!
//! In a test binary of its own: the process's RSS is what it measures, and the sandbox tests
//! beside it (a guest allocating 16 MiB, for one) would grow it from other threads meanwhile.

use steinadler_core::{InvokeError, Term};
use steinadler_host::InvokeLimits;
use steinadler_test_modules as m;
use steinadler_tests::{host, load, rss_bytes};

#[test]
fn host_keeps_serving_after_1000_traps_without_growing() {
    let host = host();
    let crash = load(&host, m::CRASH);
    let hello = load(&host, m::HELLO);
    let limits = InvokeLimits::default();
    let greet = || host.invoke_term(&hello, "greet", &[Term::from("World")], &limits);

    // Warm up, so allocator pools and caches reach their steady size first.
    for _ in 0..100 {
        assert!(host.invoke_term(&crash, "panic", &[], &limits).is_err());
    }
    let before = rss_bytes();
    for i in 0..1000 {
        let f = if i % 2 == 0 { "panic" } else { "unreachable" };
        let err = host.invoke_term(&crash, f, &[], &limits).unwrap_err();
        assert!(matches!(err, InvokeError::Trap { .. }), "{err:?}");
    }
    let after = rss_bytes();
    assert_eq!(greet(), Ok(Term::from("Hello, World!")));
    let growth = after.saturating_sub(before);
    assert!(
        growth < 4 << 20,
        "RSS grew by {growth} bytes over 1000 traps ({before} -> {after})"
    );
}
