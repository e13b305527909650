//! [`NodeMeta`], the metadata each node gossips about itself, and its compact wire form.
//!
//! The wire form is one format byte ([`META_FORMAT`]) followed by the MessagePack of [`NodeMeta`]
//! as an array (field order, no names), which keeps the typical advertisement around 40 bytes. The
//! encoded form must fit memberlist's [`META_MAX_SIZE`] (512 bytes); [`encode`] checks that,
//! because memberlist itself panics when the delegate hands it more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::MembershipError;

/// memberlist's hard cap on a node's metadata, in bytes.
pub const META_MAX_SIZE: usize = memberlist::META_MAX_SIZE;

/// The first byte of every encoded [`NodeMeta`]. Bump it when the layout changes incompatibly, so
/// an old node logs "unknown format" instead of misreading fields.
pub(crate) const META_FORMAT: u8 = 1;

/// What a node advertises about itself through gossip.
///
/// Keep it small: the encoded form travels in every alive message and must stay under
/// [`META_MAX_SIZE`] bytes. Bulky data (such as the full module index) belongs on gRPC;
/// only its digest travels here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Where the node's gRPC server listens, for example `"127.0.0.1:50051"`.
    pub grpc_addr: String,
    /// Free-form labels used for placement (for example `zone = "a"`).
    pub labels: BTreeMap<String, String>,
    /// Steinadler nodes advertise 0 here: the module set is on gRPC. A deploy changes every
    /// node's module set at once, and a digest of it here made each deploy an alive broadcast
    /// from every node to every node. Kept so that metadata keeps its layout across versions.
    pub modules_digest: u64,
    /// A load hint for "any" placement (Steinadler nodes advertise a coarse level of their
    /// in-flight invocations). Gossip is not a metrics bus: advertise changes rarely and at a
    /// bounded rate (every update is a new alive broadcast to every member).
    pub load: u32,
    /// For a node that accepts no connections (`--no-inbound`), the members it keeps
    /// connections to, through which others reach it; empty for a node dialed at
    /// [`grpc_addr`](Self::grpc_addr). Absent from older nodes' metadata; written (empty)
    /// whenever [`ca_holder`](Self::ca_holder) follows it, since fields are positional.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Whether the node holds the cluster CA key and the token secret (a CA holder): it signs
    /// joins, logins and renewals, which the other nodes forward to a live holder. One byte.
    /// Last, and absent from older nodes' metadata (which read as not a holder).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ca_holder: bool,
}

/// Encodes `meta` for gossip.
///
/// # Errors
///
/// [`MembershipError::MetaTooLarge`] if the encoded form is over [`META_MAX_SIZE`] bytes, and
/// [`MembershipError::MetaEncode`] if MessagePack encoding fails.
pub(crate) fn encode(meta: &NodeMeta) -> Result<Vec<u8>, MembershipError> {
    let mut out = vec![META_FORMAT];
    rmp_serde::encode::write(&mut out, meta)
        .map_err(|e| MembershipError::MetaEncode(e.to_string()))?;
    if out.len() > META_MAX_SIZE {
        return Err(MembershipError::MetaTooLarge { size: out.len() });
    }
    Ok(out)
}

/// Decodes a peer's advertised metadata.
///
/// # Errors
///
/// A description of the problem if the bytes are empty, of an unknown format, or malformed.
pub(crate) fn decode(bytes: &[u8]) -> Result<NodeMeta, String> {
    match bytes.split_first() {
        None => Err("no metadata (not a steinadler node?)".to_owned()),
        Some((&META_FORMAT, rest)) => rmp_serde::from_slice(rest).map_err(|e| e.to_string()),
        Some((other, _)) => Err(format!("unknown metadata format {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeMeta {
        NodeMeta {
            grpc_addr: "127.0.0.1:50051".to_owned(),
            labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
            modules_digest: u64::MAX,
            load: 7,
            relays: Vec::new(),
            ca_holder: false,
        }
    }

    #[test]
    fn relays_round_trip_and_older_metadata_has_none() {
        let relayed = NodeMeta {
            relays: vec!["n1".into(), "n2".into()],
            ..sample()
        };
        assert_eq!(decode(&encode(&relayed).unwrap()).unwrap(), relayed);
        // What a node without the field sent: four fields.
        let mut old = vec![META_FORMAT];
        let s = sample();
        rmp_serde::encode::write(
            &mut old,
            &(&s.grpc_addr, &s.labels, s.modules_digest, s.load),
        )
        .unwrap();
        assert_eq!(decode(&old).unwrap(), s);
    }

    #[test]
    fn the_holder_flag_round_trips_and_older_metadata_has_none() {
        for relays in [Vec::new(), vec!["n1".to_owned()]] {
            let holder = NodeMeta {
                relays,
                ca_holder: true,
                ..sample()
            };
            assert_eq!(decode(&encode(&holder).unwrap()).unwrap(), holder);
        }
        // What a node with relays but no holder flag sent: five fields.
        let mut old = vec![META_FORMAT];
        let s = sample();
        rmp_serde::encode::write(
            &mut old,
            &(&s.grpc_addr, &s.labels, s.modules_digest, s.load, ["n1"]),
        )
        .unwrap();
        let read = decode(&old).unwrap();
        assert!(!read.ca_holder);
        assert_eq!(read.relays, ["n1"]);
    }

    #[test]
    fn round_trips_compactly() {
        let bytes = encode(&sample()).unwrap();
        assert!(bytes.len() < 48, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn oversized_is_an_error() {
        let mut meta = sample();
        meta.labels
            .insert("big".to_owned(), "x".repeat(META_MAX_SIZE));
        let err = encode(&meta).unwrap_err();
        assert!(matches!(err, MembershipError::MetaTooLarge { size } if size > META_MAX_SIZE));
    }

    #[test]
    fn foreign_bytes_are_rejected() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[99, 1, 2]).is_err());
        assert!(decode(&[META_FORMAT, 0xc1]).is_err());
    }
}
