//! Streams: a function that produces a sequence of values, pulled by the consumer's demand.
//!
//! Write a function that returns an iterator, and list it in [`streams!`](crate::streams):
//!
//! ```ignore
//! fn range((start, end): (u64, u64)) -> Result<std::ops::Range<u64>, String> {
//!     Ok(start..end)
//! }
//! steinadler::streams!(range);
//! ```
//!
//! The host opens the stream with the function's arguments, then asks for items only while the
//! consumer has demand left: each `stream_next` call takes at most the number of items (and,
//! past the first, about the number of bytes) the host asks for. The iterator therefore never
//! runs ahead of the consumer, and nothing is buffered in the guest. The stream ends when the
//! iterator does; a panic (or an `Err` from opening) ends it with that error.
//!
//! This is the *pull* model: guests stay plain synchronous Rust, and a batch of items costs one
//! call into the guest. The ABI is in `docs/abi.md`, *Streams*.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;

/// Writes the next item into a buffer; `Ok(false)` once the stream is done.
type Next = Box<dyn FnMut(&mut Vec<u8>) -> Result<bool, String>>;

thread_local! {
    static OPEN: RefCell<Option<Next>> = const { RefCell::new(None) };
}

/// Opens the stream `f` with the encoded arguments `args`. For [`streams!`](crate::streams).
#[doc(hidden)]
pub fn open_with<A, I, T>(f: fn(A) -> Result<I, String>, args: &[u8]) -> Result<(), String>
where
    A: DeserializeOwned,
    I: Iterator<Item = T> + 'static,
    T: Serialize,
{
    let args: A = steinadler_core::codec::from_slice(args, &Default::default())
        .map_err(|e| format!("bad arguments: {e}"))?;
    let mut iter = f(args)?;
    let next: Next = Box::new(move |buf| match iter.next() {
        Some(item) => crate::__private::write_value(buf, &item)
            .map(|()| true)
            .map_err(|e| format!("cannot encode an item: {e}")),
        None => Ok(false),
    });
    OPEN.with(|open| *open.borrow_mut() = Some(next));
    Ok(())
}

/// Produces up to `max_items` items, stopping early once `max_bytes` are written (at least one
/// item is always written). Returns the items, their count, and whether the stream is done.
pub(crate) fn produce(max_items: u32, max_bytes: usize) -> Result<(Vec<u8>, u32, bool), String> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let next = open
            .as_mut()
            .ok_or_else(|| "no stream is open in this instance".to_owned())?;
        let mut buf = Vec::with_capacity(256);
        let mut count = 0;
        while count < max_items && (count == 0 || buf.len() < max_bytes) {
            if !next(&mut buf)? {
                *open = None;
                return Ok((buf, count, true));
            }
            count += 1;
        }
        Ok((buf, count, false))
    })
}

/// Exports stream functions: `steinadler::streams!(range, lines);`
///
/// Each function takes one argument (the decoded argument array: use a tuple for several) and
/// returns `Result<impl Iterator<Item = T>, String>` with `T: Serialize`. The macro generates the
/// two exports of the stream ABI: `stream_open`, which decodes `[function, args]` and opens the
/// named stream, and `stream_next`, which produces the next batch. One stream is open per
/// instance; the host makes an instance per stream.
#[macro_export]
macro_rules! streams {
    ($($name:ident),+ $(,)?) => {
        const _: () = {
            #[doc(hidden)]
            #[unsafe(no_mangle)]
            extern "C" fn stream_open(ptr: u32, len: u32) -> u64 {
                $crate::__private::stream_open(ptr, len, |name, args| match name {
                    $(::core::stringify!($name) => $crate::stream::open_with($name, args),)+
                    other => ::core::result::Result::Err(::std::format!(
                        "this module has no stream {other:?}; it has: {}",
                        [$(::core::stringify!($name)),+].join(", ")
                    )),
                })
            }

            #[doc(hidden)]
            #[unsafe(no_mangle)]
            extern "C" fn stream_next(ptr: u32, len: u32) -> u64 {
                $crate::__private::stream_next(ptr, len)
            }
        };
    };
}
