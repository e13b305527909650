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
//!
//! The module is also a process, `Numbers`, that serves streams itself (spawn it with nil): a
//! consumer opens a stream from it with `[start, end]`, and it emits the integers
//! `start..end` as the consumer's demand arrives, as many streams at once as are opened.
//!
//! | message | effect | reply |
//! |---|---|---|
//! | `["stream_open", ref, [start, end]]` | starts the stream `ref`; `[start, end, "greedy"]` emits twice what is asked, to show that the node refuses it | |
//! | `["stream_demand", ref, n]` | emits the next `n` integers, and closes the stream after the last | |
//! | `["stream_cancel", ref]` | forgets the stream | |
//! | `"stats"` | | `{"open": streams open, "cancelled": streams cancelled, "emitted": integers emitted}` |

use std::collections::HashMap;
use steinadler::serde::Serialize;
use steinadler::{Context, Process, Ref, Term, process};

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

/// One stream that [`Numbers`] serves.
#[derive(Debug)]
struct Serving {
    next: i64,
    end: i64,
    greedy: bool,
}

/// A process that serves streams of integers, within each consumer's demand.
#[derive(Debug, Default)]
struct Numbers {
    serving: HashMap<Ref, Serving>,
    cancelled: u64,
    emitted: u64,
}

impl Numbers {
    fn open(&mut self, reference: Ref, args: &[Term]) -> Result<(), String> {
        let (start, end, greedy) = match args {
            [Term::Int(s), Term::Int(e)] => (*s, *e, false),
            [Term::Int(s), Term::Int(e), Term::String(g)] if g == "greedy" => (*s, *e, true),
            _ => return Err("the stream takes [start, end]".into()),
        };
        if start > end {
            return Err(format!("start {start} is past end {end}"));
        }
        if start == end {
            return process::stream_close(&reference, None);
        }
        let serving = Serving {
            next: start,
            end,
            greedy,
        };
        self.serving.insert(reference, serving);
        Ok(())
    }

    /// Emits up to `n` integers (twice that if greedy); closes the stream after the last.
    fn demand(&mut self, reference: &Ref, n: i64) -> Result<(), String> {
        let Some(s) = self.serving.get_mut(reference) else {
            return Ok(());
        };
        let want = if s.greedy { n.saturating_mul(2) } else { n };
        let upto = s.next.saturating_add(want).min(s.end);
        while s.next < upto {
            let chunk_end = upto.min(s.next + 1024);
            let items: Vec<i64> = (s.next..chunk_end).collect();
            process::stream_emit(reference, &items)?;
            self.emitted += items.len() as u64;
            s.next = chunk_end;
        }
        if s.next == s.end {
            self.serving.remove(reference);
            process::stream_close(reference, None)?;
        }
        Ok(())
    }
}

impl Process for Numbers {
    type Args = Term;
    type Msg = Term;
    type Reply = Term;

    fn init(_: Term, _ctx: &mut Context) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn handle(&mut self, msg: Term, _ctx: &mut Context) -> Option<Term> {
        let items = match msg {
            Term::String(s) if s == "stats" => {
                return Some(Term::Map(vec![
                    ("open".into(), Term::Int(self.serving.len() as i64)),
                    ("cancelled".into(), Term::Int(self.cancelled as i64)),
                    ("emitted".into(), Term::Int(self.emitted as i64)),
                ]));
            }
            Term::List(items) => items,
            _ => return None,
        };
        let (op, reference) = match items.as_slice() {
            [Term::String(op), Term::Ref(r), ..] => (op.as_str(), r.clone()),
            _ => return None,
        };
        let result = match (op, &items[2..]) {
            ("stream_open", [Term::List(args)]) => self.open(reference.clone(), args),
            ("stream_demand", [Term::Int(n)]) => self.demand(&reference, *n),
            ("stream_cancel", []) => {
                self.cancelled += u64::from(self.serving.remove(&reference).is_some());
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(why) = result {
            // The consumer gets the reason; the stream is over.
            self.serving.remove(&reference);
            let _ = process::stream_close(&reference, Some(&why));
        }
        None
    }
}

steinadler::process!(Numbers);

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
