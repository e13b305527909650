//! The guest half of the ABI, called by code that `#[steinadler::function]` generates.
//!
//! Not a public API: names and signatures here may change with the ABI version. The ABI itself is
//! specified in `docs/abi.md`:
//! - the host calls `alloc(len)` and writes the MessagePack argument array there;
//! - the host calls the function's export with `(ptr, len)`;
//! - the export returns `(out_ptr << 32) | out_len`, pointing at the result envelope
//!   `[status, value]`, a two-element MessagePack array.
//!
//! Processes (`steinadler::process!`) use the same envelope through [`process_init`] and
//! [`process_handle`].

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned, Error as _, SeqAccess};
use std::alloc::Layout;
use std::fmt;
use steinadler_core::codec;

/// Envelope status: the function returned a value.
pub const STATUS_OK: u8 = 0;
/// Envelope status: the function returned `Err(e)`; the value is `e`.
pub const STATUS_GUEST_ERROR: u8 = 1;
/// Envelope status: the arguments did not decode; the value is a message string.
pub const STATUS_BAD_ARGUMENTS: u8 = 2;
/// Envelope status: the result could not be encoded; the value is a message string.
pub const STATUS_BAD_OUTPUT: u8 = 3;

/// The `alloc` export: `len` bytes for the host to write into.
#[unsafe(export_name = "alloc")]
pub extern "C" fn steinadler_alloc(len: u32) -> *mut u8 {
    if len == 0 {
        return std::ptr::NonNull::<u8>::dangling().as_ptr();
    }
    match Layout::from_size_align(len as usize, 1) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { std::alloc::alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

/// The `dealloc` export: frees a buffer from `alloc`, or a result envelope.
///
/// # Safety
///
/// `ptr` and `len` must come from one `alloc(len)` call or one result envelope, freed once.
#[unsafe(export_name = "dealloc")]
pub unsafe extern "C" fn steinadler_dealloc(ptr: *mut u8, len: u32) {
    if len == 0 || ptr.is_null() {
        return;
    }
    if let Ok(layout) = Layout::from_size_align(len as usize, 1) {
        // SAFETY: the caller promises `ptr` came from `alloc` with this layout.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

/// A function's encoded outcome: the envelope's status and its encoded value.
#[derive(Debug)]
pub struct Output {
    pub(crate) status: u8,
    // The envelope, already holding the array header and status byte.
    pub(crate) buf: Vec<u8>,
}

impl Output {
    pub(crate) fn start(status: u8) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64);
        buf.push(0x92); // fixarray of two
        buf.push(status); // positive fixint
        buf
    }

    fn encode<T: Serialize + ?Sized>(status: u8, value: &T) -> Self {
        let mut buf = Self::start(status);
        match write_value(&mut buf, value) {
            Ok(()) => Self { status, buf },
            Err(e) => Self::message(STATUS_BAD_OUTPUT, &format!("cannot encode the result: {e}")),
        }
    }

    pub(crate) fn message(status: u8, msg: &str) -> Self {
        let mut buf = Self::start(status);
        // Writing into a Vec cannot fail.
        let _ = rmp::encode::write_str(&mut buf, msg);
        Self { status, buf }
    }

    /// A plain return value.
    pub fn value<T: Serialize>(value: T) -> Self {
        Self::encode(STATUS_OK, &value)
    }

    /// A `Result` return value: `Err(e)` becomes a guest error carrying `e`.
    pub fn result<T: Serialize, E: Serialize>(result: Result<T, E>) -> Self {
        match result {
            Ok(v) => Self::encode(STATUS_OK, &v),
            Err(e) => Self::encode(STATUS_GUEST_ERROR, &e),
        }
    }

    /// The envelope's status byte.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Leaks the envelope and packs its address for the host, which may free it with `dealloc`.
    pub(crate) fn into_packed(self) -> u64 {
        // A boxed slice has exactly the `alloc(len)` layout (size `len`, align 1).
        let boxed = self.buf.into_boxed_slice();
        let len = boxed.len() as u64;
        let ptr = Box::into_raw(boxed).cast::<u8>();
        ((ptr as usize as u64) << 32) | len
    }
}

/// Appends `value` to `buf`, encoded as every value in an envelope is (structs as maps).
pub(crate) fn write_value<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    let mut ser = rmp_serde::Serializer::new(buf).with_struct_map();
    value.serialize(&mut ser)
}

pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload_as_str()
            .unwrap_or("(a non-string panic payload)");
        let msg = match info.location() {
            Some(at) => format!("panicked at {at}: {payload}"),
            None => format!("panicked: {payload}"),
        };
        crate::imports::panic_message(&msg);
    }));
}

/// Reads the argument bytes the host wrote at `ptr`.
///
/// # Safety
///
/// `ptr..ptr+len` must be a live allocation from `alloc(len)`.
unsafe fn args<'a>(ptr: u32, len: u32) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len as usize) }
}

/// Runs `read` on the input bytes the host wrote at `ptr`, then frees them.
pub(crate) fn take_input<R>(ptr: u32, len: u32, read: impl FnOnce(&[u8]) -> R) -> R {
    // SAFETY: the host passes the buffer it got from `alloc(len)`.
    let result = read(unsafe { args(ptr, len) });
    // SAFETY: the host handed the buffer over; nothing reads it after this.
    unsafe { steinadler_dealloc(ptr as usize as *mut u8, len) };
    result
}

/// Decodes the arguments as the tuple `A`, runs `f`, and packs its output.
pub fn call<A, F>(ptr: u32, len: u32, f: F) -> u64
where
    A: DeserializeOwned,
    F: FnOnce(A) -> Output,
{
    install_panic_hook();
    let decoded = take_input(ptr, len, |bytes| {
        codec::from_slice::<A>(bytes, &Default::default())
    });
    match decoded {
        Ok(args) => f(args).into_packed(),
        Err(e) => Output::message(STATUS_BAD_ARGUMENTS, &e.to_string()).into_packed(),
    }
}

/// Like [`call`], for a function without arguments: accepts an empty array (or nil).
pub fn call0<F>(ptr: u32, len: u32, f: F) -> u64
where
    F: FnOnce() -> Output,
{
    install_panic_hook();
    let ok = take_input(ptr, len, |bytes| matches!(bytes, [] | [0x90] | [0xc0]));
    if ok {
        f().into_packed()
    } else {
        let msg = "this function takes no arguments; pass an empty array";
        Output::message(STATUS_BAD_ARGUMENTS, msg).into_packed()
    }
}

/// A function's parameter names, for argument errors that say which argument did not fit.
#[derive(Debug)]
pub struct Signature {
    /// The function's name.
    pub function: &'static str,
    /// Its parameters' names, in order.
    pub params: &'static [&'static str],
}

impl Signature {
    /// Fails unless the argument array has exactly one element per parameter.
    pub fn check_len<E: serde::de::Error>(&self, len: Option<usize>) -> Result<(), E> {
        match len {
            Some(n) if n != self.params.len() => Err(E::custom(format_args!(
                "{} takes {} argument{} ({}), but {n} {} given",
                self.function,
                self.params.len(),
                if self.params.len() == 1 { "" } else { "s" },
                self.params.join(", "),
                if n == 1 { "was" } else { "were" },
            ))),
            _ => Ok(()),
        }
    }

    /// Decodes parameter `index`, naming it in any error.
    pub fn next<'de, A, T>(&self, seq: &mut A, index: usize) -> Result<T, A::Error>
    where
        A: SeqAccess<'de>,
        T: Deserialize<'de>,
    {
        let name = self.params.get(index).copied().unwrap_or("?");
        match seq.next_element::<T>() {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(A::Error::custom(format_args!(
                "{}: missing argument {} (`{name}`)",
                self.function,
                index + 1
            ))),
            Err(e) => Err(A::Error::custom(format_args!(
                "{}: argument {} (`{name}`): {e}",
                self.function,
                index + 1
            ))),
        }
    }
}

/// What a function's argument array should look like, for serde's messages.
pub fn expecting(f: &mut fmt::Formatter<'_>, function: &str, params: &[&str]) -> fmt::Result {
    write!(
        f,
        "an array of the arguments of {function}({})",
        params.join(", ")
    )
}

// Processes (`steinadler::process!`): `docs/abi.md`, section *Processes*.
mod process;
pub use process::{Slot, process_handle, process_init};

#[cfg(test)]
mod tests;
