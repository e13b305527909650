//! The accepting side of a link ([`crate::link`]): its opening, and what serves it.
//!
//! A peer opens a link on the node's gRPC port: over TLS (the same mutual-TLS handshake as
//! gRPC) or plain TCP, it sends [`MAGIC`] instead of the HTTP/2 preface, so the accept loop
//! ([`crate::tls`]) hands the connection here rather than to tonic. Next comes the opening:
//! the cluster cookie, signed for [`INVOKE_STREAM`] exactly as the gRPC stream was, which the
//! node's [`Handler::authorize_opening`] checks with the same rules (node certificate, cookie,
//! anti-replay), the name the peer claims (what an insecure cluster knows it by; with TLS its
//! certificate's name counts), and whether the peer keeps the link in its pool (a link opened
//! for one call, a probe, is not offered back, so that it closes after that call). The answer is an [`pb::InvokeResult`] of id 0: status 0,
//! or the refusal; after a 0 comes this node's own cookie, for the calls it makes back.
//!
//! Then the link runs both ways ([`crate::end`]): the peer's calls are answered here, and the
//! link is offered to the pool ([`crate::table::Table::offer_inbound`]) so that this node's
//! calls to the peer use it instead of a second connection. When the node stops, frames that
//! arrive are refused as not run ([`NOT_SENT`](crate::NOT_SENT)); the calls in flight finish
//! and answer, tonic winds the HTTP/2 side down, then the link closes.

use crate::Credentials;
use crate::end::{Answer, Role, Serve};
use crate::framing::{self, FrameReader, FrameWriter};
use crate::mux::Opened;
use crate::table::{Link, Table};
use crate::tls::{Conn, PeerInfo, TlsConn};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use steinadler_proto::v1 as pb;
use tokio::sync::watch;
use tonic::Status;

/// What a peer sends first instead of the HTTP/2 preface. Its first byte differs from the
/// preface's `P`, which is all the accept loop looks at.
/// The last byte is the version: 2 was the link (invoke frames and HTTP/2 on one
/// connection), 3 the link used both ways.
pub const MAGIC: &[u8; 8] = b"STNDLR\x00\x03";

/// The method the opening's cookie is signed for.
pub const INVOKE_STREAM: &str = "/steinadler.v1.Node/InvokeStream";

/// What a node does with the connections and frames that arrive: the serving side's handle on
/// the node.
pub trait Handler: Send + Sync + 'static {
    /// The current TLS server configuration, asked for each connection so that reloaded
    /// certificates apply to the next one; `None` refuses the connection.
    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>>;

    /// Counts a connection refused during or right after its TLS handshake, and why.
    fn refused_tls(&self, reason: crate::TlsRefusal);

    /// Checks an invoke stream's opening: `request` carries the cookie in its metadata and
    /// the caller's [`PeerInfo`] in its extensions.
    ///
    /// # Errors
    ///
    /// The refusal, sent back to the peer before the stream closes.
    fn authorize_opening(&self, request: &tonic::Request<()>) -> Result<(), Status>;

    /// Runs what one frame asks for. The future owns what it needs: it may outlive the call.
    fn answer(
        self: &Arc<Self>,
        frame: pb::InvokeFrame,
    ) -> impl Future<Output = Result<pb::InvokeResult, Status>> + Send + 'static;
}

/// How long a peer may take to send its opening.
const OPENING_TIMEOUT: Duration = Duration::from_secs(10);

/// What every served link shares: the tracker that drains them on shutdown, the node's
/// stop and crash signals, the frame limit, and the pool the links are offered to.
#[derive(Debug, Clone)]
pub(crate) struct Serving {
    pub(crate) tracker: tokio_util::task::TaskTracker,
    pub(crate) stopping: watch::Receiver<bool>,
    pub(crate) crashed: watch::Receiver<bool>,
    pub(crate) max_frame: usize,
    /// Where the HTTP/2 sides of links go: tonic's incoming connections.
    pub(crate) h2: tokio::sync::mpsc::Sender<std::io::Result<TlsConn>>,
    /// The links being served, by peer.
    pub(crate) served: Arc<crate::link::Served>,
    /// The pool's table, which takes links peers opened.
    pub(crate) table: Arc<Table>,
    /// Signs this node's opening back to the peer.
    pub(crate) creds: Arc<dyn Credentials>,
}

/// Serves one accepted link until it closes (see [`crate::end`]); `prefix` holds bytes the
/// accept loop already read from it, and `token` counts it toward the node's drain until its
/// end takes over.
pub(crate) async fn serve_conn(
    io: Box<dyn Conn>,
    prefix: Bytes,
    peer: PeerInfo,
    serve: Serve,
    token: tokio_util::task::task_tracker::TaskTrackerToken,
) {
    let serving = serve.serving.clone();
    let (read, write) = tokio::io::split(io);
    let mut reader = FrameReader::with_prefix(Box::new(read), serving.max_frame, &prefix);
    let (writer, flusher) = FrameWriter::new(Box::new(write));
    tokio::spawn(flusher);
    let opened = tokio::time::timeout(OPENING_TIMEOUT, open(&*serve.handler, &mut reader, &peer))
        .await
        .unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(
                "no opening within the time limit",
            ))
        });
    let (claimed, offered) = match opened {
        Ok(opening) => opening,
        Err(status) => {
            let _ = writer.write(&framing::encode(&result_of(0, Err(status.clone()))));
            tracing::debug!(peer = %peer.remote, "refused an invoke stream: {}", status.message());
            writer.close();
            return;
        }
    };
    // With TLS, the certificate says who the peer is.
    let name = peer.identity.as_ref().map_or(claimed, |i| i.name.clone());
    let mut answer = framing::encode(&pb::InvokeResult::default());
    framing::put_raw(&mut answer, &serving.creds.opening_cookie(&name));
    let _ = writer.write(&answer);
    let _served = serving.served.add(name.clone());
    let remote = peer.remote.to_string();
    let link = Opened {
        reader,
        writer,
        role: Role::Acceptor,
        peer,
        name: name.clone(),
    };
    let (mux, pipe, reading) = crate::mux::start(link, Some(serve), serving.crashed.clone());
    drop(token);
    let offer = async {
        if !offered || name.is_empty() || !serving.table.wants_inbound(&name) {
            return;
        }
        match crate::pool::channel_over(&remote, pipe).await {
            Ok(channel) => {
                let link = Link {
                    mux: Arc::new(mux),
                    channel,
                };
                if serving.table.offer_inbound(&name, link).is_none() {
                    tracing::debug!(peer = %name, "calls to the peer use the link it opened");
                }
            }
            Err(e) => tracing::debug!(peer = %name, "no HTTP/2 client on the link it opened: {e}"),
        }
    };
    tokio::join!(crate::end::read(reading), offer);
}

/// Reads and checks the opening; gives the name the peer claims, and whether it offers the
/// link for this node's calls too (not when it opened it for one call).
async fn open(
    handler: &dyn Answer,
    reader: &mut FrameReader,
    peer: &PeerInfo,
) -> Result<(String, bool), Status> {
    let bad = |e: std::io::Error| Status::invalid_argument(format!("a bad opening: {e}"));
    if reader.take(MAGIC.len()).await.map_err(bad)?[..] != MAGIC[..] {
        return Err(Status::invalid_argument(
            "not an invoke stream of this version: every node of a cluster must run the same \
             version of the link (upgrade the older ones)",
        ));
    }
    let cookie = reader.next_raw().await.map_err(bad)?.unwrap_or_default();
    let claimed = reader.next_raw().await.map_err(bad)?.unwrap_or_default();
    let flags = reader.next_raw().await.map_err(bad)?.unwrap_or_default();
    handler.authorize_opening(&opening_request(&cookie, peer)?)?;
    let claimed = String::from_utf8(claimed.to_vec())
        .map_err(|_| Status::invalid_argument("the opening's node name is not UTF-8"))?;
    Ok((claimed, flags.first() == Some(&1)))
}

/// The request an opening's `cookie` is checked as, from `peer`.
pub(crate) fn opening_request(
    cookie: &[u8],
    peer: &PeerInfo,
) -> Result<tonic::Request<()>, Status> {
    let mut request = tonic::Request::new(());
    if !cookie.is_empty() {
        let value = std::str::from_utf8(cookie)
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Status::unauthenticated("the cookie is not a valid header value"))?;
        request
            .metadata_mut()
            .insert(steinadler_security::COOKIE_HEADER, value);
    }
    request.extensions_mut().insert(peer.clone());
    Ok(request)
}

/// The frame that answers frame `id`.
pub fn result_of(id: u64, result: Result<pb::InvokeResult, Status>) -> pb::InvokeResult {
    match result {
        Ok(mut ok) => {
            ok.id = id;
            ok
        }
        Err(s) => pb::InvokeResult {
            id,
            status_code: s.code() as i32,
            status_message: s.message().to_owned(),
            ..Default::default()
        },
    }
}
