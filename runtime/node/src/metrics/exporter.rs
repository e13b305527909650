//! The process's one exporter: installing the recorder (with its histogram buckets and the
//! descriptions every metric's help text comes from), claiming it for one node, and the
//! recorder wrapper that keeps histogram samples bounded without a timer.

use super::{
    ADMISSION_QUEUED, ADMISSION_REJECTIONS, ADMISSION_RUNNING, ARGS_CACHE, CERT_EXPIRY,
    CERT_RENEWALS, FANOUT_TARGETS, INVOCATION_SECONDS, INVOCATIONS, MAILBOX_DEPTH_MAX,
    MAILBOX_MESSAGES, MEMBERS, MESSAGES_RECEIVED, MESSAGES_SENT, MODULE_FETCHES, MODULE_LOOKUPS,
    MODULE_NAMES, MetricsError, ON, PEER_DIALS, PEER_LINKS_INBOUND, PEERS_OPEN, PROCESSES,
    REGISTRY_NAMES, REJECTIONS, STREAM_BYTES, STREAM_ITEMS, STREAMS_OPEN, SUPERVISOR_CHILDREN,
    SUPERVISOR_GIVE_UPS, SUPERVISOR_RESTARTS,
};
use crate::node::Inner;
use metrics::{Counter, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::net::TcpListener;

/// The process's recorder handle, and whether a node serves it now.
static EXPORTER: Mutex<(Option<PrometheusHandle>, bool)> = Mutex::new((None, false));

/// Histogram samples wait in the recorder until a scrape or an upkeep folds them into buckets;
/// an upkeep runs after this many, so memory stays bounded with no timer and no scrapes.
const UPKEEP_EVERY: u64 = 4096;

/// Seconds: 50 µs to 60 s.
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Node counts.
const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];
/// memberlist's histograms are in milliseconds.
const MILLIS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
];

/// The metrics endpoint, bound and claimed; [`serve`] runs it.
#[derive(Debug)]
pub(crate) struct Exporter {
    handle: PrometheusHandle,
    listener: TcpListener,
    claim: Claim,
}

/// This process's one serving node; released on drop.
#[derive(Debug)]
pub(super) struct Claim;

impl Drop for Claim {
    fn drop(&mut self) {
        EXPORTER.lock().unwrap_or_else(|e| e.into_inner()).1 = false;
    }
}

impl Exporter {
    /// The bound address.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// Claims the process's exporter (installing the recorder the first time) and binds `addr`.
pub(crate) async fn bind(addr: SocketAddr) -> Result<Exporter, MetricsError> {
    let handle = {
        let mut exporter = EXPORTER.lock().unwrap_or_else(|e| e.into_inner());
        if exporter.1 {
            return Err(MetricsError::InUse);
        }
        let handle = match &exporter.0 {
            Some(handle) => handle.clone(),
            None => {
                let handle = install()?;
                exporter.0 = Some(handle.clone());
                handle
            }
        };
        exporter.1 = true;
        handle
    };
    let claim = Claim;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    Ok(Exporter {
        handle,
        listener,
        claim,
    })
}

fn install() -> Result<PrometheusHandle, MetricsError> {
    let bad = |e: metrics_exporter_prometheus::BuildError| MetricsError::Recorder(e.to_string());
    let recorder = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .map_err(bad)?
        .set_buckets_for_metric(Matcher::Full(FANOUT_TARGETS.into()), SIZES)
        .map_err(bad)?
        .set_buckets_for_metric(Matcher::Prefix("memberlist".into()), MILLIS)
        .map_err(bad)?
        .build_recorder();
    let handle = recorder.handle();
    let recorder = Upkept {
        inner: recorder,
        handle: handle.clone(),
        samples: Arc::new(AtomicU64::new(0)),
    };
    metrics::set_global_recorder(recorder).map_err(|e| MetricsError::Recorder(e.to_string()))?;
    describe();
    ON.store(true, Ordering::Relaxed);
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h};
    c!(
        INVOCATIONS,
        "Invocations run on this node, by module, function and outcome"
    );
    h!(
        INVOCATION_SECONDS,
        Unit::Seconds,
        "Invocation time on this node, from arrival to reply"
    );
    c!(
        ADMISSION_REJECTIONS,
        "Invocations refused at admission (RESOURCE_EXHAUSTED)"
    );
    g!(ADMISSION_RUNNING, "Invocations running now");
    g!(ADMISSION_QUEUED, "Invocations waiting for a running slot");
    h!(FANOUT_TARGETS, "Nodes a call coordinated here went to");
    g!(PROCESSES, "Processes running on this node");
    g!(MAILBOX_DEPTH_MAX, "Messages waiting in the fullest mailbox");
    g!(MAILBOX_MESSAGES, "Messages waiting in all mailboxes");
    c!(
        MESSAGES_SENT,
        "Process messages sent, by kind and destination"
    );
    c!(MESSAGES_RECEIVED, "Messages put into this node's mailboxes");
    g!(
        REGISTRY_NAMES,
        "Names in the cluster registry, as this node sees it"
    );
    g!(
        MODULE_NAMES,
        "1 for each name a module was deployed under on this node"
    );
    c!(SUPERVISOR_RESTARTS, "Supervised children restarted here");
    c!(SUPERVISOR_GIVE_UPS, "Supervised children given up on here");
    g!(
        SUPERVISOR_CHILDREN,
        "Supervised children this node knows, by state"
    );
    c!(STREAM_ITEMS, "Stream items produced here, by producer kind");
    c!(
        STREAM_BYTES,
        Unit::Bytes,
        "Stream bytes produced here, by producer kind"
    );
    g!(STREAMS_OPEN, "Streams this node produces now");
    g!(PEERS_OPEN, "Peers this node holds a link to");
    g!(
        PEER_LINKS_INBOUND,
        "Links peers opened to this node, still served"
    );
    c!(PEER_DIALS, "Links this node dialed");
    c!(MODULE_FETCHES, "Module fetches from peers, by outcome");
    c!(
        MODULE_LOOKUPS,
        "Module lookups for a call or spawn: held here (hit) or not (miss)"
    );
    c!(
        ARGS_CACHE,
        "Argument cache: hashes served (hit), resends asked (miss), bodies stored"
    );
    c!(
        REJECTIONS,
        "Refused connections and requests, by kind and reason"
    );
    g!(MEMBERS, "Members this node knows, by state");
    c!(
        CERT_RENEWALS,
        "Attempts to renew this node's certificate, by outcome (an error is retried)"
    );
    g!(
        CERT_EXPIRY,
        Unit::Seconds,
        "Seconds until this node's certificate expires"
    );
    // memberlist-core's own (0.8.5), described here so that every metric has help text.
    for (name, help) in [
        (
            "memberlist.degraded.probe",
            "memberlist: probes that found this node degraded",
        ),
        (
            "memberlist.degraded.timeout",
            "memberlist: suspicion timeouts that degraded",
        ),
        ("memberlist.msg.alive", "memberlist: alive messages handled"),
        ("memberlist.msg.dead", "memberlist: dead messages handled"),
        (
            "memberlist.msg.suspect",
            "memberlist: suspect messages handled",
        ),
        (
            "memberlist.packet.bytes.processing",
            "memberlist: time spent processing packets",
        ),
        (
            "memberlist.packet.received",
            "memberlist: packet bytes received",
        ),
        ("memberlist.packet.sent", "memberlist: packet bytes sent"),
        (
            "memberlist.promised.accept",
            "memberlist: stream connections accepted",
        ),
        (
            "memberlist.promised.connect",
            "memberlist: stream connections opened",
        ),
        ("memberlist.stream.sent", "memberlist: stream bytes sent"),
    ] {
        c!(name, help);
    }
    for (name, help) in [
        (
            "memberlist.health.score",
            "memberlist: local health (awareness) score, 0 is best",
        ),
        (
            "memberlist.node.instances",
            "memberlist: nodes by state, at the last push-pull",
        ),
        (
            "memberlist.size.local",
            "memberlist: bytes of the last local state sent",
        ),
    ] {
        g!(name, help);
    }
    for (name, help) in [
        ("memberlist.gossip", "memberlist: gossip round time, ms"),
        ("memberlist.probe_node", "memberlist: probe time, ms"),
        (
            "memberlist.push_pull_node",
            "memberlist: push-pull time, ms",
        ),
        (
            "memberlist.queue.broadcasts",
            "memberlist: broadcasts queued",
        ),
    ] {
        h!(name, help);
    }
    // Recorded by steinadler-host.
    c!(
        "steinadler_module_loads",
        "Modules compiled or read precompiled from the data directory, by source, and where compiled (place: child or in-process)"
    );
    h!(
        "steinadler_module_compile_duration_seconds",
        Unit::Seconds,
        "Time to compile one module, by place (child or in-process)"
    );
}

/// Serves `GET /metrics` until the node stops (the task is aborted) or `inner` is gone.
pub(crate) fn serve(exporter: Exporter, inner: Weak<Inner>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(super::http::run(
        exporter.listener,
        exporter.handle,
        inner,
        exporter.claim,
    ))
}

/// The exporter's recorder, which also runs its upkeep every [`UPKEEP_EVERY`] histogram
/// samples (the exporter otherwise expects a timer to).
#[derive(Debug)]
struct Upkept {
    inner: metrics_exporter_prometheus::PrometheusRecorder,
    handle: PrometheusHandle,
    samples: Arc<AtomicU64>,
}

struct Drained {
    inner: Histogram,
    handle: PrometheusHandle,
    samples: Arc<AtomicU64>,
}

impl HistogramFn for Drained {
    fn record(&self, value: f64) {
        self.inner.record(value);
        if self.samples.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }
}

impl metrics::Recorder for Upkept {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Drained {
            inner: self.inner.register_histogram(key, metadata),
            handle: self.handle.clone(),
            samples: self.samples.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::bind;
    use crate::metrics::MetricsError;

    #[tokio::test]
    async fn one_node_per_process_serves_metrics_and_the_next_takes_over() {
        let any = "127.0.0.1:0".parse().unwrap();
        let first = bind(any).await.unwrap();
        assert!(matches!(bind(any).await, Err(MetricsError::InUse)));
        drop(first);
        let next = bind(any).await.unwrap();
        assert!(next.local_addr().is_some());
        // A failed bind releases the claim too.
        let taken = next.local_addr().unwrap();
        drop(next);
        let _holder = std::net::TcpListener::bind(taken).unwrap();
        assert!(matches!(bind(taken).await, Err(MetricsError::Bind { .. })));
        assert!(bind(any).await.is_ok());
    }
}
