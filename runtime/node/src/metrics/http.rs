//! The `/metrics` endpoint: plain HTTP/1.1 on hyper (already in the build through tonic), one
//! response per connection, and the process's own figures read from `/proc/self` on each
//! scrape.

use super::exporter::Claim;
use crate::node::Inner;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// At most this many scrapes at once; more connections are closed unanswered.
const MAX_CONNECTIONS: usize = 16;
/// A client that has not sent its request headers by then is cut off.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer than this.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts scrapes until the task is aborted (the node stops); the claim goes with it.
pub(super) async fn run(
    listener: TcpListener,
    handle: PrometheusHandle,
    inner: Weak<Inner>,
    claim: Claim,
) {
    let _claim = claim;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!("metrics: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (handle, inner) = (handle.clone(), inner.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let (handle, inner) = (handle.clone(), inner.clone());
                async move { Ok::<_, Infallible>(respond(&req, &handle, &inner).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

async fn respond(
    req: &Request<Incoming>,
    handle: &PrometheusHandle,
    inner: &Weak<Inner>,
) -> Response<String> {
    let reply = |status: StatusCode, body: &str| {
        let mut response = Response::new(body.to_owned());
        *response.status_mut() = status;
        response
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "the metrics are at /metrics\n");
    }
    if let Some(inner) = inner.upgrade() {
        super::collect(&inner).await;
    }
    let mut body = handle.render();
    own_process(&mut body);
    let mut response = Response::new(body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Appends the standard `process_*` metrics (those of the Prometheus client libraries),
/// written here rather than through the recorder because CPU seconds are fractional and the
/// facade's counters are integers. Nothing is appended where `/proc` cannot be read.
fn own_process(out: &mut String) {
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
        );
    };
    if let Some(cpu) = cpu_seconds() {
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            cpu,
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(kib) = field("VmRSS:") {
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            (kib * 1024) as f64,
        );
    }
    if let Some(threads) = field("Threads:") {
        metric(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            threads as f64,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
}

/// utime + stime from `/proc/self/stat`, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: count fields after its end. The
    // field after it is the 3rd (state); utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_figures_are_read_and_well_formed() {
        let mut out = String::new();
        super::own_process(&mut out);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_threads",
            "process_open_fds",
        ] {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {out}"));
            let value: f64 = line[name.len() + 1..].parse().unwrap();
            assert!(value >= 0.0, "{line}");
        }
        assert!(super::cpu_seconds().is_some());
    }
}
