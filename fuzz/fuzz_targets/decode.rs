//! Fuzzes the wire decoder: any bytes either fail with a typed error or decode to a Term whose
//! canonical encoding decodes back to the same Term, by every reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steinadler_core::{Limits, Term, codec};

fuzz_target!(|data: &[u8]| {
    let decoded = Term::decode(data);
    let validated = codec::validate(data, &Limits::DEFAULT);
    let via_serde = codec::from_slice::<Term>(data, &Limits::DEFAULT);
    let Ok(term) = decoded else {
        // validate() accepts uint64 above i64::MAX, which no Term holds; otherwise it agrees.
        if decoded != Err(steinadler_core::DecodeError::IntegerOutOfRange) {
            assert_eq!(validated, Err(decoded.clone().unwrap_err()));
        }
        assert!(
            via_serde.is_err(),
            "from_slice accepted what decode rejected: {decoded:?}"
        );
        return;
    };
    assert_eq!(validated, Ok(()));

    // Compare by canonical bytes, so NaN (not equal to itself) round-trips too.
    let bytes = term.encode();
    let again = Term::decode(&bytes).expect("a canonical encoding must decode");
    assert_eq!(
        again.encode(),
        bytes,
        "encode -> decode -> encode changed the bytes"
    );

    // The serde path agrees with the codec both ways.
    assert_eq!(rmp_serde::to_vec_named(&term).expect("serde encode"), bytes);
    let via_serde = via_serde.expect("from_slice rejected what decode accepted");
    assert_eq!(via_serde.encode(), bytes);
});
