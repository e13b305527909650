//! Processes (`steinadler::process!`): the `process_init` and `process_handle` exports, and
//! the envelopes they decode and encode (`docs/abi.md`, section *Processes*).

use super::{
    Output, STATUS_BAD_ARGUMENTS, STATUS_BAD_OUTPUT, STATUS_GUEST_ERROR, STATUS_OK,
    install_panic_hook, take_input, write_value,
};
use crate::process::{Context, Outcome, Process, article};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, Error as _, SeqAccess, Visitor};
use std::any::type_name;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::thread::LocalKey;
use steinadler_core::codec::{self, DecodeError};
use steinadler_core::{Pid, Term};

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
pub(super) struct InitInput<A> {
    pub(super) args: A,
    pub(super) self_pid: Pid,
}

/// The argument of `process_handle`.
#[derive(Debug)]
pub(super) struct HandleInput<M> {
    pub(super) msg: M,
    pub(super) from: Option<Pid>,
    pub(super) call: bool,
}

/// A decode error as the message of a bad-arguments envelope.
fn decode_message(e: DecodeError) -> String {
    match e {
        // Our own messages: they say what did not fit.
        DecodeError::Serde(msg) => msg,
        other => other.to_string(),
    }
}

pub(super) fn decode_init<A: DeserializeOwned>(bytes: &[u8]) -> Result<InitInput<A>, String> {
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

pub(super) fn decode_handle<M: DeserializeOwned>(bytes: &[u8]) -> Result<HandleInput<M>, String> {
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

pub(super) fn run_init<T: Process>(
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

pub(super) fn run_handle<T: Process>(
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
    pub(super) fn handled<R: Serialize>(reply: Option<&R>, outcome: Outcome) -> Self {
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
