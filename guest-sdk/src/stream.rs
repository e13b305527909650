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

use crate::__private::{
    Output, STATUS_BAD_ARGUMENTS, STATUS_GUEST_ERROR, STATUS_OK, install_panic_hook, take_input,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use steinadler_core::codec;

/// Appends up to `max_items` items to a buffer (stopping once they take `max_bytes`, after at
/// least one); returns how many, and whether the stream is done. One call per batch,
/// so the loop over items is monomorphized for the iterator and its item type.
type Fill = Box<dyn FnMut(&mut Vec<u8>, u32, usize) -> Result<(u32, bool), String>>;

thread_local! {
    static OPEN: RefCell<Option<Fill>> = const { RefCell::new(None) };
}

/// Opens the stream `f` with the encoded arguments `args`. For [`streams!`](crate::streams).
#[doc(hidden)]
pub fn open_with<A, I, T>(f: fn(A) -> Result<I, String>, args: &[u8]) -> Result<(), String>
where
    A: DeserializeOwned,
    I: Iterator<Item = T> + 'static,
    T: Serialize + 'static,
{
    let args: A = steinadler_core::codec::from_slice(args, &Default::default())
        .map_err(|e| format!("bad arguments: {e}"))?;
    let mut iter = f(args)?;
    let fill: Fill = Box::new(move |buf, max_items, max_bytes| {
        if crate::int_items::is_int::<T>() {
            return crate::int_items::fill(&mut iter, buf, max_items, max_bytes);
        }
        let start = buf.len();
        let mut ser = crate::item_writer::serializer(buf);
        let mut count = 0;
        while count < max_items && (count == 0 || ser.get_ref().len() - start < max_bytes) {
            let Some(item) = iter.next() else {
                return Ok((count, true));
            };
            item.serialize(crate::item_writer::ItemWriter(&mut ser))
                .map_err(|e| format!("cannot encode an item: {e}"))?;
            count += 1;
        }
        Ok((count, false))
    });
    OPEN.with(|open| *open.borrow_mut() = Some(fill));
    Ok(())
}

/// Appends up to `max_items` items to `buf`, stopping early once `max_bytes` more are written
/// (at least one item is always written). Returns their count, and whether the stream is done.
pub(crate) fn produce(
    buf: &mut Vec<u8>,
    max_items: u32,
    max_bytes: usize,
) -> Result<(u32, bool), String> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let fill = open
            .as_mut()
            .ok_or_else(|| "no stream is open in this instance".to_owned())?;
        let (count, done) = fill(buf, max_items, max_bytes)?;
        if done {
            *open = None;
        }
        Ok((count, done))
    })
}

/// The `stream_open` export, for [`streams!`](crate::streams): decodes `[function, args]` and opens the stream with `open`.
#[doc(hidden)]
pub fn export_open(
    ptr: u32,
    len: u32,
    open: impl FnOnce(&str, &[u8]) -> Result<(), String>,
) -> u64 {
    install_panic_hook();
    let result = take_input(ptr, len, |bytes| {
        let (name, args) = split_open(bytes)?;
        open(&name, args)
    });
    match result {
        Ok(()) => Output::value(()).into_packed(),
        Err(e) => Output::message(STATUS_GUEST_ERROR, &e).into_packed(),
    }
}

/// `[function, args]`: the name, and the raw bytes of `args`.
fn split_open(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let bad = || "stream_open takes [function, args]".to_owned();
    let mut rest = bytes;
    let n = rmp::decode::read_array_len(&mut rest).map_err(|_| bad())?;
    if n != 2 {
        return Err(bad());
    }
    let mut name = vec![0u8; 256];
    let name = rmp::decode::read_str(&mut rest, &mut name)
        .map_err(|_| bad())?
        .to_owned();
    Ok((name, rest))
}

/// The `stream_next` export, for [`streams!`](crate::streams): takes `[max_items, max_bytes]` and returns
/// `[done, item, item, ...]`.
#[doc(hidden)]
pub fn export_next(ptr: u32, len: u32) -> u64 {
    let limits = take_input(ptr, len, |bytes| {
        codec::from_slice::<(u32, u64)>(bytes, &Default::default())
    });
    let (max_items, max_bytes) = match limits {
        Ok(l) => l,
        Err(e) => return Output::message(STATUS_BAD_ARGUMENTS, &e.to_string()).into_packed(),
    };
    let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    // The items go straight into the envelope, after an array header of fixed width (array32)
    // and the `done` flag, both written once the count is known. The host copies the items
    // out once, straight into the buffer the node sends.
    let mut buf = Output::start(STATUS_OK);
    let header = buf.len();
    // Room for small items without growing: a grown buffer is copied each time.
    buf.reserve((max_items as usize * 9).clamp(64, max_bytes.max(64)) + 6);
    buf.extend_from_slice(&[0xdd, 0, 0, 0, 0, 0xc2]);
    match produce(&mut buf, max_items, max_bytes) {
        Ok((count, done)) => {
            buf[header + 1..header + 5].copy_from_slice(&(count + 1).to_be_bytes());
            if done {
                buf[header + 5] = 0xc3;
            }
            Output {
                status: STATUS_OK,
                buf,
            }
            .into_packed()
        }
        Err(e) => Output::message(STATUS_GUEST_ERROR, &e).into_packed(),
    }
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
                $crate::stream::export_open(ptr, len, |name, args| match name {
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
                $crate::stream::export_next(ptr, len)
            }
        };
    };
}
