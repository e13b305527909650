//! CA holders: the few nodes that hold the cluster CA key and the join token secret, and how the
//! other nodes reach them.
//!
//! By default only the first [`HOLDERS`] nodes of a cluster are CA holders: the node that
//! creates the cluster, and each node that joins with a token while fewer than [`HOLDERS`] live
//! holders are known from gossip, or that asks for it (`--ca-holder`,
//! [`NodeConfig::ca_holder`](crate::NodeConfig::ca_holder)). A holder sends the CA key and the
//! token secret only to a joining node that becomes a holder ([`grants_key`], used by
//! [`crate::join::serve`]); every other node gets its own certificate, the CA certificate and
//! the cookie and gossip material, and nothing that signs. A stolen non-holder cannot mint
//! certificates or tokens.
//!
//! Every node advertises whether it is a holder in its gossip metadata
//! ([`NodeMeta::ca_holder`](steinadler_membership::NodeMeta::ca_holder)), so every node knows
//! the live holders ([`live`]). A non-holder forwards what needs the CA key to one of them over
//! mutual TLS with its own node certificate and the cluster cookie:
//! - a join or a login (`Node.Join`, [`forward_join`]): the request's HMAC is made with the
//!   token's secret over the request itself, not over the node it is sent to, so the holder
//!   checks the token (HMAC, expiry, uses; [`crate::tokens::admit`]) as if the joiner had
//!   asked it directly. The reply passes through the non-holder, so a forwarded join never
//!   receives the CA key: the holder sees the forwarder's certificate and leaves it out, and a
//!   node that asks to become a holder (`--ca-holder`) is told to join through one;
//! - its own certificate's renewal ([`crate::renew`] asks the live holders only).
//!
//! Token sync and catch-up ([`crate::tokens`]) go to holders only. When no holder is live,
//! joins, logins and renewals fail with `UNAVAILABLE` and [`no_holder`]'s message, while the
//! cluster keeps serving calls on its current certificates.

use crate::node::Inner;
use crate::security::Security;
use std::time::Duration;
use steinadler_membership::Member;
use steinadler_proto::v1 as pb;
use tonic::{Code, Status};

/// How many live CA holders a cluster keeps by default: a joining node becomes one while fewer
/// are known.
pub(crate) const HOLDERS: usize = 3;

/// The gRPC path of `Node.Join`, which the cookie's MAC covers when a node forwards a join.
const JOIN: &str = "/steinadler.v1.Node/Join";

/// How long one forwarded join may take at the holder.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the node with `security` is a CA holder: it holds the CA key (and, unless the
/// cluster uses offline PKI, the token secret). Holders sign renewals, and joins when they hold
/// the token secret.
pub(crate) fn holds_key(security: &Security) -> bool {
    security.loaded().is_some_and(|l| l.ca.is_some())
}

/// The live CA holders other than this node, as gossip advertises them.
pub(crate) async fn live(inner: &Inner) -> Vec<Member> {
    inner
        .membership
        .members()
        .await
        .into_iter()
        .filter(|m| m.meta.ca_holder && m.name != inner.config.name)
        .collect()
}

/// Whether a node joining now through this holder receives the CA key and the token secret:
/// it asked to (`--ca-holder`), or fewer than [`HOLDERS`] live holders are known, this one
/// included.
pub(crate) async fn grants_key(inner: &Inner, asked: bool) -> bool {
    asked || live(inner).await.len() + 1 < HOLDERS
}

/// The error when no CA holder can sign what `what` needs: `UNAVAILABLE`, with what was tried.
pub(crate) fn no_holder(inner: &Inner, what: &str, tried: &[String]) -> Status {
    let tried = if tried.is_empty() {
        "no live member advertises itself as a CA holder".to_owned()
    } else {
        tried.join("; ")
    };
    Status::unavailable(format!(
        "no CA holder is reachable to sign {what} ({} holds no CA key; {tried}). Start a CA \
         holder again (a node whose data dir holds ca.key), or start a node with --ca-holder \
         on a machine with the CA key. The cluster keeps serving calls on its current \
         certificates meanwhile. A cluster set up with offline PKI signs no joins: issue a \
         certificate with `steinadler cluster issue`",
        inner.config.name
    ))
}

/// Forwards a join or login request that this non-holder cannot sign to the live CA holders,
/// one by one, until one answers. A holder's refusal (a wrong or expired token, a taken name)
/// is the answer; an unreachable or busy holder is skipped.
pub(crate) async fn forward_join(
    inner: &Inner,
    req: pb::JoinRequest,
    remote: &str,
) -> Result<pb::JoinReply, Status> {
    let holders = live(inner).await;
    if req.ca_holder {
        // The reply would pass through this node, so a holder never sends the key this way.
        let names: Vec<&str> = holders.iter().map(|m| m.name.as_str()).collect();
        return Err(Status::failed_precondition(format!(
            "{} is not a CA holder, so a node that asks to become one (--ca-holder) must join \
             through a holder directly: --join one of {}",
            inner.config.name,
            if names.is_empty() {
                "none live".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    let mut tried = Vec::new();
    for holder in holders {
        let mut client = match inner.peer(&holder.meta.grpc_addr, &holder.name).await {
            Ok(client) => client,
            Err(e) => {
                tried.push(format!("{}: {e}", holder.name));
                continue;
            }
        };
        let mut request = tonic::Request::new(req.clone());
        request.set_timeout(FORWARD_TIMEOUT);
        inner.security.sign(&mut request, JOIN, &holder.name);
        match client.join(request).await {
            Ok(reply) => {
                tracing::info!(peer = %remote, name = %req.name, holder = %holder.name, "forwarded a join request to a CA holder, which signed it");
                return Ok(reply.into_inner());
            }
            // Unreachable, busy, or a holder without the token secret (offline PKI).
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::FailedPrecondition
                ) =>
            {
                tried.push(format!("{}: {}", holder.name, s.message()));
            }
            Err(s) => return Err(s),
        }
    }
    let status = no_holder(inner, "the join", &tried);
    tracing::warn!(peer = %remote, name = %req.name, "cannot forward a join request: {}", status.message());
    Err(status)
}

impl crate::Node {
    /// Whether this node is a CA holder: it holds the cluster CA key, and signs renewals (and
    /// joins and logins, with the token secret) for the nodes that are not.
    pub fn is_ca_holder(&self) -> bool {
        holds_key(&self.inner.security)
    }

    /// The live CA holders other than this node, as gossip advertises them, by name.
    pub async fn live_ca_holders(&self) -> Vec<String> {
        let mut names: Vec<String> = live(&self.inner)
            .await
            .into_iter()
            .map(|m| m.name)
            .collect();
        names.sort();
        names
    }
}
