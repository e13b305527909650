//! `kv`: a key-value store process, spawned with nil (or `[]`).
//!
//! Keys are strings; values are any Terms.
//!
//! | message | effect | reply |
//! |---|---|---|
//! | `["put", key, value]` | stores `value` under `key` | the previous value, or nil |
//! | `["get", key]` | | the value, or nil |
//! | `["delete", key]` | removes `key` | the removed value, or nil |
//! | `"keys"` | | the keys, sorted |
//! | `["forward", to, msg]` | sends `msg` to `to`, a pid or a name (`"name"`, `"name@node"`) | `true` |
//! | `"crash"` | panics: the process crashes | — |
//!
//! The unit tests run natively: `cargo test --manifest-path modules/Cargo.toml -p counter -p kv`.

use std::collections::BTreeMap;
use steinadler::{Context, Dest, Process, Term};

/// The process state.
#[derive(Debug, Default)]
struct Kv {
    map: BTreeMap<String, Term>,
}

/// The messages, in the Term shapes of the table above.
#[derive(Debug, PartialEq, steinadler::serde::Deserialize)]
#[serde(crate = "steinadler::serde", try_from = "Term")]
enum Msg {
    Put(String, Term),
    Get(String),
    Delete(String),
    Keys,
    Forward(Dest, Term),
    Crash,
}

const SHAPES: &str = r#"["put", key, value], ["get", key], ["delete", key], "keys", ["forward", to, msg] or "crash""#;

fn key(term: Term) -> Result<String, String> {
    match term {
        Term::String(key) => Ok(key),
        other => Err(format!("keys are strings, got {other}")),
    }
}

impl TryFrom<Term> for Msg {
    type Error = String;

    fn try_from(term: Term) -> Result<Self, String> {
        let items = match term {
            Term::String(word) if word == "keys" => return Ok(Self::Keys),
            Term::String(word) if word == "crash" => return Ok(Self::Crash),
            Term::List(items) => items,
            other => return Err(format!("expected {SHAPES}, got {other}")),
        };
        let mut items = items.into_iter();
        let (Some(Term::String(op)), a, b, None) =
            (items.next(), items.next(), items.next(), items.next())
        else {
            return Err(format!("expected {SHAPES}, got a list of another shape"));
        };
        match (op.as_str(), a, b) {
            ("put", Some(k), Some(v)) => Ok(Self::Put(key(k)?, v)),
            ("get", Some(k), None) => Ok(Self::Get(key(k)?)),
            ("delete", Some(k), None) => Ok(Self::Delete(key(k)?)),
            ("forward", Some(to), Some(msg)) => {
                let to = match to {
                    Term::Pid(pid) => Dest::Pid(pid),
                    Term::String(name) => Dest::Name(name),
                    other => return Err(format!("forward to a pid or a name, not {other}")),
                };
                Ok(Self::Forward(to, msg))
            }
            _ => Err(format!(
                "expected {SHAPES}, got a {op:?} list of another shape"
            )),
        }
    }
}

impl Process for Kv {
    type Args = ();
    type Msg = Msg;
    type Reply = Term;

    fn init((): (), _ctx: &mut Context) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn handle(&mut self, msg: Msg, ctx: &mut Context) -> Option<Term> {
        match msg {
            Msg::Put(k, v) => self.map.insert(k, v),
            Msg::Get(k) => self.map.get(&k).cloned(),
            Msg::Delete(k) => self.map.remove(&k),
            Msg::Keys => Some(Term::list(self.map.keys().map(|k| k.as_str().into()))),
            Msg::Forward(to, msg) => {
                ctx.send(to, msg);
                Some(Term::Bool(true))
            }
            Msg::Crash => panic!("kv crashed on request"),
        }
    }
}

steinadler::process!(Kv);

#[cfg(test)]
mod tests {
    use super::*;
    use steinadler::Pid;

    fn pid() -> Pid {
        Pid {
            node: "n1".into(),
            incarnation: 1,
            id: 2,
        }
    }

    fn list<const N: usize>(items: [Term; N]) -> Term {
        Term::list(items)
    }

    #[test]
    fn messages_have_the_documented_shapes() {
        let m = |t: Term| Msg::try_from(t);
        assert_eq!(
            m(list(["put".into(), "a".into(), 1.into()])),
            Ok(Msg::Put("a".into(), 1.into()))
        );
        assert_eq!(
            m(list(["get".into(), "a".into()])),
            Ok(Msg::Get("a".into()))
        );
        assert_eq!(
            m(list(["delete".into(), "a".into()])),
            Ok(Msg::Delete("a".into()))
        );
        assert_eq!(m("keys".into()), Ok(Msg::Keys));
        assert_eq!(m("crash".into()), Ok(Msg::Crash));
        assert_eq!(
            m(list(["forward".into(), Term::Pid(pid()), "hi".into()])),
            Ok(Msg::Forward(Dest::Pid(pid()), "hi".into()))
        );
        assert_eq!(
            m(list(["forward".into(), "c@n2".into(), "inc".into()])),
            Ok(Msg::Forward(Dest::Name("c@n2".into()), "inc".into()))
        );
        assert!(
            m(list(["get".into(), 1.into()]))
                .unwrap_err()
                .contains("keys are strings")
        );
        assert!(m(list(["get".into()])).is_err());
        assert!(m(list(["put".into(), "a".into()])).is_err());
        assert!(m(list(["get".into(), "a".into(), "b".into(), "c".into()])).is_err());
        assert!(m(Term::Nil).is_err());
    }

    #[test]
    fn stores_and_forwards() {
        let mut kv = Kv::init((), &mut Context::new(pid())).unwrap();
        let mut ctx = Context::for_message(pid(), None, true);
        assert_eq!(kv.handle(Msg::Put("b".into(), 1.into()), &mut ctx), None);
        assert_eq!(
            kv.handle(Msg::Put("b".into(), 2.into()), &mut ctx),
            Some(1.into())
        );
        assert_eq!(kv.handle(Msg::Put("a".into(), 3.into()), &mut ctx), None);
        assert_eq!(kv.handle(Msg::Get("b".into()), &mut ctx), Some(2.into()));
        assert_eq!(
            kv.handle(Msg::Keys, &mut ctx),
            Some(list(["a".into(), "b".into()]))
        );
        assert_eq!(kv.handle(Msg::Delete("a".into()), &mut ctx), Some(3.into()));
        assert_eq!(kv.handle(Msg::Get("a".into()), &mut ctx), None);
        let fwd = Msg::Forward(Dest::Name("c".into()), "inc".into());
        assert_eq!(kv.handle(fwd, &mut ctx), Some(Term::Bool(true)));
        assert_eq!(ctx.sent(), [(Dest::Name("c".into()), "inc".into())]);
    }
}
