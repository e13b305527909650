//! The MessagePack wire codec: [`Term::encode`], [`Term::decode`], and the serde helpers
//! [`to_vec`] and [`from_slice`] for typed values.
//!
//! This module owns the wire format, which `docs/wire-format.md` specifies byte for byte: the
//! ext type codes ([`EXT_ATOM`] and friends), the canonical encoding, the decode [`Limits`] and
//! the [`DecodeError`]s. Decoding is safe on hostile input: the input size is checked up front,
//! nesting is bounded by [`Limits::max_depth`] (counted through ext payloads too), and no
//! allocation is sized from a declared length beyond what the remaining input could hold.
//!
//! Typed Rust values and Terms share one format: `to_vec(&term)` gives the same bytes as
//! `term.encode()`, and a struct with a `Term` field decodes through [`from_slice`].

mod decode;
mod encode;
mod int_types;
mod sequence;

use crate::Term;
use serde::{Deserialize, Serialize};

pub(crate) use decode::decode_ext;
pub(crate) use encode::ext_payload;
pub use encode::{int_form, uint_form, write_int, write_uint};
pub use int_types::{int_as, is_int};
pub use sequence::Sequence;

/// The ext type code of an atom; the payload is the atom's name in UTF-8.
pub const EXT_ATOM: i8 = 1;
/// The ext type code of a tuple; the payload is a MessagePack array of the elements.
pub const EXT_TUPLE: i8 = 2;
/// The ext type code of a struct; the payload is `[name, {field: value, ...}]`.
pub const EXT_STRUCT: i8 = 3;
/// The ext type code of a pid; the payload is `[node, incarnation, id]`.
pub const EXT_PID: i8 = 4;
/// The ext type code of a reference; the payload is `[node, incarnation, id]`.
pub const EXT_REF: i8 = 5;

/// Bounds on what a decoder accepts, so that hostile input cannot exhaust memory or stack.
///
/// # Depth
///
/// Every list, map, tuple and struct is one level of nesting; scalars, atoms, pids and refs
/// add none. A value nested in `max_depth` containers decodes; one more level is
/// [`DecodeError::TooDeep`]. With `max_depth: 0` only a document without lists, maps, tuples
/// or structs decodes.
///
/// # Examples
///
/// ```
/// use steinadler_core::{Limits, Term, DecodeError};
/// let limits = Limits { max_depth: 1, ..Limits::DEFAULT };
/// let nested = Term::list([Term::list([])]).encode();
/// assert_eq!(Term::decode_with(&nested, &limits), Err(DecodeError::TooDeep { limit: 1 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The deepest nesting of lists, maps, tuples and structs accepted.
    pub max_depth: u32,
    /// The largest encoded input accepted, in bytes.
    pub max_size: usize,
}

impl Limits {
    /// The default limits: a depth of 128 and a size of 64 MiB.
    pub const DEFAULT: Self = Self {
        max_depth: 128,
        max_size: 64 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why bytes could not be decoded into a Term or a typed value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of a value, or a declared length runs past its end.
    #[error(
        "truncated input: the MessagePack value ends early or declares a length longer than the remaining bytes"
    )]
    Truncated,
    /// The input is larger than [`Limits::max_size`].
    #[error("input too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The input's size, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The input nests lists, maps, tuples or structs deeper than [`Limits::max_depth`].
    #[error("input nested too deeply: more than {limit} levels of lists, maps, tuples or structs")]
    TooDeep {
        /// The depth limit.
        limit: u32,
    },
    /// A string, atom, struct name, field name or node name is not valid UTF-8.
    #[error("invalid UTF-8 in a string, atom or name")]
    InvalidUtf8,
    /// An unsigned integer is larger than `i64::MAX`, so it is not a Term `Int`.
    #[error(
        "integer out of range: an unsigned integer above i64::MAX (9223372036854775807) does not fit a Term int"
    )]
    IntegerOutOfRange,
    /// An ext value has a type code this format does not define.
    #[error("unknown ext type code {0} (known codes: 1 atom, 2 tuple, 3 struct, 4 pid, 5 ref)")]
    UnknownExt(i8),
    /// An ext value has a known type code but a malformed payload.
    #[error("invalid {} ext payload (type code {code}): {reason}", ext_name(*.code))]
    InvalidExt {
        /// The ext type code.
        code: i8,
        /// What is wrong with the payload.
        reason: String,
    },
    /// Bytes follow the value; the input must hold exactly one value.
    #[error(
        "{count} trailing byte(s) after the value (the input must hold exactly one MessagePack value)"
    )]
    TrailingBytes {
        /// How many bytes follow the value.
        count: usize,
    },
    /// A marker byte that MessagePack reserves (`0xc1`).
    #[error("invalid MessagePack marker byte {0:#04x} (reserved, never used)")]
    InvalidMarker(u8),
    /// A well-formed value does not have the shape the requested Rust type expects.
    #[error("value does not match the expected type: {0}")]
    Serde(String),
}

/// Why a typed value could not be encoded by [`to_vec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The value's `Serialize` impl failed, or asked for something MessagePack cannot hold.
    #[error("cannot encode the value as MessagePack: {0}")]
    Serde(String),
}

/// The Term an ext type code stands for, for messages.
fn ext_name(code: i8) -> &'static str {
    match code {
        EXT_ATOM => "atom",
        EXT_TUPLE => "tuple",
        EXT_STRUCT => "struct",
        EXT_PID => "pid",
        EXT_REF => "ref",
        _ => "unknown",
    }
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    if bytes.len() > limits.max_size {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: limits.max_size,
        });
    }
    Ok(())
}

impl Term {
    /// Encodes this Term in its canonical wire form.
    ///
    /// # Panics
    ///
    /// Panics if a string, byte string, list, map or struct holds more than `u32::MAX` bytes or
    /// elements, which MessagePack cannot express.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// assert_eq!(Term::atom("ok").encode(), [0xd5, 0x01, b'o', b'k']);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends this Term's canonical wire form to `out`.
    ///
    /// # Panics
    ///
    /// As [`Term::encode`].
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::Term;
    /// let mut out = vec![0x92];
    /// Term::Nil.encode_into(&mut out);
    /// Term::Int(-1).encode_into(&mut out);
    /// assert_eq!(out, [0x92, 0xc0, 0xff]);
    /// ```
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode::write_term(out, self);
    }

    /// Decodes exactly one Term from `bytes`, with the default [`Limits`].
    ///
    /// # Errors
    ///
    /// Returns a [`DecodeError`] if `bytes` is not exactly one well-formed value of the wire
    /// format, or exceeds the default limits.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::{Term, DecodeError};
    /// assert_eq!(Term::decode(&[0x93, 1, 2, 3]), Ok(Term::list([1.into(), 2.into(), 3.into()])));
    /// assert_eq!(Term::decode(&[0x93, 1]), Err(DecodeError::Truncated));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Term, DecodeError> {
        Self::decode_with(bytes, &Limits::DEFAULT)
    }

    /// Decodes exactly one Term from `bytes`, within `limits`.
    ///
    /// # Errors
    ///
    /// Returns a [`DecodeError`] if `bytes` is larger than `limits.max_size`, nests deeper than
    /// `limits.max_depth`, or is not exactly one well-formed value of the wire format.
    ///
    /// # Examples
    ///
    /// ```
    /// use steinadler_core::{Limits, Term, DecodeError};
    /// let limits = Limits { max_size: 2, ..Limits::default() };
    /// assert_eq!(
    ///     Term::decode_with(&[0xa3, b'a', b'b', b'c'], &limits),
    ///     Err(DecodeError::TooLarge { size: 4, limit: 2 }),
    /// );
    /// ```
    pub fn decode_with(bytes: &[u8], limits: &Limits) -> Result<Term, DecodeError> {
        check_size(bytes, limits)?;
        decode::decode_all(bytes, limits)
    }
}

/// Checks that `bytes` is exactly one well-formed value of the wire format, within `limits`,
/// without building it.
///
/// Unlike [`Term::decode_with`], unsigned integers above `i64::MAX` are accepted, since a typed
/// `u64` may hold them.
///
/// # Errors
///
/// As [`Term::decode_with`], except that it never returns [`DecodeError::IntegerOutOfRange`].
///
/// # Examples
///
/// ```
/// use steinadler_core::{codec, Limits, DecodeError};
/// assert_eq!(codec::validate(&[0x91, 0xc0], &Limits::DEFAULT), Ok(()));
/// assert_eq!(codec::validate(&[0xc1], &Limits::DEFAULT), Err(DecodeError::InvalidMarker(0xc1)));
/// ```
pub fn validate(bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    check_size(bytes, limits)?;
    decode::validate_all(bytes, limits)
}

/// Encodes a typed value in the wire format.
///
/// Rust structs become maps keyed by field name, sequences become arrays, `serde_bytes` values
/// become bin, `None` and `()` become nil; a [`Term`] anywhere inside encodes exactly as
/// [`Term::encode`] would.
///
/// # Errors
///
/// Returns [`EncodeError`] if the value's `Serialize` impl fails, or uses something MessagePack
/// cannot hold (such as a sequence of unknown length over `u32::MAX` elements).
///
/// # Examples
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Point { x: i32 }
/// let bytes = steinadler_core::codec::to_vec(&Point { x: 1 }).unwrap();
/// assert_eq!(bytes, [0x81, 0xa1, b'x', 0x01]);
/// ```
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(value).map_err(|e| EncodeError::Serde(e.to_string()))
}

/// Decodes a typed value from exactly one value of the wire format, within `limits`.
///
/// The input is first validated as by [`validate`], so malformed input gets the same precise
/// [`DecodeError`] as [`Term::decode_with`] would give; only a well-formed value of the wrong
/// shape gives [`DecodeError::Serde`]. A [`Term`] anywhere inside decodes as it would from
/// [`Term::decode_with`] with the same limits.
///
/// # Errors
///
/// Returns the errors of [`validate`], and [`DecodeError::Serde`] if the value does not fit `T`.
///
/// # Examples
///
/// ```
/// use steinadler_core::{codec, Limits, Term};
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Args { name: String, extra: Term }
/// let bytes = [0x82, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'x', 0xa5, b'e', b'x', b't', b'r', b'a', 0xd4, 0x01, b'y'];
/// let args: Args = codec::from_slice(&bytes, &Limits::DEFAULT).unwrap();
/// assert_eq!(args, Args { name: "x".into(), extra: Term::atom("y") });
/// ```
pub fn from_slice<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    limits: &Limits,
) -> Result<T, DecodeError> {
    validate(bytes, limits)?;
    let _guard = crate::serde_impl::PayloadDepthGuard::set(limits.max_depth);
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    // rmp-serde counts every array, map and ext value (atoms and pids too), and fails when its
    // counter reaches zero; `validate` already enforced the real limit, so this is a backstop
    // that a valid document (at most `max_depth` containers plus one ext leaf) never reaches.
    de.set_max_depth(
        usize::try_from(limits.max_depth)
            .unwrap_or(usize::MAX)
            .saturating_add(2),
    );
    T::deserialize(&mut de).map_err(|e| rmp_error(e, limits))
}

fn rmp_error(e: rmp_serde::decode::Error, limits: &Limits) -> DecodeError {
    use rmp_serde::decode::Error as E;
    match e {
        E::DepthLimitExceeded => DecodeError::TooDeep {
            limit: limits.max_depth,
        },
        E::InvalidMarkerRead(ref io) | E::InvalidDataRead(ref io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            DecodeError::Truncated
        }
        E::Utf8Error(_) => DecodeError::InvalidUtf8,
        other => DecodeError::Serde(other.to_string()),
    }
}
