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
//! | `["forward", to, msg]` | sends `msg` to `to`, a pid or a name (`"name"`, `"name@node"`), after handling this message (`ctx.send`) | `true` |
//! | `"crash"` | panics: the process crashes | — |
//! | `"whoami"` | asks the node for its own pid (`process::self_pid`) | its pid |
//! | `["call", to, msg]` | calls `to` with `msg`, waiting up to 2 s (`process::call`) | the reply |
//! | `["send_now", to, msg]` | sends `msg` to `to` at once (`process::send`) | `true` |
//! | `["spawn", module, args]` | spawns `module` with `args` on this node (`process::spawn`) | the new pid |
//! | `["spawn", module, args, name]` | the same, registered as `name` | the new pid |
//! | `["register", name]` | registers itself as `name` on this node (`process::register`) | `true` |
//! | `["register_global", name]` | registers itself as `name` across the cluster (`process::register_global`) | `true` |
//! | `["whereis", name]` | looks up `"name"` here, then as a global name, or `"name@node"` (`process::whereis`) | its pid, or nil |
//! | `["monitor", pid]` | monitors `pid` (`process::monitor`) | the reference |
//! | `["demonitor", ref]` | cancels a monitor (`process::demonitor`) | whether it was active |
//! | `["DOWN", ref, pid, reason]` | what a monitor delivers: kept in a list | nil |
//! | `["stream", module, function, args, node]` | opens a stream for itself (`process::open_stream`; `node` nil for this node) | the stream's reference |
//! | `["stream_from", process, args]` | opens a stream that `process` emits (`process::open_process_stream`) | the stream's reference |
//! | `["stream_item", ref, item]` | what a stream delivers: `item` is kept in a list | nil |
//! | `"streamed"` | | the stream items received, oldest first |
//! | `["stream_end", ref, end]` | what ends a stream: kept with the DOWN messages | nil |
//! | `["name_lost", name, winner]` | what the registry sends a process that lost its global name in a partition: kept in the same list | nil |
//! | `"downs"` | | the DOWN and name_lost messages received, oldest first |
//!
//! When the node refuses one of the last seven (and outside a node, where each fails with
//! `"not a process…"`), the reply is the node's error message, a string. `to` is a pid or a name;
//! `module` and `name` are strings; `msg` and `args` are any Terms. Calling itself
//! (`["call", <own pid>, msg]`) blocks kv until the 2 s timeout, then replies the timeout error.
//!
//! The unit tests run natively: `cargo test --manifest-path modules/Cargo.toml -p counter -p kv`.

use std::collections::BTreeMap;
use std::time::Duration;
use steinadler::{Context, Dest, Process, Term, process};

/// How long `["call", to, msg]` waits for the reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The process state.
#[derive(Debug, Default)]
struct Kv {
    map: BTreeMap<String, Term>,
    downs: Vec<Term>,
    streamed: Vec<Term>,
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
    Whoami,
    Call(Dest, Term),
    SendNow(Dest, Term),
    Spawn(String, Term, Option<String>),
    Register(String),
    RegisterGlobal(String),
    Whereis(String),
    Monitor(Term),
    Demonitor(Term),
    Down(Term),
    Downs,
    Stream(String, String, Term, Option<String>),
    StreamFrom(String, Term),
    StreamItem(Term),
    Streamed,
}

const SHAPES: &str = concat!(
    r#"["put", key, value], ["get", key], ["delete", key], "keys", ["forward", to, msg], "#,
    r#""crash", "whoami", ["call", to, msg], ["send_now", to, msg], ["spawn", module, args], "#,
    r#"["spawn", module, args, name], ["register", name], ["register_global", name], "#,
    r#"["whereis", name], "#,
    r#"["monitor", pid], ["demonitor", ref], ["DOWN", ref, pid, reason], "#,
    r#"["name_lost", name, winner], "downs", ["stream", module, function, args, node], "#,
    r#"["stream_from", process, args], ["stream_item", ref, item], "streamed" or "#,
    r#"["stream_end", ref, end]"#,
);

fn key(term: Term) -> Result<String, String> {
    match term {
        Term::String(key) => Ok(key),
        other => Err(format!("keys are strings, got {other}")),
    }
}

/// A string argument: a module or a process name.
fn string(what: &str, term: Term) -> Result<String, String> {
    match term {
        Term::String(s) => Ok(s),
        other => Err(format!("{what} is a string, not {other}")),
    }
}

/// A destination: a pid or a name (`"name"`, `"name@node"`).
fn dest(op: &str, term: Term) -> Result<Dest, String> {
    match term {
        Term::Pid(pid) => Ok(Dest::Pid(pid)),
        Term::String(name) => Ok(Dest::Name(name)),
        other => Err(format!("{op} to a pid or a name, not {other}")),
    }
}

/// The reply to one of the messages that ask the node: the value, or the node's error message.
fn reply(result: Result<Term, String>) -> Option<Term> {
    Some(result.unwrap_or_else(Term::String))
}

impl TryFrom<Term> for Msg {
    type Error = String;

    fn try_from(term: Term) -> Result<Self, String> {
        let items = match term {
            Term::String(word) if word == "keys" => return Ok(Self::Keys),
            Term::String(word) if word == "crash" => return Ok(Self::Crash),
            Term::String(word) if word == "whoami" => return Ok(Self::Whoami),
            Term::String(word) if word == "downs" => return Ok(Self::Downs),
            Term::String(word) if word == "streamed" => return Ok(Self::Streamed),
            Term::List(items)
                if items.first() == Some(&Term::from("DOWN"))
                    || items.first() == Some(&Term::from("name_lost"))
                    || items.first() == Some(&Term::from("stream_end")) =>
            {
                return Ok(Self::Down(Term::List(items)));
            }
            Term::List(items) => items,
            other => return Err(format!("expected {SHAPES}, got {other}")),
        };
        let mut items = items.into_iter();
        let Some(Term::String(op)) = items.next() else {
            return Err(format!("expected {SHAPES}, got a list of another shape"));
        };
        let count = items.len();
        // Taken in order; the match below checks the count first.
        let mut arg = || items.next().unwrap_or(Term::Nil);
        match (op.as_str(), count) {
            ("put", 2) => Ok(Self::Put(key(arg())?, arg())),
            ("get", 1) => Ok(Self::Get(key(arg())?)),
            ("delete", 1) => Ok(Self::Delete(key(arg())?)),
            ("forward", 2) => Ok(Self::Forward(dest("forward", arg())?, arg())),
            ("call", 2) => Ok(Self::Call(dest("call", arg())?, arg())),
            ("send_now", 2) => Ok(Self::SendNow(dest("send_now", arg())?, arg())),
            ("spawn", 2) => Ok(Self::Spawn(string("the module", arg())?, arg(), None)),
            ("spawn", 3) => {
                let module = string("the module", arg())?;
                let args = arg();
                Ok(Self::Spawn(module, args, Some(string("the name", arg())?)))
            }
            ("register", 1) => Ok(Self::Register(string("the name", arg())?)),
            ("stream_item", 2) => {
                let _ref = arg();
                Ok(Self::StreamItem(arg()))
            }
            ("stream", 4) => {
                let module = string("the module", arg())?;
                let function = string("the function", arg())?;
                let args = arg();
                let node = match arg() {
                    Term::Nil => None,
                    other => Some(string("the node", other)?),
                };
                Ok(Self::Stream(module, function, args, node))
            }
            ("stream_from", 2) => {
                let process = string("the process", arg())?;
                Ok(Self::StreamFrom(process, arg()))
            }
            ("register_global", 1) => Ok(Self::RegisterGlobal(string("the name", arg())?)),
            ("whereis", 1) => Ok(Self::Whereis(string("the name", arg())?)),
            ("monitor", 1) => Ok(Self::Monitor(arg())),
            ("demonitor", 1) => Ok(Self::Demonitor(arg())),
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
            Msg::Whoami => reply(process::self_pid().map(Term::Pid)),
            Msg::Call(to, msg) => reply(process::call(to, msg, CALL_TIMEOUT)),
            Msg::SendNow(to, msg) => reply(process::send(to, msg).map(|()| Term::Bool(true))),
            Msg::Spawn(module, args, name) => {
                reply(process::spawn(&module, args, name.as_deref()).map(Term::Pid))
            }
            Msg::Register(name) => reply(process::register(&name, None).map(|()| Term::Bool(true))),
            Msg::RegisterGlobal(name) => {
                reply(process::register_global(&name, None).map(|()| Term::Bool(true)))
            }
            Msg::Whereis(name) => {
                reply(process::whereis(&name).map(|pid| pid.map_or(Term::Nil, Term::Pid)))
            }
            Msg::Monitor(Term::Pid(pid)) => reply(process::monitor(&pid).map(Term::Ref)),
            Msg::Monitor(other) => Some(Term::String(format!("monitor takes a pid, not {other}"))),
            Msg::Demonitor(Term::Ref(r)) => reply(process::demonitor(&r).map(Term::Bool)),
            Msg::Demonitor(other) => Some(Term::String(format!(
                "demonitor takes a reference, not {other}"
            ))),
            Msg::Down(down) => {
                self.downs.push(down);
                None
            }
            Msg::Downs => Some(Term::List(self.downs.clone())),
            Msg::Stream(module, function, args, node) => reply(
                process::open_stream(&module, &function, args, node.as_deref()).map(Term::Ref),
            ),
            Msg::StreamFrom(process, args) => {
                reply(process::open_process_stream(&process, args).map(Term::Ref))
            }
            Msg::StreamItem(item) => {
                self.streamed.push(item);
                None
            }
            Msg::Streamed => Some(Term::List(self.streamed.clone())),
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
    fn the_messages_that_ask_the_node_have_the_documented_shapes() {
        let m = |t: Term| Msg::try_from(t);
        assert_eq!(m("whoami".into()), Ok(Msg::Whoami));
        assert_eq!(
            m(list(["call".into(), Term::Pid(pid()), "keys".into()])),
            Ok(Msg::Call(Dest::Pid(pid()), "keys".into()))
        );
        assert_eq!(
            m(list(["send_now".into(), "c@n2".into(), "inc".into()])),
            Ok(Msg::SendNow(Dest::Name("c@n2".into()), "inc".into()))
        );
        assert_eq!(
            m(list(["spawn".into(), "counter".into(), 5.into()])),
            Ok(Msg::Spawn("counter".into(), 5.into(), None))
        );
        assert_eq!(
            m(list(["spawn".into(), "kv".into(), Term::Nil, "db".into()])),
            Ok(Msg::Spawn("kv".into(), Term::Nil, Some("db".into())))
        );
        assert_eq!(
            m(list(["register".into(), "db".into()])),
            Ok(Msg::Register("db".into()))
        );
        assert_eq!(
            m(list(["whereis".into(), "db@n2".into()])),
            Ok(Msg::Whereis("db@n2".into()))
        );
        assert!(
            m(list(["call".into(), 1.into(), "x".into()]))
                .unwrap_err()
                .contains("call to a pid or a name")
        );
        assert!(m(list(["call".into(), "c".into()])).is_err());
        assert!(m(list(["spawn".into(), 1.into(), Term::Nil])).is_err());
        assert!(m(list(["spawn".into(), "kv".into(), Term::Nil, 1.into()])).is_err());
        assert!(m(list(["register".into()])).is_err());
        assert!(m(list(["whereis".into(), Term::Nil])).is_err());
    }

    #[test]
    fn natively_the_node_ops_reply_the_not_a_process_error() {
        let mut kv = Kv::init((), &mut Context::new(pid())).unwrap();
        let mut ctx = Context::for_message(pid(), None, true);
        let msgs = [
            Msg::Whoami,
            Msg::Call(Dest::Name("c".into()), "keys".into()),
            Msg::SendNow(Dest::Pid(pid()), 1.into()),
            Msg::Spawn("counter".into(), 0.into(), None),
            Msg::Register("db".into()),
            Msg::Whereis("db".into()),
        ];
        for msg in msgs {
            match kv.handle(msg, &mut ctx) {
                Some(Term::String(e)) => assert!(e.starts_with("not a process"), "{e}"),
                other => panic!("expected the error string, got {other:?}"),
            }
        }
        // They act at once, not through the context.
        assert!(ctx.sent().is_empty());
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
