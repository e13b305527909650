//! An end serving and calling on one link, against a peer written by hand.

use super::*;
use crate::table::Table;
use crate::{ClientTls, Credentials};
use tokio::io::AsyncWriteExt;

/// Answers every call at its first poll, as most calls end.
struct AtOnce;

impl Answer for AtOnce {
    fn answer(
        &self,
        frame: pb::InvokeFrame,
    ) -> Pin<Box<dyn Future<Output = Result<pb::InvokeResult, Status>> + Send>> {
        Box::pin(async move {
            Ok(pb::InvokeResult {
                id: frame.id,
                status_message: "ran".into(),
                ..Default::default()
            })
        })
    }

    fn authorize_opening(&self, _: &tonic::Request<()>) -> Result<(), Status> {
        Ok(())
    }

    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        None
    }

    fn refused_tls(&self, _: crate::TlsRefusal) {}
}

#[derive(Debug)]
struct Plain;

impl Credentials for Plain {
    fn client_tls(&self, _: &str) -> ClientTls {
        ClientTls::Off
    }

    fn opening_cookie(&self, _: &str) -> Vec<u8> {
        Vec::new()
    }
}

#[tokio::test]
async fn a_result_leaves_when_the_frame_after_its_call_is_not_a_call() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (read_half, write_half) = tokio::io::split(ours);
    let (writer, flusher) = FrameWriter::new(Box::new(write_half));
    tokio::spawn(flusher);
    let (_stop, stopping) = watch::channel(false);
    let (_crash, crashed) = watch::channel(false);
    let (h2, _conns) = tokio::sync::mpsc::channel(1);
    let serving = Serving {
        tracker: tokio_util::task::TaskTracker::new(),
        stopping,
        crashed: crashed.clone(),
        max_frame: 1 << 20,
        h2,
        served: Arc::default(),
        table: Arc::new(Table::new(4)),
        creds: Arc::new(Plain),
    };
    let serve = Serve {
        handler: Arc::new(AtOnce),
        serving,
        secure: false,
    };
    let opened = crate::mux::Opened {
        reader: FrameReader::new(Box::new(read_half), 1 << 20),
        writer,
        role: Role::Acceptor,
        peer: PeerInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            identity: None,
        },
        name: "peer".into(),
    };
    // This end's calling side stays held, so nothing else it writes flushes the result.
    let (_mux, _pipe, reading) = crate::mux::start(opened, Some(serve), crashed);
    tokio::spawn(read(reading));

    // The peer sends two calls and, in the same write, three results for calls of this
    // end's: five frames, so the calls' results would leave in a group of three. They must
    // leave although results, not calls, followed them, and no more frames come.
    let (peer_read, mut peer_write) = tokio::io::split(theirs);
    let mut bytes = Vec::new();
    for id in [7, 8] {
        let call = pb::InvokeFrame {
            id,
            ..Default::default()
        };
        bytes.extend(framing::encode_as(Kind::Invoke, &call));
    }
    for id in [97, 98, 99] {
        let result = pb::InvokeResult {
            id,
            ..Default::default()
        };
        bytes.extend(framing::encode_as(Kind::Reverse, &result));
    }
    peer_write.write_all(&bytes).await.unwrap();
    let mut peer = FrameReader::new(Box::new(peer_read), 1 << 20);
    for id in [7, 8] {
        let (kind, body) = tokio::time::timeout(Duration::from_secs(10), peer.next_frame())
            .await
            .unwrap_or_else(|_| panic!("the result of call {id} never left"))
            .unwrap()
            .unwrap();
        assert_eq!(kind, Kind::Invoke, "a result of the peer's call");
        let answer = <pb::InvokeResult as prost::Message>::decode(body).unwrap();
        assert_eq!((answer.id, answer.status_message.as_str()), (id, "ran"));
    }
}
