//! TLS on the wire: the server's accept loop and the client's connector.
//!
//! The node runs the TLS handshake itself instead of leaving it to tonic, for three reasons:
//! every refused handshake (plain TCP, a foreign CA, an expired certificate) is logged and
//! counted ([`Handler::refused_tls`]); the configuration can be swapped without a restart
//! ([`Handler::server_config`] is asked for every connection); and the verified peer identity
//! is read once per connection and handed to every request as its connect info
//! ([`PeerInfo`]). Which handshakes may run, and how refusals are logged, is
//! [`crate::admit`]'s.
//!
//! After the handshake the first bytes tell the two kinds of connection apart: [`MAGIC`]
//! starts a link from a peer node, served by [`crate::server`] (which hands the link's HTTP/2
//! side to tonic in turn); anything else (a client's) goes to tonic as HTTP/2.

use crate::end::Serve;
use crate::server::{Handler, MAGIC};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::transport::server::Connected;

use crate::admit::{
    HANDSHAKE_TIMEOUT, Handshakes, MAX_HANDSHAKES, MAX_WAITING, PER_SOURCE, RefusalLog,
    WAITING_PER_SOURCE,
};

/// What the TLS handshake established about the caller; the server stores it in each request's
/// extensions (as its connect info).
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The caller's address.
    pub remote: SocketAddr,
    /// The identity its certificate names; `None` without a client certificate.
    pub identity: Option<steinadler_security::Identity>,
}

/// A byte stream the streams run on: TCP, or TLS over TCP.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// An accepted connection that speaks HTTP/2, for tonic: a client's TLS (or plain TCP)
/// connection, or the HTTP/2 side of a peer's link.
pub struct TlsConn {
    io: Box<dyn Conn>,
    info: PeerInfo,
    /// Bytes read while telling HTTP/2 from an invoke stream, served before the rest.
    prefix: Bytes,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl TlsConn {
    pub(crate) fn new(io: Box<dyn Conn>, info: PeerInfo, prefix: Bytes) -> Self {
        Self { io, info, prefix }
    }
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    // (`Box<dyn Conn>` forwards both.)
}

/// The next connection, or `None` once `stopped` turns true. A failed accept (out of file
/// descriptors, say) is logged and retried after 50 ms.
async fn accept(
    listener: &TcpListener,
    stopped: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            _ = async { stopped.wait_for(|s| *s).await.is_ok() } => return None,
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Accepts TCP connections and completes TLS handshakes until `stopped`; yields the good ones
/// that speak HTTP/2 (and the HTTP/2 sides of links) into `serve.h2`, and serves links itself,
/// with `handler`, tracked by `serve.tracker`.
pub(crate) fn incoming<H: Handler>(
    handler: Arc<H>,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    serve: Serve,
) {
    tokio::spawn(async move {
        let waiting = Arc::new(Handshakes::new(MAX_WAITING, WAITING_PER_SOURCE));
        let handshakes = Arc::new(Handshakes::new(MAX_HANDSHAKES, PER_SOURCE));
        let log = Arc::new(RefusalLog::new());
        loop {
            let Some((tcp, remote)) = accept(&listener, &mut stopped).await else {
                return;
            };
            // Room for every new connection: when full, the oldest waiting one is cut off (see
            // `crate::admit`), and counted as refused.
            let (hello, cut) = waiting.admit(remote.ip());
            if let Some(victim) = cut {
                refuse(
                    &*handler,
                    &log,
                    victim,
                    TlsRefusal::CutOff,
                    "cut off: too many connections wait for their ClientHello, this one the longest",
                );
            }
            let _ = tcp.set_nodelay(true);
            let (handler, serve, log) = (handler.clone(), serve.clone(), log.clone());
            let handshakes = handshakes.clone();
            tokio::spawn(async move {
                let arrived = tokio::select! {
                    arrived = crate::admit::client_hello(&tcp) => arrived,
                    () = hello.cut.cancelled() => return,
                };
                drop(hello);
                if let Err(why) = arrived {
                    return refuse(&*handler, &log, remote, TlsRefusal::NoClientHello, &why);
                }
                let (admitted, cut) = handshakes.admit(remote.ip());
                if let Some(victim) = cut {
                    refuse(
                        &*handler,
                        &log,
                        victim,
                        TlsRefusal::CutOff,
                        "cut off: too many TLS handshakes in progress, this one the oldest",
                    );
                }
                let Some(config) = handler.server_config() else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let result = tokio::select! {
                    result = handshake => result,
                    () = admitted.cut.cancelled() => return,
                };
                drop(admitted);
                let io = match result {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => {
                        let reason = TlsRefusal::of(&e);
                        return refuse(&*handler, &log, remote, reason, &e.to_string());
                    }
                    Err(_) => {
                        let why = format!("no handshake within {HANDSHAKE_TIMEOUT:?}");
                        return refuse(&*handler, &log, remote, TlsRefusal::Timeout, &why);
                    }
                };
                let identity = match identity_in(io.get_ref().1.peer_certificates()) {
                    Ok(identity) => identity,
                    Err(e) => {
                        let why = format!("unusable client certificate: {e}");
                        let reason = TlsRefusal::UnusableCertificate;
                        return refuse(&*handler, &log, remote, reason, &why);
                    }
                };
                tracing::debug!(peer = %remote, identity = ?identity, "TLS connection accepted");
                dispatch(Box::new(io), PeerInfo { remote, identity }, serve).await;
            });
        }
    });
}

/// Serves a connection whose handshake is done by its first bytes: [`MAGIC`] starts a peer's
/// link, served here until it closes; anything else is a client's HTTP/2, handed to tonic.
pub(crate) async fn dispatch(mut io: Box<dyn Conn>, info: PeerInfo, serve: Serve) {
    let mut first = vec![0; 64];
    let n = match tokio::time::timeout(HANDSHAKE_TIMEOUT, io.read(&mut first)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return,
    };
    first.truncate(n);
    let prefix = Bytes::from(first);
    if prefix[0] == MAGIC[0] {
        let token = serve.serving.tracker.token();
        crate::server::serve_conn(io, prefix, info, serve, token).await;
    } else {
        let _ = serve
            .serving
            .h2
            .send(Ok(TlsConn::new(io, info, prefix)))
            .await;
    }
}

/// Counts a refused connection and logs it (at most a line a second).
fn refuse<H: Handler>(
    handler: &H,
    log: &RefusalLog,
    peer: impl std::fmt::Display,
    reason: TlsRefusal,
    why: &str,
) {
    handler.refused_tls(reason);
    log.refused(peer, why);
}

/// Why a connection was refused during or right after its TLS handshake: a few fixed kinds,
/// for counting ([`Handler::refused_tls`]); the log line says more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRefusal {
    /// Cut off to make room: too many connections waited for a ClientHello or a handshake.
    CutOff,
    /// No whole ClientHello arrived: a plaintext client, one that closed, or one too slow.
    NoClientHello,
    /// The handshake did not finish in time.
    Timeout,
    /// The client sent no certificate.
    NoCertificate,
    /// The client's certificate is expired or not valid yet.
    Expired,
    /// The client's certificate is not signed by this cluster's CA.
    UnknownCa,
    /// Any other handshake failure.
    Handshake,
    /// The handshake passed but the certificate names no usable identity.
    UnusableCertificate,
}

impl TlsRefusal {
    /// The kind of a failed handshake, from the error rustls gave.
    pub(crate) fn of(e: &std::io::Error) -> Self {
        use rustls::{CertificateError as C, Error as E};
        match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
            Some(E::NoCertificatesPresented) => Self::NoCertificate,
            Some(E::InvalidCertificate(
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
            )) => Self::Expired,
            Some(E::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => Self::UnknownCa,
            _ => Self::Handshake,
        }
    }

    /// A short snake_case name, for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CutOff => "cut_off",
            Self::NoClientHello => "no_client_hello",
            Self::Timeout => "handshake_timeout",
            Self::NoCertificate => "no_client_certificate",
            Self::Expired => "certificate_expired",
            Self::UnknownCa => "unknown_ca",
            Self::Handshake => "handshake",
            Self::UnusableCertificate => "unusable_certificate",
        }
    }
}

/// As [`incoming`], in plaintext.
pub(crate) fn plain_incoming(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    serve: Serve,
) {
    let tx = serve.serving.h2.clone();
    tokio::spawn(async move {
        loop {
            let Some((tcp, remote)) = accept(&listener, &mut stopped).await else {
                return;
            };
            // Without TCP_NODELAY, replies stalled for 40 ms (Nagle against delayed ACK).
            let _ = tcp.set_nodelay(true);
            let (tx, serve) = (tx.clone(), serve.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                let info = PeerInfo {
                    remote,
                    identity: None,
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
                    Ok(Ok(1)) if first[0] == MAGIC[0] => {
                        let token = serve.serving.tracker.token();
                        tokio::spawn(crate::server::serve_conn(
                            Box::new(tcp),
                            Bytes::new(),
                            info,
                            serve,
                            token,
                        ));
                    }
                    Ok(Ok(1)) => {
                        let _ = tx
                            .send(Ok(TlsConn::new(Box::new(tcp), info, Bytes::new())))
                            .await;
                    }
                    _ => {}
                }
            });
        }
    });
}

/// How a client connection is secured.
#[derive(Debug, Clone)]
pub enum ClientTls {
    /// Plaintext (`--insecure` clusters).
    Off,
    /// TLS with `config`, checking that the server's certificate is valid for `server_name`:
    /// a node's name, or `steinadler_security::ANY_NODE_SERVER_NAME`.
    On {
        /// The client's rustls configuration, with its certificate.
        config: Arc<rustls::ClientConfig>,
        /// The name the server's certificate must be valid for.
        server_name: String,
    },
}

/// Connects a channel to `addr`, with TLS as `tls` says.
///
/// # Errors
///
/// tonic's transport error when nothing answers or the handshake fails; [`error_chain`] gives
/// its causes, where a certificate problem shows up.
pub async fn connect(
    addr: &str,
    tls: ClientTls,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let endpoint = crate::pool::endpoint(addr)?;
    let (config, server_name) = match tls {
        ClientTls::Off => return endpoint.connect().await,
        ClientTls::On {
            config,
            server_name,
        } => (config, server_name),
    };
    let addr = addr.to_owned();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let (config, server_name, addr) = (config.clone(), server_name.clone(), addr.clone());
        async move {
            dial_tls(&addr, config, &server_name)
                .await
                .map(TokioIo::new)
        }
    });
    endpoint.connect_with_connector(connector).await
}

/// As [`connect`], over `tunnel` (to a node that accepts no connections, through its relay)
/// instead of a TCP connection to `addr`, which only names the channel. The channel has that
/// one connection: once it breaks, its calls fail, and a new channel needs a new tunnel.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_over(
    addr: &str,
    tunnel: crate::Tunnel,
    tls: ClientTls,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let tunnel = Arc::new(std::sync::Mutex::new(Some(tunnel)));
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let (tunnel, tls) = (crate::lock(&tunnel).take(), tls.clone());
        async move {
            let tunnel = tunnel.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the tunnel closed; connect again for a new one",
                )
            })?;
            over_tunnel(tunnel, tls)
                .await
                .map(|(io, _)| TokioIo::new(io))
        }
    });
    crate::pool::endpoint(addr)?
        .connect_with_connector(connector)
        .await
}

/// A byte stream to `addr`, with TLS as `tls` says (for invoke streams, [`crate::Mux`]).
///
/// # Errors
///
/// The connect or handshake error.
pub async fn dial(addr: &str, tls: ClientTls) -> io::Result<Box<dyn Conn>> {
    Ok(dial_peer(addr, tls).await?.0)
}

/// As [`dial`], with the peer as what this node serves on the stream sees it: its address,
/// and with TLS the identity its server certificate names.
pub(crate) async fn dial_peer(addr: &str, tls: ClientTls) -> io::Result<(Box<dyn Conn>, PeerInfo)> {
    match tls {
        ClientTls::Off => {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let info = PeerInfo {
                remote: tcp.peer_addr()?,
                identity: None,
            };
            Ok((Box::new(tcp), info))
        }
        ClientTls::On {
            config,
            server_name,
        } => {
            let io = dial_tls(addr, config, &server_name).await?;
            let identity = server_identity(io.get_ref().1.peer_certificates())?;
            let info = PeerInfo {
                remote: io.get_ref().0.peer_addr()?,
                identity,
            };
            Ok((Box::new(io), info))
        }
    }
}

/// As [`identity_in`], for a server's certificate, as an I/O error.
fn server_identity(
    certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
) -> io::Result<Option<steinadler_security::Identity>> {
    identity_in(certs).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unusable server certificate: {e}"),
        )
    })
}

/// `name` as the name a server's certificate must be valid for.
fn tls_server_name(name: &str) -> io::Result<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid TLS server name"),
        )
    })
}

/// The identity the first of a peer's `certs` names; `None` without a certificate.
pub(crate) fn identity_in(
    certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
) -> Result<Option<steinadler_security::Identity>, String> {
    certs
        .and_then(|c| c.first())
        .map(|cert| steinadler_security::identity_of(cert).map_err(|e| e.to_string()))
        .transpose()
}

async fn dial_tls(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = tls_server_name(server_name)?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// As [`dial_peer`], over a tunnel through a relay instead of TCP: the TLS session runs end
/// to end, and the peer's address is the relay's.
pub(crate) async fn over_tunnel(
    tunnel: crate::Tunnel,
    tls: ClientTls,
) -> io::Result<(Box<dyn Conn>, PeerInfo)> {
    let remote = tunnel.via;
    let (config, server_name) = match tls {
        ClientTls::Off => {
            let info = PeerInfo {
                remote,
                identity: None,
            };
            return Ok((tunnel.conn, info));
        }
        ClientTls::On {
            config,
            server_name,
        } => (config, server_name),
    };
    let io = tokio_rustls::TlsConnector::from(config)
        .connect(tls_server_name(&server_name)?, tunnel.conn)
        .await?;
    let identity = server_identity(io.get_ref().1.peer_certificates())?;
    Ok((Box::new(io), PeerInfo { remote, identity }))
}

/// An error with its causes, for messages: tonic's transport errors say only "transport error"
/// at the top.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
