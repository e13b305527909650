//! The `Streams` gRPC service as the node serves it: `Streams.Open` by hand, so that its
//! batches go out as finished messages ([`frame`](super::frame)), and every other method
//! (`Streams.Echo`, the benchmark's baseline) through tonic's generated server.
//!
//! `Open` is served as tonic's generated code would serve it, apart from the encoding: the
//! control messages are decoded by tonic's `Streaming`, the caller is authorized as for any
//! method, an error before the first message is a trailers-only response with its status, and
//! the end of the stream puts the status in the trailers.

use super::frame::FramedBody;
use crate::cluster_service::ClusterService;
use crate::node::Inner;
use crate::security::Access;
use std::convert::Infallible;
use std::sync::Arc;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::streams_server::StreamsServer;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::{BoxFuture, Bytes, Context, Poll, Service, StdError, http};
use tonic::server::NamedService;

/// The method served here.
pub(crate) const OPEN: &str = "/steinadler.v1.Streams/Open";

/// The `Streams` service: `Open` here, the rest by `generated`.
#[derive(Clone)]
pub(crate) struct StreamsRoutes {
    inner: Arc<Inner>,
    generated: StreamsServer<ClusterService>,
}

impl StreamsRoutes {
    pub(crate) fn new(inner: Arc<Inner>, generated: StreamsServer<ClusterService>) -> Self {
        Self { inner, generated }
    }
}

impl NamedService for StreamsRoutes {
    const NAME: &'static str = <StreamsServer<ClusterService> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for StreamsRoutes
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != OPEN {
            return self.generated.call(request);
        }
        let inner = self.inner.clone();
        Box::pin(async move { Ok(open(inner, request).await) })
    }
}

/// Serves one `Streams.Open`.
async fn open<B>(inner: Arc<Inner>, request: http::Request<B>) -> http::Response<tonic::body::Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let trace = request
        .headers()
        .get(crate::telemetry::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = crate::telemetry::serve("serve Streams.Open", &inner.config.name, trace);
    let max = inner.config.max_message_bytes;
    let mut codec = tonic_prost::ProstCodec::<pb::StreamEvent, pb::StreamControl>::default();
    let request = tonic::Request::from_http(
        request.map(|body| Streaming::new_request(codec.decoder(), body, None, Some(max))),
    );
    let opened = async {
        inner
            .security
            .authorize(&request, OPEN, Access::Client, &inner.stats, |_| Vec::new())?;
        super::serve::serve(inner.clone(), request.into_inner()).await
    };
    match tracing::Instrument::instrument(opened, span).await {
        Ok(frames) => {
            let mut response = http::Response::new(tonic::body::Body::new(FramedBody::new(frames)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            response
        }
        Err(status) => status.into_http(),
    }
}
