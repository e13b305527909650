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
use crate::imports::State;
use crate::invoke::{classify, new_store, read_envelope};
use crate::module::LoadedModule;
use crate::output::OutputBudget;
use std::sync::Arc;
use std::time::Instant;
use steinadler_core::{Pid, Term};
use wasmtime::{Extern, Memory, Store, Trap, TypedFunc};

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
    store: Store<State>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    dealloc: Option<TypedFunc<(u32, u32), ()>>,
    handle: TypedFunc<(u32, u32), u64>,
    limits: InvokeLimits,
    budget: Arc<OutputBudget>,
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
        let budget = Arc::new(OutputBudget::new(
            Arc::from(module.id().short()),
            Arc::from(format!("process {pid}")),
            limits.max_log_bytes,
        ));
        let mut store = new_store(self, limits, &budget);
        store.data_mut().process = messenger.map(|messenger| crate::messenger::ProcessCtx {
            pid: pid.clone(),
            messenger,
        });
        let instance = match module.pre.instantiate_async(&mut store).await {
            Ok(i) => i,
            Err(e) if e.downcast_ref::<Trap>().is_none() && !store.data().limiter.hit => {
                return Err(InvokeError::Overloaded(format!(
                    "cannot start an instance: {e:#}. The node runs at most {} instances at \
                     once, processes included; stop some or retry later",
                    self.config.max_instances
                )));
            }
            Err(e) => return Err(classify(e, store.data_mut(), limits)),
        };
        let typed = |store: &mut Store<State>, name: &str| {
            instance
                .get_func(&mut *store, name)
                .ok_or_else(|| wasmtime::format_err!("the module has no `{name}` export"))
        };
        let setup = (|| {
            let memory = match instance.get_module_export(&mut store, &module.memory) {
                Some(Extern::Memory(m)) => m,
                _ => wasmtime::bail!("the module's `memory` export is not a memory"),
            };
            let alloc = typed(&mut store, "alloc")?.typed::<u32, u32>(&store)?;
            let dealloc = typed(&mut store, "dealloc")
                .ok()
                .and_then(|f| f.typed::<(u32, u32), ()>(&store).ok());
            let init = typed(&mut store, PROCESS_INIT)?.typed::<(u32, u32), u64>(&store)?;
            let handle = typed(&mut store, PROCESS_HANDLE)?.typed::<(u32, u32), u64>(&store)?;
            Ok::<_, wasmtime::Error>((memory, alloc, dealloc, init, handle))
        })();
        let (memory, alloc, dealloc, init, handle) =
            setup.map_err(|e| InvokeError::InvalidModule(format!("{e:#}")))?;
        let mut process = Process {
            store,
            memory,
            alloc,
            dealloc,
            handle,
            limits: limits.clone(),
            budget,
            handled: 0,
        };
        let input = Term::List(vec![args.clone(), Term::Pid(pid.clone())]).encode();
        process.call(init, &input).await?;
        Ok(process)
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
        let value = self.call(self.handle.clone(), &input).await?;
        self.handled += 1;
        parse_outcome(&value)
    }

    /// Messages handled so far.
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// Bytes of linear memory the process holds.
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    async fn call(
        &mut self,
        func: TypedFunc<(u32, u32), u64>,
        input: &[u8],
    ) -> Result<Vec<u8>, InvokeError> {
        let len = u32::try_from(input.len())
            .map_err(|_| InvokeError::BadArguments("a message larger than 4 GiB".to_owned()))?;
        self.budget.refill();
        self.store.data_mut().deadline = Instant::now() + self.limits.deadline;
        let store = &mut self.store;
        let result = async {
            let ptr = self.alloc.call_async(&mut *store, len).await?;
            self.memory.write(&mut *store, ptr as usize, input)?;
            func.call_async(&mut *store, (ptr, len)).await
        }
        .await;
        let packed = match result {
            Ok(p) => p,
            Err(e) => return Err(classify(e, self.store.data_mut(), &self.limits)),
        };
        let value = read_envelope(&self.store, self.memory, packed, &self.limits);
        // The instance lives on, so the result buffer must go back to the guest's allocator.
        if let Some(dealloc) = self.dealloc.clone() {
            let (ptr, len) = ((packed >> 32) as u32, (packed & 0xffff_ffff) as u32);
            if let Err(e) = dealloc.call_async(&mut self.store, (ptr, len)).await {
                return Err(classify(e, self.store.data_mut(), &self.limits));
            }
        }
        value
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
