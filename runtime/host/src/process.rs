//! Processes on the wasm side: a module instantiated once and kept, whose state lives in its
//! linear memory, handling one message at a time (`docs/abi.md`, "Processes").
//!
//! The host owns only the instance. Mailboxes, PIDs, names and delivery belong to the node
//! crate, which drives a [`Process`] from its mailbox loop.
//!
//! Limits: the deadline applies to `init` and to each message; the memory limit applies to the
//! whole process; the output budget is renewed for each message.

use crate::InvokeError;
use crate::config::InvokeLimits;
use crate::engine::Host;
use crate::module::LoadedModule;
use crate::resident::{Entry, Resident};
use std::sync::Arc;
use steinadler_core::{Pid, Term};

/// The exports that make a module a process.
pub const PROCESS_INIT: &str = "process_init";
/// See [`PROCESS_INIT`].
pub const PROCESS_HANDLE: &str = "process_handle";

/// Where a process asked a message to go.
#[derive(Debug, Clone, PartialEq)]
pub enum Dest {
    /// A process by PID, on any node.
    Pid(Pid),
    /// A registered name: `name` on this node, or `name@node`.
    Name(String),
}

/// What handling one message produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The reply to a call (`None` for a send, or if the guest gave none).
    pub reply: Option<Term>,
    /// The process asked to stop normally after this message.
    pub stop: bool,
    /// Messages to deliver, in order.
    pub sends: Vec<(Dest, Term)>,
}

/// A live process instance.
///
/// # Errors
///
/// [`Process::handle`] returns:
/// - [`InvokeError::BadArguments`] when the message does not decode as the guest's message type;
///   the process keeps its state and can go on;
/// - any other error (a trap, a timeout, out of memory, a guest error) when the process has
///   crashed: drop it.
pub struct Process {
    resident: Resident,
    handle: Entry,
    handled: u64,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("handled", &self.handled)
            .finish_non_exhaustive()
    }
}

/// Whether `module` exports the process entry points.
pub fn is_process(module: &LoadedModule) -> bool {
    module.functions.contains_key(PROCESS_INIT) && module.functions.contains_key(PROCESS_HANDLE)
}

impl Host {
    /// Instantiates `module` as the process `pid` and runs its `init` with `args`. The guest's
    /// `process_op` import (send, call, spawn, ...) goes to `messenger`; without one it fails.
    ///
    /// # Errors
    ///
    /// [`InvokeError::FunctionNotFound`] if the module is not a process module; otherwise what
    /// `init` failed with (a guest error is the reason it refused to start).
    pub async fn spawn_process(
        &self,
        module: &LoadedModule,
        args: &Term,
        pid: &Pid,
        limits: &InvokeLimits,
        messenger: Option<Arc<dyn crate::Messenger>>,
    ) -> Result<Process, InvokeError> {
        if !is_process(module) {
            return Err(InvokeError::FunctionNotFound {
                module: module.id().short(),
                function: PROCESS_INIT.to_owned(),
                available: module.functions().collect::<Vec<_>>().join(", "),
            });
        }
        let ctx = messenger.map(|messenger| crate::messenger::ProcessCtx {
            pid: pid.clone(),
            messenger,
        });
        let mut resident =
            Resident::new(self, module, limits, format!("process {pid}"), ctx).await?;
        let init = resident.entry(PROCESS_INIT)?;
        let handle = resident.entry(PROCESS_HANDLE)?;
        let input = Term::List(vec![args.clone(), Term::Pid(pid.clone())]).encode();
        resident.call(&init, &input).await?;
        Ok(Process {
            resident,
            handle,
            handled: 0,
        })
    }
}

impl Process {
    /// Handles one message: `from` is the sender, `call` says whether a reply is expected.
    ///
    /// # Errors
    ///
    /// See [`Process`].
    pub async fn handle(
        &mut self,
        msg: &Term,
        from: Option<&Pid>,
        call: bool,
    ) -> Result<Outcome, InvokeError> {
        let input = Term::List(vec![
            msg.clone(),
            from.map_or(Term::Nil, |p| Term::Pid(p.clone())),
            Term::Int(i64::from(call)),
        ])
        .encode();
        let value = self.resident.call(&self.handle, &input).await?;
        self.handled += 1;
        parse_outcome(&value)
    }

    /// Messages handled so far.
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// Bytes of linear memory the process holds.
    pub fn memory_bytes(&self) -> usize {
        self.resident.memory_bytes()
    }
}

/// `[reply, stop, [[to, msg], ...]]`.
fn parse_outcome(value: &[u8]) -> Result<Outcome, InvokeError> {
    let bad = |why: String| InvokeError::BadOutput(format!("process outcome: {why}"));
    let term = Term::decode(value).map_err(|e| bad(e.to_string()))?;
    let Term::List(parts) = term else {
        return Err(bad("not an array".into()));
    };
    let [reply, stop, sends] = <[Term; 3]>::try_from(parts)
        .map_err(|p| bad(format!("{} elements instead of 3", p.len())))?;
    let stop = match stop {
        Term::Bool(b) => b,
        other => return Err(bad(format!("`stop` is {} instead of a bool", other.kind()))),
    };
    let Term::List(sends) = sends else {
        return Err(bad("`sends` is not an array".into()));
    };
    let sends = sends
        .into_iter()
        .map(|pair| match pair {
            Term::List(mut p) if p.len() == 2 => {
                let msg = p.pop().unwrap_or(Term::Nil);
                match p.pop() {
                    Some(Term::Pid(pid)) => Ok((Dest::Pid(pid), msg)),
                    Some(Term::String(name)) => Ok((Dest::Name(name), msg)),
                    _ => Err(bad(
                        "a send's destination is neither a pid nor a name".into()
                    )),
                }
            }
            _ => Err(bad("a send is not a [to, msg] pair".into())),
        })
        .collect::<Result<_, _>>()?;
    Ok(Outcome {
        reply: (reply != Term::Nil).then_some(reply),
        stop,
        sends,
    })
}
