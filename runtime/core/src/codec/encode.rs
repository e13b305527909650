//! The canonical encoder: every value in its smallest MessagePack form, as rmp writes it.
//!
//! Owns the byte layout on the way out. `serde_impl.rs` reuses [`ext_payload`] so that the
//! serde path writes exactly these bytes.

use super::{EXT_ATOM, EXT_PID, EXT_REF, EXT_STRUCT, EXT_TUPLE};
use crate::Term;

/// A length as MessagePack's 32-bit length, or a panic: lengths beyond it cannot be encoded.
fn len32(len: usize, what: &str) -> u32 {
    u32::try_from(len).unwrap_or_else(|_| {
        panic!("cannot encode a {what} of length {len}: MessagePack lengths stop at u32::MAX")
    })
}

fn write_sized(out: &mut Vec<u8>, len: u32, fix: Option<(u8, u32)>, markers: [u8; 3]) {
    match fix {
        Some((base, max)) if len <= max => out.push(base | len as u8),
        _ if len <= u32::from(u8::MAX) && markers[0] != 0 => {
            out.extend_from_slice(&[markers[0], len as u8]);
        }
        _ if len <= u32::from(u16::MAX) => {
            out.push(markers[1]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(markers[2]);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    write_sized(
        out,
        len32(s.len(), "string"),
        Some((0xa0, 31)),
        [0xd9, 0xda, 0xdb],
    );
    out.extend_from_slice(s.as_bytes());
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    write_sized(out, len32(b.len(), "byte string"), None, [0xc4, 0xc5, 0xc6]);
    out.extend_from_slice(b);
}

fn write_array_len(out: &mut Vec<u8>, len: usize) {
    write_sized(
        out,
        len32(len, "list or tuple"),
        Some((0x90, 15)),
        [0, 0xdc, 0xdd],
    );
}

fn write_map_len(out: &mut Vec<u8>, len: usize) {
    write_sized(
        out,
        len32(len, "map or struct"),
        Some((0x80, 15)),
        [0, 0xde, 0xdf],
    );
}

/// A non-negative integer's smallest unsigned form, as `rmp` writes it: the first `len` bytes
/// of the array. For writers that copy all 9 bytes into room they made and then advance by
/// `len` (a stream producer's batch of integers, in the SDK): a copy of a fixed size compiles to
/// two stores in wasm, where one of a variable length is a call into the host.
#[inline]
pub fn uint_form(v: u64) -> ([u8; 9], usize) {
    // The marker, and how far the value shifts left so that its bytes come first.
    let (marker, shift, len) = if v < 0x80 {
        (v as u8, 0, 1)
    } else if v <= u64::from(u8::MAX) {
        (0xcc, 56, 2)
    } else if v <= u64::from(u16::MAX) {
        (0xcd, 48, 3)
    } else if v <= u64::from(u32::MAX) {
        (0xce, 32, 5)
    } else {
        (0xcf, 0, 9)
    };
    form(marker, v << shift, len)
}

/// An integer's smallest form, as [`uint_form`]: unsigned forms for `v >= 0`, signed ones below.
#[inline]
pub fn int_form(v: i64) -> ([u8; 9], usize) {
    if v >= 0 {
        return uint_form(v as u64);
    }
    let (marker, shift, len) = if v >= -32 {
        (v as u8, 0, 1)
    } else if v >= i64::from(i8::MIN) {
        (0xd0, 56, 2)
    } else if v >= i64::from(i16::MIN) {
        (0xd1, 48, 3)
    } else if v >= i64::from(i32::MIN) {
        (0xd2, 32, 5)
    } else {
        (0xd3, 0, 9)
    };
    // Shifting drops the sign bits above the form's width.
    form(marker, (v as u64) << shift, len)
}

/// The marker byte, then the value's bytes big-endian: one byte and one 8-byte word.
#[inline(always)]
fn form(marker: u8, value: u64, len: usize) -> ([u8; 9], usize) {
    let mut b = [marker; 9];
    b[1..].copy_from_slice(&value.to_be_bytes());
    (b, len)
}

/// Writes a non-negative integer in its smallest unsigned form, as `rmp` does. Inlined, so that
/// a guest's stream producer writes its integers with it (the SDK's `ItemWriter`). Each form is
/// one copy of a fixed-size array: in wasm that compiles to a few stores and one capacity check.
///
/// This repeats [`uint_form`]'s widths on purpose. Written as `uint_form` plus a copy of its
/// first `len` bytes (even as a `match` on `len` with a fixed-size copy per arm), LLVM merged
/// the copies into one of variable length, and the guest's `write_term` gained a call into the
/// host's `memory.copy`.
#[inline]
pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.extend_from_slice(&[v as u8]);
    } else if v <= u64::from(u8::MAX) {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u64::from(u16::MAX) {
        let [a, b] = (v as u16).to_be_bytes();
        out.extend_from_slice(&[0xcd, a, b]);
    } else if v <= u64::from(u32::MAX) {
        let [a, b, c, d] = (v as u32).to_be_bytes();
        out.extend_from_slice(&[0xce, a, b, c, d]);
    } else {
        let [a, b, c, d, e, f, g, h] = v.to_be_bytes();
        out.extend_from_slice(&[0xcf, a, b, c, d, e, f, g, h]);
    }
}

/// Writes an integer in its smallest form: unsigned forms for `v >= 0`, signed ones below.
#[inline]
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.extend_from_slice(&[v as u8]);
    } else if v >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, v as u8]);
    } else if v >= i64::from(i16::MIN) {
        let [a, b] = (v as i16).to_be_bytes();
        out.extend_from_slice(&[0xd1, a, b]);
    } else if v >= i64::from(i32::MIN) {
        let [a, b, c, d] = (v as i32).to_be_bytes();
        out.extend_from_slice(&[0xd2, a, b, c, d]);
    } else {
        let [a, b, c, d, e, f, g, h] = v.to_be_bytes();
        out.extend_from_slice(&[0xd3, a, b, c, d, e, f, g, h]);
    }
}

/// Writes an ext value with the smallest header for its payload length.
fn write_ext(out: &mut Vec<u8>, code: i8, payload: &[u8]) {
    let len = len32(payload.len(), "ext payload");
    match len {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        _ => write_sized(out, len, None, [0xc7, 0xc8, 0xc9]),
    }
    out.push(code as u8);
    out.extend_from_slice(payload);
}

/// The ext type code and payload of an ext-typed Term (atom, tuple, struct, pid, ref), or
/// `None` for the Terms that map to plain MessagePack types.
pub(crate) fn ext_payload(term: &Term) -> Option<(i8, Vec<u8>)> {
    let mut p = Vec::new();
    let code = match term {
        Term::Atom(name) => {
            p.extend_from_slice(name.as_bytes());
            EXT_ATOM
        }
        Term::Tuple(items) => {
            write_array_len(&mut p, items.len());
            for item in items {
                write_term(&mut p, item);
            }
            EXT_TUPLE
        }
        Term::Struct { name, fields } => {
            p.push(0x92);
            write_str(&mut p, name);
            write_map_len(&mut p, fields.len());
            for (field, value) in fields {
                write_str(&mut p, field);
                write_term(&mut p, value);
            }
            EXT_STRUCT
        }
        Term::Pid(crate::Pid {
            node,
            incarnation,
            id,
        }) => {
            write_id(&mut p, node, *incarnation, *id);
            EXT_PID
        }
        Term::Ref(crate::Ref {
            node,
            incarnation,
            id,
        }) => {
            write_id(&mut p, node, *incarnation, *id);
            EXT_REF
        }
        _ => return None,
    };
    Some((code, p))
}

fn write_id(out: &mut Vec<u8>, node: &str, incarnation: u64, id: u64) {
    out.push(0x93);
    write_str(out, node);
    write_uint(out, incarnation);
    write_uint(out, id);
}

/// Appends `term`'s canonical encoding to `out`.
pub(super) fn write_term(out: &mut Vec<u8>, term: &Term) {
    match term {
        Term::Nil => out.push(0xc0),
        Term::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Term::Int(i) => write_int(out, *i),
        Term::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Term::String(s) => write_str(out, s),
        Term::Bytes(b) => write_bin(out, b),
        Term::List(items) => {
            write_array_len(out, items.len());
            for item in items {
                write_term(out, item);
            }
        }
        Term::Map(pairs) => {
            write_map_len(out, pairs.len());
            for (k, v) in pairs {
                write_term(out, k);
                write_term(out, v);
            }
        }
        Term::Atom(_) | Term::Tuple(_) | Term::Struct { .. } | Term::Pid(_) | Term::Ref(_) => {
            if let Some((code, payload)) = ext_payload(term) {
                write_ext(out, code, &payload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_int(&mut out, v);
        out
    }

    #[test]
    fn ints_match_rmp_at_every_boundary() {
        let edges = [
            0,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            i64::MAX,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            i32::MIN as i64,
            i32::MIN as i64 - 1,
            i64::MIN,
        ];
        for v in edges {
            let mut want = Vec::new();
            rmp::encode::write_sint(&mut want, v).unwrap();
            assert_eq!(int(v), want, "int {v}");
            let (form, len) = int_form(v);
            assert_eq!(form[..len], want[..], "int_form {v}");
            if let Ok(u) = u64::try_from(v) {
                let (form, len) = uint_form(u);
                assert_eq!(form[..len], want[..], "uint_form {u}");
            }
        }
    }

    #[test]
    fn lengths_match_rmp_at_every_boundary() {
        for len in [0usize, 1, 15, 16, 31, 32, 255, 256, 65535, 65536] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_array_len(&mut a, len);
            rmp::encode::write_array_len(&mut b, len as u32).unwrap();
            assert_eq!(a, b, "array {len}");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_map_len(&mut a, len);
            rmp::encode::write_map_len(&mut b, len as u32).unwrap();
            assert_eq!(a, b, "map {len}");
            let s = "x".repeat(len);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_str(&mut a, &s);
            rmp::encode::write_str(&mut b, &s).unwrap();
            assert_eq!(a, b, "str {len}");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_bin(&mut a, s.as_bytes());
            rmp::encode::write_bin(&mut b, s.as_bytes()).unwrap();
            assert_eq!(a, b, "bin {len}");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            write_ext(&mut a, 7, s.as_bytes());
            rmp::encode::write_ext_meta(&mut b, len as u32, 7).unwrap();
            b.extend_from_slice(s.as_bytes());
            assert_eq!(a, b, "ext {len}");
        }
    }
}
