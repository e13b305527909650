//! [`Client`]: talks to one node, for the CLI and any Rust program.

use crate::coordinator::NodeResult;
use crate::peers;
use crate::wire;
use steinadler_core::ModuleId;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::node_client::NodeClient;
use tonic::transport::Channel;

/// Deploy chunks are this large, so a module of any size streams within message limits.
const CHUNK: usize = 1 << 20;

/// A client of one node.
#[derive(Debug, Clone)]
pub struct Client {
    inner: NodeClient<Channel>,
    addr: String,
}

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error(
        "cannot reach a node at {addr}: {source}. Is it running? Pass its gRPC address with --node or STEINADLER_NODE"
    )]
    Connect {
        /// The address tried.
        addr: String,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// The node refused or failed the request.
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
}

impl Client {
    /// Connects to the node's gRPC address, like `127.0.0.1:7100`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] if nothing answers there.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let channel = peers::endpoint(addr)
            .map_err(connect_err)?
            .connect()
            .await
            .map_err(connect_err)?;
        Ok(Self {
            inner: NodeClient::new(channel)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
            addr: addr.to_owned(),
        })
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Uploads a module in chunks and names it; returns its id and functions.
    ///
    /// # Errors
    ///
    /// The node's refusal, e.g. `INVALID_ARGUMENT` for bytes that are not a Steinadler module.
    pub async fn deploy(
        &mut self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(ModuleId, Vec<String>), ClientError> {
        let id = ModuleId::of(bytes);
        let mut chunks: Vec<pb::DeployChunk> = bytes
            .chunks(CHUNK)
            .map(|c| pb::DeployChunk {
                data: bytes::Bytes::copy_from_slice(c),
                ..Default::default()
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(pb::DeployChunk::default());
        }
        chunks[0].name = name.to_owned();
        chunks[0].expected_id = id.as_bytes().to_vec().into();
        let reply = self
            .inner
            .deploy(tokio_stream::iter(chunks))
            .await?
            .into_inner();
        Ok((wire::module_id(&reply.id)?, reply.functions))
    }

    /// Runs a function on the nodes `target` selects (see [`Target`](crate::Target)).
    ///
    /// # Errors
    ///
    /// The coordinating node's refusal: an unknown module, a bad target, or no matching node.
    pub async fn invoke(
        &mut self,
        target: &str,
        module: &str,
        function: &str,
        args: Vec<u8>,
        deadline: std::time::Duration,
        idempotent: bool,
    ) -> Result<Vec<NodeResult>, ClientError> {
        let mut request = tonic::Request::new(pb::InvokeOnRequest {
            target: target.to_owned(),
            module: module.to_owned(),
            function: function.to_owned(),
            args: args.into(),
            limits: Some(pb::Limits {
                deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
                memory_bytes: 0,
            }),
            idempotent,
        });
        // The node's own deadline plus slack for the network.
        request.set_timeout(deadline + std::time::Duration::from_secs(2));
        let reply = self.inner.invoke_on(request).await?.into_inner();
        Ok(reply
            .results
            .into_iter()
            .map(NodeResult::from_reply)
            .collect())
    }

    /// Echoes `payload` through the node: a bare gRPC round trip.
    ///
    /// # Errors
    ///
    /// The node's refusal.
    pub async fn ping(&mut self, payload: bytes::Bytes) -> Result<bytes::Bytes, ClientError> {
        Ok(self
            .inner
            .ping(pb::PingRequest { payload })
            .await?
            .into_inner()
            .payload)
    }

    /// The live members, as the node sees them.
    ///
    /// # Errors
    ///
    /// The node's refusal.
    pub async fn members(&mut self) -> Result<Vec<pb::Member>, ClientError> {
        Ok(self
            .inner
            .list_members(pb::ListMembersRequest {})
            .await?
            .into_inner()
            .members)
    }

    /// The modules the node holds.
    ///
    /// # Errors
    ///
    /// The node's refusal.
    pub async fn modules(&mut self) -> Result<pb::ListModulesReply, ClientError> {
        Ok(self
            .inner
            .list_modules(pb::ListModulesRequest {})
            .await?
            .into_inner())
    }
}
