//! Traces across nodes: the spans a node records for a call, and the W3C trace context
//! (`traceparent`) that carries one trace from node to node.
//!
//! This module owns:
//! - the spans, all under the target [`TARGET`], so that logs see them only when asked
//!   (`RUST_LOG=steinadler::trace=info`) and, without an exporter, they cost a disabled
//!   callsite: [`call`] (a client's call), [`serve`] (a request that arrived, joined to the
//!   caller's trace), [`hop`] (a call to another node: a frame on the invoke stream or a gRPC
//!   call), [`local`] (work on this node: coordinating, resolving, fetching) and [`run`] (the
//!   guest, with module, function, node and outcome);
//! - the context's travel: [`traceparent_of`] a span, as invoke frames carry it
//!   (`InvokeFrame.traceparent`), and [`inject`] / [`extract`] for gRPC metadata;
//! - the export over OTLP/gRPC ([`init_otlp`], [`otlp_layer`], [`OtlpGuard`]; `otlp.rs`).
//!
//! Nothing here runs until an exporter is installed: [`traceparent_of`] is empty and no parent
//! is looked up while none is.

mod otlp;

pub use otlp::{OtlpGuard, TelemetryError, init_otlp, otlp_layer};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every span the node records for traces.
pub const TARGET: &str = "steinadler::trace";

/// The W3C header, and the key in gRPC metadata.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// Set once an exporter is installed in this process.
static ON: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_on() {
    ON.store(true, Ordering::Release);
}

fn on() -> bool {
    ON.load(Ordering::Acquire)
}

/// `span`'s trace context as a `traceparent` value, for a request made in it; empty when
/// nothing records traces, or the span is disabled.
pub(crate) fn traceparent_of(span: &Span) -> String {
    if !on() || span.is_disabled() {
        return String::new();
    }
    let cx = span.context();
    let mut out = One(String::new());
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
}

/// Makes `span` a child of the remote span `traceparent` names (nothing for an empty or
/// malformed one). Call it before the span is first entered.
pub(crate) fn follow(span: &Span, traceparent: &str) {
    if !on() || traceparent.is_empty() || span.is_disabled() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&OneRef(traceparent));
    let _ = span.set_parent(cx);
}

/// Adds the current span's `traceparent` to a gRPC request's metadata.
pub(crate) fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    inject_from(&Span::current(), metadata);
}

/// Adds `span`'s `traceparent` to a gRPC request's metadata.
pub(crate) fn inject_from(span: &Span, metadata: &mut tonic::metadata::MetadataMap) {
    let value = traceparent_of(span);
    if !value.is_empty()
        && let Ok(value) = value.parse()
    {
        metadata.insert(TRACEPARENT, value);
    }
}

/// The `traceparent` a gRPC request carries, empty for none.
pub(crate) fn extract(metadata: &tonic::metadata::MetadataMap) -> &str {
    metadata
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A client's call (`Client::invoke`): the root of a trace that starts outside the cluster.
pub(crate) fn call(
    what: &'static str,
    target: impl std::fmt::Display,
    module: &str,
    function: &str,
) -> Span {
    tracing::info_span!(target: TARGET, "call", otel.name = what, otel.kind = "client",
        steinadler.target = %target, module = %module, function = %function)
}

/// A request that arrived at `node` (a frame on the invoke stream or a gRPC call), as a child
/// of the caller's span that `traceparent` names; the root of a trace when there is none.
pub(crate) fn serve(what: &'static str, node: &str, traceparent: &str) -> Span {
    let span = tracing::info_span!(target: TARGET, "serve", otel.name = what,
        otel.kind = "server", node = %node);
    follow(&span, traceparent);
    span
}

/// A call from `node` to the node `peer`: its `traceparent` travels with the request.
pub(crate) fn hop(what: &'static str, node: &str, peer: &str) -> Span {
    tracing::info_span!(target: TARGET, "hop", otel.name = what, otel.kind = "client",
        node = %node, peer = %peer)
}

/// Work on `node` that has a name of its own: coordinating a call to `module`, resolving
/// it, fetching it (the module as the call names it, or its short id).
pub(crate) fn local(what: &'static str, node: &str, module: &str) -> Span {
    tracing::info_span!(target: TARGET, "local", otel.name = what, node = %node,
        module = %module)
}

/// The guest's run on `node`, of the module whose id is `module_id`; [`outcome`] records how
/// it ended.
pub(crate) fn run(node: &str, module_id: &[u8], function: &str) -> Span {
    tracing::info_span!(target: TARGET, "run", node = %node, module = %Short(module_id),
        function = %function, outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty)
}

/// A module id as its short form (the first 12 hex digits), written only when a span records
/// it.
struct Short<'a>(&'a [u8]);

impl std::fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().take(6).try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Records a run's outcome: `ok`, or the error's code (`trap`, `timeout`, ...).
pub(crate) fn outcome(span: &Span, reply: &steinadler_proto::v1::InvokeReply) {
    use steinadler_proto::v1 as pb;
    if span.is_disabled() {
        return;
    }
    match &reply.outcome {
        Some(pb::invoke_reply::Outcome::Value(_)) => {
            span.record("outcome", "ok");
            span.record("otel.status_code", "ok");
        }
        Some(pb::invoke_reply::Outcome::Error(e)) => {
            let code = pb::error::Code::try_from(e.code)
                .map(|c| c.as_str_name().to_ascii_lowercase())
                .unwrap_or_else(|_| e.code.to_string());
            span.record("outcome", code.as_str());
            span.record("otel.status_code", "error");
        }
        None => {}
    }
}

/// A carrier that keeps only the `traceparent` it is given.
struct One(String);

impl Injector for One {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = value;
        }
    }
}

/// A carrier that holds one `traceparent`.
struct OneRef<'a>(&'a str);

impl Extractor for OneRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_nothing_is_carried() {
        let span = hop("call", "n1", "n2");
        let _entered = span.enter();
        assert_eq!(traceparent_of(&span), "");
        let mut metadata = tonic::metadata::MetadataMap::new();
        inject(&mut metadata);
        assert!(metadata.is_empty());
        assert_eq!(extract(&metadata), "");
    }

    #[test]
    fn a_traceparent_round_trips_through_the_carriers() {
        let value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = TraceContextPropagator::new().extract(&OneRef(value));
        let mut out = One(String::new());
        TraceContextPropagator::new().inject_context(&cx, &mut out);
        assert_eq!(out.0, value);
    }
}
