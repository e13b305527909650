//! The working modules, the argument and lookup errors, and the module store.

use steinadler_core::{InvokeError, Term};
use steinadler_host::{Host, HostConfig, InvokeLimits, LoadSource};
use steinadler_test_modules as m;
use steinadler_tests::{host, load};

fn limits() -> InvokeLimits {
    InvokeLimits::default()
}

#[test]
fn hello_greets() {
    let host = host();
    let hello = load(&host, m::HELLO);
    let out = host.invoke_term(&hello, "greet", &[Term::from("World")], &limits());
    assert_eq!(out, Ok(Term::from("Hello, World!")));
}

#[test]
fn math_adds_and_computes_fibonacci() {
    let host = host();
    let math = load(&host, m::MATH);
    let add = |a: i64, b: i64| host.invoke_term(&math, "add", &[a.into(), b.into()], &limits());
    assert_eq!(add(2, 40), Ok(Term::Int(42)));
    assert_eq!(add(-7, 7), Ok(Term::Int(0)));
    assert!(
        matches!(add(i64::MAX, 1), Err(InvokeError::GuestError(Term::String(s))) if s.contains("overflows"))
    );

    let fib = |n: i64| host.invoke_term(&math, "fib", &[Term::Int(n)], &limits());
    assert_eq!(fib(0), Ok(Term::Int(0)));
    assert_eq!(fib(1), Ok(Term::Int(1)));
    assert_eq!(fib(10), Ok(Term::Int(55)));
    assert_eq!(fib(90), Ok(Term::Int(2_880_067_194_370_816_120)));
    assert!(matches!(fib(100), Err(InvokeError::GuestError(_))));
}

#[test]
fn each_call_gets_a_fresh_instance() {
    // The module store is per host, but no instance state survives a call: the same call twice
    // gives the same answer, and a trap in between changes nothing.
    let host = host();
    let math = load(&host, m::MATH);
    let crash = load(&host, m::CRASH);
    let first = host.invoke_term(&math, "fib", &[Term::Int(20)], &limits());
    assert!(host.invoke_term(&crash, "panic", &[], &limits()).is_err());
    let second = host.invoke_term(&math, "fib", &[Term::Int(20)], &limits());
    assert_eq!(first, Ok(Term::Int(6765)));
    assert_eq!(first, second);
}

#[test]
fn bad_arguments_name_the_argument() {
    let host = host();
    let math = load(&host, m::MATH);
    let call = |args: &[Term]| host.invoke_term(&math, "add", args, &limits()).unwrap_err();

    let err = call(&[Term::from("x"), Term::Int(1)]);
    assert!(
        matches!(&err, InvokeError::BadArguments(m) if m.contains("argument 1 (`a`)")),
        "{err:?}"
    );
    let err = call(&[Term::Int(1)]);
    assert!(
        matches!(&err, InvokeError::BadArguments(m) if m.contains("takes 2 arguments (a, b), but 1 was given")),
        "{err:?}"
    );
    let err = call(&[Term::Int(1), Term::Int(2), Term::Int(3)]);
    assert!(
        matches!(&err, InvokeError::BadArguments(m) if m.contains("3 were given")),
        "{err:?}"
    );

    // Not an array at all, and garbage bytes.
    for raw in [Term::Int(5).encode(), vec![0xc1], vec![0x92, 0x01]] {
        let err = host.invoke(&math, "add", &raw, &limits()).unwrap_err();
        assert!(
            matches!(err, InvokeError::BadArguments(_)),
            "{raw:?}: {err:?}"
        );
    }
    // And the host still serves.
    assert_eq!(call_ok(&host, &math), Term::Int(3));
}

fn call_ok(host: &Host, math: &steinadler_host::LoadedModule) -> Term {
    host.invoke_term(math, "add", &[Term::Int(1), Term::Int(2)], &limits())
        .expect("add works")
}

#[test]
fn unknown_function_and_module_are_typed_errors() {
    let host = host();
    let math = load(&host, m::MATH);
    match host.invoke_term(&math, "nope", &[], &limits()) {
        Err(InvokeError::FunctionNotFound {
            function,
            available,
            ..
        }) => {
            assert_eq!(function, "nope");
            assert_eq!(available, "add, fib");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        host.resolve("no-such-module").unwrap_err(),
        InvokeError::ModuleNotFound("no-such-module".into())
    );
    // By name (the file stem) and by id.
    assert_eq!(host.resolve("math").unwrap().id(), math.id());
    assert_eq!(
        host.resolve(&math.id().to_string()).unwrap().id(),
        math.id()
    );
}

#[test]
fn non_wasm_bytes_are_refused_at_load() {
    let host = host();
    let err = host.load(b"#!/bin/sh\necho not wasm\n").unwrap_err();
    assert!(
        matches!(&err, InvokeError::InvalidModule(m) if m.contains("not a WebAssembly module")),
        "{err:?}"
    );

    // The right magic, then garbage.
    let mut bytes = std::fs::read(m::HELLO).unwrap();
    bytes.truncate(bytes.len() / 2);
    let err = host.load(&bytes).unwrap_err();
    assert!(matches!(err, InvokeError::InvalidModule(_)), "{err:?}");
}

#[test]
fn module_without_the_abi_is_refused_with_what_is_missing() {
    let host = host();
    // The smallest valid module: magic and version, no sections.
    let empty = b"\0asm\x01\0\0\0";
    match host.load(empty) {
        Err(InvokeError::InvalidModule(msg)) => {
            for needle in [
                "lacks the Steinadler ABI",
                "`memory`",
                "`alloc",
                "`dealloc",
                "(i32, i32) -> i64",
            ] {
                assert!(msg.contains(needle), "{needle:?} not in {msg}");
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn restart_loads_precompiled_modules_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = || HostConfig {
        data_dir: Some(dir.path().to_owned()),
        ..HostConfig::default()
    };
    let id = {
        let host = Host::new(config()).unwrap();
        let math = load(&host, m::MATH);
        assert_eq!(math.source(), LoadSource::Compiled);
        math.id()
    };
    // A new host over the same data dir: same bytes load without compiling, and the name and
    // id still resolve.
    let host = Host::new(config()).unwrap();
    let by_name = host.resolve("math").unwrap();
    assert_eq!(by_name.id(), id);
    assert_eq!(by_name.source(), LoadSource::Disk);
    let out = host.invoke_term(&by_name, "add", &[Term::Int(1), Term::Int(2)], &limits());
    assert_eq!(out, Ok(Term::Int(3)));
}

#[test]
fn concurrent_invocations_share_one_host() {
    let host = host();
    let math = load(&host, m::MATH);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (host, math) = (&host, &math);
            s.spawn(move || {
                for i in 0..200 {
                    let out =
                        host.invoke_term(math, "add", &[Term::Int(t), Term::Int(i)], &limits());
                    assert_eq!(out, Ok(Term::Int(t + i)));
                }
            });
        }
    });
}
