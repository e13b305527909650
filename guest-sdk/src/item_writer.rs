//! The serializer a stream writes its items with: integers are written straight into the
//! batch, everything else goes through `rmp_serde` as before.
//!
//! A batch is mostly small items, and for integers `rmp_serde`'s generic write path was most of
//! a producer's time: 72 % of `range`'s batch of 1,024 integers (`perf` on the host's
//! `stream batch` bench). Here integers go through the value codec's own writer
//! (`steinadler_core::codec::write_int`), which picks the same smallest encoding `rmp` does, so
//! the bytes are the same either way.

use serde::Serializer;

/// The `rmp_serde` serializer the SDK's values are written with (structs as maps).
pub(crate) type Rmp<'b> = rmp_serde::Serializer<
    &'b mut Vec<u8>,
    rmp_serde::config::StructMapConfig<rmp_serde::config::DefaultConfig>,
>;

/// A serializer into `buf`, configured as the SDK's values are.
pub(crate) fn serializer(buf: &mut Vec<u8>) -> Rmp<'_> {
    rmp_serde::Serializer::new(buf).with_struct_map()
}

type Inner<'a, 'b> = &'a mut Rmp<'b>;
type Error = rmp_serde::encode::Error;

/// Writes one item: integers directly, anything else by delegating to `rmp_serde`.
pub(crate) struct ItemWriter<'a, 'b>(pub(crate) Inner<'a, 'b>);

impl ItemWriter<'_, '_> {
    #[inline(always)]
    fn uint(self, v: u64) -> Result<(), Error> {
        steinadler_core::codec::write_uint(self.0.get_mut(), v);
        Ok(())
    }

    #[inline(always)]
    fn sint(self, v: i64) -> Result<(), Error> {
        steinadler_core::codec::write_int(self.0.get_mut(), v);
        Ok(())
    }
}

/// Delegates a method to the `rmp_serde` serializer unchanged.
macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(self, $($arg: $ty),*) -> Result<$ret, Error> {
            self.0.$name($($arg),*)
        })*
    };
}

impl<'a, 'b> Serializer for ItemWriter<'a, 'b> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = <Inner<'a, 'b> as Serializer>::SerializeSeq;
    type SerializeTuple = <Inner<'a, 'b> as Serializer>::SerializeTuple;
    type SerializeTupleStruct = <Inner<'a, 'b> as Serializer>::SerializeTupleStruct;
    type SerializeTupleVariant = <Inner<'a, 'b> as Serializer>::SerializeTupleVariant;
    type SerializeMap = <Inner<'a, 'b> as Serializer>::SerializeMap;
    type SerializeStruct = <Inner<'a, 'b> as Serializer>::SerializeStruct;
    type SerializeStructVariant = <Inner<'a, 'b> as Serializer>::SerializeStructVariant;

    #[inline(always)]
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.sint(i64::from(v))
    }
    #[inline(always)]
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.sint(i64::from(v))
    }
    #[inline(always)]
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.sint(i64::from(v))
    }
    #[inline(always)]
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.sint(v)
    }
    #[inline(always)]
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.uint(u64::from(v))
    }
    #[inline(always)]
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.uint(u64::from(v))
    }
    #[inline(always)]
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.uint(u64::from(v))
    }
    #[inline(always)]
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.uint(v)
    }

    delegate! {
        serialize_bool(v: bool) -> ();
        serialize_i128(v: i128) -> ();
        serialize_u128(v: u128) -> ();
        serialize_f32(v: f32) -> ();
        serialize_f64(v: f64) -> ();
        serialize_char(v: char) -> ();
        serialize_str(v: &str) -> ();
        serialize_bytes(v: &[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(name: &'static str) -> ();
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> ();
        serialize_seq(len: Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(len: usize) -> Self::SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> Self::SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> Self::SerializeMap;
        serialize_struct(name: &'static str, len: usize) -> Self::SerializeStruct;
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> Self::SerializeStructVariant;
    }

    fn serialize_some<T: ?Sized + serde::Serialize>(self, value: &T) -> Result<(), Error> {
        self.0.serialize_some(value)
    }
    fn serialize_newtype_struct<T: ?Sized + serde::Serialize>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.0.serialize_newtype_struct(name, value)
    }
    fn serialize_newtype_variant<T: ?Sized + serde::Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, value)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    fn both<T: Serialize>(value: T) -> (Vec<u8>, Vec<u8>) {
        let mut fast = Vec::new();
        value
            .serialize(ItemWriter(&mut serializer(&mut fast)))
            .unwrap();
        let mut slow = Vec::new();
        value.serialize(&mut serializer(&mut slow)).unwrap();
        (fast, slow)
    }

    #[test]
    fn integers_encode_as_rmp_does_at_every_width() {
        // Every power of two and its neighbours, unsigned and signed: each boundary between
        // two widths (the codec's own test lists them one by one).
        for shift in 0..64 {
            let p = 1u64 << shift;
            for u in [p - 1, p, p + 1, p.wrapping_mul(3)] {
                assert_eq!(both(u).0, both(u).1, "u64 {u}");
                let i = u as i64;
                assert_eq!(both(i).0, both(i).1, "i64 {i}");
                let n = i.wrapping_neg();
                assert_eq!(both(n).0, both(n).1, "i64 {n}");
                if let Ok(small) = i32::try_from(n) {
                    assert_eq!(both(small).0, both(small).1, "i32 {small}");
                }
                if let Ok(small) = u32::try_from(u) {
                    assert_eq!(both(small).0, both(small).1, "u32 {small}");
                }
            }
        }
        assert_eq!(both(u64::MAX).0, both(u64::MAX).1);
        assert_eq!(both(-7i8).0, both(-7i8).1);
        assert_eq!(both(300u16).0, both(300u16).1);
    }

    #[test]
    fn other_values_are_written_by_rmp_serde() {
        #[derive(Serialize)]
        struct Point {
            x: i32,
            label: String,
            tags: Vec<u8>,
        }
        let (fast, slow) = both(Point {
            x: -5,
            label: "a".into(),
            tags: vec![1, 2],
        });
        assert_eq!(fast, slow);
        assert_eq!(both("text").0, both("text").1);
        assert_eq!(both(Some(1.5f64)).0, both(Some(1.5f64)).1);
        assert_eq!(both((1u8, true, ())).0, both((1u8, true, ())).1);
    }
}
