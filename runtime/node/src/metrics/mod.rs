//! Prometheus metrics: the exporter, the `/metrics` endpoint, and the one place where the
//! node's metric names and labels are spelled.
//!
//! This module owns:
//! - the process-wide recorder ([`metrics_exporter_prometheus`] behind the `metrics` facade,
//!   which memberlist-core emits its gossip figures through as well), installed by the first
//!   node that starts with [`NodeConfig::metrics`](crate::NodeConfig::metrics);
//! - the HTTP server on that address (plain HTTP/1.1, `GET /metrics`, as node exporters do);
//! - the scrape ([`collect`]): gauges read from the node's own state (admission, processes,
//!   registry, supervisor, peers, members), and the process's CPU and RSS from `/proc/self`
//!   ([`http`]), each time `/metrics` is fetched, so an idle node does no metrics work
//!   between scrapes;
//! - small named helpers the call sites use ([`invocation`], [`message_sent`], ...), so that
//!   names and labels live here. Labels are bounded: module, function (only one the module
//!   exports), outcome, reason, kind, state; never PIDs, request ids or peer names.
//!
//! The host's module loads and compile time are recorded in `steinadler-host` (`store.rs`),
//! which cannot depend on this crate; their names are listed in the README with the rest.
//!
//! Off by default: until a node installs the recorder, every helper returns after one relaxed
//! load. The recorder is process-wide: one node per process serves metrics at a time (a second
//! gets [`MetricsError::InUse`]); after it shuts down another may take over, and the counters
//! carry on as a process's do. Figures recorded through the facade (invocations, messages,
//! ...) count every node in the process; the scraped gauges are the serving node's.

use crate::node::Inner;
use metrics::Counter;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use steinadler_core::InvokeError;
use steinadler_proto::v1::child_record::State;

mod calls;
mod exporter;
mod http;

pub(crate) use exporter::{bind, serve};

/// Why a node could not serve metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Another node in this process serves metrics now.
    #[error(
        "another node in this process already serves metrics: the recorder is process-wide, so \
         only one node per process may set --metrics"
    )]
    InUse,
    /// Something else installed a `metrics` recorder in this process.
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
    /// The metrics address could not be bound.
    #[error("cannot serve metrics on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// True once the recorder is installed: the helpers do nothing before.
static ON: AtomicBool = AtomicBool::new(false);

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

// Names, as rendered (counters get `_total` from the exporter's recommended naming).
const INVOCATIONS: &str = "steinadler_invocations";
const INVOCATION_SECONDS: &str = "steinadler_invocation_duration_seconds";
const ADMISSION_REJECTIONS: &str = "steinadler_admission_rejections";
const ADMISSION_RUNNING: &str = "steinadler_admission_running";
const ADMISSION_QUEUED: &str = "steinadler_admission_queued";
const FANOUT_TARGETS: &str = "steinadler_fanout_targets";
const PROCESSES: &str = "steinadler_processes";
const MAILBOX_DEPTH_MAX: &str = "steinadler_mailbox_depth_max";
const MAILBOX_MESSAGES: &str = "steinadler_mailbox_messages";
const MESSAGES_SENT: &str = "steinadler_messages_sent";
const MESSAGES_RECEIVED: &str = "steinadler_messages_received";
const REGISTRY_NAMES: &str = "steinadler_registry_names";
const MODULE_NAMES: &str = "steinadler_module_names";
const SUPERVISOR_RESTARTS: &str = "steinadler_supervisor_restarts";
const SUPERVISOR_GIVE_UPS: &str = "steinadler_supervisor_give_ups";
const SUPERVISOR_CHILDREN: &str = "steinadler_supervisor_children";
const STREAM_ITEMS: &str = "steinadler_stream_items";
const STREAM_BYTES: &str = "steinadler_stream_bytes";
const STREAMS_OPEN: &str = "steinadler_streams_open";
const PEERS_OPEN: &str = "steinadler_peers_open";
const PEER_LINKS_INBOUND: &str = "steinadler_peer_links_inbound";
const PEER_DIALS: &str = "steinadler_peer_dials";
const MODULE_FETCHES: &str = "steinadler_module_fetches";
const MODULE_LOOKUPS: &str = "steinadler_module_lookups";
const ARGS_CACHE: &str = "steinadler_args_cache";
const REJECTIONS: &str = "steinadler_rejections";
const MEMBERS: &str = "steinadler_members";
const CERT_RENEWALS: &str = "steinadler_cert_renewals";
const CERT_EXPIRY: &str = "steinadler_cert_expiry_seconds";

/// One invocation that ran on this node, or found no module (`loaded` is `None`). The module
/// label is the id's short form, the same on every node (a node that fetched a module knows
/// no name for it; `steinadler_module_names` maps ids to names where they were deployed);
/// `function` is a label only when `loaded` exports it, so callers cannot grow the label set.
pub(crate) fn invocation(
    module: steinadler_core::ModuleId,
    loaded: Option<&steinadler_host::LoadedModule>,
    function: &str,
    result: Result<(), &InvokeError>,
    elapsed: Duration,
) {
    if !on() {
        return;
    }
    let exported = loaded.is_some_and(|m| m.functions().any(|f| f == function));
    let function = if exported { function } else { "(unknown)" };
    calls::record(
        module,
        function,
        calls::outcome(result),
        elapsed.as_secs_f64(),
    );
}

fn count(name: &'static str) -> Counter {
    metrics::counter!(name)
}

/// A handle kept after its first lookup, for the per-message and per-batch paths: the
/// recorder's keyed lookup costs a few hundred ns. Only called once the recorder is on.
fn kept<T>(slot: &'static OnceLock<T>, make: impl FnOnce() -> T) -> &'static T {
    slot.get_or_init(make)
}

/// A call refused at admission (`RESOURCE_EXHAUSTED`).
pub(crate) fn admission_rejected() {
    if on() {
        count(ADMISSION_REJECTIONS).increment(1);
    }
}

/// A call this node coordinates went to `targets` nodes.
pub(crate) fn fanout(targets: usize) {
    static SLOT: OnceLock<metrics::Histogram> = OnceLock::new();
    if on() {
        kept(&SLOT, || metrics::histogram!(FANOUT_TARGETS)).record(targets as f64);
    }
}

/// A process message left: `kind` is `send` or `call`, `local` whether it stayed on this node.
pub(crate) fn message_sent(kind: &'static str, local: bool) {
    static SLOTS: [OnceLock<Counter>; 4] = [const { OnceLock::new() }; 4];
    if on() {
        let to = if local { "local" } else { "remote" };
        let slot = usize::from(kind == "call") * 2 + usize::from(local);
        kept(
            &SLOTS[slot],
            || metrics::counter!(MESSAGES_SENT, "kind" => kind, "to" => to),
        )
        .increment(1);
    }
}

/// A message went into a local process's mailbox.
pub(crate) fn message_received() {
    static SLOT: OnceLock<Counter> = OnceLock::new();
    if on() {
        kept(&SLOT, || count(MESSAGES_RECEIVED)).increment(1);
    }
}

/// The supervisor restarted a child here.
pub(crate) fn supervisor_restart() {
    if on() {
        count(SUPERVISOR_RESTARTS).increment(1);
    }
}

/// The supervisor gave up on a child.
pub(crate) fn supervisor_give_up() {
    if on() {
        count(SUPERVISOR_GIVE_UPS).increment(1);
    }
}

/// A producer here sent a batch: `kind` is `function` or `process`.
pub(crate) fn stream_batch(kind: &'static str, items: u64, bytes: usize) {
    static SLOTS: [OnceLock<(Counter, Counter)>; 2] = [const { OnceLock::new() }; 2];
    if on() {
        let (i, b) = kept(&SLOTS[usize::from(kind == "process")], || {
            (
                metrics::counter!(STREAM_ITEMS, "kind" => kind),
                metrics::counter!(STREAM_BYTES, "kind" => kind),
            )
        });
        i.increment(items);
        b.increment(bytes as u64);
    }
}

/// A module fetch from peers ended.
pub(crate) fn module_fetch(ok: bool) {
    if on() {
        let outcome = if ok { "ok" } else { "error" };
        metrics::counter!(MODULE_FETCHES, "outcome" => outcome).increment(1);
    }
}

/// An invocation or spawn looked for its module on this node: `hit` if it was held here.
pub(crate) fn module_lookup(hit: bool) {
    static SLOTS: [OnceLock<Counter>; 2] = [const { OnceLock::new() }; 2];
    if on() {
        let result = if hit { "hit" } else { "miss" };
        kept(
            &SLOTS[usize::from(hit)],
            || metrics::counter!(MODULE_LOOKUPS, "result" => result),
        )
        .increment(1);
    }
}

/// The argument cache: a hash served (`hit`), a resend asked for (`miss`), a body `stored`.
pub(crate) fn args_cache(result: ArgsCache) {
    static SLOTS: [OnceLock<Counter>; 3] = [const { OnceLock::new() }; 3];
    if on() {
        let label = match result {
            ArgsCache::Hit => "hit",
            ArgsCache::Miss => "miss",
            ArgsCache::Stored => "stored",
        };
        kept(
            &SLOTS[result as usize],
            || metrics::counter!(ARGS_CACHE, "result" => label),
        )
        .increment(1);
    }
}

/// What the argument cache did for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ArgsCache {
    Hit,
    Miss,
    Stored,
}

/// This node tried to renew its certificate: `ok`, or `error` (it retries with backoff).
pub(crate) fn cert_renewal(ok: bool) {
    if on() {
        let outcome = if ok { "ok" } else { "error" };
        metrics::counter!(CERT_RENEWALS, "outcome" => outcome).increment(1);
    }
}

/// A refused connection or request: `kind` is `tls`, `unauthenticated`, `role`, `cookie`,
/// `join` or `renewal`; `reason` one of a fixed few per kind.
pub(crate) fn rejected(kind: &'static str, reason: &'static str) {
    if on() {
        metrics::counter!(REJECTIONS, "kind" => kind, "reason" => reason).increment(1);
    }
}

/// The reason label of a refused cookie or join request.
pub(crate) fn auth_reason(e: &steinadler_security::AuthError) -> &'static str {
    use steinadler_security::AuthError;
    match e {
        AuthError::Missing => "missing",
        AuthError::Malformed(_) => "malformed",
        AuthError::Skew { .. } => "clock_skew",
        AuthError::BadMac => "bad_mac",
        AuthError::Replay => "replay",
    }
}

/// Sets the scraped gauges from the node's state (the process's own figures are written
/// into the response by [`http`]).
pub(crate) async fn collect(inner: &Inner) {
    let set = |name: &'static str, v: usize| metrics::gauge!(name).set(v as f64);
    let (running, queued) = inner.admission.depth();
    set(ADMISSION_RUNNING, running);
    set(ADMISSION_QUEUED, queued);
    let processes = inner.process_list();
    set(PROCESSES, processes.len());
    set(
        MAILBOX_DEPTH_MAX,
        processes.iter().map(|p| p.mailbox).max().unwrap_or(0),
    );
    set(MAILBOX_MESSAGES, processes.iter().map(|p| p.mailbox).sum());
    set(REGISTRY_NAMES, inner.registry.list().len());
    let named: Vec<(String, String)> = {
        let modules = inner.modules.lock().unwrap_or_else(|e| e.into_inner());
        modules
            .iter()
            .flat_map(|(id, m)| m.names.iter().map(move |n| (id.short(), n.clone())))
            .collect()
    };
    for (module, name) in named {
        metrics::gauge!(MODULE_NAMES, "module" => module, "name" => name).set(1.0);
    }
    let mut children = [0usize; 5];
    for record in inner.supervisor.all() {
        if let Ok(state) = State::try_from(record.state) {
            children[state as usize] += 1;
        }
    }
    for (state, n) in [
        State::Pending,
        State::Running,
        State::Stopped,
        State::Done,
        State::GaveUp,
    ]
    .into_iter()
    .zip(children)
    {
        let label = match state {
            State::Pending => "pending",
            State::Running => "running",
            State::Stopped => "stopped",
            State::Done => "done",
            State::GaveUp => "gave_up",
        };
        metrics::gauge!(SUPERVISOR_CHILDREN, "state" => label).set(n as f64);
    }
    if let Some(loaded) = inner.security.loaded() {
        let left = loaded
            .identity
            .not_after
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO);
        metrics::gauge!(CERT_EXPIRY).set(left.as_secs_f64());
    }
    let stats = &inner.stats;
    set(
        STREAMS_OPEN,
        stats.streams_open.load(Ordering::Relaxed) as usize,
    );
    let pool = inner.peers.pool();
    set(PEERS_OPEN, pool.open_peers);
    set(PEER_LINKS_INBOUND, pool.inbound_streams);
    metrics::counter!(PEER_DIALS).absolute(pool.dialed);
    let members = inner.membership.member_counts().await;
    for (state, n) in [
        ("alive", members.alive),
        ("suspect", members.suspect),
        ("down", members.down),
    ] {
        metrics::gauge!(MEMBERS, "state" => state).set(n as f64);
    }
}
