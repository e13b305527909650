//! `sink`: a process that takes numbered messages from several senders and checks their order,
//! for backpressure and ordering tests. Spawned with `work_us`, the microseconds of busy work
//! it does per `"seq"` message (an integer ≥ 0; nil or `[]` mean 0).
//!
//! | message | effect | reply |
//! |---|---|---|
//! | `["seq", sender, n]` | busy-waits `work_us` µs, then counts the message (below) | nil |
//! | `"stats"` | | `{"received": r, "out_of_order": o, "senders": {sender: last_n, ...}}` |
//! | `"reset"` | forgets everything counted | `true` |
//!
//! `sender` is a string and `n` an integer. Each sender numbers its messages 1, 2, 3, ...: the
//! sink keeps the last `n` seen from each sender (0 before the first), and a message whose `n`
//! is not that last `n` plus 1 counts as out of order, a duplicate included. Either way its `n`
//! becomes the sender's last `n`.
//!
//! The `"stats"` reply is a map with string keys; `senders` maps each sender to its last `n`.
//! The busy work spins on the node's wall clock (`steinadler::time::unix_nanos`), so it holds
//! the instance, like a real handler that computes.
//!
//! The unit tests run natively: `cargo test --manifest-path modules/Cargo.toml -p sink`.

use std::collections::BTreeMap;
use steinadler::{Context, Process, Term};

/// The process state.
#[derive(Debug, Default)]
struct Sink {
    /// Microseconds of busy work per `"seq"` message.
    work_us: u64,
    received: u64,
    out_of_order: u64,
    /// The last `n` seen from each sender.
    last: BTreeMap<String, i64>,
}

/// The messages, in the Term shapes of the table above.
#[derive(Debug, PartialEq, steinadler::serde::Deserialize)]
#[serde(crate = "steinadler::serde", try_from = "Term")]
enum Msg {
    Seq(String, i64),
    Stats,
    Reset,
}

impl TryFrom<Term> for Msg {
    type Error = String;

    fn try_from(term: Term) -> Result<Self, String> {
        match &term {
            Term::String(word) => match word.as_str() {
                "stats" => return Ok(Self::Stats),
                "reset" => return Ok(Self::Reset),
                _ => {}
            },
            Term::List(items) => {
                if let [Term::String(op), Term::String(sender), Term::Int(n)] = items.as_slice()
                    && op == "seq"
                {
                    return Ok(Self::Seq(sender.clone(), *n));
                }
            }
            _ => {}
        }
        Err(format!(
            r#"expected ["seq", sender, n] (a string and an integer), "stats" or "reset", got {term}"#
        ))
    }
}

/// The `"stats"` reply: a map with string keys.
#[derive(Debug, PartialEq, steinadler::serde::Serialize)]
#[serde(crate = "steinadler::serde")]
struct Stats {
    received: u64,
    out_of_order: u64,
    senders: BTreeMap<String, i64>,
}

/// The replies: each variant is written as its content alone.
#[derive(Debug, PartialEq, steinadler::serde::Serialize)]
#[serde(crate = "steinadler::serde", untagged)]
enum Reply {
    Stats(Stats),
    Done(bool),
}

/// Spins on the node's wall clock for `us` microseconds.
fn busy_wait(us: u64) {
    if us == 0 {
        return;
    }
    let nanos = i64::try_from(us.saturating_mul(1_000)).unwrap_or(i64::MAX);
    let start = steinadler::time::unix_nanos();
    while steinadler::time::unix_nanos().saturating_sub(start) < nanos {
        std::hint::spin_loop();
    }
}

impl Sink {
    /// Counts message `n` from `sender`.
    fn record(&mut self, sender: String, n: i64) {
        self.received += 1;
        let last = self.last.entry(sender).or_insert(0);
        if last.checked_add(1) != Some(n) {
            self.out_of_order += 1;
        }
        *last = n;
    }

    fn stats(&self) -> Stats {
        Stats {
            received: self.received,
            out_of_order: self.out_of_order,
            senders: self.last.clone(),
        }
    }

    fn reset(&mut self) {
        self.received = 0;
        self.out_of_order = 0;
        self.last.clear();
    }
}

impl Process for Sink {
    type Args = Option<u64>;
    type Msg = Msg;
    type Reply = Reply;

    fn init(work_us: Option<u64>, _ctx: &mut Context) -> Result<Self, String> {
        Ok(Self {
            work_us: work_us.unwrap_or(0),
            ..Self::default()
        })
    }

    fn handle(&mut self, msg: Msg, _ctx: &mut Context) -> Option<Reply> {
        match msg {
            Msg::Seq(sender, n) => {
                busy_wait(self.work_us);
                self.record(sender, n);
                None
            }
            Msg::Stats => Some(Reply::Stats(self.stats())),
            Msg::Reset => {
                self.reset();
                Some(Reply::Done(true))
            }
        }
    }
}

steinadler::process!(Sink);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use steinadler::Pid;

    fn pid() -> Pid {
        Pid {
            node: "n1".into(),
            incarnation: 1,
            id: 3,
        }
    }

    fn msg(term: Term) -> Result<Msg, String> {
        Msg::try_from(term)
    }

    fn seq(sender: &str, n: i64) -> Msg {
        Msg::Seq(sender.into(), n)
    }

    fn sink(work_us: Option<u64>) -> Sink {
        Sink::init(work_us, &mut Context::new(pid())).unwrap()
    }

    fn call() -> Context {
        Context::for_message(pid(), None, true)
    }

    fn stats(received: u64, out_of_order: u64, senders: &[(&str, i64)]) -> Option<Reply> {
        Some(Reply::Stats(Stats {
            received,
            out_of_order,
            senders: senders.iter().map(|&(s, n)| (s.to_owned(), n)).collect(),
        }))
    }

    #[test]
    fn messages_have_the_documented_shapes() {
        assert_eq!(msg("stats".into()), Ok(Msg::Stats));
        assert_eq!(msg("reset".into()), Ok(Msg::Reset));
        assert_eq!(
            msg(Term::list(["seq".into(), "a".into(), 7.into()])),
            Ok(seq("a", 7))
        );
        let err = msg(Term::list(["seq".into(), "a".into(), "7".into()])).unwrap_err();
        assert_eq!(
            err,
            r#"expected ["seq", sender, n] (a string and an integer), "stats" or "reset", got ["seq", "a", "7"]"#
        );
        assert!(msg(Term::list(["seq".into(), 1.into(), 1.into()])).is_err());
        assert!(msg(Term::list(["seq".into(), "a".into()])).is_err());
        assert!(msg(Term::atom("stats")).is_err());
        assert!(msg("get".into()).is_err());
    }

    #[test]
    fn counts_in_order_messages_per_sender() {
        let mut s = sink(None);
        let mut ctx = Context::for_message(pid(), None, false);
        for n in 1..=3 {
            assert_eq!(s.handle(seq("a", n), &mut ctx), None);
            assert_eq!(s.handle(seq("b", n), &mut ctx), None);
        }
        assert!(ctx.sent().is_empty());
        assert!(!ctx.is_stopping());
        assert_eq!(
            s.handle(Msg::Stats, &mut call()),
            stats(6, 0, &[("a", 3), ("b", 3)])
        );
    }

    #[test]
    fn counts_gaps_reorderings_and_duplicates() {
        let mut s = sink(Some(0));
        let mut ctx = call();
        // The first n of a sender must be 1.
        s.handle(seq("a", 2), &mut ctx);
        assert_eq!(s.handle(Msg::Stats, &mut ctx), stats(1, 1, &[("a", 2)]));
        // 3 follows 2; then 5 skips 4, 4 goes back, 4 again is a duplicate, 5 follows 4.
        for n in [3, 5, 4, 4, 5] {
            s.handle(seq("a", n), &mut ctx);
        }
        assert_eq!(s.handle(Msg::Stats, &mut ctx), stats(6, 4, &[("a", 5)]));
        // Another sender has its own count.
        s.handle(seq("b", 1), &mut ctx);
        s.handle(seq("b", 1), &mut ctx);
        assert_eq!(
            s.handle(Msg::Stats, &mut ctx),
            stats(8, 5, &[("a", 5), ("b", 1)])
        );
    }

    #[test]
    fn extreme_numbers_do_not_overflow() {
        let mut s = sink(None);
        let mut ctx = call();
        s.handle(seq("a", i64::MAX), &mut ctx);
        s.handle(seq("a", i64::MIN), &mut ctx);
        s.handle(seq("a", i64::MIN + 1), &mut ctx);
        assert_eq!(
            s.handle(Msg::Stats, &mut ctx),
            stats(3, 2, &[("a", i64::MIN + 1)])
        );
    }

    #[test]
    fn reset_forgets_everything() {
        let mut s = sink(None);
        let mut ctx = call();
        s.handle(seq("a", 1), &mut ctx);
        s.handle(seq("a", 3), &mut ctx);
        assert_eq!(s.handle(Msg::Reset, &mut ctx), Some(Reply::Done(true)));
        assert_eq!(s.handle(Msg::Stats, &mut ctx), stats(0, 0, &[]));
        // Numbering starts again at 1.
        s.handle(seq("a", 1), &mut ctx);
        assert_eq!(s.handle(Msg::Stats, &mut ctx), stats(1, 0, &[("a", 1)]));
        assert!(!ctx.is_stopping());
    }

    #[test]
    fn replies_have_the_documented_wire_shapes() {
        // Encode the replies the way the export does, and read them back as Terms.
        let mut s = sink(None);
        s.handle(seq("a", 1), &mut call());
        let mut ctx = call();
        ctx.send("t", s.handle(Msg::Stats, &mut call()));
        ctx.send("t", s.handle(Msg::Reset, &mut call()));
        let sent: Vec<Term> = ctx.sent().into_iter().map(|(_, m)| m).collect();
        let expected_stats = Term::Map(vec![
            ("received".into(), 1.into()),
            ("out_of_order".into(), 0.into()),
            ("senders".into(), Term::Map(vec![("a".into(), 1.into())])),
        ]);
        assert_eq!(sent, [expected_stats, Term::Bool(true)]);
    }

    #[test]
    fn does_the_busy_work() {
        let mut s = sink(Some(20_000));
        let start = Instant::now();
        s.handle(seq("a", 1), &mut Context::for_message(pid(), None, false));
        assert!(
            start.elapsed() >= Duration::from_millis(19),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(s.handle(Msg::Stats, &mut call()), stats(1, 0, &[("a", 1)]));
    }
}
