//! Content addresses.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The id of a wasm module: the SHA-256 of its bytes.
///
/// Its text form is 64 lowercase hex digits.
///
/// # Examples
///
/// ```
/// use steinadler_core::ModuleId;
/// let id = ModuleId::of(b"\0asm\x01\0\0\0");
/// assert_eq!(id.to_string().len(), 64);
/// assert_eq!(id.to_string().parse::<ModuleId>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId([u8; 32]);

impl ModuleId {
    /// Hashes `bytes` into their id.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Wraps a raw 32-byte digest.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32-byte digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, for logs and listings.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleId({})", self.short())
    }
}

/// The text was not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid module id {0:?}: expected 64 hex digits (a SHA-256)")]
pub struct ParseModuleIdError(String);

impl FromStr for ModuleId {
    type Err = ParseModuleIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseModuleIdError(s.to_owned()))?;
        Ok(Self(out))
    }
}
