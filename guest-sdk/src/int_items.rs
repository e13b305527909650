//! The fast path for streams of integers: a batch is written without serde.
//!
//! A stream of small integers spends nearly all of its producer's time writing them. Through
//! serde each item is a call the compiler does not inline into the loop (`Serialize` for `u64`,
//! then the writer with its capacity check), with the iterator spilled around it. Here the
//! loop makes room for the whole batch once, then copies each integer's 9-byte form
//! (`codec::uint_form`) and advances by the form's length: no call and no capacity check per
//! item. The bytes are the same as serde's (the tests below compare them).
//!
//! Which path a stream takes depends only on its item type, so the test is decided when the
//! producer is compiled.

use std::any::Any;
use steinadler_core::codec;

/// Whether items of type `T` take the integer path.
pub(crate) use steinadler_core::codec::is_int;

/// The item's encoded form, for the types [`is_int`] accepts.
#[inline(always)]
fn form<T: 'static>(item: &T) -> Option<([u8; 9], usize)> {
    let any = item as &dyn Any;
    macro_rules! unsigned {
        ($($t:ty),*) => {$(
            if let Some(v) = any.downcast_ref::<$t>() {
                return Some(codec::uint_form(*v as u64));
            }
        )*};
    }
    macro_rules! signed {
        ($($t:ty),*) => {$(
            if let Some(v) = any.downcast_ref::<$t>() {
                return Some(codec::int_form(*v as i64));
            }
        )*};
    }
    unsigned!(u8, u16, u32, u64, usize);
    signed!(i8, i16, i32, i64, isize);
    None
}

/// Items written per turn of the loop, when they surely fit.
const GROUP: usize = 4;

/// Appends up to `max_items` integers from `iter` to `buf`, stopping once `max_bytes` are
/// written (after at least one); returns how many, and whether `iter` is done. Only for item
/// types that [`is_int`] accepts: any other item ends the batch as an error.
#[inline(always)]
pub(crate) fn fill<I, T>(
    iter: &mut I,
    buf: &mut Vec<u8>,
    max_items: u32,
    max_bytes: usize,
) -> Result<(u32, bool), String>
where
    I: Iterator<Item = T>,
    T: 'static,
{
    // Each item takes 1 to 9 bytes, so at most `max_bytes + 1` fit the byte budget, and the
    // last one's 9-byte copy still lands inside the room made here.
    let most = (max_items as usize).min(max_bytes.saturating_add(1));
    buf.reserve(most * 9);
    let start = buf.len();
    let room = &mut buf.spare_capacity_mut()[..most * 9];
    let (mut written, mut count, mut done) = (0usize, 0usize, false);
    // One item into `room`; false once `iter` is done.
    let mut put = |written: &mut usize, count: &mut usize| -> Result<bool, String> {
        let Some(item) = iter.next() else {
            return Ok(false);
        };
        let Some((bytes, len)) = form(&item) else {
            return Err("a stream's integer path was given an item that is not an integer".into());
        };
        room[*written..*written + 9].write_copy_of_slice(&bytes);
        *written += len;
        *count += 1;
        Ok(true)
    };
    // Four at a time while four surely fit both limits (an item takes at most 9 bytes): the
    // loop's own cost, and the deadline check on each turn, are shared by four items.
    'batch: {
        while count + GROUP <= most && written + 9 * (GROUP - 1) < max_bytes {
            for _ in 0..GROUP {
                if !put(&mut written, &mut count)? {
                    done = true;
                    break 'batch;
                }
            }
        }
        while count < most && (count == 0 || written < max_bytes) {
            if !put(&mut written, &mut count)? {
                done = true;
                break;
            }
        }
    }
    // SAFETY: the loop wrote every byte of `room` below `written` (each form's `len` bytes
    // are the first bytes of its 9-byte copy), and `room` begins at `start`.
    unsafe { buf.set_len(start + written) };
    Ok((count as u32, done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_writer::{ItemWriter, serializer};
    use serde::Serialize;

    /// The batch from the integer path, and the same items written through serde.
    fn both<T: Serialize + Copy + 'static>(items: &[T]) -> (Vec<u8>, Vec<u8>) {
        assert!(is_int::<T>());
        let mut fast = vec![0xaa];
        let (count, done) = fill(&mut items.iter().copied(), &mut fast, 10_000, 1 << 20).unwrap();
        assert_eq!((count as usize, done), (items.len(), true));
        let mut slow = vec![0xaa];
        for item in items {
            item.serialize(ItemWriter(&mut serializer(&mut slow)))
                .unwrap();
        }
        (fast, slow)
    }

    #[test]
    fn every_width_is_written_as_serde_writes_it() {
        let mut unsigned = vec![u64::MAX];
        let mut signed = vec![i64::MIN, i64::MAX];
        for shift in 0..64 {
            let p = 1u64 << shift;
            unsigned.extend([p - 1, p, p + 1]);
            let i = p as i64;
            signed.extend([
                i,
                i.wrapping_neg(),
                i.wrapping_neg().wrapping_sub(1),
                i.wrapping_sub(1),
            ]);
        }
        let (fast, slow) = both(&unsigned);
        assert_eq!(fast, slow);
        let (fast, slow) = both(&signed);
        assert_eq!(fast, slow);
        let (fast, slow) = both(&[0u8, 127, 128, 255]);
        assert_eq!(fast, slow);
        let (fast, slow) = both(&[-1i8, -32, -33, -128, 127]);
        assert_eq!(fast, slow);
        let (fast, slow) = both(&[-40_000i32, 70_000, i32::MIN]);
        assert_eq!(fast, slow);
        let (fast, slow) = both(&[usize::MAX, 0]);
        assert_eq!(fast, slow);
        // The other types `is_int` accepts, so that each has its arm in `form`.
        let (fast, slow) = both(&[0u16, 300, u16::MAX]);
        assert_eq!(fast, slow);
        let (fast, slow) = both(&[70_000u32, u32::MAX]);
        assert_eq!(fast, slow);
        let (fast, slow) = both(&[-300i16, i16::MIN, i16::MAX]);
        assert_eq!(fast, slow);
        let (fast, slow) = both(&[isize::MIN, -1, isize::MAX]);
        assert_eq!(fast, slow);
    }

    #[test]
    fn other_types_take_the_serde_path() {
        assert!(!is_int::<String>());
        assert!(!is_int::<u128>());
        assert!(!is_int::<(u64,)>());
        assert!(!is_int::<&'static u64>());
    }

    #[test]
    fn a_batch_stops_at_its_item_and_byte_limits() {
        let mut buf = Vec::new();
        let mut iter = 1000u64..;
        assert_eq!(fill(&mut iter, &mut buf, 4, 1 << 20), Ok((4, false)));
        assert_eq!(buf.len(), 4 * 3);
        // 3 bytes an item: the budget of 7 is passed by the third.
        buf.clear();
        assert_eq!(fill(&mut iter, &mut buf, 100, 7), Ok((3, false)));
        assert_eq!(buf.len(), 9);
        // At least one item, whatever the budget.
        buf.clear();
        assert_eq!(fill(&mut iter, &mut buf, 100, 0), Ok((1, false)));
        assert_eq!(iter.next(), Some(1008));
        let mut empty = 0u64..0;
        assert_eq!(fill(&mut empty, &mut buf, 100, 100), Ok((0, true)));
    }
}
