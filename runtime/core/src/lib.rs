//! Steinadler's core types, at the bottom of the crate graph.
//!
//! This crate owns what every other crate agrees on:
//! - [`Term`], the dynamic value model, with its [`Pid`] and [`Ref`] identifiers;
//! - the MessagePack wire codec ([`codec`]), whose exact form is specified in `docs/wire-format.md`,
//!   with decode [`Limits`] that make hostile input safe;
//! - the JSON <-> Term mapping used by the CLI ([`json`], feature `json`);
//! - [`ModuleId`], the content address of a wasm module;
//! - [`InvokeError`], the typed error of running a guest function.
//!
//! It depends on nothing of ours and compiles for `wasm32-wasip1`, so the guest SDK uses it too.

pub mod codec;
mod error;
mod id;
#[cfg(feature = "json")]
pub mod json;
mod serde_impl;
mod term;

pub use codec::{DecodeError, EncodeError, Limits};
pub use error::InvokeError;
pub use id::{ModuleId, ParseModuleIdError};
pub use term::{Pid, Ref, Term};
