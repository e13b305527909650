//! Connections to peers: one HTTP/2 channel per address and expected name, reused by every call.
//!
//! [`endpoint`] is the only place a connection's HTTP/2 settings are made; TLS is layered on by
//! [`crate::tls::connect`].

use crate::mux::Mux;
use crate::tls::{self, ClientTls};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug)]
pub(crate) struct Peers {
    channels: Mutex<HashMap<(String, String), Channel>>,
    /// One invocation stream per peer (`crate::mux`), by the peer's name: its address and the
    /// stream. Looked up on every remote call without an allocation or an await.
    muxes: Mutex<HashMap<String, (String, Arc<Mux>)>>,
    /// Held while a stream is opened, so that concurrent callers open one, not one each.
    pub(crate) opening: tokio::sync::Mutex<()>,
    /// The invoke streams peers opened to this node (`crate::mux_server`), drained on shutdown.
    pub(crate) served: tokio_util::task::TaskTracker,
}

/// A peer could not be connected to; the request was never sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {addr}: {detail}")]
pub(crate) struct ConnectError {
    pub(crate) addr: String,
    /// The error with its causes (a certificate problem shows up only in the causes).
    pub(crate) detail: String,
}

impl Peers {
    pub(crate) fn new() -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            muxes: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            served: tokio_util::task::TaskTracker::new(),
        }
    }

    /// The channel to the node `name` at `addr`, connecting first if there is none yet.
    /// With TLS on, the peer's certificate must be issued to `name`.
    pub(crate) async fn channel(
        &self,
        addr: &str,
        name: &str,
        tls: ClientTls,
    ) -> Result<Channel, ConnectError> {
        let key = (addr.to_owned(), name.to_owned());
        let cached = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let channel = match cached {
            Some(c) => c,
            None => {
                let channel = tls::connect(addr, tls).await.map_err(|e| ConnectError {
                    addr: addr.to_owned(),
                    detail: tls::chain(&e),
                })?;
                self.channels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, channel.clone());
                channel
            }
        };
        Ok(channel)
    }

    /// Forgets every channel, so the next calls connect with fresh certificates.
    pub(crate) fn clear(&self) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.muxes.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The live invoke stream to the peer `name` at `addr`, if there is one.
    pub(crate) fn live_mux(&self, addr: &str, name: &str) -> Option<Arc<Mux>> {
        let muxes = self.muxes.lock().unwrap_or_else(|e| e.into_inner());
        match muxes.get(name) {
            Some((a, mux)) if a == addr && mux.is_alive() => Some(mux.clone()),
            _ => None,
        }
    }

    /// Keeps `mux` as the stream to the peer `name` at `addr`.
    pub(crate) fn keep_mux(&self, addr: &str, name: &str, mux: Arc<Mux>) {
        self.muxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), (addr.to_owned(), mux));
    }
}

/// The one place a connection is configured.
pub(crate) fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5)))
}
