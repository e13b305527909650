//! The typed error of running a guest function.

use crate::Term;

/// Why an invocation did not produce a value.
///
/// Every variant leaves the node serving; none of them is fatal to the host.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// No module with this name or id is known.
    #[error("module not found: {0} (deploy it first, or check the name)")]
    ModuleNotFound(String),
    /// The module has no exported function with this name.
    #[error(
        "function not found: module {module} exports no function {function:?} (exported: {available})"
    )]
    FunctionNotFound {
        /// The module's name or id.
        module: String,
        /// The missing function.
        function: String,
        /// The functions the module does export, comma-separated.
        available: String,
    },
    /// The bytes are not a wasm module, or it lacks the Steinadler ABI.
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The arguments could not be encoded, or the guest could not decode them.
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// The guest trapped: a panic, `unreachable`, a stack overflow or similar.
    #[error("guest trapped: {message}")]
    Trap {
        /// What trapped, including a guest panic's message.
        message: String,
        /// The wasm backtrace, one frame per line, if one was captured.
        backtrace: String,
    },
    /// The invocation ran past its deadline.
    #[error(
        "timed out after {limit_ms} ms (raise the deadline with --timeout if the work is legitimate)"
    )]
    Timeout {
        /// The deadline that was exceeded, in milliseconds.
        limit_ms: u64,
    },
    /// The guest tried to grow its memory past the limit.
    #[error(
        "out of memory: the guest tried to grow its linear memory past {limit_bytes} bytes (raise it with --memory)"
    )]
    OutOfMemory {
        /// The memory limit, in bytes.
        limit_bytes: u64,
    },
    /// The guest's output was larger than the output limit, or not valid MessagePack.
    #[error("bad output: {0}")]
    BadOutput(String),
    /// The node cannot start another instance now; retry later or elsewhere.
    #[error("node overloaded: {0}")]
    Overloaded(String),
    /// The guest function returned `Err(e)`; `e` is carried as a Term.
    #[error("guest error: {0}")]
    GuestError(Term),
}
