//! Every Term type round-trips through a guest: `echo.echo` decodes its argument into a `Term`
//! inside wasm, and encodes it back.

use steinadler_core::{Pid, Ref, Term};
use steinadler_host::InvokeLimits;
use steinadler_test_modules as m;
use steinadler_tests::{host, load};

fn every_type() -> Vec<Term> {
    let pid = Pid {
        node: "n1".into(),
        incarnation: 3,
        id: 7,
    };
    let reference = Ref {
        node: "n2".into(),
        incarnation: u64::MAX,
        id: 1 << 40,
    };
    vec![
        Term::Nil,
        Term::Bool(true),
        Term::Bool(false),
        Term::Int(0),
        Term::Int(-1),
        Term::Int(127),
        Term::Int(-33),
        Term::Int(i64::MIN),
        Term::Int(i64::MAX),
        Term::Float(0.5),
        Term::Float(-1.0e300),
        Term::Float(f64::INFINITY),
        Term::String(String::new()),
        Term::String("héllo, wörld ✓".into()),
        Term::String("x".repeat(70_000)),
        Term::Bytes(vec![]),
        Term::Bytes((0..=255).collect()),
        Term::atom("ok"),
        Term::List(vec![]),
        Term::list([Term::Int(1), Term::from("two"), Term::Nil]),
        Term::tuple([]),
        Term::tuple([Term::atom("error"), Term::from("reason")]),
        Term::map([
            (Term::from("b"), Term::Int(2)),
            (Term::from("a"), Term::Int(1)),
            (Term::Int(3), Term::atom("int key")),
            (Term::tuple([Term::Int(1)]), Term::list([])),
        ]),
        Term::new_struct("Point", [("x", Term::Int(1)), ("y", Term::Float(2.5))]),
        Term::Pid(pid.clone()),
        Term::Ref(reference.clone()),
        // Everything nested in everything.
        Term::list([
            Term::tuple([Term::Pid(pid), Term::Ref(reference)]),
            Term::map([(
                Term::atom("k"),
                Term::new_struct("S", [("f", Term::bytes([1, 2]))]),
            )]),
        ]),
    ]
}

#[test]
fn every_term_type_round_trips_through_echo() {
    let host = host();
    let echo = load(&host, m::ECHO);
    let limits = InvokeLimits::default();
    for term in every_type() {
        let out = host.invoke_term(&echo, "echo", std::slice::from_ref(&term), &limits);
        assert_eq!(out.as_ref(), Ok(&term), "round trip of {}", term.kind());
        // Byte for byte too: the guest's encoder is the host's.
        let raw = host
            .invoke(&echo, "echo", &Term::list([term.clone()]).encode(), &limits)
            .unwrap();
        assert_eq!(raw, term.encode(), "bytes of {}", term.kind());
    }
}

#[test]
fn nan_round_trips_through_echo() {
    let host = host();
    let echo = load(&host, m::ECHO);
    let out = host.invoke_term(
        &echo,
        "echo",
        &[Term::Float(f64::NAN)],
        &InvokeLimits::default(),
    );
    assert!(matches!(out, Ok(Term::Float(f)) if f.is_nan()), "{out:?}");
}

#[test]
fn one_mebibyte_of_bytes_round_trips() {
    let host = host();
    let echo = load(&host, m::ECHO);
    let big = Term::Bytes((0..1 << 20).map(|i| (i % 251) as u8).collect());
    let out = host.invoke_term(
        &echo,
        "echo",
        std::slice::from_ref(&big),
        &InvokeLimits::default(),
    );
    assert_eq!(out, Ok(big));
}

#[path = "../../runtime/core/tests/strategy/mod.rs"]
mod strategy;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Arbitrary nested Terms, through a real guest, come back equal and byte-identical.
    #[test]
    fn arbitrary_terms_round_trip_through_echo(term in strategy::term()) {
        let host = shared_host();
        let (host, echo) = (&host.0, &host.1);
        let raw = host
            .invoke(echo, "echo", &Term::list([term.clone()]).encode(), &InvokeLimits::default())
            .unwrap();
        proptest::prop_assert_eq!(&raw, &term.encode());
        proptest::prop_assert_eq!(Term::decode(&raw), Ok(term));
    }
}

/// One host and loaded `echo` for all proptest cases.
fn shared_host() -> &'static (
    steinadler_host::Host,
    std::sync::Arc<steinadler_host::LoadedModule>,
) {
    static HOST: std::sync::OnceLock<(
        steinadler_host::Host,
        std::sync::Arc<steinadler_host::LoadedModule>,
    )> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let host = host();
        let echo = load(&host, m::ECHO);
        (host, echo)
    })
}
