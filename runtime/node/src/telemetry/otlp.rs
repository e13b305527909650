//! The export of a node's spans over OTLP/gRPC (`--otlp`): the tonic exporter of
//! `opentelemetry-otlp` behind a batch processor, fed by `tracing-opentelemetry`.
//!
//! Spans leave in batches from the processor's own thread, so a call never waits on the
//! collector; past 2,048 spans waiting, new ones are dropped. An export that fails (no
//! collector, a slow one) is logged once, then at most once a minute with how many batches
//! failed since ([`Quiet`]).

use super::TARGET;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a failing export is logged at most.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint or the exporter's settings were refused.
    #[error("cannot export traces to {endpoint}: {why}")]
    Build {
        /// The endpoint as given.
        endpoint: String,
        /// What the exporter said.
        why: String,
    },
    /// This process already has a global `tracing` subscriber.
    #[error("this process already has a tracing subscriber: add otlp_layer to it instead")]
    InUse,
}

/// Keeps the exporter running; dropping it exports what is left (waiting up to a few seconds
/// for the collector) and stops it. Drop it while the tokio runtime it was made in still runs.
#[derive(Debug)]
pub struct OtlpGuard {
    provider: SdkTracerProvider,
}

impl OtlpGuard {
    /// Exports every span that has ended, off the async threads; returns once the collector
    /// answered (or the export failed or timed out).
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT);
    }
}

/// A `tracing` layer that exports the node's spans (target [`TARGET`]) to the OTLP/gRPC
/// collector at `endpoint` (`http://HOST:PORT`, or `HOST:PORT`), as the service
/// `service_name`; and the guard that keeps it running. For a process that has its own
/// subscriber (the CLI adds it next to its log output). Call it inside a tokio runtime.
///
/// # Errors
///
/// [`TelemetryError::Build`] for an endpoint the exporter refuses.
pub fn otlp_layer<S>(
    endpoint: &str,
    service_name: &str,
) -> Result<(impl Layer<S> + use<S>, OtlpGuard), TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let url = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Build {
            endpoint: endpoint.to_owned(),
            why: e.to_string(),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Quiet::new(exporter, url))
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("steinadler");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target(TARGET, tracing::Level::INFO));
    super::set_on();
    Ok((layer, OtlpGuard { provider }))
}

/// Makes this process's global `tracing` subscriber one that exports the node's spans to
/// `endpoint` and does nothing else (no log output): for a program or test that embeds nodes
/// and has no subscriber of its own. Call it inside a tokio runtime.
///
/// # Errors
///
/// As [`otlp_layer`]; [`TelemetryError::InUse`] when the process already has a subscriber.
pub fn init_otlp(endpoint: &str, service_name: &str) -> Result<OtlpGuard, TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (layer, guard) = otlp_layer(endpoint, service_name)?;
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|_| TelemetryError::InUse)?;
    Ok(guard)
}

/// An exporter whose failures are logged rarely: the first, then at most one line per
/// [`REPORT_EVERY`] saying how many failed since; and once when exports work again.
#[derive(Debug)]
struct Quiet<E> {
    inner: E,
    endpoint: String,
    failing: Mutex<Failing>,
}

#[derive(Debug, Default)]
struct Failing {
    /// When a failure was last logged, while exports fail.
    logged: Option<Instant>,
    /// Failures since then.
    unlogged: u64,
}

impl<E> Quiet<E> {
    fn new(inner: E, endpoint: String) -> Self {
        Self {
            inner,
            endpoint,
            failing: Mutex::default(),
        }
    }

    fn note(&self, result: &OTelSdkResult, spans: usize) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match (result, failing.logged) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => {
                *failing = Failing::default();
                tracing::info!(endpoint = %self.endpoint, "exporting traces again");
            }
            (Err(e), logged) if logged.is_none_or(|at| at.elapsed() >= REPORT_EVERY) => {
                let since = std::mem::take(&mut failing.unlogged);
                failing.logged = Some(Instant::now());
                tracing::warn!(endpoint = %self.endpoint, spans, failed_since = since,
                    "cannot export traces: {e}; spans are dropped, and calls go on (next report in a minute at most)");
            }
            (Err(_), _) => failing.unlogged += 1,
        }
    }
}

impl<E: SpanExporter> SpanExporter for Quiet<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.note(&result, spans);
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
