//! A [`Client`] for a node that accepts no connections (`--no-inbound`): the connection runs
//! through one of its relays, as a `Relay.Tunnel` call ([`crate::relay`]), with TLS end to end
//! between the client and the node, which must present the node's own certificate.

use crate::client::{Client, ClientAuth, ClientError};
use crate::relay::{TUNNEL_BUFFER, chunks_after, data_of};
use std::net::{Ipv4Addr, SocketAddr};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::relay_client::RelayClient;
use steinadler_transport::{self as transport, ChunkConn, ClientTls, Tunnel};
use tokio::sync::mpsc;

impl Client {
    /// Connects to the node `node` through the first of its relays (gRPC addresses, as
    /// `ListMembers` gives them in `relay_addrs`) that reaches it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`], with each relay's failure, if none reaches it.
    pub async fn connect_through(
        relays: &[String],
        node: &str,
        auth: &ClientAuth,
    ) -> Result<Self, ClientError> {
        let mut failures = Vec::new();
        for relay in relays {
            match through(relay, node, auth).await {
                Ok(client) => return Ok(client),
                Err(e) => failures.push(format!("through {relay}: {e}")),
            }
        }
        Err(ClientError::Connect {
            addr: format!("{node}, which accepts no connections,"),
            detail: if failures.is_empty() {
                "it is attached to no relay yet".to_owned()
            } else {
                failures.join("; ")
            },
        })
    }
}

async fn through(relay: &str, node: &str, auth: &ClientAuth) -> Result<Client, String> {
    let (tls, signer) = Client::tls_of(auth).map_err(|e| e.to_string())?;
    // The node, not any node of the cluster, must answer at the tunnel's end.
    let tls = match tls {
        ClientTls::On { config, .. } => ClientTls::On {
            config,
            server_name: node.to_owned(),
        },
        ClientTls::Off => ClientTls::Off,
    };
    let channel = Client::connect(relay, auth)
        .await
        .map_err(|e| e.to_string())?
        .channel();
    let (out, data) = mpsc::channel(TUNNEL_BUFFER);
    let first = pb::RelayChunk {
        to: node.to_owned(),
        ..Default::default()
    };
    let replies = RelayClient::new(channel.clone())
        .tunnel(chunks_after(first, data))
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    let tunnel = Tunnel {
        conn: Box::new(ChunkConn::new(data_of(replies), out, channel)),
        via: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
    };
    let channel = transport::connect_over(relay, tunnel, tls)
        .await
        .map_err(|e| transport::error_chain(&e))?;
    Ok(Client::over(channel, relay, signer))
}
