//! The `steinadler.process_op` import: what a process guest can ask of its node while it
//! handles a message (its PID, send, call, spawn, register, whereis).
//!
//! The host does not know about mailboxes or other nodes; the node crate implements
//! [`Messenger`] and hands it to [`Host::spawn_process`](crate::Host::spawn_process). The
//! import reads its arguments from guest memory, awaits the messenger, and writes a result
//! envelope into memory the guest's own `alloc` gives it (`docs/abi.md`, "Processes").

use crate::imports::State;
use crate::process::Dest;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_core::{Pid, Ref, Term};
use wasmtime::{Caller, Extern, Linker};

/// What a process's guest may ask its node to do. Implemented by the node.
pub trait Messenger: Send + Sync + 'static {
    /// Delivers `msg` to `to`, from the process `from`.
    fn send(&self, from: Pid, to: Dest, msg: Term) -> BoxFuture<'static, Result<(), String>>;
    /// Delivers `msg` and waits up to `timeout` for the reply.
    fn call(
        &self,
        from: Pid,
        to: Dest,
        msg: Term,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Term, String>>;
    /// Starts a process of `module` on this node.
    fn spawn(
        &self,
        module: String,
        args: Term,
        name: Option<String>,
    ) -> BoxFuture<'static, Result<Pid, String>>;
    /// Registers `name` for `pid` on this node.
    fn register(&self, name: String, pid: Pid) -> Result<(), String>;
    /// Opens a stream from `source` on `node` (the caller's node for `None`; a process's own
    /// node when it is named by PID or `name@node`) for the process `consumer`, which receives
    /// `["stream_item", ref, item]` messages and one `["stream_end", ref, end]`. Returns the
    /// reference.
    fn open_stream(
        &self,
        consumer: Pid,
        node: Option<String>,
        source: StreamSource,
        args: Term,
    ) -> Result<Ref, String>;
    /// Sends `items` down the stream `reference`, which the process `producer` serves: at most
    /// what the consumer has asked for and not yet been sent.
    fn stream_emit(
        &self,
        producer: Pid,
        reference: Ref,
        items: Vec<Term>,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// Ends the stream `reference` that `producer` serves: well for `None`, else with the error.
    fn stream_close(
        &self,
        producer: Pid,
        reference: Ref,
        error: Option<String>,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// Registers the global name `name` for `pid`, unique across the cluster.
    fn register_global(&self, name: String, pid: Pid) -> BoxFuture<'static, Result<(), String>>;
    /// The process registered as `name` (`name` here, or `name@node`).
    fn whereis(&self, name: String) -> BoxFuture<'static, Result<Option<Pid>, String>>;
    /// Monitors `pid` for `watcher`, which receives `["DOWN", ref, pid, reason]` when it exits.
    fn monitor(&self, watcher: Pid, pid: Pid) -> Result<Ref, String>;
    /// Cancels a monitor; whether it was active.
    fn demonitor(&self, watcher: Pid, reference: Ref) -> Result<bool, String>;
}

/// Where a stream's items come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamSource {
    /// A module's stream function (`steinadler::streams!`), run in an instance of its own.
    Function {
        /// The module, by name or id.
        module: String,
        /// The stream function.
        function: String,
    },
    /// A process that emits the items (`process::stream_emit`), by PID or registered name.
    Process(String),
}

/// A process's identity and its node's messenger, in the store of a process instance.
#[derive(Clone)]
pub(crate) struct ProcessCtx {
    pub(crate) pid: Pid,
    pub(crate) messenger: Arc<dyn Messenger>,
}

impl std::fmt::Debug for ProcessCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCtx")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

const OP_SELF_PID: u32 = 0;
const OP_SEND: u32 = 1;
const OP_CALL: u32 = 2;
const OP_SPAWN: u32 = 3;
const OP_REGISTER: u32 = 4;
const OP_WHEREIS: u32 = 5;
const OP_MONITOR: u32 = 6;
const OP_DEMONITOR: u32 = 7;
const OP_REGISTER_GLOBAL: u32 = 8;
const OP_OPEN_STREAM: u32 = 9;
const OP_STREAM_EMIT: u32 = 10;
const OP_STREAM_CLOSE: u32 = 11;
const OP_OPEN_PROCESS_STREAM: u32 = 12;

pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "steinadler",
        "process_op",
        |mut caller: Caller<'_, State>, (op, ptr, len): (u32, u32, u32)| {
            Box::new(async move {
                let input = crate::imports::read(&mut caller, ptr, len)?;
                let result = match caller.data().process.clone() {
                    None => Err("not a process: only a process may use process_op".to_owned()),
                    Some(ctx) => {
                        let left = caller
                            .data()
                            .deadline
                            .saturating_duration_since(Instant::now());
                        run(op, &input, ctx, left).await
                    }
                };
                let envelope = match result {
                    Ok(value) => envelope(0, &value),
                    Err(message) => envelope(1, &Term::String(message)),
                };
                write_result(&mut caller, &envelope).await
            })
        },
    )?;
    Ok(())
}

async fn run(op: u32, input: &[u8], ctx: ProcessCtx, left: Duration) -> Result<Term, String> {
    let args = match Term::decode(input) {
        Ok(Term::List(args)) => args,
        Ok(_) => return Err("process_op arguments are not an array".into()),
        Err(e) => return Err(format!("process_op arguments: {e}")),
    };
    let m = &ctx.messenger;
    match (op, args.as_slice()) {
        (OP_SELF_PID, []) => Ok(Term::Pid(ctx.pid.clone())),
        (OP_SEND, [to, msg]) => m
            .send(ctx.pid.clone(), dest(to)?, msg.clone())
            .await
            .map(|()| Term::Nil),
        (OP_CALL, [to, msg, timeout]) => {
            let asked = match timeout {
                Term::Int(ms) if *ms > 0 => Duration::from_millis(*ms as u64),
                _ => return Err("call: the timeout is a positive number of milliseconds".into()),
            };
            m.call(ctx.pid.clone(), dest(to)?, msg.clone(), asked.min(left))
                .await
        }
        (OP_SPAWN, [Term::String(module), args, name]) => {
            let name = match name {
                Term::Nil => None,
                Term::String(n) => Some(n.clone()),
                _ => return Err("spawn: the name is a string or nil".into()),
            };
            m.spawn(module.clone(), args.clone(), name)
                .await
                .map(Term::Pid)
        }
        (OP_REGISTER, [Term::String(name), pid]) => {
            let pid = match pid {
                Term::Nil => ctx.pid.clone(),
                Term::Pid(p) => p.clone(),
                _ => return Err("register: the pid is a pid or nil (yourself)".into()),
            };
            m.register(name.clone(), pid).map(|()| Term::Nil)
        }
        (OP_REGISTER_GLOBAL, [Term::String(name), pid]) => {
            let pid = match pid {
                Term::Nil => ctx.pid.clone(),
                Term::Pid(p) => p.clone(),
                _ => return Err("register_global: the pid is a pid or nil (yourself)".into()),
            };
            m.register_global(name.clone(), pid)
                .await
                .map(|()| Term::Nil)
        }
        (OP_OPEN_STREAM, [Term::String(module), Term::String(function), args, node]) => {
            let node = match node {
                Term::Nil => None,
                Term::String(n) => Some(n.clone()),
                _ => return Err("open_stream: the node is a string or nil (this node)".into()),
            };
            let source = StreamSource::Function {
                module: module.clone(),
                function: function.clone(),
            };
            m.open_stream(ctx.pid.clone(), node, source, args.clone())
                .map(Term::Ref)
        }
        (OP_OPEN_PROCESS_STREAM, [Term::String(process), args]) => {
            let source = StreamSource::Process(process.clone());
            m.open_stream(ctx.pid.clone(), None, source, args.clone())
                .map(Term::Ref)
        }
        (OP_STREAM_EMIT, [Term::Ref(r), Term::List(items)]) => m
            .stream_emit(ctx.pid.clone(), r.clone(), items.clone())
            .await
            .map(|()| Term::Nil),
        (OP_STREAM_CLOSE, [Term::Ref(r), error]) => {
            let error = match error {
                Term::Nil => None,
                Term::String(e) => Some(e.clone()),
                _ => return Err("stream_close: the error is a string or nil".into()),
            };
            m.stream_close(ctx.pid.clone(), r.clone(), error)
                .await
                .map(|()| Term::Nil)
        }
        (OP_WHEREIS, [Term::String(name)]) => m
            .whereis(name.clone())
            .await
            .map(|pid| pid.map_or(Term::Nil, Term::Pid)),
        (OP_MONITOR, [Term::Pid(pid)]) => m.monitor(ctx.pid.clone(), pid.clone()).map(Term::Ref),
        (OP_DEMONITOR, [Term::Ref(r)]) => m.demonitor(ctx.pid.clone(), r.clone()).map(Term::Bool),
        (op, args) => Err(format!(
            "process_op {op} with {} arguments is not a known operation",
            args.len()
        )),
    }
}

fn dest(to: &Term) -> Result<Dest, String> {
    match to {
        Term::Pid(p) => Ok(Dest::Pid(p.clone())),
        Term::String(name) => Ok(Dest::Name(name.clone())),
        other => Err(format!(
            "a destination is a pid or a name, not {}",
            other.kind()
        )),
    }
}

fn envelope(status: u8, value: &Term) -> Vec<u8> {
    let mut out = vec![0x92, status];
    out.extend_from_slice(&value.encode());
    out
}

/// Copies `bytes` into memory from the guest's `alloc`; returns the packed pointer and length.
async fn write_result(caller: &mut Caller<'_, State>, bytes: &[u8]) -> wasmtime::Result<u64> {
    let len = u32::try_from(bytes.len())?;
    let alloc = match caller.get_export("alloc") {
        Some(Extern::Func(f)) => f.typed::<u32, u32>(&*caller)?,
        _ => wasmtime::bail!("the guest exports no `alloc`"),
    };
    let ptr = alloc.call_async(&mut *caller, len).await?;
    crate::imports::memory(caller)?.write(&mut *caller, ptr as usize, bytes)?;
    Ok((u64::from(ptr) << 32) | u64::from(len))
}
