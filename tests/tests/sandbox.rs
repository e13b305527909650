//! The adversarial modules: each ends with its typed error within its limit, and the host keeps
//! serving afterwards.

use steinadler_core::{InvokeError, Term};
use steinadler_host::InvokeLimits;
use steinadler_test_modules as m;
use steinadler_tests::{host, load};

fn limits() -> InvokeLimits {
    InvokeLimits::default()
}

#[test]
fn unbounded_allocation_is_out_of_memory() {
    let host = host();
    let hog = load(&host, m::HOG);
    let limits = InvokeLimits {
        memory_bytes: 16 << 20,
        ..limits()
    };
    let err = host.invoke_term(&hog, "grow", &[], &limits).unwrap_err();
    assert_eq!(
        err,
        InvokeError::OutOfMemory {
            limit_bytes: 16 << 20
        }
    );
}

#[test]
fn panic_is_a_trap_with_the_panic_message_and_a_backtrace() {
    let host = host();
    let crash = load(&host, m::CRASH);
    match host.invoke_term(&crash, "panic", &[], &limits()) {
        Err(InvokeError::Trap { message, backtrace }) => {
            assert!(
                message.contains("boom: the crash module panicked on purpose"),
                "{message}"
            );
            assert!(message.contains("crash/src/lib.rs"), "{message}");
            assert!(backtrace.contains("crash.wasm!"), "{backtrace}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn unreachable_is_a_trap() {
    let host = host();
    let crash = load(&host, m::CRASH);
    match host.invoke_term(&crash, "unreachable", &[], &limits()) {
        Err(InvokeError::Trap { message, backtrace }) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(backtrace.contains("unreachable"), "{backtrace}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn unbounded_recursion_is_a_trap_and_shallow_recursion_works() {
    let host = host();
    let deep = load(&host, m::DEEP);
    let ok = host.invoke_term(&deep, "recurse", &[Term::Int(1000)], &limits());
    assert_eq!(ok, Ok(Term::Int(1000)));
    match host.invoke_term(&deep, "recurse", &[Term::Int(1 << 40)], &limits()) {
        Err(InvokeError::Trap { message, .. }) => {
            assert!(message.contains("stack"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn chatty_output_is_bounded_not_fatal() {
    let host = host();
    let chatty = load(&host, m::CHATTY);
    let limits = InvokeLimits {
        max_log_bytes: 1024,
        ..limits()
    };
    // Far more output than the budget: the call still succeeds.
    let out = host.invoke_term(&chatty, "shout", &[Term::Int(50_000)], &limits);
    assert_eq!(out, Ok(Term::Int(50_000)));
}

#[test]
fn oversized_result_is_refused() {
    let host = host();
    let echo = load(&host, m::ECHO);
    let limits = InvokeLimits {
        max_output_bytes: 1000,
        ..limits()
    };
    let err = host
        .invoke_term(&echo, "echo", &[Term::Bytes(vec![0; 4000])], &limits)
        .unwrap_err();
    assert!(
        matches!(&err, InvokeError::BadOutput(msg) if msg.contains("output limit of 1000")),
        "{err:?}"
    );
}
