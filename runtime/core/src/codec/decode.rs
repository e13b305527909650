//! The decoder and validator: hostile-input-safe readers of the wire format.
//!
//! Owns the byte layout on the way in. [`Reader::head`] reads one MessagePack header; the
//! decoder builds Terms from headers and the validator only walks them, sharing the ext payload
//! parsers so the two accept exactly the same documents (except integers above `i64::MAX`,
//! which only a typed `u64` can hold). Nesting is checked on entry to each container, through
//! ext payloads too, and no capacity is reserved beyond what the remaining input can hold.

use super::{DecodeError, EXT_ATOM, EXT_PID, EXT_REF, EXT_STRUCT, EXT_TUPLE, Limits};
use crate::{Pid, Ref, Term};

/// At most this many elements are reserved up front; longer sequences grow as they decode,
/// so a declared length can cost at most this much memory before the input backs it.
const MAX_PREALLOC: usize = 1024;

/// One MessagePack header, with its scalar payload borrowed from the input.
#[derive(Debug, Clone, Copy)]
enum Head<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    /// A uint64 above `i64::MAX`.
    BigUint(u64),
    Float(f64),
    Str(&'a str),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    Ext(i8, &'a [u8]),
}

impl Head<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Nil => "nil",
            Self::Bool(_) => "a bool",
            Self::Int(_) | Self::BigUint(_) => "an int",
            Self::Float(_) => "a float",
            Self::Str(_) => "a str",
            Self::Bin(_) => "a bin",
            Self::Array(_) => "an array",
            Self::Map(_) => "a map",
            Self::Ext(..) => "an ext",
        }
    }
}

/// A cursor over the input.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    /// Reads a big-endian length of 1, 2 or 4 bytes, for `size` 0, 1 or 2.
    fn len(&mut self, size: u8) -> Result<u32, DecodeError> {
        match size {
            0 => self.u8().map(u32::from),
            1 => self.u16().map(u32::from),
            _ => self.u32(),
        }
    }

    fn str(&mut self, len: u32) -> Result<Head<'a>, DecodeError> {
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes)
            .map(Head::Str)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    fn ext(&mut self, len: u32) -> Result<Head<'a>, DecodeError> {
        let code = self.u8()? as i8;
        Ok(Head::Ext(code, self.take(len as usize)?))
    }

    /// Reads one header and any scalar payload after it.
    fn head(&mut self) -> Result<Head<'a>, DecodeError> {
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Head::Int(i64::from(m)),
            0x80..=0x8f => Head::Map(u32::from(m & 0x0f)),
            0x90..=0x9f => Head::Array(u32::from(m & 0x0f)),
            0xa0..=0xbf => self.str(u32::from(m & 0x1f))?,
            0xc0 => Head::Nil,
            0xc1 => return Err(DecodeError::InvalidMarker(m)),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4..=0xc6 => {
                let len = self.len(m - 0xc4)?;
                Head::Bin(self.take(len as usize)?)
            }
            0xc7..=0xc9 => {
                let len = self.len(m - 0xc7)?;
                self.ext(len)?
            }
            0xca => Head::Float(f64::from(f32::from_bits(self.u32()?))),
            0xcb => Head::Float(f64::from_bits(self.u64()?)),
            0xcc => Head::Int(i64::from(self.u8()?)),
            0xcd => Head::Int(i64::from(self.u16()?)),
            0xce => Head::Int(i64::from(self.u32()?)),
            0xcf => {
                let v = self.u64()?;
                i64::try_from(v).map_or(Head::BigUint(v), Head::Int)
            }
            0xd0 => Head::Int(i64::from(self.u8()? as i8)),
            0xd1 => Head::Int(i64::from(self.u16()? as i16)),
            0xd2 => Head::Int(i64::from(self.u32()? as i32)),
            0xd3 => Head::Int(self.u64()? as i64),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9..=0xdb => {
                let len = self.len(m - 0xd9)?;
                self.str(len)?
            }
            0xdc => Head::Array(u32::from(self.u16()?)),
            0xdd => Head::Array(self.u32()?),
            0xde => Head::Map(u32::from(self.u16()?)),
            0xdf => Head::Map(self.u32()?),
            0xe0..=0xff => Head::Int(i64::from(m as i8)),
        })
    }

    /// Reads an integer that fits an `i64` if one comes next; otherwise reads nothing.
    ///
    /// The fast path for the elements of arrays: returning a bare `i64` instead of a
    /// `Result<Term, _>` through memory makes a batch of integers decode about 3× faster.
    #[inline(always)]
    fn int(&mut self) -> Option<i64> {
        let (&m, rest) = self.buf.split_first()?;
        let (i, n) = match m {
            0x00..=0x7f => (i64::from(m), 0),
            0xe0..=0xff => (i64::from(m as i8), 0),
            0xcc => (i64::from(*rest.first()?), 1),
            0xcd => (
                i64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
                2,
            ),
            0xce => (
                i64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)),
                4,
            ),
            0xd0 => (i64::from(*rest.first()? as i8), 1),
            0xd1 => (
                i64::from(i16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
                2,
            ),
            0xd2 => (
                i64::from(i32::from_be_bytes(rest.get(..4)?.try_into().ok()?)),
                4,
            ),
            0xd3 => (i64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 8),
            _ => return None,
        };
        self.buf = &rest[n..];
        Some(i)
    }

    /// Reserves for `declared` elements of at least `min_bytes` each, but never more than the
    /// remaining input could hold, nor more than [`MAX_PREALLOC`].
    fn capacity(&self, declared: u32, min_bytes: usize) -> usize {
        (declared as usize)
            .min(self.buf.len() / min_bytes)
            .min(MAX_PREALLOC)
    }
}

/// The integer at the start of `bytes`, if one is there in a form that fits an `i64`, and
/// the bytes it takes.
#[inline(always)]
pub(super) fn int_prefix(bytes: &[u8]) -> Option<(i64, usize)> {
    let r = &mut Reader { buf: bytes };
    let i = r.int()?;
    Some((i, bytes.len() - r.buf.len()))
}

/// The depth inside a container entered at `depth`, or `TooDeep`.
fn enter(depth: u32, limits: &Limits) -> Result<u32, DecodeError> {
    if depth >= limits.max_depth {
        return Err(DecodeError::TooDeep {
            limit: limits.max_depth,
        });
    }
    Ok(depth + 1)
}

fn invalid(code: i8, reason: impl Into<String>) -> DecodeError {
    DecodeError::InvalidExt {
        code,
        reason: reason.into(),
    }
}

/// Reads an ext payload's array header, which must hold `want` elements if given.
fn payload_array(r: &mut Reader<'_>, code: i8, want: Option<u32>) -> Result<u32, DecodeError> {
    match (r.head()?, want) {
        (Head::Array(n), Some(w)) if n != w => Err(invalid(
            code,
            format!("payload must be an array of {w} elements, found {n}"),
        )),
        (Head::Array(n), _) => Ok(n),
        (other, _) => Err(invalid(
            code,
            format!("payload must be an array, found {}", other.kind()),
        )),
    }
}

fn payload_str<'a>(r: &mut Reader<'a>, code: i8, what: &str) -> Result<&'a str, DecodeError> {
    match r.head()? {
        Head::Str(s) => Ok(s),
        other => Err(invalid(
            code,
            format!("{what} must be a str, found {}", other.kind()),
        )),
    }
}

fn payload_uint(r: &mut Reader<'_>, code: i8, what: &str) -> Result<u64, DecodeError> {
    match r.head()? {
        Head::Int(i) if i >= 0 => Ok(i as u64),
        Head::BigUint(u) => Ok(u),
        Head::Int(i) => Err(invalid(
            code,
            format!("{what} must be non-negative, found {i}"),
        )),
        other => Err(invalid(
            code,
            format!("{what} must be an int, found {}", other.kind()),
        )),
    }
}

fn payload_end(r: &Reader<'_>, code: i8) -> Result<(), DecodeError> {
    match r.buf.len() {
        0 => Ok(()),
        n => Err(invalid(
            code,
            format!("{n} byte(s) left over after the payload's value"),
        )),
    }
}

/// Parses a pid or ref payload: `[node, incarnation, id]`.
fn id_payload(code: i8, payload: &[u8]) -> Result<(&str, u64, u64), DecodeError> {
    let r = &mut Reader { buf: payload };
    payload_array(r, code, Some(3))?;
    let node = payload_str(r, code, "the node")?;
    let incarnation = payload_uint(r, code, "the incarnation")?;
    let id = payload_uint(r, code, "the id")?;
    payload_end(r, code)?;
    Ok((node, incarnation, id))
}

/// Parses a struct payload's header, `[name, {` , leaving `r` at the first field name.
fn struct_head<'a>(r: &mut Reader<'a>) -> Result<(&'a str, u32), DecodeError> {
    payload_array(r, EXT_STRUCT, Some(2))?;
    let name = payload_str(r, EXT_STRUCT, "the struct name")?;
    match r.head()? {
        Head::Map(n) => Ok((name, n)),
        other => Err(invalid(
            EXT_STRUCT,
            format!("the fields must be a map, found {}", other.kind()),
        )),
    }
}

fn atom(payload: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(payload).map_err(|_| DecodeError::InvalidUtf8)
}

/// Decodes the Term of an ext value met at `depth`; `payload` is its own input, so it must be
/// consumed exactly.
pub(crate) fn decode_ext(
    code: i8,
    payload: &[u8],
    depth: u32,
    limits: &Limits,
) -> Result<Term, DecodeError> {
    Ok(match code {
        EXT_ATOM => Term::Atom(atom(payload)?.to_owned()),
        EXT_TUPLE => {
            let depth = enter(depth, limits)?;
            let r = &mut Reader { buf: payload };
            let n = payload_array(r, code, None)?;
            let mut items = Vec::with_capacity(r.capacity(n, 1));
            for _ in 0..n {
                items.push(value(r, depth, limits)?);
            }
            payload_end(r, code)?;
            Term::Tuple(items)
        }
        EXT_STRUCT => {
            let depth = enter(depth, limits)?;
            let r = &mut Reader { buf: payload };
            let (name, n) = struct_head(r)?;
            let mut fields = Vec::with_capacity(r.capacity(n, 2));
            for _ in 0..n {
                let field = payload_str(r, code, "a field name")?;
                fields.push((field.to_owned(), value(r, depth, limits)?));
            }
            payload_end(r, code)?;
            Term::Struct {
                name: name.to_owned(),
                fields,
            }
        }
        EXT_PID => {
            let (node, incarnation, id) = id_payload(code, payload)?;
            Term::Pid(Pid {
                node: node.to_owned(),
                incarnation,
                id,
            })
        }
        EXT_REF => {
            let (node, incarnation, id) = id_payload(code, payload)?;
            Term::Ref(Ref {
                node: node.to_owned(),
                incarnation,
                id,
            })
        }
        _ => return Err(DecodeError::UnknownExt(code)),
    })
}

/// Decodes one Term met at `depth`.
fn value(r: &mut Reader<'_>, depth: u32, limits: &Limits) -> Result<Term, DecodeError> {
    Ok(match r.head()? {
        Head::Nil => Term::Nil,
        Head::Bool(b) => Term::Bool(b),
        Head::Int(i) => Term::Int(i),
        Head::BigUint(_) => return Err(DecodeError::IntegerOutOfRange),
        Head::Float(f) => Term::Float(f),
        Head::Str(s) => Term::String(s.to_owned()),
        Head::Bin(b) => Term::Bytes(b.to_vec()),
        Head::Array(n) => {
            let depth = enter(depth, limits)?;
            let mut items = Vec::with_capacity(r.capacity(n, 1));
            for _ in 0..n {
                // Written out here and in `decode_one`: an inlined helper that returns
                // `Result<Term, _>` measured 65 % slower on a batch of integers.
                items.push(match r.int() {
                    Some(i) => Term::Int(i),
                    None => value(r, depth, limits)?,
                });
            }
            Term::List(items)
        }
        Head::Map(n) => {
            let depth = enter(depth, limits)?;
            let mut pairs = Vec::with_capacity(r.capacity(n, 2));
            for _ in 0..n {
                let k = value(r, depth, limits)?;
                pairs.push((k, value(r, depth, limits)?));
            }
            Term::Map(pairs)
        }
        Head::Ext(code, payload) => decode_ext(code, payload, depth, limits)?,
    })
}

/// Decodes exactly one Term from `bytes` (whose size the caller has checked).
pub(super) fn decode_all(bytes: &[u8], limits: &Limits) -> Result<Term, DecodeError> {
    let r = &mut Reader { buf: bytes };
    let term = value(r, 0, limits)?;
    match r.buf.len() {
        0 => Ok(term),
        count => Err(DecodeError::TrailingBytes { count }),
    }
}

/// Reads the header of the array at the start of `bytes`: its length, and the header's size.
pub(super) fn array_head(bytes: &[u8]) -> Result<(u32, usize), DecodeError> {
    let r = &mut Reader { buf: bytes };
    match r.head()? {
        Head::Array(n) => Ok((n, bytes.len() - r.buf.len())),
        other => Err(DecodeError::Serde(format!(
            "an array was expected, found {}",
            other.kind()
        ))),
    }
}

/// Decodes the Term at the start of `bytes`, met at `depth`: the Term and the bytes it took.
/// Inlined so that an integer is built where its caller wants it, not copied there. A plain
/// `#[inline]` was not enough: in a consumer's loop that adds the items up, LLVM kept this a
/// call, the 48-byte result came back through memory and stalled on store forwarding, and
/// the bench's echo decoded 65-73 M integers a second instead of 94-131 M.
#[inline(always)]
pub(super) fn decode_one(
    bytes: &[u8],
    depth: u32,
    limits: &Limits,
) -> Result<(Term, usize), DecodeError> {
    let r = &mut Reader { buf: bytes };
    let term = match r.int() {
        Some(i) => Term::Int(i),
        None => value(r, depth, limits)?,
    };
    Ok((term, bytes.len() - r.buf.len()))
}

/// Walks an ext value met at `depth` without building it.
fn skip_ext(code: i8, payload: &[u8], depth: u32, limits: &Limits) -> Result<(), DecodeError> {
    match code {
        EXT_ATOM => atom(payload).map(drop),
        EXT_TUPLE => {
            let depth = enter(depth, limits)?;
            let r = &mut Reader { buf: payload };
            for _ in 0..payload_array(r, code, None)? {
                skip(r, depth, limits)?;
            }
            payload_end(r, code)
        }
        EXT_STRUCT => {
            let depth = enter(depth, limits)?;
            let r = &mut Reader { buf: payload };
            let (_, n) = struct_head(r)?;
            for _ in 0..n {
                payload_str(r, code, "a field name")?;
                skip(r, depth, limits)?;
            }
            payload_end(r, code)
        }
        EXT_PID | EXT_REF => id_payload(code, payload).map(drop),
        _ => Err(DecodeError::UnknownExt(code)),
    }
}

/// Walks one value met at `depth` without building it.
fn skip(r: &mut Reader<'_>, depth: u32, limits: &Limits) -> Result<(), DecodeError> {
    match r.head()? {
        Head::Array(n) => {
            let depth = enter(depth, limits)?;
            for _ in 0..n {
                skip(r, depth, limits)?;
            }
        }
        Head::Map(n) => {
            let depth = enter(depth, limits)?;
            for _ in 0..n {
                skip(r, depth, limits)?;
                skip(r, depth, limits)?;
            }
        }
        Head::Ext(code, payload) => skip_ext(code, payload, depth, limits)?,
        _ => {}
    }
    Ok(())
}

/// Checks the value at the start of `bytes`, met at `depth`, without building it; returns
/// the bytes it takes.
pub(super) fn skip_one(bytes: &[u8], depth: u32, limits: &Limits) -> Result<usize, DecodeError> {
    let r = &mut Reader { buf: bytes };
    skip(r, depth, limits)?;
    Ok(bytes.len() - r.buf.len())
}

/// Checks that `bytes` is exactly one well-formed value (whose size the caller has checked).
pub(super) fn validate_all(bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    match bytes.len() - skip_one(bytes, 0, limits)? {
        0 => Ok(()),
        count => Err(DecodeError::TrailingBytes { count }),
    }
}
