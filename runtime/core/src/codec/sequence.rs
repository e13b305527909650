//! [`Sequence`]: the elements of one encoded array, decoded one at a time.
//!
//! Decoding a whole array builds every element before the first is used. A consumer that takes
//! elements one by one, such as a stream's, decodes each as it takes it instead: no vector of
//! Terms is built, and the bytes stay the only copy of what is not yet taken.

use super::{DecodeError, Limits, check_size, decode};
use crate::Term;

/// The elements of one encoded MessagePack array, decoded as they are taken. An
/// `Iterator<Item = Result<Term, DecodeError>>` that ends after the first error.
///
/// # Examples
///
/// ```
/// use steinadler_core::{codec::Sequence, Limits, Term};
/// let bytes = Term::list([1.into(), "two".into()]).encode();
/// let mut items = Sequence::new(bytes, &Limits::DEFAULT)?;
/// assert_eq!(items.remaining(), 2);
/// assert_eq!(items.next(), Some(Ok(Term::Int(1))));
/// assert_eq!(items.next(), Some(Ok(Term::from("two"))));
/// assert_eq!(items.next(), None);
/// # Ok::<(), steinadler_core::DecodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sequence<B> {
    bytes: B,
    at: usize,
    left: u32,
    limits: Limits,
}

impl<B: AsRef<[u8]>> Sequence<B> {
    /// Reads the array's header.
    ///
    /// # Errors
    ///
    /// [`DecodeError::TooLarge`] past `limits.max_size`, or an error if `bytes` does not start
    /// with an array header. The elements are checked as they are taken.
    pub fn new(bytes: B, limits: &Limits) -> Result<Self, DecodeError> {
        check_size(bytes.as_ref(), limits)?;
        let (left, at) = decode::array_head(bytes.as_ref())?;
        Ok(Self {
            bytes,
            at,
            left,
            limits: *limits,
        })
    }

    /// Elements not yet taken.
    pub fn remaining(&self) -> u32 {
        self.left
    }
}

impl<B: AsRef<[u8]>> Iterator for Sequence<B> {
    type Item = Result<Term, DecodeError>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.bytes.as_ref()[self.at..];
        if self.left == 0 {
            if rest.is_empty() {
                return None;
            }
            // Report trailing bytes once.
            self.at = self.bytes.as_ref().len();
            return Some(Err(DecodeError::TrailingBytes { count: rest.len() }));
        }
        // The elements are inside the array: depth 1.
        match decode::decode_one(rest, 1, &self.limits) {
            Ok((term, used)) => {
                self.left -= 1;
                self.at += used;
                Some(Ok(term))
            }
            Err(e) => {
                self.left = 0;
                self.at = self.bytes.as_ref().len();
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<Result<Term, DecodeError>> {
        Sequence::new(bytes, &Limits::DEFAULT).unwrap().collect()
    }

    #[test]
    fn it_yields_what_decoding_the_whole_array_does() {
        let list = Term::list([
            0.into(),
            127.into(),
            128.into(),
            (-33).into(),
            70_000.into(),
            i64::MIN.into(),
            "s".into(),
            Term::list([Term::Nil, Term::Bool(true)]),
            Term::Atom("ok".into()),
        ]);
        let Term::List(want) = list.clone() else {
            unreachable!()
        };
        let got: Vec<Term> = all(&list.encode())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_input_ends_it_with_the_error() {
        // Three elements declared, one and a half present.
        assert_eq!(
            all(&[0x93, 0x01, 0xcd, 0x01]),
            [Ok(Term::Int(1)), Err(DecodeError::Truncated)]
        );
        assert_eq!(
            all(&[0x91, 0x01, 0x02]),
            [
                Ok(Term::Int(1)),
                Err(DecodeError::TrailingBytes { count: 1 })
            ]
        );
        assert!(Sequence::new([0x01u8], &Limits::DEFAULT).is_err());
        assert!(Sequence::new([0xdcu8], &Limits::DEFAULT).is_err());
        let deep = [0x91u8; 200];
        let limits = Limits {
            max_depth: 10,
            ..Limits::DEFAULT
        };
        let mut items = Sequence::new(&deep[..], &limits).unwrap();
        assert!(matches!(
            items.next(),
            Some(Err(DecodeError::TooDeep { .. }))
        ));
        assert_eq!(items.next(), None);
    }
}
