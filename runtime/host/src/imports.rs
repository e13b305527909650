//! The per-call store state and the host imports a guest may use.
//!
//! Two capabilities are linked, each by its own `add_to_linker`:
//! - WASI preview 1, with no filesystem, network, environment or arguments; stdout and stderr go
//!   to [`crate::output`], which forwards them to `tracing`;
//! - the `steinadler` import module (`docs/abi.md`): `log`, `node_name`, `clock_unix_nanos` and
//!   `panic_message`.

use crate::output::OutputBudget;
use std::sync::Arc;
use wasmtime::{Caller, Extern, Linker, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

/// The longest panic message kept from a guest.
const MAX_PANIC_MESSAGE: usize = 4 << 10;

/// What one invocation's store holds.
pub(crate) struct State {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: Limiter,
    pub(crate) output: Arc<OutputBudget>,
    pub(crate) node_name: Arc<str>,
    pub(crate) panic: Option<String>,
    /// When the current call (or a process's current message) is interrupted.
    pub(crate) deadline: std::time::Instant,
    /// Set in a process instance: its PID and its node's messenger.
    pub(crate) process: Option<crate::messenger::ProcessCtx>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("limiter", &self.limiter)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// Enforces the call's memory limit and remembers whether it was hit.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) memory_limit: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.hit = true;
            wasmtime::bail!(
                "memory limit exceeded: growing linear memory from {current} to {desired} bytes, \
                 the limit is {} bytes",
                self.memory_limit
            );
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000 && maximum.is_none_or(|max| desired <= max))
    }
}

/// Links WASI preview 1 and the `steinadler` imports.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, |s: &mut State| &mut s.wasi)?;
    add_steinadler_to_linker(linker)?;
    crate::messenger::add_to_linker(linker)
}

fn add_steinadler_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "steinadler",
        "log",
        |mut caller: Caller<'_, State>, level: u32, ptr: u32, len: u32| {
            let output = caller.data().output.clone();
            let Some(len) = output.take(len) else {
                return Ok(());
            };
            let bytes = read(&mut caller, ptr, len)?;
            output.log(level, &String::from_utf8_lossy(&bytes));
            Ok(())
        },
    )?;
    linker.func_wrap(
        "steinadler",
        "node_name",
        |mut caller: Caller<'_, State>, ptr: u32, cap: u32| -> wasmtime::Result<u32> {
            let name = caller.data().node_name.clone();
            let len = u32::try_from(name.len())?;
            if len <= cap {
                memory(&mut caller)?.write(&mut caller, ptr as usize, name.as_bytes())?;
            }
            Ok(len)
        },
    )?;
    linker.func_wrap("steinadler", "clock_unix_nanos", || -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    })?;
    linker.func_wrap(
        "steinadler",
        "panic_message",
        |mut caller: Caller<'_, State>, ptr: u32, len: u32| {
            let len = len.min(MAX_PANIC_MESSAGE as u32);
            let bytes = read(&mut caller, ptr, len)?;
            caller.data_mut().panic = Some(String::from_utf8_lossy(&bytes).into_owned());
            Ok(())
        },
    )?;
    Ok(())
}

pub(crate) fn memory(caller: &mut Caller<'_, State>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => wasmtime::bail!("the guest exports no memory named `memory`"),
    }
}

pub(crate) fn read(
    caller: &mut Caller<'_, State>,
    ptr: u32,
    len: u32,
) -> wasmtime::Result<Vec<u8>> {
    let mem = memory(caller)?;
    let mut buf = vec![0u8; len as usize];
    mem.read(&caller, ptr as usize, &mut buf)?;
    Ok(buf)
}
