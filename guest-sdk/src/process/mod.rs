//! Processes: long-lived instances that keep state and handle one message at a time.
//!
//! A function (`#[steinadler::function]`) runs in a fresh instance for every call. A *process*
//! is created once, keeps its state in its instance, and handles the messages sent to it in
//! order. Implement [`Process`] for the state type and export it with [`process!`](crate::process!):
//!
//! ```
//! use steinadler::process::{Context, Process};
//!
//! /// Counts the messages it gets; replies to calls with the count so far.
//! struct Tally(u64);
//!
//! impl Process for Tally {
//!     type Args = ();
//!     type Msg = steinadler::Term;
//!     type Reply = u64;
//!
//!     fn init((): (), _ctx: &mut Context) -> Result<Self, String> {
//!         Ok(Tally(0))
//!     }
//!
//!     fn handle(&mut self, _msg: steinadler::Term, ctx: &mut Context) -> Option<u64> {
//!         self.0 += 1;
//!         ctx.is_call().then_some(self.0)
//!     }
//! }
//!
//! steinadler::process!(Tally);
//! ```
//!
//! The host side: the process is spawned with an argument value (decoded as
//! [`Process::Args`]), then each message is decoded as [`Process::Msg`] and handed to
//! [`Process::handle`]. A message that does not decode is refused with an error for that message
//! only; the process keeps running with its state unchanged. A panic crashes the process.
//!
//! # Acting while handling a message
//!
//! While it runs [`Process::init`] or [`Process::handle`], a process can ask its node to act
//! at once, through the functions of this module (the `steinadler.process_op` host import):
//!
//! | function | does | `Ok` |
//! |---|---|---|
//! | [`self_pid()`] | | this process's pid |
//! | [`send(to, msg)`](send()) | sends `msg` now | `()` |
//! | [`call(to, msg, timeout)`](call()) | calls `to`, waits for the reply | the reply, as `R` |
//! | [`spawn(module, args, name)`](spawn()) | starts a process on this node | its pid |
//! | [`register(name, pid)`](register()) | names `pid` (`None`: itself) on this node | `()` |
//! | [`whereis(name)`](whereis()) | finds `"name"` here, or `"name@node"` | `Option<Pid>` |
//! | [`monitor(pid)`](monitor()) | sends this process `["DOWN", ref, pid, reason]` when `pid` exits | the reference |
//! | [`demonitor(ref)`](demonitor()) | cancels a monitor | whether it was active |
//! | [`open_stream(module, function, args, node)`](open_stream()) | consumes a stream function's items as messages | the stream's reference |
//! | [`open_process_stream(process, args)`](open_process_stream()) | consumes the items another process emits | the stream's reference |
//! | [`stream_emit(ref, items)`](stream_emit()) | emits items on a stream this process serves, within demand | `()` |
//! | [`stream_close(ref, error)`](stream_close()) | ends a stream this process serves | `()` |
//!
//! Each returns `Err(message)` when the node refuses or fails; outside a process (in a
//! `#[steinadler::function]`, or in a native unit test, where there is no node) each fails with
//! a message that starts with `"not a process"`.
//!
//! ```no_run
//! use std::time::Duration;
//! use steinadler::{process, Term};
//!
//! # fn main() -> Result<(), String> {
//! let cache = process::spawn("kv", (), Some("cache"))?;
//! process::send(&cache, ("put", "a", 1))?;
//! let a: Term = process::call("cache", ("get", "a"), Duration::from_secs(1))?;
//! assert_eq!(process::whereis("cache")?, Some(cache));
//! # Ok(())
//! # }
//! ```
//!
//! ## Sending now or after the message
//!
//! There are two ways to send:
//!
//! - [`Context::send`] collects the message; the node sends it **after `handle` returns**, with
//!   the reply, in the order of the `ctx.send` calls, and only if `handle` returns (a panic
//!   discards it). It never blocks the handler, its errors are not reported (a message to an
//!   unknown name is dropped), and it is part of the handler's outcome, which native unit tests
//!   inspect with [`Context::sent`]. It cannot be used in `init`. Use it by default: it is what
//!   "handle a message, then emit messages" means, and it costs no round trip to the node.
//! - [`send()`] sends **now**, before the handler goes on. It may wait (for room in a full
//!   mailbox, or for another node to accept the message), against the current message's
//!   deadline; it returns the node's error, such as an unknown name; a message it sent stays
//!   sent even if the handler panics afterwards; and it works in `init`. Use it when the order
//!   against a [`call()`] matters (the message must arrive before the call), when the handler
//!   must know that the message was accepted, or from `init`.
//!
//! Every `send()` message of a handler goes out before its `ctx.send` messages, whatever order
//! the calls were made in.
//!
//! A [`call()`] blocks the handler, so this process handles nothing else meanwhile; calling
//! itself (or a cycle of processes calling each other) deadlocks until the timeout.
//!
//! The exact ABI is in `docs/abi.md`, section *Processes*.

use crate::Term;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use steinadler_core::Pid;

/// A process: state that lives in one instance and handles messages one at a time.
///
/// Export an implementation with [`process!`](crate::process!). All three associated types
/// travel as MessagePack through serde, like function arguments and results (see
/// `docs/wire-format.md`); use [`Term`] for dynamic values.
pub trait Process: Sized + 'static {
    /// The spawn arguments. A spawn argument of `[]` (the empty array) is also accepted as nil
    /// when this type does not accept an empty array, so `()` takes nil or `[]`.
    type Args: serde::de::DeserializeOwned;
    /// The messages it handles.
    type Msg: serde::de::DeserializeOwned;
    /// Its replies to calls.
    type Reply: serde::Serialize;

    /// Starts the process from its spawn arguments.
    ///
    /// `ctx` gives the process's own pid ([`Context::self_pid`]); there is no sender, and
    /// [`Context::send`] and [`Context::stop`] must not be used here (the process ABI has no way
    /// to carry them out of `init`, so using them fails the start with an error saying so).
    /// The functions of this module that act at once ([`send()`], [`call()`], [`spawn()`],
    /// [`register()`], ...) do work here.
    ///
    /// # Errors
    ///
    /// `Err(reason)` means the process does not start; the spawner gets `reason` (a string) as
    /// the error.
    fn init(args: Self::Args, ctx: &mut Context) -> Result<Self, String>;

    /// Handles one message.
    ///
    /// For a call ([`Context::is_call`]) the returned value is the reply; `None` replies nil. For
    /// a plain send the return value is dropped. Use `ctx` to send messages and to stop.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Context) -> Option<Self::Reply>;
}

/// Where a message goes: a process by pid, or by registered name.
///
/// A name is a process registered on the local node (`"cache"`), or `"name@node"` for a named
/// process on another node; the node resolves it when it delivers the message.
///
/// On the wire a `Dest` is a pid (ext type 4) or a string, so it can also appear in messages:
/// `["forward", dest, msg]` decodes with a `Dest` field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dest {
    /// A process, by pid.
    Pid(Pid),
    /// A registered name, `"name"` or `"name@node"`.
    Name(String),
}

impl From<Pid> for Dest {
    fn from(pid: Pid) -> Self {
        Self::Pid(pid)
    }
}

impl From<&Pid> for Dest {
    fn from(pid: &Pid) -> Self {
        Self::Pid(pid.clone())
    }
}

impl From<&str> for Dest {
    fn from(name: &str) -> Self {
        Self::Name(name.to_owned())
    }
}

impl From<String> for Dest {
    fn from(name: String) -> Self {
        Self::Name(name)
    }
}

impl fmt::Display for Dest {
    /// A pid as `<node.incarnation.id>`, a name as itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pid(pid) => pid.fmt(f),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl Serialize for Dest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Pid(pid) => serde_pid::serialize(pid, s),
            Self::Name(name) => s.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for Dest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Term::deserialize(d)? {
            Term::Pid(pid) => Ok(Self::Pid(pid)),
            Term::String(name) => Ok(Self::Name(name)),
            other => Err(D::Error::custom(format_args!(
                "expected a pid or a process name (a string), got {}",
                article(other.kind()),
            ))),
        }
    }
}

/// A Term kind with its article ("an int", "a list", but "nil"), for messages.
pub(crate) fn article(kind: &str) -> String {
    match kind {
        "nil" => "nil".to_owned(),
        _ if kind.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

/// Serde for a [`Pid`] field, in its wire form (ext type 4): use
/// `#[serde(with = "steinadler::process::serde_pid")]`.
///
/// # Examples
///
/// ```
/// use steinadler::Pid;
/// #[derive(steinadler::serde::Deserialize)]
/// #[serde(crate = "steinadler::serde")]
/// struct Subscribe {
///     #[serde(with = "steinadler::process::serde_pid")]
///     subscriber: Pid,
/// }
/// ```
pub mod serde_pid {
    use super::article;
    use crate::Term;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use steinadler_core::Pid;

    /// Writes `pid` as the wire format's pid (ext type 4).
    ///
    /// # Errors
    ///
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(pid: &Pid, s: S) -> Result<S::Ok, S::Error> {
        Term::Pid(pid.clone()).serialize(s)
    }

    /// Reads a pid (ext type 4).
    ///
    /// # Errors
    ///
    /// Fails on any other value.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pid, D::Error> {
        match Term::deserialize(d)? {
            Term::Pid(pid) => Ok(pid),
            other => Err(D::Error::custom(format_args!(
                "expected a pid, got {}",
                article(other.kind())
            ))),
        }
    }
}

/// What a process can see and do while it runs [`Process::init`] or [`Process::handle`].
///
/// The generated exports make one for each call. Native unit tests of a process make their own
/// with [`Context::new`] or [`Context::for_message`] and inspect it afterwards with
/// [`Context::sent`] and [`Context::is_stopping`].
#[derive(Debug)]
pub struct Context {
    self_pid: Pid,
    from: Option<Pid>,
    call: bool,
    stop: bool,
    // Each message already encoded, so the outcome is written without encoding twice.
    sends: Vec<(Dest, Vec<u8>)>,
    // The first message that could not be encoded.
    send_error: Option<String>,
}

impl Context {
    /// The context of [`Process::init`]: the process's pid, no sender, not a call.
    pub fn new(self_pid: Pid) -> Self {
        Self::for_message(self_pid, None, false)
    }

    /// The context of one [`Process::handle`]: the process's pid, the sender (if the host
    /// knows it) and whether a reply is expected.
    pub fn for_message(self_pid: Pid, from: Option<Pid>, is_call: bool) -> Self {
        Self {
            self_pid,
            from,
            call: is_call,
            stop: false,
            sends: Vec::new(),
            send_error: None,
        }
    }

    /// This process's pid.
    pub fn self_pid(&self) -> &Pid {
        &self.self_pid
    }

    /// The sender of the current message, if known. `None` in `init`.
    pub fn from(&self) -> Option<&Pid> {
        self.from.as_ref()
    }

    /// Whether the current message is a call, whose sender waits for the reply that
    /// [`Process::handle`] returns. `false` for a plain send, and in `init`.
    pub fn is_call(&self) -> bool {
        self.call
    }

    /// Sends `msg` to `to` once the current message has been handled.
    ///
    /// Messages go out in the order of the `send` calls, after `handle` returns, and only if
    /// it returns (a panic discards them). Delivery is asynchronous and not confirmed: a message
    /// to a process or name that does not exist is dropped by the node. To send at once and
    /// learn whether the node accepted the message, use [`send()`](crate::process::send())
    /// instead (see the [module docs](mod@crate::process#sending-now-or-after-the-message)).
    ///
    /// If `msg` cannot be encoded (its `Serialize` impl fails), the whole outcome of the current
    /// message is reported to the host as bad output (status 3) instead.
    pub fn send(&mut self, to: impl Into<Dest>, msg: impl Serialize) {
        let to = to.into();
        let mut buf = Vec::with_capacity(32);
        match crate::__private::write_value(&mut buf, &msg) {
            Ok(()) => self.sends.push((to, buf)),
            Err(e) => {
                self.send_error
                    .get_or_insert_with(|| format!("cannot encode the message sent to {to}: {e}"));
            }
        }
    }

    /// Ends the process, normally, once the current message has been handled (its reply and
    /// sends still go out). The state is dropped.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Whether [`Context::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stop
    }

    /// The messages sent so far, in order, decoded as Terms. For tests.
    ///
    /// # Panics
    ///
    /// Panics if a message is not a Term, which only happens for an integer above `i64::MAX`.
    pub fn sent(&self) -> Vec<(Dest, Term)> {
        self.sends
            .iter()
            .map(|(to, bytes)| {
                let msg = Term::decode(bytes)
                    .unwrap_or_else(|e| panic!("the message sent to {to} is not a Term: {e}"));
                (to.clone(), msg)
            })
            .collect()
    }

    pub(crate) fn into_parts(self) -> Outcome {
        Outcome {
            stop: self.stop,
            sends: self.sends,
            send_error: self.send_error,
        }
    }
}

/// What a [`Context`] collected, for the generated export to encode.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) stop: bool,
    pub(crate) sends: Vec<(Dest, Vec<u8>)>,
    pub(crate) send_error: Option<String>,
}

/// Exports a [`Process`] implementation as a process module.
///
/// `steinadler::process!(MyProcess);` generates the two exports of the process ABI
/// (`docs/abi.md`, *Processes*): `process_init`, which decodes `[args, self_pid]`, runs
/// [`Process::init`] and keeps the state, and `process_handle`, which decodes
/// `[msg, from, kind]`, runs [`Process::handle`] on the state and encodes
/// `[reply, stop, sends]`. The state lives in a thread-local `RefCell<Option<MyProcess>>`.
///
/// Use it once per module, at most: the export names are fixed.
#[macro_export]
macro_rules! process {
    ($process:ty $(,)?) => {
        const _: () = {
            ::std::thread_local! {
                static STATE: ::core::cell::RefCell<::core::option::Option<$process>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            #[doc(hidden)]
            #[unsafe(no_mangle)]
            extern "C" fn process_init(ptr: u32, len: u32) -> u64 {
                $crate::__private::process_init::<$process>(ptr, len, &STATE)
            }

            #[doc(hidden)]
            #[unsafe(no_mangle)]
            extern "C" fn process_handle(ptr: u32, len: u32) -> u64 {
                $crate::__private::process_handle::<$process>(ptr, len, &STATE)
            }
        };
    };
}

mod ops;
pub use ops::{
    call, demonitor, monitor, open_process_stream, open_stream, register, register_global,
    self_pid, send, spawn, stream_close, stream_emit, whereis,
};

#[cfg(test)]
mod tests;
