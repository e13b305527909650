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
