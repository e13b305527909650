//! Typed values through `codec::to_vec` / `codec::from_slice`: the same format as Terms, with
//! the same limits and errors.

use serde::{Deserialize, Serialize};
use steinadler_core::codec::{self, EncodeError};
use steinadler_core::{DecodeError, Limits, Pid, Term};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Args {
    name: String,
    count: u32,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    maybe: Option<i64>,
    items: Vec<Term>,
    extra: Term,
}

fn args() -> Args {
    Args {
        name: "n".into(),
        count: 300,
        data: vec![1, 2],
        maybe: None,
        items: vec![Term::atom("ok"), Term::tuple([1.into()])],
        extra: Term::Pid(Pid {
            node: "n1".into(),
            incarnation: 1,
            id: 2,
        }),
    }
}

#[test]
fn a_struct_is_a_map_with_field_names() {
    let a = args();
    let as_term = Term::map([
        ("name".into(), "n".into()),
        ("count".into(), 300.into()),
        ("data".into(), Term::bytes([1, 2])),
        ("maybe".into(), Term::Nil),
        ("items".into(), Term::List(a.items.clone())),
        ("extra".into(), a.extra.clone()),
    ]);
    let bytes = codec::to_vec(&a).unwrap();
    assert_eq!(bytes, as_term.encode());
    assert_eq!(codec::from_slice::<Args>(&bytes, &Limits::DEFAULT), Ok(a));
    assert_eq!(
        codec::from_slice::<Term>(&bytes, &Limits::DEFAULT),
        Ok(as_term)
    );
}

#[test]
fn borrowed_fields_decode_zero_copy() {
    #[derive(Deserialize)]
    struct Borrowed<'a> {
        s: &'a str,
        #[serde(with = "serde_bytes")]
        b: &'a [u8],
    }
    let bytes = Term::map([("s".into(), "hi".into()), ("b".into(), Term::bytes([7]))]).encode();
    let v: Borrowed<'_> = codec::from_slice(&bytes, &Limits::DEFAULT).unwrap();
    assert_eq!((v.s, v.b), ("hi", &[7u8][..]));
}

#[test]
fn a_term_argument_decodes_from_any_term() {
    // How a guest takes `echo(x: Term) -> Term`: a one-element argument list.
    let t = Term::new_struct("P", [("x", Term::tuple([Term::atom("a")]))]);
    let bytes = Term::list([t.clone()]).encode();
    let (x,): (Term,) = codec::from_slice(&bytes, &Limits::DEFAULT).unwrap();
    assert_eq!(x, t);
    assert_eq!(codec::to_vec(&x).unwrap(), t.encode());
}

#[test]
fn the_wrong_shape_is_a_serde_error() {
    let bytes = Term::from("not a number").encode();
    let Err(DecodeError::Serde(msg)) = codec::from_slice::<u32>(&bytes, &Limits::DEFAULT) else {
        panic!("expected a Serde error");
    };
    assert!(!msg.is_empty());
    let missing = Term::map([("name".into(), "n".into())]).encode();
    assert!(matches!(
        codec::from_slice::<Args>(&missing, &Limits::DEFAULT),
        Err(DecodeError::Serde(_))
    ));
}

#[test]
fn malformed_input_gets_the_codec_errors() {
    let limits = Limits::DEFAULT;
    assert_eq!(
        codec::from_slice::<u8>(&[0x01, 0x02], &limits),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
    assert_eq!(
        codec::from_slice::<Vec<u8>>(&[0x92, 0x01], &limits),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        codec::from_slice::<String>(&[0xa1, 0xff], &limits),
        Err(DecodeError::InvalidUtf8)
    );
    // Invalid UTF-8 never sneaks in as bytes, as plain rmp-serde would allow.
    assert_eq!(
        codec::from_slice::<Term>(&[0xa1, 0xff], &limits),
        Err(DecodeError::InvalidUtf8)
    );
    assert_eq!(
        codec::from_slice::<Term>(&[0xd4, 0x09, 0x00], &limits),
        Err(DecodeError::UnknownExt(9))
    );
    let small = Limits {
        max_size: 1,
        ..limits
    };
    assert_eq!(
        codec::from_slice::<u16>(&[0xcd, 1, 0], &small),
        Err(DecodeError::TooLarge { size: 3, limit: 1 })
    );
}

#[test]
fn a_raised_depth_limit_reaches_into_ext_payloads() {
    // A tuple holding 150 nested lists: too deep by default, fine with max_depth 200.
    let mut inner = Term::Nil;
    for _ in 0..150 {
        inner = Term::list([inner]);
    }
    let bytes = Term::tuple([inner.clone()]).encode();
    let deep = Limits {
        max_depth: 200,
        ..Limits::DEFAULT
    };
    assert_eq!(
        Term::decode(&bytes),
        Err(DecodeError::TooDeep { limit: 128 })
    );
    assert_eq!(
        codec::from_slice::<Term>(&bytes, &Limits::DEFAULT),
        Err(DecodeError::TooDeep { limit: 128 })
    );
    assert!(Term::decode_with(&bytes, &deep).is_ok());
    assert_eq!(
        codec::from_slice::<Term>(&bytes, &deep),
        Ok(Term::tuple([inner]))
    );
    // Plain rmp-serde decodes payloads with the default limit.
    assert!(rmp_serde::from_slice::<Term>(&bytes).is_err());
}

#[test]
fn typed_depth_uses_the_same_count() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::DEFAULT
    };
    let ok = codec::to_vec(&vec![vec![vec![Term::atom("a")]]]).unwrap();
    assert!(codec::from_slice::<Vec<Vec<Vec<Term>>>>(&ok, &limits).is_ok());
    let too_deep = codec::to_vec(&vec![vec![vec![vec![0u8]]]]).unwrap();
    assert_eq!(
        codec::from_slice::<Vec<Vec<Vec<Vec<u8>>>>>(&too_deep, &limits),
        Err(DecodeError::TooDeep { limit: 3 })
    );
}

#[test]
fn encode_errors_are_typed() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no way"))
        }
    }
    let err = codec::to_vec(&Fails).unwrap_err();
    assert!(
        matches!(&err, EncodeError::Serde(m) if m.contains("no way")),
        "{err}"
    );
}
