//! Host configuration and per-invocation limits.

use crate::compiler::Compiler;
use std::path::PathBuf;
use std::time::Duration;

/// Bounds on one invocation. Each has a default; a call may pass its own.
///
/// The wasm stack size is a host-wide setting ([`HostConfig::max_wasm_stack`]): wasmtime fixes
/// it per engine, so it cannot differ between calls on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeLimits {
    /// The most linear memory the guest may grow to, in bytes. Default 64 MiB.
    pub memory_bytes: u64,
    /// How long the call may run. Default 5 s.
    pub deadline: Duration,
    /// The largest result the guest may return, in bytes. Default 16 MiB.
    pub max_output_bytes: u64,
    /// How much the guest may log and print (stdout, stderr and log records together) before
    /// further output is dropped. Default 64 KiB.
    pub max_log_bytes: u64,
}

impl Default for InvokeLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(5),
            max_output_bytes: 16 << 20,
            max_log_bytes: 64 << 10,
        }
    }
}

/// How a [`Host`](crate::Host) is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The node's name, which guests read with `steinadler::node_name()`.
    pub node_name: String,
    /// Where precompiled modules and module names are kept. `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Limits used when a call does not pass its own.
    pub default_limits: InvokeLimits,
    /// The ceiling for any call's memory limit, in bytes; it sizes the instance pool's slots.
    pub max_memory_bytes: u64,
    /// How many instances may run at once.
    pub max_instances: u32,
    /// The wasm stack size, in bytes, for every call on this host.
    pub max_wasm_stack: usize,
    /// How many bytes of compiled modules to keep in memory.
    pub module_cache_bytes: u64,
    /// How often the deadline clock ticks; deadlines are enforced to within one tick.
    pub epoch_tick: Duration,
    /// How much of each instance slot's linear memory stays resident between calls. Larger
    /// values avoid page faults for guests that use more memory (echo of 1 MiB: 623 µs at
    /// 1 MiB, 243 µs at 8 MiB), at the cost of resident memory per slot that has been used.
    pub keep_resident_bytes: usize,
    /// Where modules are compiled. Default [`Compiler::InProcess`]; the `steinadler node`
    /// binary compiles in a child, which keeps cranelift out of the node's memory.
    pub compiler: Compiler,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            node_name: "local".to_owned(),
            data_dir: None,
            default_limits: InvokeLimits::default(),
            max_memory_bytes: 4 << 30,
            max_instances: 256,
            max_wasm_stack: 512 << 10,
            module_cache_bytes: 512 << 20,
            epoch_tick: Duration::from_millis(2),
            keep_resident_bytes: 8 << 20,
            compiler: Compiler::InProcess,
        }
    }
}
