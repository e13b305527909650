//! A join token's lifetime ([`TokenPolicy`]): its generation, when it expires, how many joins
//! it admits and which node counts them; and why a token is refused ([`TokenRefusal`]).
//!
//! The policy is stored next to `token.secret` as `token.policy` (JSON). A missing file, or a
//! missing field, is what a token made before lifetimes existed has: generation 0, no expiry,
//! no use limit; such a token keeps working until it is replaced.
//!
//! The node that mints a use-limited token counts its uses in `token.uses`
//! ([`load_token_uses`], [`save_token_uses`]); other nodes ask it for each join.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SecurityError;
use crate::files::{Sensitivity, path_of, read_optional, write_file};

pub(crate) const TOKEN_POLICY: &str = "token.policy";
pub(crate) const TOKEN_USES: &str = "token.uses";

/// How long a join token lives unless told otherwise: 24 hours.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The lifetime of the current join token. Every field defaults, so that older files load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenPolicy {
    /// Counts up with each new token; the higher generation wins when two nodes disagree.
    pub generation: u64,
    /// The node that made it, which counts its uses; empty for a token made before lifetimes.
    pub minted_by: String,
    /// When it was made, milliseconds since the Unix epoch.
    pub minted_at_ms: u64,
    /// When it stops admitting joins, milliseconds since the Unix epoch; `None`: never.
    pub expires_at_ms: Option<u64>,
    /// How many joins it admits; `None`: any number.
    pub max_uses: Option<u32>,
}

/// Why a valid join token no longer admits a join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Its lifetime is over.
    #[error(
        "the join token expired at {at}; make a new one with `steinadler cluster token --new \
         --data-dir DIR` on a member"
    )]
    Expired {
        /// When it expired, UTC.
        at: String,
    },
    /// It admitted as many joins as it may.
    #[error(
        "the join token was already used {used} times, its limit; make a new one with \
         `steinadler cluster token --new --data-dir DIR` on a member"
    )]
    UsedUp {
        /// How many joins it admitted.
        used: u32,
    },
}

impl TokenPolicy {
    /// The policy of a token `minted_by` makes now, as generation `generation`: it expires
    /// after `ttl` (never if `None`) and admits `max_uses` joins (any number if `None`).
    #[must_use]
    pub fn mint(
        generation: u64,
        minted_by: &str,
        ttl: Option<Duration>,
        max_uses: Option<u32>,
    ) -> TokenPolicy {
        let now = crate::crypto::now_ms();
        TokenPolicy {
            generation,
            minted_by: minted_by.to_owned(),
            minted_at_ms: now,
            expires_at_ms: ttl
                .map(|ttl| now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))),
            max_uses,
        }
    }

    /// Whether a token with this policy replaces one with `other`: a higher generation wins;
    /// two tokens of one generation (made at once on two nodes) are ordered by maker and time,
    /// so that every node picks the same one.
    #[must_use]
    pub fn supersedes(&self, other: &TokenPolicy) -> bool {
        (self.generation, &self.minted_by, self.minted_at_ms)
            > (other.generation, &other.minted_by, other.minted_at_ms)
    }

    /// Whether the token is still within its lifetime.
    ///
    /// # Errors
    ///
    /// [`TokenRefusal::Expired`] once its expiry has passed.
    pub fn check_expiry(&self) -> Result<(), TokenRefusal> {
        match self.expires_at_ms {
            Some(at) if crate::crypto::now_ms() >= at => Err(TokenRefusal::Expired {
                at: format_utc_ms(at),
            }),
            _ => Ok(()),
        }
    }

    /// Whether one more join fits, after `used` joins.
    ///
    /// # Errors
    ///
    /// [`TokenRefusal::UsedUp`] once `used` reached the limit.
    pub fn check_uses(&self, used: u32) -> Result<(), TokenRefusal> {
        match self.max_uses {
            Some(max) if used >= max => Err(TokenRefusal::UsedUp { used }),
            _ => Ok(()),
        }
    }

    /// "generation 3, expires at 2026-01-02 03:04:05 UTC, admits up to 2 joins", for people.
    #[must_use]
    pub fn describe(&self) -> String {
        let expiry = match self.expires_at_ms {
            Some(at) => format!("expires at {}", format_utc_ms(at)),
            None => "never expires".to_owned(),
        };
        let uses = match self.max_uses {
            Some(1) => "admits one join".to_owned(),
            Some(n) => format!("admits up to {n} joins"),
            None => "admits any number of joins".to_owned(),
        };
        format!("generation {}, {expiry}, {uses}", self.generation)
    }

    pub(crate) fn load(dir: &Path) -> Result<TokenPolicy, SecurityError> {
        match read_optional(dir, TOKEN_POLICY)? {
            None => Ok(TokenPolicy::default()),
            Some(text) => serde_json::from_str(&text).map_err(|e| SecurityError::BadFile {
                path: path_of(dir, TOKEN_POLICY),
                reason: format!(
                    "{e}; it describes the join token's lifetime: make a new token with \
                     `steinadler cluster token --new`, or delete the file to keep the token \
                     without a lifetime"
                ),
            }),
        }
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<(), SecurityError> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        write_file(dir, TOKEN_POLICY, text.as_bytes(), Sensitivity::Public)
    }
}

/// How many joins the token of `generation` admitted, as its maker counted them in
/// `dir/token.uses`; 0 when the file counts another generation or is missing.
///
/// # Errors
///
/// [`SecurityError::Io`] or [`SecurityError::BadFile`] if the file cannot be read.
pub fn load_token_uses(dir: &Path, generation: u64) -> Result<u32, SecurityError> {
    let Some(text) = read_optional(dir, TOKEN_USES)? else {
        return Ok(0);
    };
    let bad = || SecurityError::BadFile {
        path: path_of(dir, TOKEN_USES),
        reason: "expected \"GENERATION USES\"; delete it to count the token's uses from 0".into(),
    };
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(g)), Some(Ok(used))) if g == generation => u32::try_from(used).map_err(|_| bad()),
        (Some(Ok(_)), Some(Ok(_))) => Ok(0),
        _ => Err(bad()),
    }
}

/// Writes `dir/token.uses`: the token of `generation` admitted `used` joins.
///
/// # Errors
///
/// [`SecurityError::Io`] if the file cannot be written.
pub fn save_token_uses(dir: &Path, generation: u64, used: u32) -> Result<(), SecurityError> {
    write_file(
        dir,
        TOKEN_USES,
        format!("{generation} {used}\n").as_bytes(),
        Sensitivity::Public,
    )
}

/// "2026-01-02 03:04:05 UTC" for milliseconds since the Unix epoch.
#[must_use]
pub fn format_utc_ms(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs} s after the Unix epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_files_and_fields_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            TokenPolicy::load(dir.path()).unwrap(),
            TokenPolicy::default()
        );
        std::fs::write(dir.path().join(TOKEN_POLICY), "{\"generation\": 4}").unwrap();
        let p = TokenPolicy::load(dir.path()).unwrap();
        assert_eq!((p.generation, p.expires_at_ms, p.max_uses), (4, None, None));
        p.check_expiry().unwrap();
        p.check_uses(u32::MAX).unwrap();
        std::fs::write(dir.path().join(TOKEN_POLICY), "not json").unwrap();
        let err = TokenPolicy::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("token.policy") && err.contains("--new"),
            "{err}"
        );
    }

    #[test]
    fn expiry_uses_and_order() {
        let p = TokenPolicy::mint(2, "n1", Some(Duration::ZERO), Some(1));
        let err = p.check_expiry().unwrap_err();
        assert!(err.to_string().contains("expired at 20"), "{err}");
        p.check_uses(0).unwrap();
        let err = p.check_uses(1).unwrap_err().to_string();
        assert!(err.contains("already used 1 times"), "{err}");
        let later = TokenPolicy::mint(3, "a", None, None);
        later.check_expiry().unwrap();
        assert!(later.supersedes(&p) && !p.supersedes(&later) && !p.supersedes(&p));
        let tie = TokenPolicy {
            minted_by: "n2".into(),
            ..p.clone()
        };
        assert!(tie.supersedes(&p));
        assert_eq!(
            format_utc_ms(86_400_000 + 61_000),
            "1970-01-02 00:01:01 UTC"
        );
        assert!(
            later.describe().contains("never expires"),
            "{}",
            later.describe()
        );
    }

    #[test]
    fn uses_count_per_generation() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_token_uses(dir.path(), 1).unwrap(), 0);
        save_token_uses(dir.path(), 1, 3).unwrap();
        assert_eq!(load_token_uses(dir.path(), 1).unwrap(), 3);
        assert_eq!(load_token_uses(dir.path(), 2).unwrap(), 0);
    }
}
