//! The Steinadler guest SDK.
//!
//! Write plain Rust functions, mark them with [`function`], and compile the crate to
//! `wasm32-wasip1`. A Steinadler node then runs them in a sandbox, on one node or across the
//! cluster.
//!
//! ```ignore
//! #[steinadler::function]
//! fn greet(name: String) -> String {
//!     steinadler::log::info!("greeting {name} from {}", steinadler::node_name());
//!     format!("Hello, {name}!")
//! }
//! ```
//!
//! Arguments and results are any types that implement serde's `Serialize` / `Deserialize`
//! (`String`, integers, `Vec<T>`, `HashMap<K, V>`, your own `#[derive]`d structs) or [`Term`] for
//! dynamic values. They travel as MessagePack (`docs/wire-format.md`). A function may return
//! `Result<T, E>`: `Err(e)` reaches the caller as a guest error carrying `e`.
//!
//! A guest crate needs only this dependency and `crate-type = ["cdylib"]`. To derive serde traits
//! without a direct serde dependency, use the re-export:
//! `#[derive(steinadler::serde::Deserialize)] #[serde(crate = "steinadler::serde")]`.
//!
//! A module can also hold a *process*: state that lives in one instance and handles messages one
//! at a time. Implement [`Process`] and export it with [`process!`]; see the
//! [`process` module](mod@process). While it handles a message, a process can also ask its node
//! to act at once: [`process::send`], [`process::call`], [`process::spawn`],
//! [`process::register`], [`process::whereis`] and [`process::self_pid`].
//!
//! This crate owns the guest side of the ABI (`docs/abi.md`): the `alloc`/`dealloc` exports, the
//! argument and result envelopes, and the host imports.

#[doc(hidden)]
pub mod __private;
mod imports;
mod int_items;
mod item_writer;
pub mod log;
pub mod process;
pub mod stream;
pub mod time;

pub use process::{Context, Dest, Process};
pub use serde;
pub use steinadler_core::{Pid, Ref, Term};
pub use steinadler_macros::function;

/// The name of the node this function runs on.
///
/// # Examples
///
/// ```
/// // Outside a node (a native unit test) the name is "native".
/// assert_eq!(steinadler::node_name(), "native");
/// ```
pub fn node_name() -> String {
    imports::node_name()
}
