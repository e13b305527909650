//! Logging to the node's `tracing` output.
//!
//! Each record is tagged on the node with the module and function that wrote it. Use the macros:
//!
//! ```
//! steinadler::log::info!("processed {} items", 3);
//! steinadler::log::warn!("slow path");
//! ```
//!
//! The node bounds how much a single invocation may log; records past the bound are dropped and
//! counted.

use std::fmt;

/// The severity of a log record. The numbers are part of the ABI (`docs/abi.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Level {
    /// Very verbose detail.
    Trace = 0,
    /// Debugging detail.
    Debug = 1,
    /// Normal operation.
    Info = 2,
    /// Something unexpected that the function survived.
    Warn = 3,
    /// Something failed.
    Error = 4,
}

/// Writes one record. The macros call this; prefer them.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(s) => crate::imports::log(level, s),
        None => crate::imports::log(level, &args.to_string()),
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_trace { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Trace, format_args!($($t)*)) } }
#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } }
#[doc(hidden)]
#[macro_export]
macro_rules! __log_info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } }
#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) } }
#[doc(hidden)]
#[macro_export]
macro_rules! __log_error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } }

pub use crate::__log_debug as debug;
pub use crate::__log_error as error;
pub use crate::__log_info as info;
pub use crate::__log_trace as trace;
pub use crate::__log_warn as warn;
