//! `Serialize` and `Deserialize` for [`Term`], so Terms travel inside typed values.
//!
//! Owns the bridge between Terms and serde. With rmp-serde the bytes are exactly those of
//! [`Term::encode`]: plain MessagePack types map to serde's data model one to one, and the
//! ext-typed Terms (atom, tuple, struct, pid, ref) go through rmp-serde's ext convention, a
//! newtype struct named [`rmp_serde::MSGPACK_EXT_STRUCT_NAME`] around `(code, payload)`, with
//! the payload made and read by [`crate::codec`] itself.
//!
//! # Depth
//!
//! rmp-serde bounds the nesting it walks itself (1024 levels by default); an ext payload is
//! decoded by the codec with a depth limit of its own, counted from the payload. That limit is
//! [`Limits::DEFAULT`]'s unless [`crate::codec::from_slice`] is running, which sets it to its
//! caller's `max_depth` for the duration (it has validated the whole input against it first).
//!
//! Other serializers (such as serde_json) get ext-typed Terms as `[code, [payload bytes]]`:
//! nothing useful, but never a panic. Use [`crate::json`] for JSON.

use crate::Term;
use crate::codec::{self, Limits};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::Cell;
use std::fmt;

thread_local! {
    /// The depth limit for ext payloads decoded through serde on this thread.
    static PAYLOAD_MAX_DEPTH: Cell<u32> = const { Cell::new(Limits::DEFAULT.max_depth) };
}

/// Sets the ext payload depth limit until dropped, then restores the previous one.
pub(crate) struct PayloadDepthGuard {
    previous: u32,
}

impl PayloadDepthGuard {
    pub(crate) fn set(max_depth: u32) -> Self {
        Self {
            previous: PAYLOAD_MAX_DEPTH.with(|d| d.replace(max_depth)),
        }
    }
}

impl Drop for PayloadDepthGuard {
    fn drop(&mut self) {
        PAYLOAD_MAX_DEPTH.with(|d| d.set(self.previous));
    }
}

/// Cap on up-front reservations from a deserializer's size hint.
const MAX_PREALLOC: usize = 1024;

impl Serialize for Term {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Nil => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Int(i) => s.serialize_i64(*i),
            Self::Float(f) => s.serialize_f64(*f),
            Self::String(v) => s.serialize_str(v),
            Self::Bytes(b) => s.serialize_bytes(b),
            Self::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Map(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Self::Atom(_) | Self::Tuple(_) | Self::Struct { .. } | Self::Pid(_) | Self::Ref(_) => {
                let (code, payload) = codec::ext_payload(self)
                    .ok_or_else(|| serde::ser::Error::custom("not an ext-typed term"))?;
                s.serialize_newtype_struct(
                    rmp_serde::MSGPACK_EXT_STRUCT_NAME,
                    &(code, serde_bytes::Bytes::new(&payload)),
                )
            }
        }
    }
}

impl<'de> Deserialize<'de> for Term {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TermVisitor)
    }
}

struct TermVisitor;

impl<'de> Visitor<'de> for TermVisitor {
    type Value = Term;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Steinadler term (any MessagePack value of the wire format)")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Term, E> {
        Ok(Term::Nil)
    }

    fn visit_none<E: de::Error>(self) -> Result<Term, E> {
        Ok(Term::Nil)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Term, D::Error> {
        Term::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Term, E> {
        Ok(Term::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Term, E> {
        Ok(Term::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Term, E> {
        i64::try_from(v)
            .map(Term::Int)
            .map_err(|_| E::custom(codec::DecodeError::IntegerOutOfRange))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Term, E> {
        Ok(Term::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Term, E> {
        Ok(Term::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Term, E> {
        Ok(Term::String(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Term, E> {
        Ok(Term::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Term, E> {
        Ok(Term::Bytes(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Term, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Term::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Term, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(pair) = map.next_entry()? {
            pairs.push(pair);
        }
        Ok(Term::Map(pairs))
    }

    /// rmp-serde hands an ext value to `deserialize_any` visitors as a newtype struct whose
    /// inner deserializer yields `(code, payload)`.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Term, D::Error> {
        ExtSeed.deserialize(d)
    }
}

/// Reads rmp-serde's `(code, payload)` ext pair and decodes it with the codec.
struct ExtSeed;

impl<'de> DeserializeSeed<'de> for ExtSeed {
    type Value = Term;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Term, D::Error> {
        let (code, payload): (i8, serde_bytes::ByteBuf) = Deserialize::deserialize(d)?;
        let limits = Limits {
            max_depth: PAYLOAD_MAX_DEPTH.with(Cell::get),
            max_size: usize::MAX,
        };
        codec::decode_ext(code, &payload, 0, &limits).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_restores_the_previous_limit() {
        let outer = PayloadDepthGuard::set(7);
        {
            let _inner = PayloadDepthGuard::set(9);
            assert_eq!(PAYLOAD_MAX_DEPTH.with(Cell::get), 9);
        }
        assert_eq!(PAYLOAD_MAX_DEPTH.with(Cell::get), 7);
        drop(outer);
        assert_eq!(PAYLOAD_MAX_DEPTH.with(Cell::get), Limits::DEFAULT.max_depth);
    }

    #[cfg(feature = "json")]
    #[test]
    fn serde_json_does_not_panic_on_ext_terms() {
        let t = Term::tuple([Term::atom("ok"), Term::from(1)]);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(
            v,
            serde_json::json!([2, [0x92, 0xd5, 0x01, b'o', b'k', 0x01]])
        );
        // Reading it back gives some Term, not a panic.
        let _: Term = serde_json::from_value(v).unwrap();
    }
}
