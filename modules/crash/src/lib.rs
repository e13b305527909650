//! `crash.panic` and `crash.unreachable`: the two ways a Rust guest traps. And a stream,
//! `garbled` (any name opens it), whose batches do not decode: its exports are written by hand,
//! since the SDK writes only items that do.

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

/// `stream_open` (docs/abi.md, *Streams*): opens any stream, answering status 0 with nil.
#[unsafe(no_mangle)]
pub extern "C" fn stream_open(_ptr: u32, _len: u32) -> u64 {
    envelope(&[0x92, 0x00, 0xc0])
}

/// `stream_next`: status 0 with `[false, 1, <0xc1>]`, two items of which the second is the one
/// byte MessagePack never uses. The host forwards items without decoding them, so the consumer
/// takes 1, then fails to decode the next.
#[unsafe(no_mangle)]
pub extern "C" fn stream_next(_ptr: u32, _len: u32) -> u64 {
    envelope(&[0x92, 0x00, 0x93, 0xc2, 0x01, 0xc1])
}

/// A result envelope as the host reads it: `(address << 32) | length`. The host frees it with
/// the SDK's `dealloc`, which takes a buffer of exactly `length` bytes, as a boxed slice is.
fn envelope(bytes: &[u8]) -> u64 {
    let boxed: Box<[u8]> = bytes.into();
    let len = boxed.len() as u64;
    let address = Box::into_raw(boxed).cast::<u8>() as usize as u64;
    (address << 32) | len
}
