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
mod tests {
    use super::ops::*;
    use super::*;
    use std::time::Duration;

    fn pid() -> Pid {
        Pid {
            node: "n1".into(),
            incarnation: 3,
            id: 7,
        }
    }

    #[test]
    fn dest_has_the_wire_bytes_of_a_pid_or_a_string() {
        let bytes = steinadler_core::codec::to_vec(&Dest::from(pid())).unwrap();
        assert_eq!(
            bytes,
            [0xc7, 0x06, 0x04, 0x93, 0xa2, b'n', b'1', 0x03, 0x07]
        );
        let bytes = steinadler_core::codec::to_vec(&Dest::from("db@n2")).unwrap();
        assert_eq!(bytes, [0xa5, b'd', b'b', b'@', b'n', b'2']);
    }

    #[test]
    fn dest_decodes_a_pid_or_a_string_and_nothing_else() {
        let limits = steinadler_core::Limits::DEFAULT;
        let decode = |bytes: &[u8]| steinadler_core::codec::from_slice::<Dest>(bytes, &limits);
        assert_eq!(
            decode(&[0xc7, 0x06, 0x04, 0x93, 0xa2, b'n', b'1', 0x03, 0x07]),
            Ok(Dest::Pid(pid()))
        );
        assert_eq!(decode(&[0xa1, b'x']), Ok(Dest::Name("x".into())));
        let err = decode(&[0x07]).unwrap_err().to_string();
        assert!(err.contains("expected a pid or a process name"), "{err}");
        assert!(err.contains("got an int"), "{err}");
    }

    #[test]
    fn serde_pid_round_trips() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(with = "serde_pid")]
            p: Pid,
        }
        let s = S { p: pid() };
        let bytes = steinadler_core::codec::to_vec(&s).unwrap();
        let back: S = steinadler_core::codec::from_slice(&bytes, &Default::default()).unwrap();
        assert_eq!(back, s);
        let err =
            steinadler_core::codec::from_slice::<S>(&[0x81, 0xa1, b'p', 0xc0], &Default::default())
                .unwrap_err()
                .to_string();
        assert!(err.contains("expected a pid, got nil"), "{err}");
    }

    #[test]
    fn context_records_sends_and_stop() {
        let mut ctx = Context::for_message(pid(), Some(pid()), true);
        assert!(ctx.is_call());
        assert_eq!(ctx.from(), Some(&pid()));
        assert_eq!(ctx.self_pid(), &pid());
        ctx.send("log", ("hi", 1));
        ctx.send(ctx.self_pid().clone(), Term::atom("tick"));
        assert!(!ctx.is_stopping());
        ctx.stop();
        assert!(ctx.is_stopping());
        assert_eq!(
            ctx.sent(),
            [
                (
                    Dest::Name("log".into()),
                    Term::list(["hi".into(), 1.into()])
                ),
                (Dest::Pid(pid()), Term::atom("tick")),
            ]
        );
        let init = Context::new(pid());
        assert!(!init.is_call());
        assert_eq!(init.from(), None);
    }

    #[test]
    fn a_message_that_cannot_be_encoded_is_an_error_not_a_send() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        let mut ctx = Context::new(pid());
        ctx.send("x", Bad);
        assert!(ctx.sent().is_empty());
        let outcome = ctx.into_parts();
        let err = outcome.send_error.unwrap();
        assert!(err.contains("sent to x") && err.contains("nope"), "{err}");
    }

    // The `process_op` functions, against a fake host.

    const PID_BYTES: [u8; 9] = [0xc7, 0x06, 0x04, 0x93, 0xa2, b'n', b'1', 0x03, 0x07];

    /// Runs `f` with a host that answers every op with `answer`; returns what `f` returned and
    /// the ops asked, with their argument bytes.
    fn with_host<T>(answer: &[u8], f: impl FnOnce() -> T) -> (T, Vec<(u32, Vec<u8>)>) {
        use std::cell::RefCell;
        use std::rc::Rc;
        let asked = Rc::new(RefCell::new(Vec::new()));
        let (log, answer) = (Rc::clone(&asked), answer.to_vec());
        crate::imports::FAKE_HOST.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |op, args| {
                log.borrow_mut().push((op, args.to_vec()));
                answer.clone()
            }));
        });
        let out = f();
        crate::imports::FAKE_HOST.with(|h| *h.borrow_mut() = None);
        let asked = asked.borrow().clone();
        (out, asked)
    }

    fn ok(value: &[u8]) -> Vec<u8> {
        [&[0x92, 0x00][..], value].concat()
    }

    fn concat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn every_op_fails_natively_as_not_a_process() {
        let errors = [
            self_pid().unwrap_err(),
            send("x", 1).unwrap_err(),
            call::<Term>("x", 1, Duration::from_secs(1)).unwrap_err(),
            spawn("kv", (), None).unwrap_err(),
            register("x", None).unwrap_err(),
            whereis("x").unwrap_err(),
        ];
        for e in errors {
            assert_eq!(e, crate::imports::NOT_A_PROCESS);
            assert!(e.starts_with("not a process"), "{e}");
        }
    }

    #[test]
    fn self_pid_sends_the_empty_array_and_reads_a_pid() {
        let (pid_, asked) = with_host(&ok(&PID_BYTES), self_pid);
        assert_eq!(pid_, Ok(pid()));
        assert_eq!(asked, [(0, vec![0x90])]);
    }

    #[test]
    fn send_sends_to_and_msg() {
        let (out, asked) = with_host(&ok(&[0xc0]), || send(pid(), 5));
        assert_eq!(out, Ok(()));
        assert_eq!(asked, [(1, concat(&[&[0x92], &PID_BYTES, &[0x05]]))]);
        let (out, asked) = with_host(&ok(&[0xc0]), || send("log@n2", ["a"]));
        assert_eq!(out, Ok(()));
        let want = concat(&[&[0x92, 0xa6], b"log@n2", &[0x91, 0xa1, b'a']]);
        assert_eq!(asked, [(1, want)]);
    }

    #[test]
    fn call_sends_the_timeout_in_milliseconds_and_decodes_the_reply() {
        let msg = ("get", "a");
        let timeout = Duration::from_millis(1500);
        let (out, asked) = with_host(&ok(&[0x07]), || call::<i64>("db", msg, timeout));
        assert_eq!(out, Ok(7));
        let want = concat(&[
            &[0x93, 0xa2, b'd', b'b'],
            &[0x92, 0xa3, b'g', b'e', b't', 0xa1, b'a'],
            &[0xcd, 0x05, 0xdc],
        ]);
        assert_eq!(asked, [(2, want)]);
        // Any reply as a Term.
        let (out, _) = with_host(&ok(&PID_BYTES), || call::<Term>("db", 1, timeout));
        assert_eq!(out, Ok(Term::Pid(pid())));
    }

    #[test]
    fn a_reply_of_another_type_is_an_error_naming_the_type() {
        let answer = ok(&[0xa2, b'n', b'o']);
        let (out, _) = with_host(&answer, || call::<i64>("db", 1, Duration::from_secs(1)));
        let e = out.unwrap_err();
        assert!(
            e.starts_with("call: the reply of db does not decode as `i64`: "),
            "{e}"
        );
    }

    #[test]
    fn timeouts_round_up_to_a_positive_number_of_milliseconds() {
        assert_eq!(timeout_millis(Duration::ZERO), 1);
        assert_eq!(timeout_millis(Duration::from_nanos(1)), 1);
        assert_eq!(timeout_millis(Duration::from_micros(1500)), 2);
        assert_eq!(timeout_millis(Duration::from_secs(2)), 2000);
        assert_eq!(timeout_millis(Duration::MAX), i64::MAX);
    }

    #[test]
    fn spawn_sends_module_args_and_name_and_reads_a_pid() {
        let (out, asked) = with_host(&ok(&PID_BYTES), || spawn("kv", (), Some("db")));
        assert_eq!(out, Ok(pid()));
        let want = [0x93, 0xa2, b'k', b'v', 0xc0, 0xa2, b'd', b'b'];
        assert_eq!(asked, [(3, want.to_vec())]);
        let (out, asked) = with_host(&ok(&PID_BYTES), || spawn("counter", 5, None));
        assert_eq!(out, Ok(pid()));
        let want = concat(&[&[0x93, 0xa7], b"counter", &[0x05, 0xc0]]);
        assert_eq!(asked, [(3, want)]);
        let (out, _) = with_host(&ok(&[0x01]), || spawn("kv", (), None));
        assert_eq!(
            out,
            Err("spawn: the host answered an int, not a pid".into())
        );
    }

    #[test]
    fn register_sends_nil_for_itself_or_the_pid() {
        let (out, asked) = with_host(&ok(&[0xc0]), || register("db", None));
        assert_eq!(out, Ok(()));
        assert_eq!(asked, [(4, vec![0x92, 0xa2, b'd', b'b', 0xc0])]);
        let (out, asked) = with_host(&ok(&[0xc0]), || register("db", Some(&pid())));
        assert_eq!(out, Ok(()));
        assert_eq!(
            asked,
            [(4, concat(&[&[0x92, 0xa2, b'd', b'b'], &PID_BYTES]))]
        );
    }

    #[test]
    fn whereis_reads_a_pid_or_nil() {
        let (out, asked) = with_host(&ok(&PID_BYTES), || whereis("db@n2"));
        assert_eq!(out, Ok(Some(pid())));
        assert_eq!(asked, [(5, concat(&[&[0x91, 0xa5], b"db@n2"]))]);
        let (out, _) = with_host(&ok(&[0xc0]), || whereis("db"));
        assert_eq!(out, Ok(None));
        let (out, _) = with_host(&ok(&[0xc3]), || whereis("db"));
        assert_eq!(
            out,
            Err("whereis: the host answered a bool, not a pid or nil".into())
        );
    }

    #[test]
    fn the_process_op_examples_of_abi_md() {
        let (_, asked) = with_host(&ok(&[0xc0]), || send("log@n2", 1));
        let want = [0x92, 0xa6, 0x6c, 0x6f, 0x67, 0x40, 0x6e, 0x32, 0x01];
        assert_eq!(asked, [(1, want.to_vec())]);
        let timeout = Duration::from_millis(2000);
        let (_, asked) = with_host(&ok(&[0xc0]), || call::<Term>("db", "keys", timeout));
        let want = [
            0x93, 0xa2, 0x64, 0x62, 0xa4, 0x6b, 0x65, 0x79, 0x73, 0xcd, 0x07, 0xd0,
        ];
        assert_eq!(asked, [(2, want.to_vec())]);
        let (_, asked) = with_host(&ok(&[0xc0]), || whereis("db"));
        assert_eq!(asked, [(5, vec![0x91, 0xa2, 0x64, 0x62])]);
    }

    #[test]
    fn a_host_error_is_its_message_as_is() {
        let answer = concat(&[&[0x92, 0x01, 0xa6], b"noproc"]);
        let (out, _) = with_host(&answer, || send("x", 1));
        assert_eq!(out, Err("noproc".into()));
        let (out, _) = with_host(&answer, self_pid);
        assert_eq!(out, Err("noproc".into()));
        // A non-string error is shown as a Term.
        let (out, _) = with_host(&[0x92, 0x01, 0x05], || whereis("x"));
        assert_eq!(out, Err("5".into()));
    }

    #[test]
    fn a_malformed_answer_is_an_error() {
        for answer in [&[][..], &[0x92, 0x02, 0xc0], &[0x91, 0x00], &[0xc0]] {
            let (out, _) = with_host(answer, || register("x", None));
            let e = out.unwrap_err();
            assert!(e.starts_with("register: the host's answer is not"), "{e}");
        }
        let (out, _) = with_host(&[0x92, 0x00, 0xc1], self_pid);
        let e = out.unwrap_err();
        assert!(
            e.starts_with("self_pid: the host's answer does not decode"),
            "{e}"
        );
    }

    #[test]
    fn a_message_that_cannot_be_encoded_is_an_error_and_nothing_is_asked() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        let (out, asked) = with_host(&ok(&[0xc0]), || send("x", Bad));
        assert_eq!(out, Err("cannot encode the message sent to x: nope".into()));
        assert!(asked.is_empty());
        let (out, asked) = with_host(&ok(&[0xc0]), || spawn("kv", Bad, None));
        assert_eq!(
            out,
            Err("cannot encode the spawn arguments of kv: nope".into())
        );
        assert!(asked.is_empty());
    }
}
