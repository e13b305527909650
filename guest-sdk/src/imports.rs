//! The host imports, module `steinadler` (see `docs/abi.md`), with safe wrappers.
//!
//! Outside wasm (native unit tests of a guest crate) the wrappers fall back to local stand-ins so
//! a guest's logic can be tested with plain `cargo test`.

use crate::log::Level;

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "steinadler")]
    unsafe extern "C" {
        pub(super) fn log(level: u32, ptr: *const u8, len: u32);
        pub(super) fn node_name(ptr: *mut u8, cap: u32) -> u32;
        pub(super) fn clock_unix_nanos() -> i64;
        pub(super) fn panic_message(ptr: *const u8, len: u32);
        pub(super) fn process_op(op: u32, ptr: *const u8, len: u32) -> i64;
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn log(level: Level, msg: &str) {
    // SAFETY: the host reads `len` bytes at `ptr`, which `msg` keeps alive for the call.
    unsafe { sys::log(level as u32, msg.as_ptr(), msg.len() as u32) }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn node_name() -> String {
    let mut buf = vec![0u8; 64];
    loop {
        // SAFETY: the host writes at most `cap` bytes into `buf` and returns the full length.
        let len = unsafe { sys::node_name(buf.as_mut_ptr(), buf.len() as u32) } as usize;
        if len <= buf.len() {
            buf.truncate(len);
            return String::from_utf8_lossy(&buf).into_owned();
        }
        buf.resize(len, 0);
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn clock_unix_nanos() -> i64 {
    // SAFETY: no arguments, no memory access.
    unsafe { sys::clock_unix_nanos() }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn panic_message(msg: &str) {
    // SAFETY: the host reads `len` bytes at `ptr`, which `msg` keeps alive for the call.
    unsafe { sys::panic_message(msg.as_ptr(), msg.len() as u32) }
}

/// Runs process operation `op` on the MessagePack argument array `args`; returns the host's
/// result envelope `[status, value]` (empty if the host returned no bytes).
#[cfg(target_arch = "wasm32")]
pub(crate) fn process_op(op: u32, args: &[u8]) -> Vec<u8> {
    // SAFETY: the host reads `len` bytes at `ptr`, which `args` keeps alive for the call.
    let packed = unsafe { sys::process_op(op, args.as_ptr(), args.len() as u32) } as u64;
    let ptr = (packed >> 32) as usize as *mut u8;
    let len = (packed & 0xffff_ffff) as usize;
    if len == 0 || ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the host wrote the envelope into a buffer from our `alloc(len)` export and handed
    // it over. `alloc(len)` allocates with the layout of a boxed slice of `len` bytes (size
    // `len`, align 1, the global allocator), so the box frees it exactly as `dealloc` would.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }.into_vec()
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn log(level: Level, msg: &str) {
    eprintln!("[{level:?}] {msg}");
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn node_name() -> String {
    "native".to_owned()
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn clock_unix_nanos() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn panic_message(_msg: &str) {}

/// Outside wasm there is no node, so no process: every operation fails as it does in a function.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn process_op(op: u32, args: &[u8]) -> Vec<u8> {
    #[cfg(test)]
    if let Some(envelope) = FAKE_HOST.with(|h| h.borrow().as_ref().map(|h| h(op, args))) {
        return envelope;
    }
    let _ = (op, args);
    let mut envelope = vec![0x92, 0x01];
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_str(&mut envelope, NOT_A_PROCESS);
    envelope
}

/// The native stand-in's error for every process operation.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const NOT_A_PROCESS: &str = "not a process: a native build runs on no node";

/// What answers `process_op` in the SDK's own tests: the op and its argument bytes in, the
/// envelope out.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) type FakeHost = Box<dyn Fn(u32, &[u8]) -> Vec<u8>>;

#[cfg(all(test, not(target_arch = "wasm32")))]
thread_local! {
    /// The host that [`process_op`] asks, when a test installs one.
    pub(crate) static FAKE_HOST: std::cell::RefCell<Option<FakeHost>> =
        const { std::cell::RefCell::new(None) };
}
