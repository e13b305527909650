//! What the node does with the invoke streams that arrive: the [`Handler`] the connection
//! layer (`steinadler-transport`) serves them with. It authorizes each opening with the node's
//! security rules and runs each frame: an invocation ([`crate::local`]), a process send or a
//! process call ([`crate::process_api`]).

use crate::node::Inner;
use crate::security::Access;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use steinadler_proto::v1 as pb;
use steinadler_transport::{Handler, INVOKE_STREAM};
use tonic::Status;
use tracing::Instrument;

impl Handler for Inner {
    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.security.loaded().map(|l| l.server.clone())
    }

    fn refused_tls(&self, reason: steinadler_transport::TlsRefusal) {
        self.stats.rejected_tls.fetch_add(1, Ordering::Relaxed);
        crate::metrics::rejected("tls", reason.as_str());
    }

    fn authorize_opening(&self, request: &tonic::Request<()>) -> Result<(), Status> {
        self.security
            .authorize(request, INVOKE_STREAM, Access::Node, &self.stats, |_| {
                Vec::new()
            })
            .map(|_| ())
    }

    fn answer(
        self: &Arc<Self>,
        frame: pb::InvokeFrame,
    ) -> impl Future<Output = Result<pb::InvokeResult, Status>> + Send + 'static {
        let inner = self.clone();
        async move { answer(&inner, frame).await }
    }
}

/// Runs what one frame asks for, within the caller's deadline, in a span of the caller's trace.
pub(crate) async fn answer(
    inner: &Arc<Inner>,
    frame: pb::InvokeFrame,
) -> Result<pb::InvokeResult, Status> {
    let limit = Duration::from_millis(frame.timeout_ms.max(1));
    let what = if frame.request.is_some() {
        "serve invoke"
    } else if frame.send.is_some() {
        "serve send"
    } else if frame.call.is_some() {
        "serve call"
    } else if frame.relay.is_some() {
        "serve relay"
    } else {
        "serve"
    };
    let span = crate::telemetry::serve(what, &inner.config.name, &frame.traceparent);
    let work = async {
        if let Some(request) = frame.request {
            inner
                .invoke_local(request)
                .await
                .map(|reply| pb::InvokeResult {
                    reply: Some(reply),
                    ..Default::default()
                })
        } else if let Some(send) = frame.send {
            // Boxed, so that the invocations' futures do not carry room for these.
            Box::pin(crate::process_api::send(inner, send))
                .await
                .map(|_| pb::InvokeResult::default())
        } else if let Some(call) = frame.call {
            Box::pin(crate::process_api::call(inner, call))
                .await
                .map(|reply| pb::InvokeResult {
                    call_reply: Some(reply),
                    ..Default::default()
                })
        } else if let Some(relay) = frame.relay {
            Box::pin(crate::tree::serve_relay(inner, relay, limit))
                .await
                .map(|reply| pb::InvokeResult {
                    relay_reply: Some(reply),
                    ..Default::default()
                })
        } else {
            Err(Status::invalid_argument("an empty frame"))
        }
    };
    match tokio::time::timeout(limit, work.instrument(span)).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("the caller's deadline passed")),
    }
}
