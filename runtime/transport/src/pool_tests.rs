//! Two plaintext transports in one process: which links the accepting side keeps for its own
//! calls.

use super::*;
use crate::ClientTls;
use steinadler_proto::v1 as pb;
use tonic::Status;

#[derive(Debug)]
struct Named;

impl Credentials for Named {
    fn client_tls(&self, _: &str) -> ClientTls {
        ClientTls::Off
    }

    fn opening_cookie(&self, _: &str) -> Vec<u8> {
        Vec::new()
    }
}

struct Serves;

impl Handler for Serves {
    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        None
    }

    fn refused_tls(&self, _: crate::TlsRefusal) {}

    fn authorize_opening(&self, _: &tonic::Request<()>) -> Result<(), Status> {
        Ok(())
    }

    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would borrow self, and the future must be 'static"
    )]
    fn answer(
        self: &Arc<Self>,
        frame: pb::InvokeFrame,
    ) -> impl Future<Output = Result<pb::InvokeResult, Status>> + Send + 'static {
        async move {
            Ok(pb::InvokeResult {
                id: frame.id,
                ..Default::default()
            })
        }
    }
}

/// What tonic would serve: the HTTP/2 sides of links, which these tests leave unread.
type Unread = ReceiverStream<io::Result<TlsConn>>;

/// A transport named `name`, serving on a port of its own; its address.
async fn node(name: &str, stopped: watch::Receiver<bool>) -> (Arc<Transport>, String, Unread) {
    let config = TransportConfig {
        name: name.to_owned(),
        ..TransportConfig::default()
    };
    let transport = Arc::new(Transport::new(config, Arc::new(Named)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Nothing serves HTTP/2 here: only invoke frames are answered.
    let h2 = transport.incoming_plain(Arc::new(Serves), listener, stopped);
    (transport, addr, h2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_keeps_a_link_for_its_own_calls_unless_it_was_opened_for_one_call() {
    let (_stop, stopped) = watch::channel(false);
    let (a, _, _a_h2) = node("a", stopped.clone()).await;
    let (b, b_addr, _b_h2) = node("b", stopped).await;
    let until = |what: &'static str, check: Box<dyn Fn() -> bool>| async move {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < Duration::from_secs(20), "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };

    // A probe: a link for one call, which a does not keep, and b must not keep either.
    let probe = a.probe_channel(&b_addr, "b").await.unwrap();
    let served = b.clone();
    until(
        "b serves the probe's link",
        Box::new(move || served.inbound_peers() == ["a"]),
    )
    .await;
    assert_eq!(
        b.pool().open_peers,
        0,
        "b kept a probe's link: {:?}",
        b.pool()
    );
    drop(probe);
    let served = b.clone();
    until(
        "the probe's link closes",
        Box::new(move || served.inbound_peers().is_empty()),
    )
    .await;

    // A call: a keeps the link, and b keeps it for its calls to a.
    let mux = a.mux(&b_addr, "b").await.unwrap();
    // The handler answers with a result that holds no reply: the frame went there and back.
    let answered = |e: Status| assert_eq!(e.code(), tonic::Code::Internal, "{e}");
    answered(
        mux.call(pb::InvokeRequest::default(), "", Duration::from_secs(10))
            .await
            .unwrap_err(),
    );
    let pooled = b.clone();
    until(
        "b keeps the link a opened",
        Box::new(move || pooled.pool().reverse_peers == 1),
    )
    .await;
    // b reaches a over it, at an address it never dialed.
    let back = b.mux("unknown:1", "a").await.unwrap();
    answered(
        back.call(pb::InvokeRequest::default(), "", Duration::from_secs(10))
            .await
            .unwrap_err(),
    );
    assert_eq!(b.inbound_peers(), ["a"]);
    assert_eq!(a.inbound_peers(), Vec::<String>::new(), "b dialed nobody");
}
