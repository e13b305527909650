use super::ops::*;
use super::*;
use std::time::Duration;

fn pid() -> Pid {
    Pid {
        node: "n1".into(),
        incarnation: 3,
        id: 7,
    }
}

#[test]
fn dest_has_the_wire_bytes_of_a_pid_or_a_string() {
    let bytes = steinadler_core::codec::to_vec(&Dest::from(pid())).unwrap();
    assert_eq!(
        bytes,
        [0xc7, 0x06, 0x04, 0x93, 0xa2, b'n', b'1', 0x03, 0x07]
    );
    let bytes = steinadler_core::codec::to_vec(&Dest::from("db@n2")).unwrap();
    assert_eq!(bytes, [0xa5, b'd', b'b', b'@', b'n', b'2']);
}

#[test]
fn dest_decodes_a_pid_or_a_string_and_nothing_else() {
    let limits = steinadler_core::Limits::DEFAULT;
    let decode = |bytes: &[u8]| steinadler_core::codec::from_slice::<Dest>(bytes, &limits);
    assert_eq!(
        decode(&[0xc7, 0x06, 0x04, 0x93, 0xa2, b'n', b'1', 0x03, 0x07]),
        Ok(Dest::Pid(pid()))
    );
    assert_eq!(decode(&[0xa1, b'x']), Ok(Dest::Name("x".into())));
    let err = decode(&[0x07]).unwrap_err().to_string();
    assert!(err.contains("expected a pid or a process name"), "{err}");
    assert!(err.contains("got an int"), "{err}");
}

#[test]
fn serde_pid_round_trips() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct S {
        #[serde(with = "serde_pid")]
        p: Pid,
    }
    let s = S { p: pid() };
    let bytes = steinadler_core::codec::to_vec(&s).unwrap();
    let back: S = steinadler_core::codec::from_slice(&bytes, &Default::default()).unwrap();
    assert_eq!(back, s);
    let err =
        steinadler_core::codec::from_slice::<S>(&[0x81, 0xa1, b'p', 0xc0], &Default::default())
            .unwrap_err()
            .to_string();
    assert!(err.contains("expected a pid, got nil"), "{err}");
}

#[test]
fn context_records_sends_and_stop() {
    let mut ctx = Context::for_message(pid(), Some(pid()), true);
    assert!(ctx.is_call());
    assert_eq!(ctx.from(), Some(&pid()));
    assert_eq!(ctx.self_pid(), &pid());
    ctx.send("log", ("hi", 1));
    ctx.send(ctx.self_pid().clone(), Term::atom("tick"));
    assert!(!ctx.is_stopping());
    ctx.stop();
    assert!(ctx.is_stopping());
    assert_eq!(
        ctx.sent(),
        [
            (
                Dest::Name("log".into()),
                Term::list(["hi".into(), 1.into()])
            ),
            (Dest::Pid(pid()), Term::atom("tick")),
        ]
    );
    let init = Context::new(pid());
    assert!(!init.is_call());
    assert_eq!(init.from(), None);
}

#[test]
fn a_message_that_cannot_be_encoded_is_an_error_not_a_send() {
    struct Bad;
    impl Serialize for Bad {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    let mut ctx = Context::new(pid());
    ctx.send("x", Bad);
    assert!(ctx.sent().is_empty());
    let outcome = ctx.into_parts();
    let err = outcome.send_error.unwrap();
    assert!(err.contains("sent to x") && err.contains("nope"), "{err}");
}

// The `process_op` functions, against a fake host.

const PID_BYTES: [u8; 9] = [0xc7, 0x06, 0x04, 0x93, 0xa2, b'n', b'1', 0x03, 0x07];

/// Runs `f` with a host that answers every op with `answer`; returns what `f` returned and
/// the ops asked, with their argument bytes.
fn with_host<T>(answer: &[u8], f: impl FnOnce() -> T) -> (T, Vec<(u32, Vec<u8>)>) {
    use std::cell::RefCell;
    use std::rc::Rc;
    let asked = Rc::new(RefCell::new(Vec::new()));
    let (log, answer) = (Rc::clone(&asked), answer.to_vec());
    crate::imports::FAKE_HOST.with(|h| {
        *h.borrow_mut() = Some(Box::new(move |op, args| {
            log.borrow_mut().push((op, args.to_vec()));
            answer.clone()
        }));
    });
    let out = f();
    crate::imports::FAKE_HOST.with(|h| *h.borrow_mut() = None);
    let asked = asked.borrow().clone();
    (out, asked)
}

fn ok(value: &[u8]) -> Vec<u8> {
    [&[0x92, 0x00][..], value].concat()
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn every_op_fails_natively_as_not_a_process() {
    let errors = [
        self_pid().unwrap_err(),
        send("x", 1).unwrap_err(),
        call::<Term>("x", 1, Duration::from_secs(1)).unwrap_err(),
        spawn("kv", (), None).unwrap_err(),
        register("x", None).unwrap_err(),
        whereis("x").unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e, crate::imports::NOT_A_PROCESS);
        assert!(e.starts_with("not a process"), "{e}");
    }
}

#[test]
fn self_pid_sends_the_empty_array_and_reads_a_pid() {
    let (pid_, asked) = with_host(&ok(&PID_BYTES), self_pid);
    assert_eq!(pid_, Ok(pid()));
    assert_eq!(asked, [(0, vec![0x90])]);
}

#[test]
fn send_sends_to_and_msg() {
    let (out, asked) = with_host(&ok(&[0xc0]), || send(pid(), 5));
    assert_eq!(out, Ok(()));
    assert_eq!(asked, [(1, concat(&[&[0x92], &PID_BYTES, &[0x05]]))]);
    let (out, asked) = with_host(&ok(&[0xc0]), || send("log@n2", ["a"]));
    assert_eq!(out, Ok(()));
    let want = concat(&[&[0x92, 0xa6], b"log@n2", &[0x91, 0xa1, b'a']]);
    assert_eq!(asked, [(1, want)]);
}

#[test]
fn call_sends_the_timeout_in_milliseconds_and_decodes_the_reply() {
    let msg = ("get", "a");
    let timeout = Duration::from_millis(1500);
    let (out, asked) = with_host(&ok(&[0x07]), || call::<i64>("db", msg, timeout));
    assert_eq!(out, Ok(7));
    let want = concat(&[
        &[0x93, 0xa2, b'd', b'b'],
        &[0x92, 0xa3, b'g', b'e', b't', 0xa1, b'a'],
        &[0xcd, 0x05, 0xdc],
    ]);
    assert_eq!(asked, [(2, want)]);
    // Any reply as a Term.
    let (out, _) = with_host(&ok(&PID_BYTES), || call::<Term>("db", 1, timeout));
    assert_eq!(out, Ok(Term::Pid(pid())));
}

#[test]
fn a_reply_of_another_type_is_an_error_naming_the_type() {
    let answer = ok(&[0xa2, b'n', b'o']);
    let (out, _) = with_host(&answer, || call::<i64>("db", 1, Duration::from_secs(1)));
    let e = out.unwrap_err();
    assert!(
        e.starts_with("call: the reply of db does not decode as `i64`: "),
        "{e}"
    );
}

#[test]
fn timeouts_round_up_to_a_positive_number_of_milliseconds() {
    assert_eq!(timeout_millis(Duration::ZERO), 1);
    assert_eq!(timeout_millis(Duration::from_nanos(1)), 1);
    assert_eq!(timeout_millis(Duration::from_micros(1500)), 2);
    assert_eq!(timeout_millis(Duration::from_secs(2)), 2000);
    assert_eq!(timeout_millis(Duration::MAX), i64::MAX);
}

#[test]
fn spawn_sends_module_args_and_name_and_reads_a_pid() {
    let (out, asked) = with_host(&ok(&PID_BYTES), || spawn("kv", (), Some("db")));
    assert_eq!(out, Ok(pid()));
    let want = [0x93, 0xa2, b'k', b'v', 0xc0, 0xa2, b'd', b'b'];
    assert_eq!(asked, [(3, want.to_vec())]);
    let (out, asked) = with_host(&ok(&PID_BYTES), || spawn("counter", 5, None));
    assert_eq!(out, Ok(pid()));
    let want = concat(&[&[0x93, 0xa7], b"counter", &[0x05, 0xc0]]);
    assert_eq!(asked, [(3, want)]);
    let (out, _) = with_host(&ok(&[0x01]), || spawn("kv", (), None));
    assert_eq!(
        out,
        Err("spawn: the host answered an int, not a pid".into())
    );
}

#[test]
fn register_sends_nil_for_itself_or_the_pid() {
    let (out, asked) = with_host(&ok(&[0xc0]), || register("db", None));
    assert_eq!(out, Ok(()));
    assert_eq!(asked, [(4, vec![0x92, 0xa2, b'd', b'b', 0xc0])]);
    let (out, asked) = with_host(&ok(&[0xc0]), || register("db", Some(&pid())));
    assert_eq!(out, Ok(()));
    assert_eq!(
        asked,
        [(4, concat(&[&[0x92, 0xa2, b'd', b'b'], &PID_BYTES]))]
    );
}

#[test]
fn whereis_reads_a_pid_or_nil() {
    let (out, asked) = with_host(&ok(&PID_BYTES), || whereis("db@n2"));
    assert_eq!(out, Ok(Some(pid())));
    assert_eq!(asked, [(5, concat(&[&[0x91, 0xa5], b"db@n2"]))]);
    let (out, _) = with_host(&ok(&[0xc0]), || whereis("db"));
    assert_eq!(out, Ok(None));
    let (out, _) = with_host(&ok(&[0xc3]), || whereis("db"));
    assert_eq!(
        out,
        Err("whereis: the host answered a bool, not a pid or nil".into())
    );
}

#[test]
fn the_process_op_examples_of_abi_md() {
    let (_, asked) = with_host(&ok(&[0xc0]), || send("log@n2", 1));
    let want = [0x92, 0xa6, 0x6c, 0x6f, 0x67, 0x40, 0x6e, 0x32, 0x01];
    assert_eq!(asked, [(1, want.to_vec())]);
    let timeout = Duration::from_millis(2000);
    let (_, asked) = with_host(&ok(&[0xc0]), || call::<Term>("db", "keys", timeout));
    let want = [
        0x93, 0xa2, 0x64, 0x62, 0xa4, 0x6b, 0x65, 0x79, 0x73, 0xcd, 0x07, 0xd0,
    ];
    assert_eq!(asked, [(2, want.to_vec())]);
    let (_, asked) = with_host(&ok(&[0xc0]), || whereis("db"));
    assert_eq!(asked, [(5, vec![0x91, 0xa2, 0x64, 0x62])]);
}

#[test]
fn a_host_error_is_its_message_as_is() {
    let answer = concat(&[&[0x92, 0x01, 0xa6], b"noproc"]);
    let (out, _) = with_host(&answer, || send("x", 1));
    assert_eq!(out, Err("noproc".into()));
    let (out, _) = with_host(&answer, self_pid);
    assert_eq!(out, Err("noproc".into()));
    // A non-string error is shown as a Term.
    let (out, _) = with_host(&[0x92, 0x01, 0x05], || whereis("x"));
    assert_eq!(out, Err("5".into()));
}

#[test]
fn a_malformed_answer_is_an_error() {
    for answer in [&[][..], &[0x92, 0x02, 0xc0], &[0x91, 0x00], &[0xc0]] {
        let (out, _) = with_host(answer, || register("x", None));
        let e = out.unwrap_err();
        assert!(e.starts_with("register: the host's answer is not"), "{e}");
    }
    let (out, _) = with_host(&[0x92, 0x00, 0xc1], self_pid);
    let e = out.unwrap_err();
    assert!(
        e.starts_with("self_pid: the host's answer does not decode"),
        "{e}"
    );
}

#[test]
fn a_message_that_cannot_be_encoded_is_an_error_and_nothing_is_asked() {
    struct Bad;
    impl Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    let (out, asked) = with_host(&ok(&[0xc0]), || send("x", Bad));
    assert_eq!(out, Err("cannot encode the message sent to x: nope".into()));
    assert!(asked.is_empty());
    let (out, asked) = with_host(&ok(&[0xc0]), || spawn("kv", Bad, None));
    assert_eq!(
        out,
        Err("cannot encode the spawn arguments of kv: nope".into())
    );
    assert!(asked.is_empty());
}
