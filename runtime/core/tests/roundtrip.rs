//! Property tests: every Term round-trips through the codec, the serde path and JSON, and the
//! serde path writes exactly the codec's bytes.
//!
//! The generic strategy has no NaN (NaN is not equal to itself); NaN has its own tests.

use proptest::collection::vec;
use proptest::prelude::*;
use steinadler_core::{Limits, Term, codec};

mod strategy;

use strategy::term;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn codec_round_trips(t in term()) {
        let bytes = t.encode();
        prop_assert_eq!(Term::decode(&bytes), Ok(t.clone()));
        prop_assert_eq!(codec::validate(&bytes, &Limits::DEFAULT), Ok(()));
        let mut appended = vec![0xc0];
        t.encode_into(&mut appended);
        prop_assert_eq!(&appended[1..], &bytes[..]);
    }

    #[test]
    fn serde_writes_the_codec_bytes(t in term()) {
        let bytes = t.encode();
        prop_assert_eq!(&rmp_serde::to_vec_named(&t).unwrap(), &bytes);
        prop_assert_eq!(&rmp_serde::to_vec(&t).unwrap(), &bytes);
        prop_assert_eq!(&codec::to_vec(&t).unwrap(), &bytes);
    }

    #[test]
    fn serde_reads_the_codec_bytes(t in term()) {
        let bytes = t.encode();
        prop_assert_eq!(rmp_serde::from_slice::<Term>(&bytes).unwrap(), t.clone());
        prop_assert_eq!(codec::from_slice::<Term>(&bytes, &Limits::DEFAULT), Ok(t));
    }

    #[test]
    fn terms_inside_typed_values_round_trip(a in term(), b in vec(term(), 0..4)) {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Wrapper { a: Term, b: Vec<Term>, c: Option<i64>, d: serde_bytes::ByteBuf }
        let w = Wrapper { a, b, c: None, d: serde_bytes::ByteBuf::from(vec![1, 2]) };
        let bytes = codec::to_vec(&w).unwrap();
        // The same bytes as the equivalent Term map.
        let as_term = Term::map([
            (Term::from("a"), w.a.clone()),
            (Term::from("b"), Term::List(w.b.clone())),
            (Term::from("c"), Term::Nil),
            (Term::from("d"), Term::bytes([1, 2])),
        ]);
        prop_assert_eq!(&bytes, &as_term.encode());
        let back: Wrapper = codec::from_slice(&bytes, &Limits::DEFAULT).unwrap();
        prop_assert_eq!(back, w);
    }

    #[test]
    fn display_never_panics(t in term()) {
        prop_assert!(!t.to_string().is_empty());
    }
}

#[cfg(feature = "json")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_value_round_trips(t in term()) {
        use steinadler_core::json;
        prop_assert_eq!(json::term_from_json(&json::term_to_json(&t)), Ok(t));
    }

    #[test]
    fn json_text_round_trips(t in term()) {
        use steinadler_core::json;
        let text = json::term_to_json(&t).to_string();
        prop_assert_eq!(json::parse_json(&text), Ok(t));
    }
}

/// NaN-safe: whether `t` is `Float(NaN)` with exactly `bits`.
fn is_nan_with_bits(t: &Term, bits: u64) -> bool {
    matches!(t, Term::Float(f) if f.is_nan() && f.to_bits() == bits)
}

#[test]
fn nan_round_trips_bit_for_bit() {
    for bits in [
        f64::NAN.to_bits(),
        0x7ff8_0000_0000_0001,
        0xfff0_0000_0000_0001,
    ] {
        let t = Term::Float(f64::from_bits(bits));
        let bytes = t.encode();
        assert_eq!(bytes[0], 0xcb);
        assert_eq!(rmp_serde::to_vec_named(&t).unwrap(), bytes);
        assert!(is_nan_with_bits(&Term::decode(&bytes).unwrap(), bits));
        assert!(is_nan_with_bits(
            &rmp_serde::from_slice::<Term>(&bytes).unwrap(),
            bits
        ));
    }
}

#[test]
fn nested_nan_round_trips() {
    let t = Term::list([Term::tuple([Term::Float(f64::NAN)])]);
    let Ok(Term::List(items)) = Term::decode(&t.encode()) else {
        panic!("not a list")
    };
    let Term::Tuple(inner) = &items[0] else {
        panic!("not a tuple")
    };
    assert!(is_nan_with_bits(&inner[0], f64::NAN.to_bits()));
}

#[cfg(feature = "json")]
#[test]
fn nan_round_trips_through_json() {
    use steinadler_core::json;
    let v = json::term_to_json(&Term::Float(f64::NAN));
    assert_eq!(v, serde_json::json!({"$float": "NaN"}));
    assert!(matches!(json::term_from_json(&v), Ok(Term::Float(f)) if f.is_nan()));
    assert!(matches!(json::parse_json(r#"{"$float":"nan"}"#), Ok(Term::Float(f)) if f.is_nan()));
}
