//! One trace across the nodes a call touched: three real nodes (token join, mutual TLS, port 0)
//! export their spans over OTLP/gRPC to a collector in this test (a tonic server of
//! `opentelemetry-proto`'s `TraceService`), and one `invoke --on all`, through the client API,
//! must come back as one trace with spans from every node, each hop's server span a child of
//! the caller's span.
//!
//! A test binary of its own: the `tracing` subscriber is global to a process.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steinadler_core::Term;
use steinadler_node::Node;
use steinadler_test_modules as m;

mod common;

/// Keeps every span it is sent.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A span's string attribute.
fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn describe(span: &Span) -> String {
    format!(
        "{} on {} (kind {}, parent {})",
        span.name,
        attr(span, "node").unwrap_or("?"),
        span.kind,
        hex(&span.parent_span_id)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts `name` with a fan-out of 1, so that a call to three nodes goes through a relay.
async fn start(name: &str, seed: Option<&Node>) -> Node {
    common::through(Node::builder().name(name).fanout(1), seed)
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invoke_on_all_is_one_trace_across_the_nodes_it_touched() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let traces = steinadler_node::telemetry::init_otlp(&endpoint, "steinadler-test").unwrap();

    let n1 = start("n1", None).await;
    let n2 = start("n2", Some(&n1)).await;
    let n3 = start("n3", Some(&n1)).await;
    common::wait_for_members(&[&n1, &n2, &n3], 3).await;
    // Only n1 holds the module: n2 and n3 fetch it during the call.
    n1.deploy("hello", &std::fs::read(m::HELLO).unwrap())
        .await
        .unwrap();
    let mut client = common::client(&n1).await;
    let args = Term::list([Term::from("World")]).encode();
    let results = client
        .invoke(
            "all",
            "hello",
            "greet",
            args,
            Duration::from_secs(30),
            false,
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 3, "{results:?}");
    results.iter().for_each(common::hello_ok);

    // Every span of the call has ended once its result is back; wait for the export.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (trace, spans) = loop {
        traces.flush().await;
        let spans = collector.spans.lock().unwrap().clone();
        let root = spans.iter().find(|s| s.name == "client invoke");
        let runs = spans
            .iter()
            .filter(|s| s.name == "run" && attr(s, "function") == Some("greet"))
            .count();
        if let Some(root) = root
            && runs == 3
        {
            break (root.trace_id.clone(), spans);
        }
        assert!(
            Instant::now() < deadline,
            "the collector has {} spans: {:?}",
            spans.len(),
            spans.iter().map(describe).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let all: Vec<String> = in_trace.iter().map(|s| describe(s)).collect();

    // One trace: every guest run of the call is in the client's trace, one on each node.
    for s in spans
        .iter()
        .filter(|s| s.name == "run" && attr(s, "function") == Some("greet"))
    {
        assert_eq!(s.trace_id, trace, "a run outside the call's trace: {all:?}");
        assert_eq!(attr(s, "outcome"), Some("ok"), "{}", describe(s));
        assert_eq!(attr(s, "module").map(str::len), Some(12), "{}", describe(s));
    }
    for node in ["n1", "n2", "n3"] {
        let runs = in_trace
            .iter()
            .filter(|s| s.name == "run" && attr(s, "node") == Some(node))
            .count();
        assert_eq!(runs, 1, "{node} ran the call once in the trace: {all:?}");
    }

    // Parents: each span's parent is a span of this trace, the client's call its only root.
    let by_id: HashMap<&[u8], &Span> = in_trace.iter().map(|s| (&s.span_id[..], *s)).collect();
    for s in &in_trace {
        if s.name == "client invoke" {
            assert!(s.parent_span_id.is_empty(), "{}", describe(s));
            continue;
        }
        let parent = by_id
            .get(&s.parent_span_id[..])
            .unwrap_or_else(|| panic!("{}: its parent is not in the trace: {all:?}", describe(s)));
        // A server span's parent is the caller's client span: on another node (or the
        // client, which names none).
        if s.kind == SpanKind::Server as i32 {
            assert_eq!(
                parent.kind,
                SpanKind::Client as i32,
                "{} under {}",
                describe(s),
                describe(parent)
            );
            assert_ne!(
                attr(parent, "node"),
                attr(s, "node"),
                "{} under {}",
                describe(s),
                describe(parent)
            );
        }
    }

    // The hops: n1 sent the call to n2 as a relay frame, n2 forwarded it to n3, and n2 and n3
    // fetched the module from n1.
    let served = |name: &str, node: &str| {
        in_trace
            .iter()
            .find(|s| s.name == name && attr(s, "node") == Some(node))
            .unwrap_or_else(|| panic!("no {name} on {node}: {all:?}"))
    };
    let parent_of = |s: &Span| by_id[&s.parent_span_id[..]];
    let relay = served("serve relay", "n2");
    assert_eq!(attr(parent_of(relay), "node"), Some("n1"));
    assert_eq!(attr(parent_of(relay), "peer"), Some("n2"));
    let forwarded = served("serve invoke", "n3");
    assert_eq!(attr(parent_of(forwarded), "node"), Some("n2"));
    assert_eq!(attr(parent_of(forwarded), "peer"), Some("n3"));
    let on_n1 = served("serve InvokeOn", "n1");
    assert_eq!(parent_of(on_n1).name, "client invoke");
    for node in ["n2", "n3"] {
        served("fetch module", node);
    }
    assert!(
        in_trace
            .iter()
            .any(|s| s.name == "serve FetchModule" && attr(s, "node") == Some("n1")),
        "{all:?}"
    );
    assert!(
        in_trace.iter().any(|s| s.name == "resolve module"),
        "{all:?}"
    );

    for node in [n3, n2, n1] {
        node.shutdown().await;
    }
    drop(traces);
}
