//! Running one invocation on the nodes a target selects: resolve the module, select live
//! members, fan out concurrently, and collect one result per node. Past the node's fan-out
//! (`NodeConfig::fanout`) the call goes as a tree of relays ([`crate::tree`]).
//!
//! Retries follow one rule: only what cannot have run is retried automatically. A peer that
//! could not be connected to, or that answered `RESOURCE_EXHAUSTED`, is retried with exponential
//! backoff and full jitter (base 10 ms, factor 2, cap 1 s) until the deadline. Any other failure
//! after the request was sent is retried only for calls marked idempotent.

use crate::args;
use crate::node::Inner;
use crate::target::Target;
use crate::tree::{self, Call, Peer};
use crate::wire::{self, RemoteError};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rand::Rng;
use std::time::{Duration, Instant};
use steinadler_core::{InvokeError, ModuleId};
use steinadler_proto::v1 as pb;
use tonic::{Code, Status};
use tracing::Instrument;

const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// One invocation, before fan-out.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) target: Target,
    pub(crate) module: String,
    pub(crate) function: String,
    pub(crate) args: Bytes,
    pub(crate) limits: pb::Limits,
    pub(crate) idempotent: bool,
}

/// One node's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResult {
    /// The node's name.
    pub node: String,
    /// The encoded result, or why there is none.
    pub outcome: Result<Vec<u8>, RemoteError>,
    /// The time the node reported, or the caller's wall time if it did not answer.
    pub elapsed: Duration,
}

impl NodeResult {
    pub(crate) fn into_wire(self) -> pb::InvokeReply {
        let outcome = match self.outcome {
            Ok(v) => pb::invoke_reply::Outcome::Value(v.into()),
            Err(e) => pb::invoke_reply::Outcome::Error(wire::remote_error_to_wire(&e)),
        };
        pb::InvokeReply {
            node: self.node,
            elapsed_us: u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX),
            outcome: Some(outcome),
        }
    }

    /// Reads one node's reply as it came off the wire.
    pub fn from_reply(reply: pb::InvokeReply) -> Self {
        let outcome = match reply.outcome {
            Some(pb::invoke_reply::Outcome::Value(v)) => Ok(v.to_vec()),
            Some(pb::invoke_reply::Outcome::Error(e)) => Err(wire::error_from_wire(&e)),
            None => Err(RemoteError::Unavailable(
                "the reply carried no outcome".into(),
            )),
        };
        Self {
            node: reply.node,
            outcome,
            elapsed: Duration::from_micros(reply.elapsed_us),
        }
    }
}

/// Resolves, selects and fans out; the results in node-name order.
pub(crate) async fn invoke_on(inner: &Inner, req: Request) -> Result<Vec<NodeResult>, Status> {
    let mut results = Vec::new();
    invoke_on_each(inner, req, |_| {}, |r| results.push(r)).await?;
    if results.len() > 1 {
        results.sort_by(|a, b| a.node.cmp(&b.node));
    }
    Ok(results)
}

/// Resolves, selects and fans out, handing each node's result to `each` as it arrives (a
/// relay's group arrives together), after telling `selected` how many results will come.
///
/// # Errors
///
/// `INVALID_ARGUMENT` for limits past this node's maximums, `NOT_FOUND` for an unknown module,
/// `FAILED_PRECONDITION` when no live node matches the target. Past that, every failure is one
/// node's result.
pub(crate) async fn invoke_on_each(
    inner: &Inner,
    req: Request,
    selected: impl FnOnce(usize),
    each: impl FnMut(NodeResult),
) -> Result<(), Status> {
    let span = crate::telemetry::local("invoke", &inner.config.name, &req.module);
    coordinate(inner, req, selected, each)
        .instrument(span)
        .await
}

/// [`invoke_on_each`], in its span.
async fn coordinate(
    inner: &Inner,
    mut req: Request,
    selected: impl FnOnce(usize),
    mut each: impl FnMut(NodeResult),
) -> Result<(), Status> {
    inner.config.maximums().check(&req.limits)?;
    // Every node runs the guest for the same time: this node's default unless the caller chose.
    let guest_deadline = deadline_of(inner, &req.limits);
    req.limits.deadline_ms = u64::try_from(guest_deadline.as_millis()).unwrap_or(u64::MAX);
    let (id, origin) = resolve_module(inner, &req.module).await?;
    // One named node needs only its own entry, not the whole decoded member list.
    let members = match &req.target {
        Target::Node(name) => inner.membership.member(name).await.into_iter().collect(),
        _ => inner.membership.members().await,
    };
    let targets = req.target.select(&members);
    if targets.is_empty() {
        return match &req.target {
            Target::Node(name) => {
                selected(1);
                each(NodeResult {
                    node: name.clone(),
                    outcome: Err(RemoteError::Unavailable(format!(
                        "node {name} is not a live member of the cluster"
                    ))),
                    elapsed: Duration::ZERO,
                });
                Ok(())
            }
            other => Err(Status::failed_precondition(format!(
                "no live node matches the target {other}"
            ))),
        };
    }
    selected(targets.len());
    crate::metrics::fanout(targets.len());
    // Past the guest's deadline, so that a node's typed timeout can still arrive.
    let deadline = Instant::now() + crate::limits::answer_within(guest_deadline);
    let hash = (req.args.len() >= inner.config.args_cache_threshold).then(|| args::hash(&req.args));
    let call = Call {
        request: pb::InvokeRequest {
            module_id: id.as_bytes().to_vec().into(),
            function: req.function,
            args: req.args,
            args_hash: hash.map(|h| h.to_vec().into()).unwrap_or_default(),
            limits: Some(req.limits),
            origin,
            prefetch: false,
        },
        idempotent: req.idempotent,
        fanout: inner.config.fanout.max(1),
    };
    let call = &call;
    if let [member] = targets.as_slice() {
        // One node: no set of futures to allocate.
        each(call_peer(inner, &member.name, &member.meta.grpc_addr, call, deadline).await);
        return Ok(());
    }
    if targets.len() <= call.fanout {
        let mut calls: FuturesUnordered<_> = targets
            .iter()
            .map(|m| call_peer(inner, &m.name, &m.meta.grpc_addr, call, deadline))
            .collect();
        while let Some(result) = calls.next().await {
            each(result);
        }
        return Ok(());
    }
    // A tree: this node's own call here, the others through relays, each group as it reports.
    let (here, others): (Vec<_>, Vec<_>) = targets
        .into_iter()
        .map(|m| Peer {
            name: m.name.clone(),
            addr: m.meta.grpc_addr.clone(),
        })
        .partition(|p| p.addr == inner.advertised_addr);
    let mut calls: FuturesUnordered<BoxFuture<'_, Vec<NodeResult>>> = FuturesUnordered::new();
    for p in &here {
        calls.push(Box::pin(async move {
            vec![call_peer(inner, &p.name, &p.addr, call, deadline).await]
        }));
    }
    for group in tree::groups(others, call.fanout) {
        calls.push(Box::pin(tree::call_group(inner, call, group, deadline)));
    }
    while let Some(batch) = calls.next().await {
        batch.into_iter().for_each(&mut each);
    }
    Ok(())
}

fn deadline_of(inner: &Inner, limits: &pb::Limits) -> Duration {
    if limits.deadline_ms > 0 {
        Duration::from_millis(limits.deadline_ms)
    } else {
        inner.host.default_limits().deadline
    }
}

/// Finds a module by name or id: locally, or in a live member's index. Returns its id and the
/// gRPC address of a node that holds it.
pub(crate) async fn resolve_module(
    inner: &Inner,
    module: &str,
) -> Result<(ModuleId, String), Status> {
    let span = crate::telemetry::local("resolve module", &inner.config.name, module);
    if let Ok(local) = span.in_scope(|| inner.host.resolve(module)) {
        return Ok((local.id(), inner.advertised_addr.clone()));
    }
    // Boxed: asking the peers is rare, and its state is large.
    Box::pin(resolve_remote(inner, module).instrument(span)).await
}

/// Finds `module` on a live peer, by name or id: its id and the peer's address.
///
/// A peer that could not be asked (its link was being replaced, say, or it had just left) is
/// not an answer: while any could not, the search is tried again after each of
/// [`RESOLVE_PAUSES_MS`] before the module is called unknown.
async fn resolve_remote(inner: &Inner, module: &str) -> Result<(ModuleId, String), Status> {
    let mut pauses = RESOLVE_PAUSES_MS.iter();
    let mut unasked = Vec::new();
    loop {
        unasked.clear();
        if let Some(found) = ask_peers(inner, module, &mut unasked).await? {
            return Ok(found);
        }
        match pauses.next() {
            Some(&ms) if !unasked.is_empty() => tokio::time::sleep(Duration::from_millis(ms)).await,
            _ => break,
        }
    }
    let unasked = if unasked.is_empty() {
        String::new()
    } else {
        format!(
            " ({} could not be asked: {})",
            unasked.len(),
            unasked.join(", ")
        )
    };
    Err(Status::not_found(format!(
        "no live node holds a module named {module:?}{unasked}; deploy it first with `steinadler deploy`"
    )))
}

/// The pauses between searches for a module while some peer could not be asked.
const RESOLVE_PAUSES_MS: [u64; 3] = [100, 300, 600];

/// Asks each live peer for its modules, once: the first that holds `module`, or none, with the
/// names of the peers that could not be asked pushed to `unasked`.
async fn ask_peers(
    inner: &Inner,
    module: &str,
    unasked: &mut Vec<String>,
) -> Result<Option<(ModuleId, String)>, Status> {
    let by_id = module.parse::<ModuleId>().ok();
    for member in inner.membership.members().await {
        if member.meta.grpc_addr == inner.advertised_addr {
            continue;
        }
        let listed = match inner.peer(&member.meta.grpc_addr, &member.name).await {
            Ok(mut client) => client
                .list_modules(pb::ListModulesRequest {})
                .await
                .map_err(|s| s.message().to_owned()),
            Err(e) => Err(e.to_string()),
        };
        let modules = match listed {
            Ok(reply) => reply.into_inner().modules,
            Err(why) => {
                tracing::debug!(peer = %member.name, %why, "could not ask a peer for its modules");
                unasked.push(member.name);
                continue;
            }
        };
        for m in modules {
            let id = wire::module_id(&m.id)?;
            if by_id == Some(id) || m.names.iter().any(|n| n == module) {
                return Ok(Some((id, member.meta.grpc_addr)));
            }
        }
    }
    Ok(None)
}

/// Runs `call` on the node `name` at `addr` (here, if that is this node), retrying what cannot
/// have run until `deadline`.
pub(crate) async fn call_peer(
    inner: &Inner,
    name: &str,
    addr: &str,
    call: &Call,
    deadline: Instant,
) -> NodeResult {
    let started = Instant::now();
    let mut wire_req = call.request.clone();
    let hash: Option<args::ArgsHash> = wire_req.args_hash[..].try_into().ok();
    let remaining = |deadline: Instant| deadline.saturating_duration_since(Instant::now());
    let result = if addr == inner.advertised_addr {
        // Boxed: a remote call's future need not carry room for a local invocation. Bounded
        // by the deadline: fetching the module is not, by itself.
        match tokio::time::timeout(remaining(deadline), Box::pin(inner.invoke_local(wire_req)))
            .await
        {
            Ok(result) => result.map(NodeResult::from_reply),
            Err(_) => Err(Status::deadline_exceeded(
                "the deadline passed before this node finished",
            )),
        }
    } else {
        // Send only the hash to a peer believed to hold the arguments.
        let believed = hash.is_some_and(|h| inner.sent.believes(name, &h));
        if believed {
            wire_req.args = Bytes::new();
        }
        let mut attempt = 0u32;
        loop {
            match call_remote(inner, name, addr, wire_req.clone(), remaining(deadline)).await {
                Ok(r)
                    if matches!(r.outcome, Err(RemoteError::ArgsMissing))
                        && wire_req.args.is_empty() =>
                {
                    if let Some(h) = hash {
                        inner.sent.forget(name, &h);
                    }
                    wire_req.args = call.request.args.clone();
                }
                Ok(r) => {
                    if let (Some(h), Ok(_)) = (hash, &r.outcome) {
                        inner.sent.record(name, h);
                    }
                    break Ok(r);
                }
                Err(e)
                    if is_retryable(&e, call.idempotent)
                        && remaining(deadline) > Duration::ZERO =>
                {
                    let sleep = backoff(attempt).min(remaining(deadline));
                    attempt += 1;
                    tracing::debug!(peer = %name, attempt, ?sleep, "retrying: {}", e.message());
                    tokio::time::sleep(sleep).await;
                }
                Err(e) => break Err(e),
            }
        }
    };
    result.unwrap_or_else(|status| NodeResult {
        node: name.to_owned(),
        outcome: Err(status_to_remote(&status)),
        elapsed: started.elapsed(),
    })
}

/// A status that means the call cannot have run, or that may be repeated.
fn is_retryable(status: &Status, idempotent: bool) -> bool {
    match status.code() {
        Code::ResourceExhausted => true,
        Code::Unavailable => idempotent || status.message().starts_with(NOT_SENT),
        _ => false,
    }
}

pub(crate) use steinadler_transport::NOT_SENT;

async fn call_remote(
    inner: &Inner,
    name: &str,
    addr: &str,
    req: pb::InvokeRequest,
    timeout: Duration,
) -> Result<NodeResult, Status> {
    let span = crate::telemetry::hop("invoke", &inner.config.name, name);
    let trace = crate::telemetry::traceparent_of(&span);
    async {
        let mux = inner
            .mux(addr, name)
            .await
            .map_err(|e| Status::unavailable(format!("{NOT_SENT}{e}")))?;
        let reply = mux.call(req, &trace, timeout).await?;
        Ok(NodeResult::from_reply(reply))
    }
    .instrument(span)
    .await
}

pub(crate) fn status_to_remote(status: &Status) -> RemoteError {
    match status.code() {
        Code::ResourceExhausted => {
            RemoteError::Invoke(InvokeError::Overloaded(status.message().to_owned()))
        }
        Code::DeadlineExceeded => RemoteError::Unavailable(format!(
            "no answer before the deadline: {}",
            status.message()
        )),
        Code::InvalidArgument => {
            RemoteError::Invoke(InvokeError::BadArguments(status.message().to_owned()))
        }
        _ => RemoteError::Unavailable(status.message().to_owned()),
    }
}

/// Exponential backoff with full jitter: a random wait up to `min(cap, base * 2^attempt)`.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(BACKOFF_CAP);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_by_the_capped_exponential() {
        for attempt in 0..40 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                .min(BACKOFF_CAP);
            for _ in 0..50 {
                assert!(backoff(attempt) <= ceiling);
            }
        }
        assert!(backoff(30) <= BACKOFF_CAP);
    }

    #[test]
    fn only_unsent_or_refused_calls_retry_unless_idempotent() {
        let refused = Status::resource_exhausted("busy");
        let unsent = Status::unavailable(format!("{NOT_SENT}connect refused"));
        let broken = Status::unavailable("connection reset");
        assert!(is_retryable(&refused, false));
        assert!(is_retryable(&unsent, false));
        assert!(!is_retryable(&broken, false));
        assert!(is_retryable(&broken, true));
        assert!(!is_retryable(&Status::internal("x"), true));
    }
}
