//! Pins the exact wire bytes of `docs/wire-format.md`, so the spec and the code cannot drift.
//!
//! Every canonical example is checked three ways: `Term::encode`, the serde path
//! (`rmp_serde::to_vec_named`), and decoding back.

use steinadler_core::{Pid, Ref, Term};

/// Parses `"c7 06 02"` into bytes.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Asserts `term` encodes canonically as `bytes`, by both paths, and decodes back.
fn canonical(term: Term, bytes: &str) {
    let want = hex(bytes);
    assert_eq!(term.encode(), want, "encode {term}");
    assert_eq!(
        rmp_serde::to_vec_named(&term).unwrap(),
        want,
        "serde encode {term}"
    );
    assert_eq!(Term::decode(&want), Ok(term.clone()), "decode {bytes}");
    assert_eq!(
        rmp_serde::from_slice::<Term>(&want).unwrap(),
        term,
        "serde decode {bytes}"
    );
}

/// Asserts the non-canonical `bytes` decode to `term`.
fn accepted(bytes: &str, term: Term) {
    let input = hex(bytes);
    assert_eq!(Term::decode(&input), Ok(term.clone()), "decode {bytes}");
    assert_eq!(
        rmp_serde::from_slice::<Term>(&input).unwrap(),
        term,
        "serde decode {bytes}"
    );
}

fn pid(node: &str, incarnation: u64, id: u64) -> Pid {
    Pid {
        node: node.into(),
        incarnation,
        id,
    }
}

#[test]
fn nil_and_bools() {
    canonical(Term::Nil, "c0");
    canonical(Term::Bool(false), "c2");
    canonical(Term::Bool(true), "c3");
}

#[test]
fn ints_use_the_smallest_form() {
    canonical(Term::Int(0), "00");
    canonical(Term::Int(127), "7f");
    canonical(Term::Int(128), "cc 80");
    canonical(Term::Int(256), "cd 01 00");
    canonical(Term::Int(65536), "ce 00 01 00 00");
    canonical(Term::Int(1 << 32), "cf 00 00 00 01 00 00 00 00");
    canonical(Term::Int(i64::MAX), "cf 7f ff ff ff ff ff ff ff");
    canonical(Term::Int(-1), "ff");
    canonical(Term::Int(-32), "e0");
    canonical(Term::Int(-33), "d0 df");
    canonical(Term::Int(-129), "d1 ff 7f");
    canonical(Term::Int(-32769), "d2 ff ff 7f ff");
    canonical(Term::Int(i64::MIN), "d3 80 00 00 00 00 00 00 00");
}

#[test]
fn ints_in_any_form_decode() {
    accepted("cc 01", Term::Int(1));
    accepted("cd 00 01", Term::Int(1));
    accepted("ce 00 00 00 01", Term::Int(1));
    accepted("cf 00 00 00 00 00 00 00 01", Term::Int(1));
    accepted("d0 01", Term::Int(1));
    accepted("d1 00 01", Term::Int(1));
    accepted("d2 ff ff ff ff", Term::Int(-1));
    accepted("d3 ff ff ff ff ff ff ff ff", Term::Int(-1));
}

#[test]
fn floats_are_float64_and_float32_decodes() {
    canonical(Term::Float(1.5), "cb 3f f8 00 00 00 00 00 00");
    canonical(Term::Float(1.0), "cb 3f f0 00 00 00 00 00 00");
    canonical(Term::Float(f64::INFINITY), "cb 7f f0 00 00 00 00 00 00");
    accepted("ca 3f c0 00 00", Term::Float(1.5));
}

#[test]
fn strings_and_bytes() {
    canonical(Term::from(""), "a0");
    canonical(Term::from("hi"), "a2 68 69");
    let s32 = "x".repeat(32);
    canonical(
        Term::from(s32.as_str()),
        &format!("d9 20{}", " 78".repeat(32)),
    );
    canonical(Term::Bytes(vec![]), "c4 00");
    canonical(Term::Bytes(vec![1, 2, 3]), "c4 03 01 02 03");
    accepted("d9 01 61", Term::from("a"));
    accepted("db 00 00 00 01 61", Term::from("a"));
    accepted("c6 00 00 00 01 ff", Term::Bytes(vec![0xff]));
}

#[test]
fn lists_and_maps() {
    canonical(Term::List(vec![]), "90");
    canonical(Term::list([1.into(), Term::Nil]), "92 01 c0");
    canonical(
        Term::List(vec![Term::Nil; 16]),
        &format!("dc 00 10{}", " c0".repeat(16)),
    );
    canonical(Term::map([("a".into(), 1.into())]), "81 a1 61 01");
    canonical(
        Term::map([(Term::atom("k"), Term::Nil), (1.into(), 2.into())]),
        "82 d4 01 6b c0 01 02",
    );
    accepted("dd 00 00 00 01 01", Term::list([1.into()]));
    accepted("df 00 00 00 01 01 02", Term::map([(1.into(), 2.into())]));
}

#[test]
fn atoms_use_the_smallest_ext_header() {
    canonical(Term::atom(""), "c7 00 01");
    canonical(Term::atom("a"), "d4 01 61");
    canonical(Term::atom("ok"), "d5 01 6f 6b");
    canonical(Term::atom("abc"), "c7 03 01 61 62 63");
    canonical(Term::atom("true"), "d6 01 74 72 75 65");
    canonical(Term::atom("12345678"), "d7 01 31 32 33 34 35 36 37 38");
    canonical(
        Term::atom("0123456789abcdef"),
        &format!(
            "d8 01{}",
            " 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66"
        ),
    );
    accepted("c7 02 01 6f 6b", Term::atom("ok"));
    accepted("c8 00 02 01 6f 6b", Term::atom("ok"));
    accepted("c9 00 00 00 02 01 6f 6b", Term::atom("ok"));
}

#[test]
fn tuples() {
    canonical(Term::tuple([]), "d4 02 90");
    canonical(
        Term::tuple([Term::atom("ok"), 1.into()]),
        "c7 06 02 92 d5 01 6f 6b 01",
    );
    canonical(Term::tuple([Term::tuple([])]), "d6 02 91 d4 02 90");
    // The payload array may use any array form.
    accepted("c7 04 02 dc 00 01 c0", Term::tuple([Term::Nil]));
}

#[test]
fn structs() {
    canonical(
        Term::new_struct("Point", [("x", Term::from(1))]),
        "c7 0b 03 92 a5 50 6f 69 6e 74 81 a1 78 01",
    );
    canonical(Term::new_struct::<&str>("E", []), "d6 03 92 a1 45 80");
}

#[test]
fn pids_and_refs() {
    canonical(Term::Pid(pid("n1", 3, 7)), "c7 06 04 93 a2 6e 31 03 07");
    canonical(
        Term::Ref(Ref {
            node: "n1".into(),
            incarnation: 3,
            id: 9,
        }),
        "c7 06 05 93 a2 6e 31 03 09",
    );
    canonical(
        Term::Pid(pid("", u64::MAX, 128)),
        "c7 0d 04 93 a0 cf ff ff ff ff ff ff ff ff cc 80",
    );
    // Any non-negative int form is accepted for the numbers.
    accepted("c7 07 04 93 a2 6e 31 d0 03 07", Term::Pid(pid("n1", 3, 7)));
}

#[test]
fn nested_ext_inside_lists_and_maps() {
    let t = Term::map([(
        Term::atom("k"),
        Term::list([Term::tuple([Term::Pid(pid("n", 0, 1))])]),
    )]);
    canonical(t, "81 d4 01 6b 91 c7 09 02 91 c7 05 04 93 a1 6e 00 01");
}
