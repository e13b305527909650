//! The `steinadler.process_op` import: acting at once, while a message is being handled.

use super::{Dest, article};
use crate::Term;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::type_name;
use std::time::Duration;
use steinadler_core::codec::{self, Limits};
use steinadler_core::{Pid, Ref};

/// The operations of the `process_op` import, by op code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    SelfPid = 0,
    Send = 1,
    Call = 2,
    Spawn = 3,
    Register = 4,
    Whereis = 5,
    Monitor = 6,
    Demonitor = 7,
    RegisterGlobal = 8,
    OpenStream = 9,
    StreamEmit = 10,
    StreamClose = 11,
    OpenProcessStream = 12,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::SelfPid => "self_pid",
            Self::Send => "send",
            Self::Call => "call",
            Self::Spawn => "spawn",
            Self::Register => "register",
            Self::Whereis => "whereis",
            Self::Monitor => "monitor",
            Self::Demonitor => "demonitor",
            Self::RegisterGlobal => "register_global",
            Self::OpenStream => "open_stream",
            Self::StreamEmit => "stream_emit",
            Self::StreamClose => "stream_close",
            Self::OpenProcessStream => "open_process_stream",
        }
    }
}

/// One operation's argument array, being encoded.
pub(super) struct OpArgs {
    op: Op,
    buf: Vec<u8>,
}

impl OpArgs {
    /// An argument array of `count` (at most 15) elements, to be pushed with [`OpArgs::arg`].
    pub(super) fn new(op: Op, count: u8) -> Self {
        debug_assert!(count < 16, "a fixarray holds at most 15 elements");
        let mut buf = Vec::with_capacity(64);
        buf.push(0x90 | count);
        Self { op, buf }
    }

    /// Appends one argument; `what` names it in the error if it cannot be encoded.
    pub(super) fn arg<T: Serialize + ?Sized>(
        mut self,
        value: &T,
        what: impl FnOnce() -> String,
    ) -> Result<Self, String> {
        match crate::__private::write_value(&mut self.buf, value) {
            Ok(()) => Ok(self),
            Err(e) => Err(format!("cannot encode {}: {e}", what())),
        }
    }

    /// Asks the host, and decodes the value of an ok envelope with `decode`.
    ///
    /// A host error (status 1) is its message, as is. A local failure to read the answer is
    /// prefixed with the operation's name.
    pub(super) fn run<T>(
        self,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, String> {
        let name = self.op.name();
        let envelope = crate::imports::process_op(self.op as u32, &self.buf);
        drop(self.buf);
        match envelope.as_slice() {
            [0x92, 0x00, value @ ..] => decode(value).map_err(|e| format!("{name}: {e}")),
            [0x92, 0x01, message @ ..] => Err(match Term::decode(message) {
                Ok(Term::String(message)) => message,
                Ok(other) => other.to_string(),
                Err(e) => format!("{name} failed, and its error does not decode: {e}"),
            }),
            _ => Err(format!(
                "{name}: the host's answer is not a [status, value] envelope of status 0 or 1"
            )),
        }
    }
}

/// The host's value as a Term.
pub(super) fn term_value(value: &[u8]) -> Result<Term, String> {
    Term::decode(value).map_err(|e| format!("the host's answer does not decode: {e}"))
}

/// The host's value as a pid.
pub(super) fn pid_value(value: &[u8]) -> Result<Pid, String> {
    match term_value(value)? {
        Term::Pid(pid) => Ok(pid),
        other => Err(format!(
            "the host answered {}, not a pid",
            article(other.kind())
        )),
    }
}

/// The host's value as a reference.
pub(super) fn ref_value(value: &[u8]) -> Result<Ref, String> {
    match term_value(value)? {
        Term::Ref(r) => Ok(r),
        other => Err(format!(
            "the host answered {}, not a reference",
            article(other.kind())
        )),
    }
}

/// Ignores the host's value (nil).
pub(super) fn nil_value(_: &[u8]) -> Result<(), String> {
    Ok(())
}

/// The timeout in whole milliseconds, rounded up, at least 1 (the host takes a positive count).
pub(super) fn timeout_millis(timeout: Duration) -> i64 {
    let millis = timeout.as_nanos().div_ceil(1_000_000).max(1);
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// This process's pid, asked of the node.
///
/// Inside [`Process::handle`] and [`Process::init`], [`Context::self_pid`] gives the same pid
/// without asking; this function also works in code that has no `Context` at hand.
///
/// # Errors
///
/// Outside a process (in a `#[steinadler::function]`, or natively) it fails with a message that
/// starts with `"not a process"`.
pub fn self_pid() -> Result<Pid, String> {
    OpArgs::new(Op::SelfPid, 0).run(pid_value)
}

/// Sends `msg` to `to` now, before the current message has been handled.
///
/// `to` is a [`Dest`]: a [`Pid`], or a name, `"name"` on this node or `"name@node"`. The send is
/// asynchronous: it returns once the receiver's node has accepted the message into the mailbox,
/// without waiting for the receiver to handle it. When the mailbox is full it first waits for
/// room (backpressure); that wait, and the round trip to another node, count against the current
/// message's deadline.
///
/// Compared with [`Context::send`]: this message goes out at once, even if the handler later
/// panics, and before every `ctx.send` message of the same handler. See the
/// [module docs](mod@crate::process#sending-now-or-after-the-message) for which to use.
///
/// # Errors
///
/// The node's error message (for example, no process has that name), a message saying that
/// `msg` cannot be encoded, or `"not a process…"` outside a process.
pub fn send(to: impl Into<Dest>, msg: impl Serialize) -> Result<(), String> {
    let to = to.into();
    OpArgs::new(Op::Send, 2)
        .arg(&to, || format!("the destination {to}"))?
        .arg(&msg, || format!("the message sent to {to}"))?
        .run(nil_value)
}

/// Calls `to` with `msg` and waits up to `timeout` for its reply, decoded as `R`.
///
/// Use `R = Term` to take any reply. The handler is blocked meanwhile: this process handles no
/// other message until the reply comes or the time is up. The node caps the wait at what is left
/// of the current message's deadline, so leave the handler time to finish after a timeout
/// (a handler that overruns its deadline crashes the process). `timeout` is rounded up to whole
/// milliseconds, and is at least 1 ms.
///
/// Calling this process itself, directly or through a cycle of calls (A calls B, which calls
/// A), deadlocks until the timeout: a process handles one message at a time, so it cannot
/// answer a call while it waits.
///
/// # Errors
///
/// The node's error message (no such process, the timeout, the callee crashed, ...), a message
/// saying that the reply does not decode as `R` (prefixed with `call: `), a message saying that
/// `msg` cannot be encoded, or `"not a process…"` outside a process.
pub fn call<R: DeserializeOwned>(
    to: impl Into<Dest>,
    msg: impl Serialize,
    timeout: Duration,
) -> Result<R, String> {
    let to = to.into();
    OpArgs::new(Op::Call, 3)
        .arg(&to, || format!("the destination {to}"))?
        .arg(&msg, || format!("the message sent to {to}"))?
        .arg(&timeout_millis(timeout), || "the timeout".to_owned())?
        .run(|value| {
            codec::from_slice(value, &Limits::DEFAULT).map_err(|e| {
                format!(
                    "the reply of {to} does not decode as `{}`: {e}",
                    type_name::<R>()
                )
            })
        })
}

/// Starts a process of `module` on this node with the spawn argument `args`, registered as
/// `name` if given; returns its pid.
///
/// `module` is a module the node can resolve, by name or id, as for the node's own spawn. The
/// call returns once the new process's `init` has succeeded.
///
/// # Errors
///
/// The node's error message (unknown module, `init` refused to start, the name is taken, ...), a
/// message saying that `args` cannot be encoded, or `"not a process…"` outside a process.
pub fn spawn(module: &str, args: impl Serialize, name: Option<&str>) -> Result<Pid, String> {
    OpArgs::new(Op::Spawn, 3)
        .arg(module, || "the module".to_owned())?
        .arg(&args, || format!("the spawn arguments of {module}"))?
        .arg(&name, || "the name".to_owned())?
        .run(pid_value)
}

/// Registers `name` on this node for `pid`, or for this process when `pid` is `None`.
///
/// Messages to `"name"` on this node, or to `"name@node"` from anywhere, then reach that
/// process.
///
/// # Errors
///
/// The node's error message (the name is taken, or not a valid name, ...), or
/// `"not a process…"` outside a process.
pub fn register(name: &str, pid: Option<&Pid>) -> Result<(), String> {
    let pid = pid.map(|pid| Term::Pid(pid.clone()));
    OpArgs::new(Op::Register, 2)
        .arg(name, || "the name".to_owned())?
        .arg(&pid, || "the pid".to_owned())?
        .run(nil_value)
}

/// Opens the stream `function` of `module` (see [`crate::stream`]) on the node `node` (this
/// node for `None`), with this process as its consumer. Its items arrive as messages
/// `["stream_item", ref, item]`, in order, then one `["stream_end", ref, end]` where `end` is
/// `"ok"` or `["error", message]`. The mailbox's room is the demand: the producer never runs
/// further ahead than the mailbox holds. Returns `ref`.
///
/// # Errors
///
/// `"not a process…"` outside a process. Failures to open arrive as the `stream_end`.
pub fn open_stream(
    module: &str,
    function: &str,
    args: impl Serialize,
    node: Option<&str>,
) -> Result<Ref, String> {
    OpArgs::new(Op::OpenStream, 4)
        .arg(module, || "the module".to_owned())?
        .arg(function, || "the function".to_owned())?
        .arg(&args, || "the arguments".to_owned())?
        .arg(&node, || "the node".to_owned())?
        .run(ref_value)
}

/// Opens a stream whose items the process `process` emits (a PID as `"<node.inc.id>"`, or a
/// registered name: `"name"` on this node, `"name@node"` on another), with this process as its
/// consumer. The producer gets `["stream_open", ref, args]`; the items arrive here as with
/// [`open_stream`]. Returns `ref`.
///
/// # Errors
///
/// `"not a process…"` outside a process. Failures to open arrive as the `stream_end`.
pub fn open_process_stream(process: &str, args: impl Serialize) -> Result<Ref, String> {
    OpArgs::new(Op::OpenProcessStream, 2)
        .arg(process, || "the process".to_owned())?
        .arg(&args, || "the arguments".to_owned())?
        .run(ref_value)
}

/// Sends `items` down the stream `reference`, which this process serves (it got
/// `["stream_open", ref, args]`). Emit no more than the `["stream_demand", ref, n]` messages
/// have granted and earlier emits have not used: the node refuses the excess, so the consumer
/// is never flooded. Waits while the link is behind.
///
/// # Errors
///
/// The node's message: more items than the demand left, a stream that is closed or cancelled
/// (`["stream_cancel", ref]` says so), or one that another process serves.
pub fn stream_emit<T: Serialize>(reference: &Ref, items: &[T]) -> Result<(), String> {
    OpArgs::new(Op::StreamEmit, 2)
        .arg(&Term::Ref(reference.clone()), || "the reference".to_owned())?
        .arg(items, || "the items".to_owned())?
        .run(nil_value)
}

/// Ends the stream `reference`, which this process serves: well with `None`, or with the error
/// message the consumer gets.
///
/// # Errors
///
/// The node's message if no such stream is open, or another process serves it.
pub fn stream_close(reference: &Ref, error: Option<&str>) -> Result<(), String> {
    OpArgs::new(Op::StreamClose, 2)
        .arg(&Term::Ref(reference.clone()), || "the reference".to_owned())?
        .arg(&error, || "the error".to_owned())?
        .run(nil_value)
}

/// Registers the global name `name` for `pid`, or for this process when `pid` is `None`.
/// The name is unique in the cluster: `"name"` then reaches that process from every node.
/// When the process exits, or its node dies, the name is free again.
///
/// # Errors
///
/// The node's error message (the name is taken: it says by whom; or not a valid name), or
/// `"not a process…"` outside a process.
pub fn register_global(name: &str, pid: Option<&Pid>) -> Result<(), String> {
    let pid = pid.map(|pid| Term::Pid(pid.clone()));
    OpArgs::new(Op::RegisterGlobal, 2)
        .arg(name, || "the name".to_owned())?
        .arg(&pid, || "the pid".to_owned())?
        .run(nil_value)
}

/// The process registered as `name`: `"name"` on this node, else the global name `"name"`,
/// or `"name@node"` on another node. `None` if there is none.
///
/// # Errors
///
/// The node's error message (for example, that node is not a live member), or
/// `"not a process…"` outside a process.
pub fn whereis(name: &str) -> Result<Option<Pid>, String> {
    OpArgs::new(Op::Whereis, 1)
        .arg(name, || "the name".to_owned())?
        .run(|value| match term_value(value)? {
            Term::Nil => Ok(None),
            Term::Pid(pid) => Ok(Some(pid)),
            other => Err(format!(
                "the host answered {}, not a pid or nil",
                article(other.kind())
            )),
        })
}

/// Monitors `pid`: when it exits, this process receives the message
/// `["DOWN", reference, pid, reason]`, where `reason` is `"normal"`, `"noproc"`,
/// `"noconnection"` or `["crash", message]`. Returns the reference.
///
/// # Errors
///
/// `"not a process…"` outside a process.
pub fn monitor(pid: &Pid) -> Result<Ref, String> {
    OpArgs::new(Op::Monitor, 1)
        .arg(&Term::Pid(pid.clone()), || "the pid".to_owned())?
        .run(ref_value)
}

/// Stops the monitor `reference`; no DOWN message comes for it after this returns. Returns
/// whether it was still active.
///
/// # Errors
///
/// `"not a process…"` outside a process.
pub fn demonitor(reference: &Ref) -> Result<bool, String> {
    OpArgs::new(Op::Demonitor, 1)
        .arg(&Term::Ref(reference.clone()), || "the reference".to_owned())?
        .run(|value| match term_value(value)? {
            Term::Bool(b) => Ok(b),
            other => Err(format!(
                "the host answered {}, not a bool",
                article(other.kind())
            )),
        })
}
