//! proptest strategies for arbitrary Terms, shared by the core's property tests and the
//! guest round-trip tests in `tests/tests/values.rs` (which include this file by path).
//!
//! The generic strategy has no NaN (NaN is not equal to itself); NaN has its own tests.

#![allow(dead_code, unreachable_pub)]

use proptest::collection::vec;
use proptest::prelude::*;
use steinadler_core::{Pid, Ref, Term};

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        "[a-z_]{0,8}",
        "\\$[a-z]{0,6}", // looks like a JSON tag
        "\\PC{30,40}",   // crosses the fixstr boundary
    ]
}

pub fn leaf() -> impl Strategy<Value = Term> {
    prop_oneof![
        Just(Term::Nil),
        any::<bool>().prop_map(Term::Bool),
        any::<i64>().prop_map(Term::Int),
        prop_oneof![Just(-1i64), Just(127), Just(128), Just(-33), Just(1 << 40)]
            .prop_map(Term::Int),
        any::<f64>()
            .prop_filter("NaN is tested separately", |f| !f.is_nan())
            .prop_map(Term::Float),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(1.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY)
        ]
        .prop_map(Term::Float),
        text().prop_map(Term::String),
        vec(any::<u8>(), 0..40).prop_map(Term::Bytes),
        text().prop_map(Term::Atom),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(node, incarnation, id)| Term::Pid(Pid {
            node,
            incarnation,
            id
        })),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(node, incarnation, id)| Term::Ref(Ref {
            node,
            incarnation,
            id
        })),
    ]
}

pub fn term() -> impl Strategy<Value = Term> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Term::List),
            vec(inner.clone(), 0..8).prop_map(Term::Tuple),
            vec((inner.clone(), inner.clone()), 0..5).prop_map(Term::Map),
            // Maps with string keys, the plain JSON object case (lone `$` keys included).
            vec((text().prop_map(Term::String), inner.clone()), 0..4).prop_map(Term::Map),
            (text(), vec((text(), inner), 0..5))
                .prop_map(|(name, fields)| Term::Struct { name, fields }),
        ]
    })
}
