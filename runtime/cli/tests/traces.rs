//! `--otlp` end to end: two real `steinadler node start --otlp` processes and an `invoke --otlp
//! --on all` export to a collector in this test (a tonic server of `opentelemetry-proto`'s
//! `TraceService`), and the call arrives as one trace that starts at the CLI, with a guest run
//! on each node. The in-process test of the spans and their parents is `tests/tests/traces.rs`.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Shared by the CLI tests; this one uses part of it.
#[allow(dead_code)]
mod nodes;

use nodes::{NodeProc, cli, ok, start_with};

/// Keeps every span it is sent, with its resource's `service.name`.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let service = string(&attributes, "service.name")
                .unwrap_or_default()
                .to_owned();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn string<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// Serves a collector on a thread of its own; its endpoint.
fn collector() -> (String, Collector) {
    let collector = Collector::default();
    let serving = collector.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(serving))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
    });
    (format!("http://{}", rx.recv().unwrap()), collector)
}

#[test]
fn an_invoke_on_all_is_one_trace_from_the_cli_through_every_node() {
    let (endpoint, collector) = collector();
    let n1 = start_with("n1", &["--otlp", &endpoint], true);
    let token = n1.token.clone().unwrap();
    let join = ["--otlp", &endpoint, "--join", &n1.grpc, "--token", &token];
    let n2: NodeProc = start_with("n2", &join, false);
    ok(&cli(&n1, &["login", "--token", &token, "--name", "tester"]));
    nodes::wait_members(&n1, &[], 2);
    ok(&cli(&n1, &["deploy", steinadler_test_modules::HELLO]));
    let out = ok(&cli(
        &n1,
        &[
            "invoke",
            "hello",
            "greet",
            "--args",
            r#"["World"]"#,
            "--on",
            "all",
            "--timeout",
            "60s",
            "--otlp",
            &endpoint,
        ],
    ));
    assert_eq!(out.lines().count(), 2, "{out}");

    // The CLI exported its span as it exited; the nodes export theirs within 5 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let spans = collector.spans.lock().unwrap().clone();
        let root = spans.iter().find(|(_, s)| s.name == "client invoke");
        let runs_on = |trace: &[u8]| {
            let mut nodes: Vec<&str> = spans
                .iter()
                .filter(|(_, s)| s.trace_id == trace && s.name == "run")
                .filter_map(|(_, s)| string(&s.attributes, "node"))
                .collect();
            nodes.sort_unstable();
            nodes
        };
        if let Some((service, root)) = root
            && runs_on(&root.trace_id) == ["n1", "n2"]
        {
            assert!(root.parent_span_id.is_empty());
            assert!(spans.iter().all(|(service, _)| service == "steinadler"));
            assert_eq!(service, "steinadler");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no trace from the CLI through n1 and n2 among: {:?}",
            spans
                .iter()
                .map(|(_, s)| format!("{} {:?}", s.name, string(&s.attributes, "node")))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((n2, n1));
}
