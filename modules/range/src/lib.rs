//! `range`: stream producers (`docs/abi.md`, *Streams*).
//!
//! | stream | arguments | items |
//! |---|---|---|
//! | `range` | `[start, end]` | the integers `start..end` |
//! | `lines` | `[n]` | `n` lines of generated text: `"line 1: the quick brown fox ..."` |
//! | `blobs` | `[n, size]` | `n` byte strings of `size` bytes each |
//! | `boom` | `[n]` | the integers `0..n`, then a panic: the stream ends with the trap |
//!
//! `steinadler invoke range range --args '[0, 5]' --stream` prints 0 to 4, one per line.

use steinadler::serde::Serialize;

fn range((start, end): (u64, u64)) -> Result<std::ops::Range<u64>, String> {
    if start > end {
        return Err(format!("start {start} is past end {end}"));
    }
    Ok(start..end)
}

fn lines((n,): (u64,)) -> Result<impl Iterator<Item = String>, String> {
    const WORDS: [&str; 9] = [
        "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog",
    ];
    Ok((1..=n).map(|i| {
        let words: Vec<&str> = (0..(i % 7 + 3) as usize)
            .map(|k| WORDS[(i as usize + k) % WORDS.len()])
            .collect();
        format!("line {i}: {}", words.join(" "))
    }))
}

/// A byte string (MessagePack bin), not an array of numbers.
#[derive(Debug, Serialize)]
#[serde(crate = "steinadler::serde", transparent)]
struct Blob(#[serde(with = "bytes_as_bin")] Vec<u8>);

mod bytes_as_bin {
    pub(crate) fn serialize<S: steinadler::serde::Serializer>(
        bytes: &[u8],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }
}

fn blobs((n, size): (u64, u32)) -> Result<impl Iterator<Item = Blob>, String> {
    if size > 4 << 20 {
        return Err(format!(
            "blobs of {size} bytes are over the 4 MiB this module makes"
        ));
    }
    Ok((0..n).map(move |i| Blob(vec![(i % 251) as u8; size as usize])))
}

fn boom((n,): (u64,)) -> Result<impl Iterator<Item = u64>, String> {
    Ok((0..=n).inspect(move |i| {
        if *i == n {
            panic!("boom after {n} items");
        }
    }))
}

steinadler::streams!(range, lines, blobs, boom);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producers_yield_what_the_table_says() {
        assert_eq!(range((3, 6)).unwrap().collect::<Vec<_>>(), [3, 4, 5]);
        assert!(range((6, 3)).is_err());
        let l: Vec<String> = lines((2,)).unwrap().collect();
        assert_eq!(l.len(), 2);
        assert!(l[0].starts_with("line 1: "), "{}", l[0]);
        let b: Vec<Blob> = blobs((2, 3)).unwrap().collect();
        assert_eq!(b[1].0, [1, 1, 1]);
        assert_eq!(boom((2,)).unwrap().take(2).collect::<Vec<_>>(), [0, 1]);
    }
}
