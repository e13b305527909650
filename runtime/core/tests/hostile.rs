//! Hostile input: every malformed or oversized document gets its exact typed error, quickly,
//! without overflowing the stack or allocating from declared lengths.
//!
//! Each case runs through all three readers: `Term::decode`, `codec::validate`, and
//! `codec::from_slice::<Term>`, which must agree.

use steinadler_core::codec::{self, EXT_TUPLE};
use steinadler_core::{DecodeError, Limits, Term};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Asserts every reader rejects `bytes` with `want` under `limits`.
fn rejects_with(bytes: &[u8], limits: &Limits, want: DecodeError) {
    assert_eq!(
        Term::decode_with(bytes, limits),
        Err(want.clone()),
        "Term::decode_with"
    );
    assert_eq!(
        codec::validate(bytes, limits),
        Err(want.clone()),
        "codec::validate"
    );
    assert_eq!(
        codec::from_slice::<Term>(bytes, limits),
        Err(want),
        "codec::from_slice"
    );
}

fn rejects(bytes: &[u8], want: DecodeError) {
    rejects_with(bytes, &Limits::DEFAULT, want);
}

/// Wraps `inner` in an ext32 tuple header, whatever its size.
fn tuple_ext(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0xc9];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.push(EXT_TUPLE as u8);
    out.extend_from_slice(payload);
    out
}

const TOO_DEEP: DecodeError = DecodeError::TooDeep { limit: 128 };

#[test]
fn a_million_nested_arrays_is_too_deep() {
    let mut bytes = vec![0x91; 1_000_000];
    bytes.push(0xc0);
    rejects(&bytes, TOO_DEEP);
    // A typed target that skips everything is bounded too.
    assert_eq!(
        codec::from_slice::<serde::de::IgnoredAny>(&bytes, &Limits::DEFAULT),
        Err(TOO_DEEP)
    );
}

#[test]
fn a_million_nested_maps_is_too_deep() {
    let mut bytes = Vec::with_capacity(2_000_001);
    for _ in 0..1_000_000 {
        bytes.extend_from_slice(&[0x81, 0xc0]);
    }
    bytes.push(0xc0);
    rejects(&bytes, TOO_DEEP);
}

#[test]
fn nested_tuple_ext_payloads_are_too_deep() {
    let mut bytes = vec![0xc0];
    for _ in 0..10_000 {
        let mut payload = vec![0x91];
        payload.extend_from_slice(&bytes);
        bytes = tuple_ext(&payload);
    }
    rejects(&bytes, TOO_DEEP);
    // rmp-serde alone (no validation pass) stays bounded too.
    assert!(rmp_serde::from_slice::<Term>(&bytes).is_err());
}

#[test]
fn depth_is_counted_across_lists_and_ext_payloads() {
    // 64 lists around 64 tuples around nil: exactly 128 levels.
    let mut inner = vec![0xc0];
    for _ in 0..64 {
        let mut payload = vec![0x91];
        payload.extend_from_slice(&inner);
        inner = tuple_ext(&payload);
    }
    let mut bytes = vec![0x91; 64];
    bytes.extend_from_slice(&inner);
    assert!(Term::decode(&bytes).is_ok());
    assert_eq!(codec::validate(&bytes, &Limits::DEFAULT), Ok(()));
    assert!(codec::from_slice::<Term>(&bytes, &Limits::DEFAULT).is_ok());
    // One more list is one level too many.
    bytes.insert(0, 0x91);
    rejects(&bytes, TOO_DEEP);
}

#[test]
fn the_depth_limit_is_exact() {
    let nested = |levels: usize| {
        let mut bytes = vec![0x91; levels];
        bytes.push(0xd4);
        bytes.extend_from_slice(&[0x01, b'a']); // an atom leaf adds no level
        bytes
    };
    let limits = Limits {
        max_depth: 5,
        ..Limits::DEFAULT
    };
    assert!(Term::decode_with(&nested(5), &limits).is_ok());
    assert!(codec::from_slice::<Term>(&nested(5), &limits).is_ok());
    rejects_with(&nested(6), &limits, DecodeError::TooDeep { limit: 5 });
    let zero = Limits {
        max_depth: 0,
        ..Limits::DEFAULT
    };
    assert_eq!(
        Term::decode_with(&hex("d4 01 61"), &zero),
        Ok(Term::atom("a"))
    );
    rejects_with(&hex("90"), &zero, DecodeError::TooDeep { limit: 0 });
    rejects_with(&hex("d4 02 90"), &zero, DecodeError::TooDeep { limit: 0 });
    rejects_with(
        &hex("d6 03 92 a1 45 80"),
        &zero,
        DecodeError::TooDeep { limit: 0 },
    );
}

#[test]
fn huge_declared_lengths_are_truncated_not_allocated() {
    rejects(&hex("dd ff ff ff ff 01 02 03"), DecodeError::Truncated);
    rejects(&hex("df ff ff ff ff 01 02 03"), DecodeError::Truncated);
    rejects(&hex("c6 ff ff ff ff 01 02 03"), DecodeError::Truncated);
    rejects(&hex("db ff ff ff ff 61 62 63"), DecodeError::Truncated);
    rejects(&hex("c9 ff ff ff ff 02 90"), DecodeError::Truncated);
    // 128 nested arrays that each declare 2^32-1 elements, then nothing.
    let mut bytes = Vec::new();
    for _ in 0..128 {
        bytes.extend_from_slice(&hex("dd ff ff ff ff"));
    }
    rejects(&bytes, DecodeError::Truncated);
    // A long run of real elements after a huge declaration still ends in Truncated.
    let mut bytes = hex("dd ff ff ff ff");
    bytes.extend(std::iter::repeat_n(0xc0, 100_000));
    rejects(&bytes, DecodeError::Truncated);
}

#[test]
fn truncated_everywhere() {
    for bytes in [
        "",
        "cc",
        "cd 00",
        "cf 00 00 00",
        "d3",
        "ca 00 00",
        "cb 00",
        "a2 61",
        "d9",
        "c4 02 00",
        "92 01",
        "81 01",
        "d5 01 61",
        "c7 03 01 61",
        "c7",
        "c8 00",
    ] {
        rejects(&hex(bytes), DecodeError::Truncated);
    }
}

#[test]
fn over_max_size_is_too_large() {
    let limits = Limits {
        max_size: 10,
        ..Limits::DEFAULT
    };
    let bytes = Term::from("0123456789").encode();
    rejects_with(
        &bytes,
        &limits,
        DecodeError::TooLarge {
            size: 11,
            limit: 10,
        },
    );
    let big = vec![0xc0; Limits::DEFAULT.max_size + 1];
    rejects(
        &big,
        DecodeError::TooLarge {
            size: big.len(),
            limit: Limits::DEFAULT.max_size,
        },
    );
}

#[test]
fn reserved_marker_is_invalid() {
    rejects(&hex("c1"), DecodeError::InvalidMarker(0xc1));
    rejects(&hex("92 01 c1"), DecodeError::InvalidMarker(0xc1));
    rejects(&hex("c7 01 02 c1"), DecodeError::InvalidMarker(0xc1));
}

#[test]
fn trailing_bytes_are_rejected() {
    rejects(&hex("c0 c0"), DecodeError::TrailingBytes { count: 1 });
    rejects(&hex("91 01 02 03"), DecodeError::TrailingBytes { count: 2 });
}

#[test]
fn uint64_above_i64_max_is_out_of_range() {
    let bytes = hex("cf ff ff ff ff ff ff ff ff");
    assert_eq!(Term::decode(&bytes), Err(DecodeError::IntegerOutOfRange));
    assert_eq!(
        Term::decode(&hex("91 cf 80 00 00 00 00 00 00 00")),
        Err(DecodeError::IntegerOutOfRange)
    );
    // The format allows it; only a Term cannot hold it, so a typed u64 can.
    assert_eq!(codec::validate(&bytes, &Limits::DEFAULT), Ok(()));
    assert_eq!(
        codec::from_slice::<u64>(&bytes, &Limits::DEFAULT),
        Ok(u64::MAX)
    );
    let Err(DecodeError::Serde(msg)) = codec::from_slice::<Term>(&bytes, &Limits::DEFAULT) else {
        panic!("expected a Serde error");
    };
    assert!(msg.contains("out of range"), "{msg}");
}

#[test]
fn invalid_utf8_is_rejected() {
    rejects(&hex("a2 ff fe"), DecodeError::InvalidUtf8);
    rejects(&hex("d9 01 c3"), DecodeError::InvalidUtf8);
    rejects(&hex("d5 01 ff fe"), DecodeError::InvalidUtf8); // atom
    rejects(&hex("c7 06 04 93 a2 ff fe 00 00"), DecodeError::InvalidUtf8); // pid node
    rejects(&hex("c7 04 03 92 a1 ff 80"), DecodeError::InvalidUtf8); // struct name
}

#[test]
fn unknown_ext_codes_are_rejected() {
    rejects(&hex("d4 06 00"), DecodeError::UnknownExt(6));
    rejects(&hex("d4 00 00"), DecodeError::UnknownExt(0));
    rejects(&hex("d6 ff 00 00 00 00"), DecodeError::UnknownExt(-1)); // msgpack timestamp
    rejects(&hex("91 c7 00 7f"), DecodeError::UnknownExt(127));
}

#[test]
fn malformed_ext_payloads_are_invalid() {
    let invalid = |code: i8, reason: &str| DecodeError::InvalidExt {
        code,
        reason: reason.into(),
    };
    rejects(
        &hex("d4 02 c0"),
        invalid(2, "payload must be an array, found nil"),
    );
    rejects(
        &hex("d5 02 90 c0"),
        invalid(2, "1 byte(s) left over after the payload's value"),
    );
    rejects(
        &hex("d5 03 91 a0"),
        invalid(3, "payload must be an array of 2 elements, found 1"),
    );
    rejects(
        &hex("c7 03 03 92 01 80"),
        invalid(3, "the struct name must be a str, found an int"),
    );
    rejects(
        &hex("c7 03 03 92 a0 90"),
        invalid(3, "the fields must be a map, found an array"),
    );
    rejects(
        &hex("c7 05 03 92 a0 81 01 01"),
        invalid(3, "a field name must be a str, found an int"),
    );
    rejects(
        &hex("c7 05 04 93 a0 00 00 c0"),
        invalid(4, "1 byte(s) left over after the payload's value"),
    );
    rejects(
        &hex("d6 04 92 a0 00 00"),
        invalid(4, "payload must be an array of 3 elements, found 2"),
    );
    rejects(
        &hex("c7 04 05 93 a0 ff 00"),
        invalid(5, "the incarnation must be non-negative, found -1"),
    );
    rejects(
        &hex("c7 04 05 93 a0 00 c0"),
        invalid(5, "the id must be an int, found nil"),
    );
    rejects(
        &hex("c7 04 04 93 01 00 00"),
        invalid(4, "the node must be a str, found an int"),
    );
}

#[test]
fn error_messages_say_what_is_wrong() {
    let msg = |bytes: &str| Term::decode(&hex(bytes)).unwrap_err().to_string();
    assert_eq!(
        msg("d6 04 92 a0 00 00"),
        "invalid pid ext payload (type code 4): payload must be an array of 3 elements, found 2"
    );
    assert_eq!(
        msg("d4 07 00"),
        "unknown ext type code 7 (known codes: 1 atom, 2 tuple, 3 struct, 4 pid, 5 ref)"
    );
    assert_eq!(
        msg("c0 c0"),
        "1 trailing byte(s) after the value (the input must hold exactly one MessagePack value)"
    );
    assert_eq!(
        msg("c1"),
        "invalid MessagePack marker byte 0xc1 (reserved, never used)"
    );
    assert!(msg("91").starts_with("truncated input"));
}

#[test]
fn the_default_depth_fits_the_stack_of_every_reader() {
    // 128 levels alternating list, map, tuple and struct, the worst case the defaults allow.
    let mut t = Term::atom("leaf");
    for level in 0..128 {
        t = match level % 4 {
            0 => Term::list([t]),
            1 => Term::map([(Term::Nil, t)]),
            2 => Term::tuple([t]),
            _ => Term::new_struct("S", [("f", t)]),
        };
    }
    let bytes = t.encode();
    assert_eq!(Term::decode(&bytes).as_ref(), Ok(&t));
    assert_eq!(
        codec::from_slice::<Term>(&bytes, &Limits::DEFAULT).as_ref(),
        Ok(&t)
    );
    assert_eq!(rmp_serde::from_slice::<Term>(&bytes).unwrap(), t);
    assert_eq!(rmp_serde::to_vec_named(&t).unwrap(), bytes);
    let mut deeper = vec![0x91];
    deeper.extend_from_slice(&bytes);
    rejects(&deeper, TOO_DEEP);
}
