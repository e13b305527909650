//! `counter`: a process holding one integer, spawned with its start value.
//!
//! | message | effect | reply |
//! |---|---|---|
//! | `"inc"` | adds 1 | nil |
//! | `["add", n]` | adds `n` | the new value |
//! | `"get"` | | the value |
//! | `"stop"` | stops the process | the final value |
//!
//! Overflowing a 64-bit integer crashes the process.
//!
//! The unit tests run natively: `cargo test --manifest-path modules/Cargo.toml -p counter -p kv`.

use steinadler::{Context, Process, Term};

/// The process state.
#[derive(Debug)]
struct Counter {
    value: i64,
}

/// The messages, in the Term shapes of the table above.
#[derive(Debug, PartialEq, steinadler::serde::Deserialize)]
#[serde(crate = "steinadler::serde", try_from = "Term")]
enum Msg {
    Inc,
    Add(i64),
    Get,
    Stop,
}

impl TryFrom<Term> for Msg {
    type Error = String;

    fn try_from(term: Term) -> Result<Self, String> {
        match &term {
            Term::String(word) => match word.as_str() {
                "inc" => return Ok(Self::Inc),
                "get" => return Ok(Self::Get),
                "stop" => return Ok(Self::Stop),
                _ => {}
            },
            Term::List(items) => {
                if let [Term::String(op), Term::Int(n)] = items.as_slice()
                    && op == "add"
                {
                    return Ok(Self::Add(*n));
                }
            }
            _ => {}
        }
        Err(format!(
            r#"expected "inc", ["add", n], "get" or "stop", got {term}"#
        ))
    }
}

impl Counter {
    fn add(&mut self, n: i64) -> i64 {
        self.value = self
            .value
            .checked_add(n)
            .unwrap_or_else(|| panic!("{} + {n} overflows a 64-bit integer", self.value));
        self.value
    }
}

impl Process for Counter {
    type Args = i64;
    type Msg = Msg;
    type Reply = i64;

    fn init(start: i64, _ctx: &mut Context) -> Result<Self, String> {
        Ok(Self { value: start })
    }

    fn handle(&mut self, msg: Msg, ctx: &mut Context) -> Option<i64> {
        match msg {
            Msg::Inc => {
                self.add(1);
                None
            }
            Msg::Add(n) => Some(self.add(n)),
            Msg::Get => Some(self.value),
            Msg::Stop => {
                ctx.stop();
                Some(self.value)
            }
        }
    }
}

steinadler::process!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use steinadler::Pid;

    fn pid() -> Pid {
        Pid {
            node: "n1".into(),
            incarnation: 1,
            id: 1,
        }
    }

    fn msg(term: Term) -> Result<Msg, String> {
        Msg::try_from(term)
    }

    #[test]
    fn messages_have_the_documented_shapes() {
        assert_eq!(msg("inc".into()), Ok(Msg::Inc));
        assert_eq!(msg("get".into()), Ok(Msg::Get));
        assert_eq!(msg("stop".into()), Ok(Msg::Stop));
        assert_eq!(msg(Term::list(["add".into(), 5.into()])), Ok(Msg::Add(5)));
        let err = msg(Term::list(["add".into(), "5".into()])).unwrap_err();
        assert_eq!(
            err,
            r#"expected "inc", ["add", n], "get" or "stop", got ["add", "5"]"#
        );
        assert!(msg(Term::atom("inc")).is_err());
    }

    #[test]
    fn counts() {
        let mut c = Counter::init(10, &mut Context::new(pid())).unwrap();
        let mut ctx = Context::for_message(pid(), None, false);
        assert_eq!(c.handle(Msg::Inc, &mut ctx), None);
        assert_eq!(c.handle(Msg::Add(5), &mut ctx), Some(16));
        assert_eq!(c.handle(Msg::Get, &mut ctx), Some(16));
        assert!(!ctx.is_stopping());
        assert_eq!(c.handle(Msg::Stop, &mut ctx), Some(16));
        assert!(ctx.is_stopping());
    }
}
