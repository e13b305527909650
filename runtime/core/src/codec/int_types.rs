//! Rust's primitive integer types, told apart when a generic codec path is compiled.
//!
//! Both sides of a stream take a fast path for integers: the guest SDK writes them without
//! serde, and a typed consumer reads them without building a `Term`. Which path an item type
//! takes depends only on the type, so these checks fold to constants once monomorphized.

use std::any::Any;

/// `i` as a `T`, if `T` is one of Rust's primitive integer types (`i8` to `i64`, `u8` to
/// `u64`, `isize`, `usize`) and `i` is in its range; `None` otherwise.
///
/// # Examples
///
/// ```
/// use steinadler_core::codec::int_as;
/// assert_eq!(int_as::<u8>(255), Some(255));
/// assert_eq!(int_as::<u8>(256), None);
/// assert_eq!(int_as::<u64>(-1), None);
/// assert_eq!(int_as::<String>(1), None);
/// ```
#[inline(always)]
pub fn int_as<T: 'static>(i: i64) -> Option<T> {
    let mut out: Option<T> = None;
    macro_rules! fit {
        ($($t:ty),*) => {$(
            if let Some(slot) = (&mut out as &mut dyn Any).downcast_mut::<Option<$t>>() {
                *slot = <$t>::try_from(i).ok();
            }
        )*};
    }
    fit!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);
    out
}

/// Whether `T` is one of the primitive integer types [`int_as`] makes.
///
/// # Examples
///
/// ```
/// use steinadler_core::codec::is_int;
/// assert!(is_int::<u16>() && is_int::<isize>());
/// assert!(!is_int::<u128>() && !is_int::<f64>() && !is_int::<&'static u8>());
/// ```
#[inline(always)]
pub fn is_int<T: 'static>() -> bool {
    int_as::<T>(0).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_takes_exactly_its_range() {
        fn check<T: 'static + TryFrom<i64> + PartialEq + std::fmt::Debug>() {
            assert!(is_int::<T>());
            for i in [
                i64::MIN,
                -129,
                -128,
                -1,
                0,
                127,
                128,
                255,
                256,
                65_536,
                1 << 32,
                i64::MAX,
            ] {
                assert_eq!(
                    int_as::<T>(i),
                    T::try_from(i).ok(),
                    "{i} as {}",
                    std::any::type_name::<T>()
                );
            }
        }
        check::<i8>();
        check::<i16>();
        check::<i32>();
        check::<i64>();
        check::<isize>();
        check::<u8>();
        check::<u16>();
        check::<u32>();
        check::<u64>();
        check::<usize>();
        assert!(!is_int::<u128>() && !is_int::<i128>() && !is_int::<bool>() && !is_int::<char>());
    }
}
