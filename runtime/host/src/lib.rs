//! Steinadler's sandboxed WebAssembly host.
//!
//! This crate owns everything between "here are a module's bytes" and "here is the function's
//! result" on one node:
//! - [`Host`]: one wasmtime `Engine` with the pooling allocator and epoch interruption, the host
//!   imports, and the module store;
//! - the content-addressed module store: ids are SHA-256 of the bytes, compiled modules are cached
//!   in memory (bounded by size) and precompiled artifacts on disk, so a restart never recompiles;
//! - [`Compiler`]: compiling in this process or in a short-lived child, which keeps cranelift's
//!   code and heap out of a long-running node;
//! - [`InvokeLimits`]: memory, deadline and output bounds for each invocation;
//! - invocation itself: a fresh instance per call, arguments and results as MessagePack through
//!   the ABI in `docs/abi.md`, and every failure as a typed [`InvokeError`];
//! - [`Process`]: a module instantiated once and kept, handling one message at a time.
//!
//! Networking is not here; the node crate calls [`Host::invoke`] from its RPC handlers.
//!
//! # Examples
//!
//! ```no_run
//! use steinadler_host::{Host, HostConfig, Term};
//!
//! let host = Host::new(HostConfig::default())?;
//! let module = host.load_file("hello.wasm")?;
//! let args = [Term::from("World")];
//! let out = host.invoke_term(&module, "greet", &args, &host.default_limits())?;
//! assert_eq!(out, Term::from("Hello, World!"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod clock;
mod compiler;
mod config;
mod engine;
mod imports;
mod invoke;
mod messenger;
mod module;
mod output;
mod process;
mod resident;
mod store;
mod stream;

pub use compiler::{CHILD_ADDRESS_SPACE, CHILD_CPU_SECONDS, Compiler, run_compile_child};
pub use config::{HostConfig, InvokeLimits};
pub use engine::Host;
pub use messenger::{Messenger, StreamSource};
pub use module::{LoadSource, LoadedModule};
pub use process::{Dest, Outcome, PROCESS_HANDLE, PROCESS_INIT, Process, is_process};
pub use steinadler_core::{InvokeError, ModuleId, Term};
pub use stream::{BATCH_ROOM, Batch, Producer, STREAM_NEXT, STREAM_OPEN, is_producer};

/// An error setting up a [`Host`] (as opposed to running a function, see [`InvokeError`]).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The wasmtime engine rejected the configuration.
    #[error("cannot configure the wasm engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The data directory could not be created or read.
    #[error("cannot use data directory {path}: {source} (check that it exists and is writable)")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
