//! The running memberlist, on either wire ([`GossipWire`]): its two transport types make two
//! memberlist types, and [`on_ml!`] runs the same code on whichever this node has.

use std::sync::{Arc, RwLock};

use memberlist::net::NetTransportOptions;
use memberlist::proto::{EncryptionAlgorithm, Meta, SecretKey, SecretKeys};
use memberlist::tokio::{TokioNetTransport, TokioSocketAddrResolver, TokioTcp};
use memberlist::{Memberlist, Options};
use smol_str::SmolStr;
use tokio::sync::broadcast;

use crate::delegate::{self, Delegate};
use crate::links::{LinkOptions, LinkTransport};
use crate::{GossipInbox, GossipWire, MemberEvent, MembershipConfig};

/// memberlist's own network transport: UDP packets, TCP streams.
type UdpTransport = TokioNetTransport<SmolStr, TokioSocketAddrResolver, TokioTcp>;

/// A running memberlist.
#[derive(Clone)]
pub(crate) enum Ml {
    Udp(Memberlist<UdpTransport, Delegate>),
    Links(Memberlist<LinkTransport, Delegate>),
}

/// Evaluates `$body` with `$m` bound to the memberlist in `$ml`, whichever wire it runs on.
macro_rules! on_ml {
    ($ml:expr, $m:ident => $body:expr) => {
        match $ml {
            $crate::ml::Ml::Udp($m) => $body,
            $crate::ml::Ml::Links($m) => $body,
        }
    };
}
pub(crate) use on_ml;

/// Starts memberlist for `config` (without joining), with the delegate around `meta` and
/// `events`; in the one-port mode also returns the inbox for what peers send.
pub(crate) async fn create(
    config: &MembershipConfig,
    meta: Arc<RwLock<Meta>>,
    events: broadcast::Sender<MemberEvent>,
) -> Result<(Ml, Option<GossipInbox>), String> {
    let id = SmolStr::new(&config.name);
    match &config.gossip {
        GossipWire::Udp => {
            let delegate = delegate::delegate(id.clone(), meta, events, None);
            let mut transport =
                NetTransportOptions::<SmolStr, TokioSocketAddrResolver, TokioTcp>::new(id);
            transport.add_bind_address(config.gossip_addr);
            if let Some(addr) = config.gossip_advertise {
                transport = transport.with_advertise_address(addr);
            }
            let ml = Memberlist::with_delegate(delegate, transport, options(config, true))
                .await
                .map_err(|e| e.to_string())?;
            Ok((Ml::Udp(ml), None))
        }
        GossipWire::Links(links) => {
            let (transport, inbox) =
                LinkOptions::new(id.clone(), config.gossip_addr, links.clone());
            let delegate = delegate::delegate(id, meta, events, Some(inbox.names.clone()));
            // The links' mutual TLS protects gossip: no keyring here (docs/topology.md).
            let ml = Memberlist::with_delegate(delegate, transport, options(config, false))
                .await
                .map_err(|e| e.to_string())?;
            Ok((Ml::Links(ml), Some(inbox)))
        }
    }
}

/// memberlist options for `config`: the profile's timings plus, when `keyed`, the gossip keys.
fn options(config: &MembershipConfig, keyed: bool) -> Options {
    let options = config.profile.options();
    match config.gossip_key {
        // All four are needed: with only a key, memberlist silently sends plaintext.
        Some(key) if keyed => options
            .with_primary_key(SecretKey::Aes256(key))
            .with_secret_keys(
                config
                    .extra_gossip_keys
                    .iter()
                    .map(|k| SecretKey::Aes256(*k))
                    .collect::<SecretKeys>(),
            )
            .with_encryption_algo(EncryptionAlgorithm::NoPadding)
            .with_gossip_verify_incoming(true)
            .with_gossip_verify_outgoing(true),
        _ => options,
    }
}

/// What went wrong in memberlist, the same type on either wire.
#[derive(Debug)]
pub(crate) enum Failure {
    NotRunning,
    UpdateTimeout,
    LeaveTimeout,
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRunning => f.write_str("memberlist is not running"),
            Self::UpdateTimeout => f.write_str("the update was not gossiped in time"),
            Self::LeaveTimeout => f.write_str("the leave was not gossiped in time"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

/// Converts memberlist's error on either wire.
pub(crate) fn failure<T, D>(e: memberlist::error::Error<T, D>) -> Failure
where
    T: memberlist::transport::Transport,
    D: memberlist::delegate::Delegate<Id = T::Id, Address = T::ResolvedAddress>,
{
    use memberlist::error::Error;
    match e {
        Error::NotRunning => Failure::NotRunning,
        Error::UpdateTimeout => Failure::UpdateTimeout,
        Error::LeaveTimeout => Failure::LeaveTimeout,
        e => Failure::Other(e.to_string()),
    }
}
