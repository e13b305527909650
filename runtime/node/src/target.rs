//! Which nodes an invocation runs on.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use steinadler_membership::Member;

/// Where to run a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every live node.
    All,
    /// One live node, the least loaded.
    Any,
    /// The node with this name.
    Node(String),
    /// Every live node whose labels include all these pairs.
    Labels(BTreeMap<String, String>),
}

/// A target string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid target {0:?}: use all, any, node:NAME, or label:k=v,k2=v2 (every pair must match)"
)]
pub struct TargetError(String);

impl FromStr for Target {
    type Err = TargetError;

    /// Parses `all`, `any`, `node:NAME`, `label:k=v,...`, a bare `k=v,...` or a bare node name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TargetError(s.to_owned());
        let s = s.trim();
        if s == "all" {
            return Ok(Self::All);
        }
        if s == "any" {
            return Ok(Self::Any);
        }
        if let Some(name) = s.strip_prefix("node:") {
            return if name.is_empty() {
                Err(bad())
            } else {
                Ok(Self::Node(name.to_owned()))
            };
        }
        let selector = s.strip_prefix("label:").unwrap_or(s);
        if selector.contains('=') {
            let mut labels = BTreeMap::new();
            for pair in selector.split(',') {
                let (k, v) = pair.split_once('=').ok_or_else(bad)?;
                if k.trim().is_empty() {
                    return Err(bad());
                }
                labels.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            return Ok(Self::Labels(labels));
        }
        if s.is_empty() || s.starts_with("label:") {
            return Err(bad());
        }
        Ok(Self::Node(s.to_owned()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Any => f.write_str("any"),
            Self::Node(n) => write!(f, "node:{n}"),
            Self::Labels(l) => {
                let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "label:{}", pairs.join(","))
            }
        }
    }
}

impl Target {
    /// The members this target selects, in name order. A [`Target::Node`] that names no live
    /// member selects nothing; the caller reports it as unavailable.
    pub fn select<'a>(&self, members: &'a [Member]) -> Vec<&'a Member> {
        match self {
            Self::All => members.iter().collect(),
            Self::Any => members
                .iter()
                .min_by_key(|m| (m.meta.load, m.name.clone()))
                .into_iter()
                .collect(),
            Self::Node(name) => members.iter().filter(|m| &m.name == name).collect(),
            Self::Labels(want) => members
                .iter()
                .filter(|m| want.iter().all(|(k, v)| m.meta.labels.get(k) == Some(v)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("all".parse(), Ok(Target::All));
        assert_eq!("any".parse(), Ok(Target::Any));
        assert_eq!("node:n1".parse(), Ok(Target::Node("n1".into())));
        assert_eq!("n2".parse(), Ok(Target::Node("n2".into())));
        let labels: BTreeMap<_, _> = [
            ("zone".to_owned(), "a".to_owned()),
            ("t".into(), "x".into()),
        ]
        .into();
        assert_eq!(
            "label:zone=a,t=x".parse(),
            Ok(Target::Labels(labels.clone()))
        );
        assert_eq!("zone=a, t=x".parse(), Ok(Target::Labels(labels)));
        for bad in ["", "node:", "label:", "=a", "label:zone"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?}");
        }
    }
}
