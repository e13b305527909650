//! Fan-out as a tree: a call to more than [`NodeConfig::fanout`](crate::NodeConfig::fanout)
//! nodes goes to at most that many relays, each of which runs the call itself and forwards it to
//! the rest of its group the same way; results flow back up.
//!
//! - **Groups.** The targets (this node excluded) are sorted by name and cut into at most K
//!   contiguous groups of nearly equal size; each group's first member is its relay. A caller
//!   with K = 16 reaches 256 nodes in two hops and 4,096 in three, holding at most K connections
//!   for it.
//! - **One result per node.** A relay answers with one [`pb::InvokeReply`] per member of its
//!   group; a member it sent no result for gets an error, never silence.
//! - **Failures.** A relay that cannot be reached has run nothing: it gets "unreachable", and
//!   the next member of its group becomes the relay for the rest. A relay that fails after the
//!   call was sent may have run it, and so may its group: each member gets `noconnection`,
//!   unless the call is idempotent, in which case the rest of the group is sent again through
//!   a new relay. A non-idempotent call is never sent twice to a node that may have run it.
//!   A relay that is alive but does not report before the deadline gets its group "no answer
//!   before the deadline" instead.
//! - **Deadlines** shrink by a tenth (and 5 ms) at each hop, so that a relay answers, with its
//!   late members' errors, before its caller gives up on it.
//! - **Security and caching** are those of any call: every hop is an invoke stream with mutual
//!   TLS and the cookie, and each hop sends arguments once, then only their hash.

use crate::args;
use crate::coordinator::{self, NOT_SENT, NodeResult};
use crate::node::Inner;
use crate::wire::RemoteError;
use bytes::Bytes;
use std::time::{Duration, Instant};
use steinadler_proto::v1 as pb;
use tonic::{Code, Status};
use tracing::Instrument;

/// How a relay says it lacks the arguments whose hash it was sent.
const ARGS_MISSING: &str = "args missing: resend the arguments";

/// A target of the tree: a member's name and gRPC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) name: String,
    pub(crate) addr: String,
}

/// What every hop of one call shares.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) request: pb::InvokeRequest,
    pub(crate) idempotent: bool,
    pub(crate) fanout: usize,
}

/// Cuts `targets` into at most `k` groups of nearly equal size, in name order.
pub(crate) fn groups(mut targets: Vec<Peer>, k: usize) -> Vec<Vec<Peer>> {
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    let k = k.max(1).min(targets.len().max(1));
    let (base, extra) = (targets.len() / k, targets.len() % k);
    let mut out = Vec::with_capacity(k);
    let mut rest = targets.into_iter();
    for i in 0..k {
        let size = base + usize::from(i < extra);
        out.push(rest.by_ref().take(size).collect());
    }
    out.retain(|g: &Vec<Peer>| !g.is_empty());
    out
}

/// The deadline a hop gives the next one, so that it answers before this hop gives up.
pub(crate) fn next_hop(left: Duration) -> Duration {
    left.saturating_sub(left / 10 + Duration::from_millis(5))
}

/// Runs `call` on `targets` (this node excluded) through relays, one result per target.
pub(crate) async fn fan_out(
    inner: &Inner,
    call: &Call,
    targets: Vec<Peer>,
    deadline: Instant,
) -> Vec<NodeResult> {
    let groups = groups(targets, call.fanout);
    let calls = groups
        .into_iter()
        .map(|group| call_group(inner, call, group, deadline));
    futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One group through its relay: on failure before sending, the next member relays.
pub(crate) async fn call_group(
    inner: &Inner,
    call: &Call,
    mut group: Vec<Peer>,
    deadline: Instant,
) -> Vec<NodeResult> {
    let mut out = Vec::with_capacity(group.len());
    while !group.is_empty() {
        let relay = group.remove(0);
        let started = Instant::now();
        if group.is_empty() {
            // A group of one needs no relay.
            let one = coordinator::call_peer(inner, &relay.name, &relay.addr, call, deadline);
            out.push(one.await);
            return out;
        }
        match send_relay(inner, call, &relay, &group, deadline).await {
            Ok(replies) => {
                out.extend(collect(&relay, &group, replies));
                return out;
            }
            Err(status) if not_sent(&status) => {
                tracing::debug!(relay = %relay.name, "relay unreachable, the next member relays: {}", status.message());
                out.push(failed(
                    &relay,
                    started,
                    RemoteError::Unavailable(format!("unreachable: {}", status.message())),
                ));
            }
            Err(status) if call.idempotent && left(deadline) > Duration::ZERO => {
                tracing::debug!(relay = %relay.name, "relay failed, the call is idempotent: re-sending its group: {}", status.message());
                out.push(failed(
                    &relay,
                    started,
                    coordinator::status_to_remote(&status),
                ));
            }
            Err(status) => {
                let why = if status.code() == Code::DeadlineExceeded {
                    // Alive but late: what it and its group did is unknown, not lost.
                    format!(
                        "no answer before the deadline: the relay {} did not report in time ({})",
                        relay.name,
                        status.message()
                    )
                } else {
                    format!(
                        "noconnection: the relay {} failed ({}); the call may have run",
                        relay.name,
                        status.message()
                    )
                };
                out.push(failed(
                    &relay,
                    started,
                    RemoteError::Unavailable(why.clone()),
                ));
                for member in group.drain(..) {
                    out.push(failed(
                        &member,
                        started,
                        RemoteError::Unavailable(why.clone()),
                    ));
                }
                return out;
            }
        }
    }
    out
}

/// The guest deadline for the nodes behind a hop that has `budget` left: the caller's (`asked`,
/// zero for the node's default), shortened when the budget cannot also carry the answer back
/// ([`crate::limits::guest_within`]). Never zero, and never longer than asked.
fn guest_deadline_ms(asked: u64, budget: Duration) -> u64 {
    let within = u64::try_from(crate::limits::guest_within(budget).as_millis()).unwrap_or(u64::MAX);
    let within = within.max(1);
    if asked == 0 {
        within
    } else {
        asked.min(within)
    }
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Whether a failed relay frame cannot have reached the relay.
fn not_sent(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().starts_with(NOT_SENT)
}

fn failed(peer: &Peer, started: Instant, error: RemoteError) -> NodeResult {
    NodeResult {
        node: peer.name.clone(),
        outcome: Err(error),
        elapsed: started.elapsed(),
    }
}

/// One result per member of the group, from the relay's replies; a member with none gets an
/// error.
fn collect(relay: &Peer, group: &[Peer], replies: Vec<pb::InvokeReply>) -> Vec<NodeResult> {
    let mut by_node: std::collections::HashMap<String, pb::InvokeReply> =
        replies.into_iter().map(|r| (r.node.clone(), r)).collect();
    std::iter::once(relay)
        .chain(group)
        .map(|p| match by_node.remove(&p.name) {
            Some(reply) => NodeResult::from_reply(reply),
            None => NodeResult {
                node: p.name.clone(),
                outcome: Err(RemoteError::Unavailable(format!(
                    "the relay {} sent no result for {}",
                    relay.name, p.name
                ))),
                elapsed: Duration::ZERO,
            },
        })
        .collect()
}

/// Sends the relay frame, with the arguments' hash once the relay is believed to hold them;
/// resends the arguments if it does not. In a span of its own, whose context the frame carries.
async fn send_relay(
    inner: &Inner,
    call: &Call,
    relay: &Peer,
    rest: &[Peer],
    deadline: Instant,
) -> Result<Vec<pb::InvokeReply>, Status> {
    let span = crate::telemetry::hop("relay", &inner.config.name, &relay.name);
    let trace = crate::telemetry::traceparent_of(&span);
    send_relay_traced(inner, call, relay, rest, deadline, &trace)
        .instrument(span)
        .await
}

async fn send_relay_traced(
    inner: &Inner,
    call: &Call,
    relay: &Peer,
    rest: &[Peer],
    deadline: Instant,
    trace: &str,
) -> Result<Vec<pb::InvokeReply>, Status> {
    let mut request = call.request.clone();
    let hash: Option<args::ArgsHash> = (!request.args_hash.is_empty())
        .then(|| request.args_hash[..].try_into().ok())
        .flatten();
    if hash.is_some_and(|h| inner.sent.believes(&relay.name, &h)) {
        request.args = Bytes::new();
    }
    let mux = inner
        .mux(&relay.addr, &relay.name)
        .await
        .map_err(|e| Status::unavailable(format!("{NOT_SENT}{e}")))?;
    loop {
        let budget = next_hop(left(deadline));
        let mut request = request.clone();
        if let Some(limits) = request.limits.as_mut() {
            limits.deadline_ms = guest_deadline_ms(limits.deadline_ms, budget);
        }
        let frame = pb::RelayRequest {
            request: Some(request.clone()),
            rest: rest
                .iter()
                .map(|p| pb::RelayTarget {
                    name: p.name.clone(),
                    grpc_addr: p.addr.clone(),
                })
                .collect(),
            fanout: u32::try_from(call.fanout).unwrap_or(u32::MAX),
            idempotent: call.idempotent,
        };
        match mux.relay(frame, trace, left(deadline)).await {
            Err(s) if s.code() == Code::FailedPrecondition && s.message() == ARGS_MISSING => {
                if let Some(h) = hash {
                    inner.sent.forget(&relay.name, &h);
                }
                request = call.request.clone();
                if request.args.is_empty() {
                    return Err(s);
                }
            }
            Ok(reply) => {
                if let Some(h) = hash {
                    inner.sent.record(&relay.name, h);
                }
                return Ok(reply.replies);
            }
            Err(s) => return Err(s),
        }
    }
}

/// A relay's side: runs the call here and on the rest of the group, within the frame's time.
pub(crate) async fn serve_relay(
    inner: &Inner,
    relay: pb::RelayRequest,
    limit: Duration,
) -> Result<pb::RelayReply, Status> {
    let deadline = Instant::now() + next_hop(limit);
    let mut request = relay
        .request
        .ok_or_else(|| Status::invalid_argument("a relay frame without a request"))?;
    if request.args.is_empty() && !request.args_hash.is_empty() {
        let hash: args::ArgsHash = request.args_hash[..]
            .try_into()
            .map_err(|_| Status::invalid_argument("an argument hash is 32 bytes"))?;
        request.args = inner
            .args
            .get(&hash)
            .ok_or_else(|| Status::failed_precondition(ARGS_MISSING))?;
        inner
            .stats
            .args_cache_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else if request.args.len() >= inner.config.args_cache_threshold {
        inner.args.insert(request.args.clone());
    }
    if let Some(limits) = request.limits.as_mut() {
        limits.deadline_ms = guest_deadline_ms(limits.deadline_ms, left(deadline));
    }
    let mut call = Call {
        request,
        idempotent: relay.idempotent,
        fanout: usize::try_from(relay.fanout).unwrap_or(usize::MAX).max(1),
    };
    let targets: Vec<Peer> = relay
        .rest
        .into_iter()
        .filter(|t| t.name != inner.config.name)
        .map(|t| Peer {
            name: t.name,
            addr: t.grpc_addr,
        })
        .collect();
    let here = async {
        let started = Instant::now();
        let mut local = call.request.clone();
        local.args_hash = Bytes::new();
        let result = tokio::time::timeout(left(deadline), Box::pin(inner.invoke_local(local)))
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(
                    "the deadline passed before this node finished",
                ))
            });
        result
            .map(NodeResult::from_reply)
            .unwrap_or_else(|s| NodeResult {
                node: inner.config.name.clone(),
                outcome: Err(coordinator::status_to_remote(&s)),
                elapsed: started.elapsed(),
            })
    };
    if call.request.prefetch {
        // Spreading a module: fetch it here first, then be the origin for the group, so that
        // the load spreads down the tree instead of every node pulling from the first one.
        let mine = here.await;
        if mine.outcome.is_ok() {
            call.request.origin = inner.advertised_addr.clone();
        }
        let theirs = forward(inner, &call, targets, deadline).await;
        return Ok(reply(mine, theirs));
    }
    let (mine, theirs) = futures::join!(here, forward(inner, &call, targets, deadline));
    Ok(reply(mine, theirs))
}

/// One reply per node, the relay's own first.
fn reply(mine: NodeResult, theirs: Vec<NodeResult>) -> pb::RelayReply {
    pb::RelayReply {
        replies: std::iter::once(mine)
            .chain(theirs)
            .map(NodeResult::into_wire)
            .collect(),
    }
}

/// The rest of a relay's group: directly when they are at most the fan-out, else as a tree.
pub(crate) async fn forward(
    inner: &Inner,
    call: &Call,
    targets: Vec<Peer>,
    deadline: Instant,
) -> Vec<NodeResult> {
    if targets.len() <= call.fanout {
        let direct = targets
            .iter()
            .map(|t| coordinator::call_peer(inner, &t.name, &t.addr, call, deadline));
        futures::future::join_all(direct).await
    } else {
        fan_out(inner, call, targets, deadline).await
    }
}

/// As [`forward`], handing each group's results to `done` as the group finishes (each node's,
/// when they are at most the fan-out): for progress.
pub(crate) async fn forward_each(
    inner: &Inner,
    call: &Call,
    targets: Vec<Peer>,
    deadline: Instant,
    mut done: impl FnMut(Vec<NodeResult>),
) {
    use futures::StreamExt;
    let mut pending: futures::stream::FuturesUnordered<_> = if targets.len() <= call.fanout {
        targets
            .into_iter()
            .map(|t| vec![t])
            .map(|g| call_group(inner, call, g, deadline))
            .collect()
    } else {
        groups(targets, call.fanout)
            .into_iter()
            .map(|g| call_group(inner, call, g, deadline))
            .collect()
    };
    while let Some(results) = pending.next().await {
        done(results);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<Peer> {
        (0..n)
            .map(|i| Peer {
                name: format!("n{i:03}"),
                addr: String::new(),
            })
            .collect()
    }

    #[test]
    fn groups_are_at_most_k_nearly_equal_and_cover_every_target_once() {
        for n in [1, 2, 5, 16, 17, 39, 200] {
            for k in [1, 3, 4, 16] {
                let gs = groups(peers(n), k);
                assert!(gs.len() <= k && !gs.is_empty(), "n={n} k={k}");
                let sizes: Vec<usize> = gs.iter().map(Vec::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "n={n} k={k}: {sizes:?}");
                let mut names: Vec<String> = gs.into_iter().flatten().map(|p| p.name).collect();
                names.dedup();
                assert_eq!(
                    names,
                    peers(n).into_iter().map(|p| p.name).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn each_hop_leaves_its_caller_time_to_hear_the_answer() {
        let left = Duration::from_secs(5);
        let next = next_hop(left);
        assert!(next < left && next >= left * 8 / 10, "{next:?}");
        assert_eq!(next_hop(Duration::from_millis(3)), Duration::ZERO);
    }
}
