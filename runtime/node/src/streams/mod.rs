//! Streams between nodes, with demand-based backpressure (docs/streams.md).
//!
//! A stream follows the Reactive Streams model: the consumer grants demand (`REQUEST n`), the
//! producer sends at most that many items, then completes or fails; the consumer may cancel at
//! any time. Across nodes it is one bidirectional gRPC stream (`Streams.Open`): control
//! messages go up, batches of items and one end come down.
//!
//! - [`serve`]: the producer's side. It runs the guest's stream function
//!   ([`steinadler_host::Producer`]) and asks it for a batch only while demand is left, so the
//!   items in flight never exceed the consumer's window.
//! - [`route`] and [`frame`]: how the producer's side is served, each batch framed as a gRPC
//!   message where the host copied it out of the guest, without another copy.
//! - [`consume`]: the consumer's side, [`StreamRef`], a `futures::Stream` that grants demand as
//!   the application takes items, keeping at most `window` items in flight and buffered.
//! - [`typed`]: [`Typed`], the items decoded as a Rust type instead of as Terms; integers take
//!   a path inlined into the consumer's loop.
//! - [`outlet`]: a process as the producer: it is told of demand in its mailbox and emits
//!   within it.
//! - [`deliver`]: a process as the consumer: items become messages in its mailbox, and the
//!   mailbox's room is the demand.

pub(crate) mod consume;
pub(crate) mod deliver;
pub(crate) mod frame;
pub(crate) mod outlet;
pub(crate) mod route;
pub(crate) mod serve;
pub(crate) mod typed;

pub use consume::{NextItem, StreamError, StreamOptions, StreamRef};
pub use typed::Typed;

/// Items per batch at most, whatever the demand. A batch costs a call into the guest, a task
/// hop and an HTTP/2 frame; 4,096 small items share them (at 1,024 the bench streamed 5-8 %
/// fewer integers a second).
pub(crate) const BATCH_ITEMS: u32 = 4096;
/// Bytes per batch, about (a batch always holds at least one item).
pub(crate) const BATCH_BYTES: u64 = 256 << 10;
