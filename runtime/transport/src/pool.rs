//! [`Transport`]: a node's connections to its peers, and the bookkeeping of what arrives.
//!
//! Connections to peers: one HTTP/2 channel per address and expected name, and one invoke
//! stream ([`Mux`]) per peer, both reused by every call and reopened after they break.
//! [`endpoint`] is the only place a connection's HTTP/2 settings are made; TLS is layered on by
//! [`crate::connect`].

use crate::Credentials;
use crate::mux::Mux;
use crate::server::Handler;
use crate::tls::{self, TlsConn};
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Settings of the connection layer.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The largest frame read from an invoke stream, in bytes.
    pub max_frame_bytes: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 << 20,
        }
    }
}

/// A node's connection layer: "a connection to peer X" ([`Transport::channel`],
/// [`Transport::mux`]) and "serve what arrives" ([`Transport::incoming_tls`],
/// [`Transport::incoming_plain`]).
#[derive(Debug)]
pub struct Transport {
    config: TransportConfig,
    creds: Arc<dyn Credentials>,
    channels: Mutex<HashMap<(String, String), Channel>>,
    /// One invocation stream per peer, by the peer's name: its address and the stream. Looked
    /// up on every remote call without an allocation or an await.
    muxes: Mutex<HashMap<String, (String, Arc<Mux>)>>,
    /// Held while a stream is opened, so that concurrent callers open one, not one each.
    opening: tokio::sync::Mutex<()>,
    /// The invoke streams peers opened to this node, drained on shutdown.
    served: tokio_util::task::TaskTracker,
}

/// A peer could not be connected to; the request was never sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {addr}: {detail}")]
pub struct ConnectError {
    /// The address tried.
    pub addr: String,
    /// The error with its causes (a certificate problem shows up only in the causes).
    pub detail: String,
}

impl Transport {
    /// A connection layer that dials with `creds`.
    pub fn new(config: TransportConfig, creds: Arc<dyn Credentials>) -> Self {
        Self {
            config,
            creds,
            channels: Mutex::new(HashMap::new()),
            muxes: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            served: tokio_util::task::TaskTracker::new(),
        }
    }

    /// The channel to the node `name` at `addr`, connecting first if there is none yet.
    /// With TLS on, the peer's certificate must be issued to `name`.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] if the peer cannot be reached or its handshake fails.
    pub async fn channel(&self, addr: &str, name: &str) -> Result<Channel, ConnectError> {
        let key = (addr.to_owned(), name.to_owned());
        let cached = lock(&self.channels).get(&key).cloned();
        let channel = match cached {
            Some(c) => c,
            None => {
                let channel = tls::connect(addr, self.creds.client_tls(name))
                    .await
                    .map_err(|e| ConnectError {
                        addr: addr.to_owned(),
                        detail: tls::error_chain(&e),
                    })?;
                lock(&self.channels).insert(key, channel.clone());
                channel
            }
        };
        Ok(channel)
    }

    /// The invocation stream to the peer `name` at `addr`, opened on first use and again after
    /// it breaks.
    ///
    /// # Errors
    ///
    /// Why the stream could not be opened, as a message.
    pub async fn mux(&self, addr: &str, name: &str) -> Result<Arc<Mux>, String> {
        if let Some(mux) = self.live_mux(addr, name) {
            return Ok(mux);
        }
        // Boxed: every call's future would otherwise carry room for a TLS dial.
        Box::pin(async {
            let _opening = self.opening.lock().await;
            if let Some(mux) = self.live_mux(addr, name) {
                return Ok(mux);
            }
            let opened = Mux::open(&*self.creds, addr, name, self.config.max_frame_bytes).await;
            let mux = Arc::new(opened.map_err(|s| {
                format!("cannot open the invoke stream to {name}: {}", s.message())
            })?);
            lock(&self.muxes).insert(name.to_owned(), (addr.to_owned(), mux.clone()));
            Ok(mux)
        })
        .await
    }

    /// Forgets every channel and stream, so the next calls connect with fresh certificates.
    pub fn clear(&self) {
        lock(&self.channels).clear();
        lock(&self.muxes).clear();
    }

    /// The live invoke stream to the peer `name` at `addr`, if there is one.
    fn live_mux(&self, addr: &str, name: &str) -> Option<Arc<Mux>> {
        let muxes = lock(&self.muxes);
        match muxes.get(name) {
            Some((a, mux)) if a == addr && mux.is_alive() => Some(mux.clone()),
            _ => None,
        }
    }

    /// Accepts connections on `listener` and runs their TLS handshakes until `stopped`:
    /// yields those that speak HTTP/2, for tonic, and serves invoke streams with `handler`.
    pub fn incoming_tls<H: Handler>(
        &self,
        handler: Arc<H>,
        listener: TcpListener,
        stopped: watch::Receiver<bool>,
    ) -> ReceiverStream<io::Result<TlsConn>> {
        let max = self.config.max_frame_bytes;
        tls::incoming(handler, listener, stopped, self.served.clone(), max)
    }

    /// As [`Transport::incoming_tls`], in plaintext (`--insecure` clusters).
    pub fn incoming_plain<H: Handler>(
        &self,
        handler: Arc<H>,
        listener: TcpListener,
        stopped: watch::Receiver<bool>,
    ) -> ReceiverStream<io::Result<TcpStream>> {
        let max = self.config.max_frame_bytes;
        tls::plain_incoming(handler, listener, stopped, self.served.clone(), max)
    }

    /// Waits until the invoke streams peers opened to this node have finished their calls in
    /// flight (they stop reading when the node stops).
    pub async fn drain(&self) {
        self.served.close();
        self.served.wait().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The one place a connection is configured.
pub(crate) fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5)))
}
