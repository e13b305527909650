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
use bytes::{BufMut, Bytes, BytesMut};
use steinadler_core::Term;

/// The exports that make a module a stream producer.
pub const STREAM_OPEN: &str = "stream_open";
/// See [`STREAM_OPEN`].
pub const STREAM_NEXT: &str = "stream_next";

/// Free bytes in front of every batch's items, for the caller's framing ([`Batch::framed`]).
pub const BATCH_ROOM: usize = 32;

/// One batch of items.
#[derive(Debug)]
pub struct Batch {
    /// [`BATCH_ROOM`] free bytes, then the items as one MessagePack array.
    buf: BytesMut,
    /// How many.
    pub count: u32,
    /// The producer has no more items.
    pub done: bool,
}

impl Batch {
    /// The items, as one MessagePack array.
    pub fn items(&self) -> &[u8] {
        &self.buf[BATCH_ROOM..]
    }

    /// The items with `prefix` (a header of the caller's framing) right in front of them, as
    /// one buffer: the items are not copied again.
    ///
    /// # Panics
    ///
    /// If `prefix` is longer than [`BATCH_ROOM`].
    pub fn framed(self, prefix: &[u8]) -> Bytes {
        let at = BATCH_ROOM - prefix.len();
        let mut buf = self.buf;
        buf[at..BATCH_ROOM].copy_from_slice(prefix);
        buf.freeze().slice(at..)
    }
}

/// The buffers a producer copies its batches into, each reused once the batches taken from it
/// are dropped (sent), so that a stream does not allocate, and the kernel fault in, a fresh
/// quarter-megabyte for every batch. `perf` showed that churn as 15 % of the CPU a 64 KiB-item
/// stream's node spent.
#[derive(Debug, Default)]
struct Buffers {
    spare: Vec<BytesMut>,
}

/// Buffers a producer keeps at most: about the batches in flight between it and the socket.
const SPARE_BUFFERS: usize = 4;

impl Buffers {
    /// An empty buffer with room for `len` bytes, for one batch to be split off.
    fn get(&mut self, len: usize) -> &mut BytesMut {
        let i = match self.spare.iter_mut().position(|b| b.try_reclaim(len)) {
            Some(i) => i,
            None => {
                // A little over, so that the next batch, of about the same size, fits too.
                let fresh = BytesMut::with_capacity((len + len / 4).max(16 << 10));
                if self.spare.len() < SPARE_BUFFERS {
                    self.spare.push(fresh);
                    self.spare.len() - 1
                } else {
                    // The oldest is freed when its batches are.
                    self.spare[0] = fresh;
                    0
                }
            }
        };
        &mut self.spare[i]
    }
}

/// A live stream producer.
pub struct Producer {
    resident: Resident,
    next: Entry,
    produced: u64,
    buffers: Buffers,
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
            buffers: Buffers::default(),
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
        let buffers = &mut self.buffers;
        let batch = self
            .resident
            .call_with(&self.next, &input, |value| split(value, buffers))
            .await??;
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

/// `[done, item, ...]`, still in guest memory, into a batch: the items as their own array,
/// copied once, behind [`BATCH_ROOM`] free bytes, and not decoded.
///
/// The SDK writes the outer array's header at full width (array32), the same width as the
/// items' own header, so the items' header takes its place. Any other header is read too.
fn split(value: &[u8], buffers: &mut Buffers) -> Result<Batch, InvokeError> {
    let bad = |why: &str| InvokeError::BadOutput(format!("a stream batch: {why}"));
    let mut rest = value;
    let n = rmp::decode::read_array_len(&mut rest).map_err(|_| bad("not an array"))?;
    let done = rmp::decode::read_bool(&mut rest).map_err(|_| bad("no `done` flag first"))?;
    let count = n.checked_sub(1).ok_or_else(|| bad("an empty array"))?;
    let mut header = [0u8; 5];
    header[0] = 0xdd;
    header[1..].copy_from_slice(&count.to_be_bytes());
    let buf = buffers.get(BATCH_ROOM + header.len() + rest.len());
    buf.put_bytes(0, BATCH_ROOM);
    buf.put_slice(&header);
    buf.put_slice(rest);
    Ok(Batch {
        buf: buf.split(),
        count,
        done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(batch: &Batch) -> Term {
        Term::decode(batch.items()).expect("the items are one array")
    }

    fn split(value: Vec<u8>) -> Result<Batch, InvokeError> {
        super::split(&value, &mut Buffers::default())
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

    #[test]
    fn a_frame_is_the_prefix_then_the_items() {
        let batch = split(vec![0xdd, 0, 0, 0, 2, 0xc2, 0x07]).unwrap();
        let framed = batch.framed(b"head");
        assert_eq!(&framed[..], b"head\xdd\0\0\0\x01\x07");
    }

    #[test]
    fn a_buffer_is_reused_once_its_batch_is_dropped() {
        let mut buffers = Buffers::default();
        // One 20 KiB item: a buffer holds one such batch, not two.
        let mut value = vec![0xdd, 0, 0, 0, 2, 0xc2, 0xc6];
        value.extend_from_slice(&20_000u32.to_be_bytes());
        value.resize(value.len() + 20_000, 7);
        let first = super::split(&value, &mut buffers).unwrap().framed(&[]);
        // While the first batch is held, the second needs another buffer.
        let second = super::split(&value, &mut buffers).unwrap().framed(&[]);
        assert_eq!(buffers.spare.len(), 2);
        let at = first.as_ptr();
        drop((first, second));
        let third = super::split(&value, &mut buffers).unwrap().framed(&[]);
        assert_eq!(
            third.as_ptr(),
            at,
            "the first buffer is written again from its start"
        );
        assert_eq!(buffers.spare.len(), 2);
        assert_eq!(
            Term::decode(&third).unwrap(),
            Term::list([Term::Bytes(vec![7; 20_000])])
        );
    }

    #[test]
    fn a_pool_of_busy_buffers_stays_bounded_and_keeps_every_batch() {
        let mut buffers = Buffers::default();
        let held: Vec<Bytes> = (0..SPARE_BUFFERS as u8 + 2)
            .map(|i| {
                let mut value = vec![0xdd, 0, 0, 0, 2, 0xc2, 0xc6];
                value.extend_from_slice(&20_000u32.to_be_bytes());
                value.resize(value.len() + 20_000, i);
                super::split(&value, &mut buffers).unwrap().framed(&[])
            })
            .collect();
        assert_eq!(buffers.spare.len(), SPARE_BUFFERS);
        for (i, batch) in held.iter().enumerate() {
            let want = Term::list([Term::Bytes(vec![i as u8; 20_000])]);
            assert_eq!(Term::decode(batch).unwrap(), want, "batch {i}");
        }
    }
}
