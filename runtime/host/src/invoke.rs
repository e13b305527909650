//! One invocation: a fresh store and instance, the ABI calls, and the mapping of every failure to
//! a typed [`InvokeError`].

use crate::InvokeError;
use crate::config::InvokeLimits;
use crate::engine::Host;
use crate::imports::{Limiter, State};
use crate::module::LoadedModule;
use crate::output::{GuestStdio, OutputBudget};
use std::sync::Arc;
use std::time::Instant;
use steinadler_core::Term;
use wasmtime::{Extern, Memory, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::WasiCtxBuilder;

/// Envelope status bytes, as written by the guest SDK (`docs/abi.md`).
const STATUS_OK: u8 = 0;
const STATUS_GUEST_ERROR: u8 = 1;
const STATUS_BAD_ARGUMENTS: u8 = 2;
const STATUS_BAD_OUTPUT: u8 = 3;

pub(crate) async fn invoke(
    host: &Host,
    module: &LoadedModule,
    function: &str,
    args: &[u8],
    limits: &InvokeLimits,
) -> Result<Vec<u8>, InvokeError> {
    let Some(entry) = module.functions.get(function) else {
        return Err(InvokeError::FunctionNotFound {
            module: module.id().short(),
            function: function.to_owned(),
            available: module.functions().collect::<Vec<_>>().join(", "),
        });
    };
    let args_len = u32::try_from(args.len())
        .map_err(|_| InvokeError::BadArguments("arguments larger than 4 GiB".to_owned()))?;

    let budget = Arc::new(OutputBudget::new(
        Arc::from(module.id().short()),
        Arc::from(function),
        limits.max_log_bytes,
    ));
    let _awake = crate::clock::Awake::new();
    let mut store = new_store(host, limits, &budget);

    let instance = match module.pre.instantiate_async(&mut store).await {
        Ok(instance) => instance,
        // A pre-linked module fails to instantiate without a trap only for lack of resources.
        Err(e) if e.downcast_ref::<Trap>().is_none() && !store.data().limiter.hit => {
            return Err(InvokeError::Overloaded(format!(
                "cannot start an instance: {e:#}. The node runs at most {} instances at once; \
                 retry later",
                host.config.max_instances
            )));
        }
        Err(e) => return Err(classify(e, store.data_mut(), limits)),
    };
    let result = async {
        let memory = match instance.get_module_export(&mut store, &module.memory) {
            Some(Extern::Memory(m)) => m,
            _ => wasmtime::bail!("the module's `memory` export is not a memory"),
        };
        let alloc = instance
            .get_module_export(&mut store, &module.alloc)
            .and_then(Extern::into_func)
            .ok_or_else(|| wasmtime::format_err!("the module's `alloc` export is not a function"))?
            .typed::<u32, u32>(&store)?;
        let func = instance
            .get_module_export(&mut store, entry)
            .and_then(Extern::into_func)
            .ok_or_else(|| wasmtime::format_err!("the export `{function}` is not a function"))?
            .typed::<(u32, u32), u64>(&store)?;

        let ptr = alloc.call_async(&mut store, args_len).await?;
        memory.write(&mut store, ptr as usize, args)?;
        let packed = func.call_async(&mut store, (ptr, args_len)).await?;
        Ok::<_, wasmtime::Error>((memory, packed))
    }
    .await;
    budget.finish();

    match result {
        Ok((memory, packed)) => read_envelope(&store, memory, packed, limits),
        Err(err) => Err(classify(err, store.data_mut(), limits)),
    }
}

pub(crate) fn new_store(
    host: &Host,
    limits: &InvokeLimits,
    budget: &Arc<OutputBudget>,
) -> Store<State> {
    let wasi = WasiCtxBuilder::new()
        .stdout(GuestStdio::new(budget.clone(), "stdout"))
        .stderr(GuestStdio::new(budget.clone(), "stderr"))
        .build_p1();
    let state = State {
        wasi,
        limiter: Limiter {
            memory_limit: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            hit: false,
        },
        output: budget.clone(),
        node_name: host.node_name.clone(),
        panic: None,
        deadline: Instant::now() + limits.deadline,
        process: None,
    };
    let mut store = Store::new(&host.engine, state);
    store.limiter(|s| &mut s.limiter);
    // At every tick the guest yields to the executor; past its deadline (which a process
    // moves forward for each message) it is interrupted.
    store.epoch_deadline_callback(move |ctx| {
        Ok(if Instant::now() >= ctx.data().deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    store.set_epoch_deadline(1);
    store
}

/// Reads the `[status, value]` envelope the guest returned, copying the value out.
pub(crate) fn read_envelope(
    store: &Store<State>,
    memory: Memory,
    packed: u64,
    limits: &InvokeLimits,
) -> Result<Vec<u8>, InvokeError> {
    read_envelope_with(store, memory, packed, limits, <[u8]>::to_vec)
}

/// Reads the `[status, value]` envelope the guest returned and hands the value, still in guest
/// memory, to `take`.
pub(crate) fn read_envelope_with<R>(
    store: &Store<State>,
    memory: Memory,
    packed: u64,
    limits: &InvokeLimits,
    take: impl FnOnce(&[u8]) -> R,
) -> Result<R, InvokeError> {
    let (ptr, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
    if len as u64 > limits.max_output_bytes {
        return Err(InvokeError::BadOutput(format!(
            "the result is {len} bytes, over the output limit of {} bytes",
            limits.max_output_bytes
        )));
    }
    let data = memory.data(store);
    let envelope = ptr
        .checked_add(len)
        .and_then(|end| data.get(ptr..end))
        .ok_or_else(|| {
            InvokeError::BadOutput(format!(
                "the result pointer {ptr:#x}+{len} lies outside the guest's memory"
            ))
        })?;
    let [0x92, status, value @ ..] = envelope else {
        return Err(InvokeError::BadOutput(
            "the result is not a `[status, value]` envelope; was the module built with an \
             older guest SDK?"
                .to_owned(),
        ));
    };
    let message = || match Term::decode(value) {
        Ok(Term::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("(undecodable message: {e})"),
    };
    match *status {
        STATUS_OK => Ok(take(value)),
        STATUS_GUEST_ERROR => match Term::decode(value) {
            Ok(term) => Err(InvokeError::GuestError(term)),
            Err(e) => Err(InvokeError::BadOutput(format!(
                "the guest's error value is not valid MessagePack: {e}"
            ))),
        },
        STATUS_BAD_ARGUMENTS => Err(InvokeError::BadArguments(message())),
        STATUS_BAD_OUTPUT => Err(InvokeError::BadOutput(message())),
        other => Err(InvokeError::BadOutput(format!(
            "unknown result status {other}"
        ))),
    }
}

/// Maps a wasmtime failure to the error the caller sees.
pub(crate) fn classify(
    err: wasmtime::Error,
    state: &mut State,
    limits: &InvokeLimits,
) -> InvokeError {
    if state.limiter.hit {
        return InvokeError::OutOfMemory {
            limit_bytes: limits.memory_bytes,
        };
    }
    let backtrace = err
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| bt.to_string())
        .unwrap_or_default();
    let message = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return InvokeError::Timeout {
                limit_ms: u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX),
            };
        }
        Some(Trap::StackOverflow) => {
            "stack overflow: the guest recursed too deeply for the wasm stack".to_owned()
        }
        Some(Trap::MemoryOutOfBounds) if shadow_stack_overflow(&err) => {
            "stack overflow: the guest recursed too deeply for its stack in linear memory \
             (a Rust guest's stack is 1 MiB unless linked with -z stack-size)"
                .to_owned()
        }
        Some(trap) => match state.panic.take() {
            Some(panic) => format!("{panic} ({trap})"),
            None => trap.to_string(),
        },
        None => format!("{err:#}"),
    };
    InvokeError::Trap { message, backtrace }
}

/// Whether an out-of-bounds access hit the top of the 32-bit address space.
///
/// Rust (and C) guests put their stack first in linear memory, growing down from its end towards
/// address 0. When it overflows, the stack pointer wraps below zero and the next frame is written
/// near 4 GiB, far past the memory's end; ordinary bad pointers almost never land there. wasmtime
/// reports the faulting address as context of the trap.
fn shadow_stack_overflow(err: &wasmtime::Error) -> bool {
    const MARKER: &str = "memory fault at wasm address 0x";
    let text = format!("{err:?}");
    let Some(at) = text.find(MARKER) else {
        return false;
    };
    let hex: String = text[at + MARKER.len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u64::from_str_radix(&hex, 16).is_ok_and(|addr| (0xffff_0000..=0xffff_ffff).contains(&addr))
}
