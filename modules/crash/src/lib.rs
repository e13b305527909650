//! `crash.panic` and `crash.unreachable`: the two ways a Rust guest traps.

/// A Rust panic with a message.
#[steinadler::function]
fn panic() -> u32 {
    panic!("boom: the crash module panicked on purpose")
}

/// A bare wasm `unreachable` instruction.
#[steinadler::function]
fn unreachable() -> u32 {
    core::arch::wasm32::unreachable()
}
