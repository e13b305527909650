//! Connections to peers: one HTTP/2 channel per address, reused by every call.
//!
//! TLS is a setting of this module alone: the endpoint it builds is the only place a connection
//! is configured.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use steinadler_proto::v1::node_client::NodeClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug)]
pub(crate) struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    max_message_bytes: usize,
}

/// A peer could not be connected to; the request was never sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {addr}: {source}")]
pub(crate) struct ConnectError {
    pub(crate) addr: String,
    #[source]
    pub(crate) source: tonic::transport::Error,
}

impl Peers {
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            max_message_bytes,
        }
    }

    /// A client for `addr`, connecting first if there is no channel yet.
    pub(crate) async fn client(&self, addr: &str) -> Result<NodeClient<Channel>, ConnectError> {
        let cached = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .cloned();
        let channel = match cached {
            Some(c) => c,
            None => {
                let channel = endpoint(addr)
                    .map_err(|source| ConnectError {
                        addr: addr.to_owned(),
                        source,
                    })?
                    .connect()
                    .await
                    .map_err(|source| ConnectError {
                        addr: addr.to_owned(),
                        source,
                    })?;
                self.channels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(addr.to_owned(), channel.clone());
                channel
            }
        };
        Ok(NodeClient::new(channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes))
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
