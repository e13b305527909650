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

use crate::process::{Context, Outcome, Process, article};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, Error as _, SeqAccess, Visitor};
use std::alloc::Layout;
use std::any::type_name;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::thread::LocalKey;
use steinadler_core::codec::{self, DecodeError};
use steinadler_core::{Pid, Term};

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

/// The thread-local state slot that `steinadler::process!` declares for its process type.
pub type Slot<T> = LocalKey<RefCell<Option<T>>>;

thread_local! {
    /// The process's own pid, from `process_init`.
    static SELF_PID: RefCell<Option<Pid>> = const { RefCell::new(None) };
}

/// The `process_init` export: decodes `[args, self_pid]`, runs `T::init`, keeps the state.
pub fn process_init<T: Process>(ptr: u32, len: u32, slot: &'static Slot<T>) -> u64 {
    install_panic_hook();
    let input = take_input(ptr, len, decode_init::<T::Args>);
    run_init(input, slot).into_packed()
}

/// The `process_handle` export: decodes `[msg, from, kind]`, runs `T::handle` on the state,
/// encodes `[reply, stop, sends]`.
pub fn process_handle<T: Process>(ptr: u32, len: u32, slot: &'static Slot<T>) -> u64 {
    install_panic_hook();
    let input = take_input(ptr, len, decode_handle::<T::Msg>);
    run_handle(input, slot).into_packed()
}

/// The argument of `process_init`.
#[derive(Debug)]
struct InitInput<A> {
    args: A,
    self_pid: Pid,
}

/// The argument of `process_handle`.
#[derive(Debug)]
struct HandleInput<M> {
    msg: M,
    from: Option<Pid>,
    call: bool,
}

/// A decode error as the message of a bad-arguments envelope.
fn decode_message(e: DecodeError) -> String {
    match e {
        // Our own messages: they say what did not fit.
        DecodeError::Serde(msg) => msg,
        other => other.to_string(),
    }
}

fn decode_init<A: DeserializeOwned>(bytes: &[u8]) -> Result<InitInput<A>, String> {
    let limits = Default::default();
    codec::from_slice(bytes, &limits).or_else(|e| {
        // A spawn argument of `[]` is also nil, for argument types (like `()`) that take nil
        // but not an empty array; as for functions without arguments.
        if let [0x92, 0x90, pid @ ..] = bytes {
            let nil = [&[0x92, 0xc0], pid].concat();
            if let Ok(input) = codec::from_slice(&nil, &limits) {
                return Ok(input);
            }
        }
        Err(decode_message(e))
    })
}

fn decode_handle<M: DeserializeOwned>(bytes: &[u8]) -> Result<HandleInput<M>, String> {
    codec::from_slice(bytes, &Default::default()).map_err(decode_message)
}

/// Fails unless an input array has `want` elements.
fn check_len<E: serde::de::Error>(len: Option<usize>, want: usize, what: &str) -> Result<(), E> {
    match len {
        Some(n) if n != want => Err(E::custom(format_args!(
            "{what}, an array of {want}, but got an array of {n}"
        ))),
        _ => Ok(()),
    }
}

/// The next element of an input array, or an error naming it.
fn element<'de, S, T>(seq: &mut S, name: &str) -> Result<T, S::Error>
where
    S: SeqAccess<'de>,
    T: Deserialize<'de>,
{
    seq.next_element()?
        .ok_or_else(|| S::Error::custom(format_args!("missing `{name}`")))
}

impl<'de, A: DeserializeOwned> Deserialize<'de> for InitInput<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<A>(PhantomData<A>);
        impl<'de, A: DeserializeOwned> Visitor<'de> for V<A> {
            type Value = InitInput<A>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("process_init's argument, the array [args, self_pid]")
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                check_len(seq.size_hint(), 2, "process_init takes [args, self_pid]")?;
                let args = seq
                    .next_element::<A>()
                    .map_err(|e| {
                        S::Error::custom(format_args!(
                            "the spawn arguments do not decode as `{}`: {e}",
                            type_name::<A>()
                        ))
                    })?
                    .ok_or_else(|| S::Error::custom("missing `args`"))?;
                let self_pid = match element(&mut seq, "self_pid")? {
                    Term::Pid(pid) => pid,
                    other => {
                        return Err(S::Error::custom(format_args!(
                            "`self_pid` must be a pid, got {}",
                            article(other.kind())
                        )));
                    }
                };
                Ok(InitInput { args, self_pid })
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

impl<'de, M: DeserializeOwned> Deserialize<'de> for HandleInput<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<M>(PhantomData<M>);
        impl<'de, M: DeserializeOwned> Visitor<'de> for V<M> {
            type Value = HandleInput<M>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("process_handle's argument, the array [msg, from, kind]")
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                check_len(seq.size_hint(), 3, "process_handle takes [msg, from, kind]")?;
                let msg = seq
                    .next_element::<M>()
                    .map_err(|e| {
                        S::Error::custom(format_args!(
                            "the message does not decode as `{}`: {e}",
                            type_name::<M>()
                        ))
                    })?
                    .ok_or_else(|| S::Error::custom("missing `msg`"))?;
                let from = match element(&mut seq, "from")? {
                    Term::Nil => None,
                    Term::Pid(pid) => Some(pid),
                    other => {
                        return Err(S::Error::custom(format_args!(
                            "`from` must be a pid or nil, got {}",
                            article(other.kind())
                        )));
                    }
                };
                let call = match element(&mut seq, "kind")? {
                    Term::Int(0) => false,
                    Term::Int(1) => true,
                    other => {
                        return Err(S::Error::custom(format_args!(
                            "`kind` must be 0 (send) or 1 (call), got {other}"
                        )));
                    }
                };
                Ok(HandleInput { msg, from, call })
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

fn run_init<T: Process>(
    input: Result<InitInput<T::Args>, String>,
    slot: &'static Slot<T>,
) -> Output {
    let InitInput { args, self_pid } = match input {
        Ok(input) => input,
        Err(msg) => return Output::message(STATUS_BAD_ARGUMENTS, &msg),
    };
    let mut ctx = Context::new(self_pid.clone());
    let state = match T::init(args, &mut ctx) {
        Ok(state) => state,
        Err(reason) => return Output::encode(STATUS_GUEST_ERROR, &reason),
    };
    let Outcome {
        stop,
        sends,
        send_error,
    } = ctx.into_parts();
    if !sends.is_empty() || send_error.is_some() {
        let msg = "init called ctx.send, which only works in handle: \
                   a process sends its first messages when it handles its first message";
        return Output::message(STATUS_GUEST_ERROR, msg);
    }
    if stop {
        let msg = "init called ctx.stop, which only works in handle: \
                   to refuse to start, return Err(reason) from init";
        return Output::message(STATUS_GUEST_ERROR, msg);
    }
    // A repeated init (the host never does this) replaces the state.
    slot.with(|s| *s.borrow_mut() = Some(state));
    SELF_PID.with(|p| *p.borrow_mut() = Some(self_pid));
    Output::value(())
}

fn run_handle<T: Process>(
    input: Result<HandleInput<T::Msg>, String>,
    slot: &'static Slot<T>,
) -> Output {
    let HandleInput { msg, from, call } = match input {
        Ok(input) => input,
        Err(msg) => return Output::message(STATUS_BAD_ARGUMENTS, &msg),
    };
    let not_started = || {
        let msg = "process_handle was called before process_init succeeded";
        Output::message(STATUS_GUEST_ERROR, msg)
    };
    let Some(self_pid) = SELF_PID.with(|p| p.borrow().clone()) else {
        return not_started();
    };
    let mut ctx = Context::for_message(self_pid, from, call);
    let Some(reply) = slot.with(|s| s.borrow_mut().as_mut().map(|st| st.handle(msg, &mut ctx)))
    else {
        return not_started();
    };
    let outcome = ctx.into_parts();
    if outcome.stop {
        // Dropped outside the borrow.
        let state = slot.with(|s| s.borrow_mut().take());
        drop(state);
    }
    Output::handled(reply.as_ref(), outcome)
}

impl Output {
    /// The outcome of one message: `[reply, stop, sends]`, each send `[to, msg]`.
    fn handled<R: Serialize>(reply: Option<&R>, outcome: Outcome) -> Self {
        let Outcome {
            stop,
            sends,
            send_error,
        } = outcome;
        if let Some(msg) = send_error {
            return Self::message(STATUS_BAD_OUTPUT, &msg);
        }
        let mut buf = Self::start(STATUS_OK);
        buf.push(0x93); // fixarray of three
        match reply {
            None => buf.push(0xc0),
            Some(reply) => {
                if let Err(e) = write_value(&mut buf, reply) {
                    let msg = format!("cannot encode the reply: {e}");
                    return Self::message(STATUS_BAD_OUTPUT, &msg);
                }
            }
        }
        buf.push(if stop { 0xc3 } else { 0xc2 });
        let Ok(count) = u32::try_from(sends.len()) else {
            return Self::message(STATUS_BAD_OUTPUT, "too many sends for one message");
        };
        // Writing into a Vec cannot fail.
        let _ = rmp::encode::write_array_len(&mut buf, count);
        for (to, msg) in &sends {
            buf.push(0x92); // fixarray of two
            if let Err(e) = write_value(&mut buf, to) {
                let msg = format!("cannot encode the destination {to}: {e}");
                return Self::message(STATUS_BAD_OUTPUT, &msg);
            }
            buf.extend_from_slice(msg);
        }
        Self {
            status: STATUS_OK,
            buf,
        }
    }
}

#[cfg(test)]
mod tests;
