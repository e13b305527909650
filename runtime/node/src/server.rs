//! Serving: every gRPC service of the node (the `Node` API, the registry, the supervisor,
//! streams, gossip on links, health and reflection) on one router, over the node's own accept
//! loop (mutual TLS, or plaintext with `--insecure`), until the node stops; then draining.

use crate::node::Inner;
use crate::service::Service;
use std::sync::Arc;
use steinadler_proto::v1::node_server::NodeServer;
use tokio::sync::watch;

/// Serves until `stopped` turns true, then drains in-flight calls.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    listener: tokio::net::TcpListener,
    stopped: watch::Receiver<bool>,
) {
    let api = crate::service::api(&inner);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<NodeServer<Service>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(steinadler_proto::FILE_DESCRIPTOR_SET)
        .build_v1();
    let (registry, supervisor, streams) = crate::cluster_service::services(&inner);
    let mut router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(api)
        .add_service(registry)
        .add_service(supervisor)
        .add_service(streams)
        .add_service(crate::gossip::service(&inner))
        .add_service(crate::relay::service(&inner));
    if let Ok(reflection) = reflection {
        router = router.add_service(reflection);
    }
    let mut stop = stopped.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = if inner.security.is_secure() {
        let incoming = inner.peers.incoming_tls(inner.clone(), listener, stopped);
        router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    } else {
        // Our accept loop: it sets TCP_NODELAY (`Server::tcp_nodelay` applies only to
        // listeners tonic binds itself) and takes the invoke streams between nodes.
        let incoming = inner.peers.incoming_plain(inner.clone(), listener, stopped);
        router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    };
    if let Err(e) = served {
        tracing::error!(node = %inner.config.name, "the gRPC server stopped: {e}");
    }
    // The invoke streams from peers finish their calls in flight too.
    inner.peers.drain().await;
}
