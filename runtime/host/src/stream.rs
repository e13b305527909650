//! Stream producers on the wasm side: an instance kept for one stream, asked for the next
//! batch of items only while the consumer has demand (`docs/abi.md`, *Streams*).
//!
//! The host owns only the instance. Demand, credits and delivery belong to the node crate.
//! Limits: the deadline applies to opening and to each batch; the memory limit to the whole
//! producer.

use crate::InvokeError;
use crate::config::InvokeLimits;
use crate::engine::Host;
use crate::module::LoadedModule;
use crate::resident::{Entry, Resident};
use bytes::Bytes;
use steinadler_core::Term;

/// The exports that make a module a stream producer.
pub const STREAM_OPEN: &str = "stream_open";
/// See [`STREAM_OPEN`].
pub const STREAM_NEXT: &str = "stream_next";

/// One batch of items.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The items, as one MessagePack array.
    pub items: Bytes,
    /// How many.
    pub count: u32,
    /// The producer has no more items.
    pub done: bool,
}

/// A live stream producer.
pub struct Producer {
    resident: Resident,
    next: Entry,
    produced: u64,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

/// Whether `module` exports the stream entry points.
pub fn is_producer(module: &LoadedModule) -> bool {
    module.functions.contains_key(STREAM_OPEN) && module.functions.contains_key(STREAM_NEXT)
}

impl Host {
    /// Instantiates `module` and opens its stream `function` with `args` (an encoded
    /// MessagePack value, usually the argument array).
    ///
    /// # Errors
    ///
    /// [`InvokeError::FunctionNotFound`] if the module has no streams; otherwise what opening
    /// failed with (an unknown stream name or bad arguments are guest errors).
    pub async fn open_stream(
        &self,
        module: &LoadedModule,
        function: &str,
        args: &[u8],
        limits: &InvokeLimits,
    ) -> Result<Producer, InvokeError> {
        if !is_producer(module) {
            return Err(InvokeError::FunctionNotFound {
                module: module.id().short(),
                function: format!("{STREAM_OPEN} (the module defines no streams)"),
                available: module.functions().collect::<Vec<_>>().join(", "),
            });
        }
        let mut resident =
            Resident::new(self, module, limits, format!("stream {function}"), None).await?;
        let open = resident.entry(STREAM_OPEN)?;
        let next = resident.entry(STREAM_NEXT)?;
        let mut input = Vec::with_capacity(args.len() + function.len() + 8);
        // [function, args]: args are already encoded.
        input.push(0x92);
        input.extend_from_slice(&Term::from(function).encode());
        input.extend_from_slice(if args.is_empty() { &[0x90] } else { args });
        resident.call(&open, &input).await?;
        Ok(Producer {
            resident,
            next,
            produced: 0,
        })
    }
}

impl Producer {
    /// The next batch: at most `max_items` items, and about `max_bytes` (at least one item).
    ///
    /// # Errors
    ///
    /// A trap (a panic in the producer, with its message), a timeout, running out of memory, or
    /// a batch that breaks the ABI: the stream is over, drop the producer.
    pub async fn next(&mut self, max_items: u32, max_bytes: u64) -> Result<Batch, InvokeError> {
        let input = Term::List(vec![
            Term::Int(i64::from(max_items)),
            Term::Int(i64::try_from(max_bytes).unwrap_or(i64::MAX)),
        ])
        .encode();
        let value = self.resident.call(&self.next, &input).await?;
        let batch = split(value)?;
        if batch.count > max_items {
            return Err(InvokeError::BadOutput(format!(
                "the producer sent {} items when {max_items} were asked for",
                batch.count
            )));
        }
        self.produced += u64::from(batch.count);
        Ok(batch)
    }

    /// Items produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Bytes of linear memory the producer holds.
    pub fn memory_bytes(&self) -> usize {
        self.resident.memory_bytes()
    }
}

/// `[done, item, ...]` into the items as their own array, without decoding them.
///
/// The SDK writes the outer array's header at full width (array32), so that header becomes the
/// items' own header in place, and the batch is handed on without a copy. Any other header is
/// read too, and then the items are copied behind a header of their own.
fn split(mut value: Vec<u8>) -> Result<Batch, InvokeError> {
    let bad = |why: &str| InvokeError::BadOutput(format!("a stream batch: {why}"));
    let mut rest = &value[..];
    let n = rmp::decode::read_array_len(&mut rest).map_err(|_| bad("not an array"))?;
    let done = rmp::decode::read_bool(&mut rest).map_err(|_| bad("no `done` flag first"))?;
    let count = n.checked_sub(1).ok_or_else(|| bad("an empty array"))?;
    let start = value.len() - rest.len();
    let items = if value[0] == 0xdd {
        // [0xdd, n: u32, done] becomes [_, 0xdd, count: u32]: the items' array begins at 1.
        value[1] = 0xdd;
        value[2..6].copy_from_slice(&count.to_be_bytes());
        Bytes::from(value).slice(1..)
    } else {
        let mut items = Vec::with_capacity(value.len() - start + 5);
        // Writing into a Vec cannot fail.
        let _ = rmp::encode::write_array_len(&mut items, count);
        items.extend_from_slice(&value[start..]);
        Bytes::from(items)
    };
    Ok(Batch { items, count, done })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(batch: &Batch) -> Term {
        Term::decode(&batch.items).expect("the items are one array")
    }

    #[test]
    fn a_full_width_header_becomes_the_items_header() {
        // As the SDK writes it: array32 of 3, done = true, then 7 and "x".
        let value = vec![0xdd, 0, 0, 0, 3, 0xc3, 0x07, 0xa1, b'x'];
        let batch = split(value).unwrap();
        assert_eq!((batch.count, batch.done), (2, true));
        assert_eq!(items(&batch), Term::list([Term::Int(7), Term::from("x")]));
    }

    #[test]
    fn a_short_header_is_read_too() {
        let value = Term::list([Term::Bool(false), Term::Int(1), Term::Int(300)]).encode();
        let batch = split(value).unwrap();
        assert_eq!((batch.count, batch.done), (2, false));
        assert_eq!(items(&batch), Term::list([Term::Int(1), Term::Int(300)]));
    }

    #[test]
    fn a_batch_without_the_done_flag_is_refused() {
        for value in [
            vec![],
            vec![0x90],
            vec![0x91, 0x01],
            vec![0xdd, 0, 0, 0, 0],
            vec![0x07],
        ] {
            assert!(
                matches!(split(value.clone()), Err(InvokeError::BadOutput(_))),
                "{value:?}"
            );
        }
    }
}
