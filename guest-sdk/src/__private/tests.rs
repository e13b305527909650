use super::process::*;
use super::*;
use crate::process::{Context, Process};
use std::cell::RefCell;
use steinadler_core::{Pid, Term};

fn pid() -> Pid {
    Pid {
        node: "n1".into(),
        incarnation: 3,
        id: 7,
    }
}

const PID_BYTES: [u8; 9] = [0xc7, 0x06, 0x04, 0x93, 0xa2, b'n', b'1', 0x03, 0x07];

/// A test process: `["add", n]`, `["send", n]`, `["stop", _]`, `["who", _]`.
#[derive(Debug)]
struct Acc(i64);

impl Process for Acc {
    type Args = i64;
    type Msg = (String, i64);
    type Reply = Term;

    fn init(start: i64, ctx: &mut Context) -> Result<Self, String> {
        match start {
            s if s < 0 => Err(format!("negative start {s}")),
            98 => {
                ctx.stop();
                Ok(Acc(start))
            }
            99 => {
                ctx.send("x", 1);
                Ok(Acc(start))
            }
            _ => Ok(Acc(start)),
        }
    }

    fn handle(&mut self, (op, n): (String, i64), ctx: &mut Context) -> Option<Term> {
        match op.as_str() {
            "add" => {
                self.0 += n;
                ctx.is_call().then_some(Term::Int(self.0))
            }
            "send" => {
                ctx.send(ctx.self_pid().clone(), n);
                ctx.send("log@n2", ("total", self.0));
                None
            }
            "stop" => {
                ctx.stop();
                Some(Term::Int(self.0))
            }
            "who" => Some(ctx.from().cloned().map_or(Term::Nil, Term::Pid)),
            _ => panic!("unknown op {op}"),
        }
    }
}

/// Takes `()`, so a spawn argument of nil or `[]`.
#[derive(Debug)]
struct Unit;

impl Process for Unit {
    type Args = ();
    type Msg = Term;
    type Reply = ();

    fn init((): (), _: &mut Context) -> Result<Self, String> {
        Ok(Unit)
    }

    fn handle(&mut self, _: Term, _: &mut Context) -> Option<()> {
        None
    }
}

thread_local! {
    static ACC: RefCell<Option<Acc>> = const { RefCell::new(None) };
    static UNIT: RefCell<Option<Unit>> = const { RefCell::new(None) };
}

fn init_acc(args: Term) -> Output {
    let input = Term::list([args, Term::Pid(pid())]).encode();
    run_init(decode_init::<i64>(&input), &ACC)
}

fn handle_acc(msg: Term, from: Term, kind: i64) -> Output {
    let input = Term::list([msg, from, Term::Int(kind)]).encode();
    run_handle(decode_handle::<(String, i64)>(&input), &ACC)
}

fn op(name: &str, n: i64) -> Term {
    Term::list([name.into(), n.into()])
}

fn state() -> Option<i64> {
    ACC.with(|s| s.borrow().as_ref().map(|a| a.0))
}

/// The envelope's status and its value as a Term.
fn parts(out: &Output) -> (u8, Term) {
    match Term::decode(&out.buf).unwrap() {
        Term::List(items) => match &items[..] {
            [Term::Int(status), value] => {
                assert_eq!(out.status(), *status as u8);
                (out.status(), value.clone())
            }
            _ => panic!("not an envelope: {items:?}"),
        },
        other => panic!("not an envelope: {other}"),
    }
}

fn message(out: &Output) -> String {
    match parts(out).1 {
        Term::String(s) => s,
        other => panic!("not a message: {other}"),
    }
}

#[test]
fn init_keeps_the_state_and_returns_nil() {
    let out = init_acc(Term::Int(5));
    assert_eq!(out.buf, [0x92, 0x00, 0xc0]);
    assert_eq!(state(), Some(5));
}

#[test]
fn the_whole_init_input_bytes_decode() {
    // [5, <n1.3.7>]
    let input = [&[0x92, 0x05][..], &PID_BYTES].concat();
    let out = run_init(decode_init::<i64>(&input), &ACC);
    assert_eq!(out.buf, [0x92, 0x00, 0xc0]);
}

#[test]
fn init_err_is_a_guest_error_carrying_the_reason() {
    let out = init_acc(Term::Int(-1));
    assert_eq!(
        parts(&out),
        (STATUS_GUEST_ERROR, "negative start -1".into())
    );
    assert_eq!(state(), None);
}

#[test]
fn init_args_that_do_not_decode_are_bad_arguments() {
    let out = init_acc("five".into());
    assert_eq!(out.status(), STATUS_BAD_ARGUMENTS);
    let msg = message(&out);
    assert!(
        msg.contains("the spawn arguments do not decode as `i64`"),
        "{msg}"
    );
    assert_eq!(state(), None);

    let input = Term::list([Term::Int(1), Term::Int(2)]).encode();
    let out = run_init(decode_init::<i64>(&input), &ACC);
    assert_eq!(message(&out), "`self_pid` must be a pid, got an int");

    let input = Term::list([Term::Int(1)]).encode();
    let out = run_init(decode_init::<i64>(&input), &ACC);
    let msg = message(&out);
    assert!(msg.contains("process_init takes [args, self_pid]"), "{msg}");
}

#[test]
fn unit_args_accept_nil_and_the_empty_array() {
    for args in [Term::Nil, Term::list([])] {
        let input = Term::list([args, Term::Pid(pid())]).encode();
        let out = run_init(decode_init::<()>(&input), &UNIT);
        assert_eq!(out.buf, [0x92, 0x00, 0xc0]);
    }
    let input = Term::list([Term::Int(1), Term::Pid(pid())]).encode();
    let out = run_init(decode_init::<()>(&input), &UNIT);
    assert_eq!(out.status(), STATUS_BAD_ARGUMENTS);
    // An argument type that takes an empty array still gets one.
    let input = Term::list([Term::list([]), Term::Pid(pid())]).encode();
    let decoded = decode_init::<Option<Vec<i64>>>(&input).unwrap();
    assert_eq!(decoded.args, Some(vec![]));
}

#[test]
fn sends_and_stop_in_init_fail_the_start() {
    let out = init_acc(Term::Int(99));
    assert_eq!(out.status(), STATUS_GUEST_ERROR);
    assert!(message(&out).contains("ctx.send"));
    let out = init_acc(Term::Int(98));
    assert_eq!(out.status(), STATUS_GUEST_ERROR);
    assert!(message(&out).contains("ctx.stop"));
    assert_eq!(state(), None);
}

#[test]
fn handle_before_init_is_a_guest_error() {
    let out = handle_acc(op("add", 1), Term::Nil, 1);
    assert_eq!(out.status(), STATUS_GUEST_ERROR);
    assert!(message(&out).contains("before process_init"));
}

#[test]
fn a_call_gets_its_reply_and_a_send_gets_nil() {
    init_acc(Term::Int(5));
    // A send: [nil, false, []].
    let out = handle_acc(op("add", 2), Term::Nil, 0);
    assert_eq!(out.buf, [0x92, 0x00, 0x93, 0xc0, 0xc2, 0x90]);
    // A call: [8, false, []].
    let out = handle_acc(op("add", 1), Term::Pid(pid()), 1);
    assert_eq!(out.buf, [0x92, 0x00, 0x93, 0x08, 0xc2, 0x90]);
    assert_eq!(state(), Some(8));
}

#[test]
fn the_whole_handle_input_bytes_decode() {
    init_acc(Term::Int(0));
    // [["who", 0], <n1.3.7>, 1] -> [<n1.3.7>, false, []]
    let input = [
        &[0x93, 0x92, 0xa3, b'w', b'h', b'o', 0x00][..],
        &PID_BYTES,
        &[0x01],
    ]
    .concat();
    let out = run_handle(decode_handle::<(String, i64)>(&input), &ACC);
    let want = [&[0x92, 0x00, 0x93][..], &PID_BYTES, &[0xc2, 0x90]].concat();
    assert_eq!(out.buf, want);
    // from nil -> reply nil
    let out = handle_acc(op("who", 0), Term::Nil, 1);
    assert_eq!(out.buf, [0x92, 0x00, 0x93, 0xc0, 0xc2, 0x90]);
}

#[test]
fn sends_go_out_in_order_as_to_msg_pairs() {
    init_acc(Term::Int(4));
    let out = handle_acc(op("send", 9), Term::Nil, 0);
    let want = [
        &[0x92, 0x00, 0x93, 0xc0, 0xc2, 0x92, 0x92][..],
        &PID_BYTES,
        &[0x09, 0x92, 0xa6],
        b"log@n2",
        &[0x92, 0xa5],
        b"total",
        &[0x04],
    ]
    .concat();
    assert_eq!(out.buf, want);
}

#[test]
fn stop_replies_and_drops_the_state() {
    init_acc(Term::Int(3));
    let out = handle_acc(op("stop", 0), Term::Nil, 1);
    assert_eq!(out.buf, [0x92, 0x00, 0x93, 0x03, 0xc3, 0x90]);
    assert_eq!(state(), None);
}

#[test]
fn a_message_that_does_not_decode_is_bad_arguments_and_keeps_the_state() {
    init_acc(Term::Int(5));
    let out = handle_acc("inc".into(), Term::Nil, 0);
    assert_eq!(out.status(), STATUS_BAD_ARGUMENTS);
    let msg = message(&out);
    // The type's name comes from `std::any::type_name`, whose exact text is not stable.
    assert!(
        msg.starts_with("the message does not decode as `("),
        "{msg}"
    );
    assert!(msg.contains("String, i64)`: "), "{msg}");
    assert_eq!(state(), Some(5));
    let out = handle_acc(op("add", 1), Term::Nil, 1);
    assert_eq!(
        parts(&out).1,
        Term::list([6.into(), false.into(), Term::list([])])
    );
}

#[test]
fn a_malformed_from_or_kind_is_bad_arguments() {
    init_acc(Term::Int(5));
    let out = handle_acc(op("add", 1), "me".into(), 0);
    assert_eq!(message(&out), "`from` must be a pid or nil, got a string");
    let out = handle_acc(op("add", 1), Term::Nil, 2);
    assert_eq!(message(&out), "`kind` must be 0 (send) or 1 (call), got 2");
    let input = Term::list([op("add", 1), Term::Nil]).encode();
    let out = run_handle(decode_handle::<(String, i64)>(&input), &ACC);
    let msg = message(&out);
    assert!(
        msg.contains("process_handle takes [msg, from, kind]"),
        "{msg}"
    );
    assert_eq!(state(), Some(5));
}

#[test]
fn the_outcome_example_of_abi_md() {
    let mut ctx = Context::for_message(pid(), None, false);
    ctx.send("log@n2", 1);
    ctx.stop();
    let out = Output::handled(None::<&()>, ctx.into_parts());
    let want = [0x92, 0x00, 0x93, 0xc0, 0xc3, 0x91, 0x92, 0xa6];
    assert_eq!(out.buf, [&want[..], b"log@n2", &[0x01]].concat());
}

#[test]
fn an_unencodable_reply_is_bad_output() {
    struct Bad;
    impl Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    let ctx = Context::new(pid());
    let out = Output::handled(Some(&Bad), ctx.into_parts());
    assert_eq!(out.status(), STATUS_BAD_OUTPUT);
    assert!(message(&out).contains("cannot encode the reply: nope"));
}
