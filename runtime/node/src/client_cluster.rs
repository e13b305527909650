//! The [`Client`] side of the cluster registry, the supervisor and new join tokens.

use crate::client::{Client, ClientError};
use crate::registry::RegistryEntry;
use crate::supervisor::{Child, ChildSpec};
use steinadler_core::{Pid, Term};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::registry_client::RegistryClient;
use steinadler_proto::v1::supervisor_client::SupervisorClient;

/// A new join token, as [`Client::new_token`] returns it.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The token, `SA1-...`.
    pub token: String,
    /// Its generation, expiry and use limit.
    pub policy: steinadler_security::TokenPolicy,
    /// The live nodes that hold it, the one that made it first.
    pub nodes: Vec<String>,
    /// The live nodes that did not take it yet, each "name: reason"; they catch up later.
    pub missed: Vec<String>,
}

impl Client {
    /// Makes a new join token on this client's node, which offers it to every live member:
    /// the old token stops working on each. It lives `ttl` (the node's default, 24 h, if
    /// `None`) and admits `max_uses` joins (any number if `None`). Needs a node's material
    /// ([`ClientAuth::Node`](crate::ClientAuth::Node)) and the CA key (`ca_key_pem`), which
    /// the request proves.
    ///
    /// # Errors
    ///
    /// [`ClientError::Security`] if `ca_key_pem` does not parse; `PERMISSION_DENIED` with a
    /// client certificate or another CA's key, `FAILED_PRECONDITION` on a node that
    /// cannot make tokens (offline PKI, `--insecure`).
    pub async fn new_token(
        &self,
        ca_key_pem: &str,
        ttl: Option<std::time::Duration>,
        max_uses: Option<u32>,
    ) -> Result<NewToken, ClientError> {
        let path = "/steinadler.v1.Node/NewToken";
        let ttl_ms = ttl.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        let max_uses = max_uses.unwrap_or(0);
        let proof = steinadler_security::TokenAuthority::from_ca_key_pem(ca_key_pem)?
            .sign_request(ttl_ms, max_uses);
        let mut request = tonic::Request::new(pb::NewTokenRequest {
            ttl_ms,
            max_uses,
            proof: proof.to_vec().into(),
        });
        if let Some(signer) = &self.signer
            && let Ok(value) = signer
                .sign(path, &prost::Message::encode_to_vec(request.get_ref()))
                .parse()
        {
            request
                .metadata_mut()
                .insert(steinadler_security::COOKIE_HEADER, value);
        }
        let reply = pb::node_client::NodeClient::new(self.channel.clone())
            .new_token(request)
            .await?
            .into_inner();
        Ok(NewToken {
            token: reply.token,
            policy: reply
                .state
                .as_ref()
                .map(crate::tokens::policy_of)
                .unwrap_or_default(),
            nodes: reply.nodes,
            missed: reply.missed,
        })
    }

    fn registry_api(&self) -> RegistryClient<tonic::transport::Channel> {
        RegistryClient::new(self.channel.clone())
    }

    fn supervisor_api(&self) -> SupervisorClient<tonic::transport::Channel> {
        SupervisorClient::new(self.channel.clone())
    }

    /// Registers the global name `name` for `pid`, which may run on any node.
    ///
    /// # Errors
    ///
    /// `ALREADY_EXISTS` naming the holder, `INVALID_ARGUMENT` for a malformed name,
    /// `NOT_FOUND` if `pid` does not run, `UNAVAILABLE` if the name's home node is unreachable.
    pub async fn register_global(&self, name: &str, pid: &Pid) -> Result<(), ClientError> {
        self.registry_api()
            .register(pb::RegisterRequest {
                name: name.to_owned(),
                pid: Term::Pid(pid.clone()).encode().into(),
            })
            .await?;
        Ok(())
    }

    /// Drops a global name; whether it was registered.
    ///
    /// # Errors
    ///
    /// The node's refusal, or `UNAVAILABLE` if the holder's node is unreachable.
    pub async fn unregister_global(&self, name: &str) -> Result<bool, ClientError> {
        let reply = self
            .registry_api()
            .unregister(pb::UnregisterRequest {
                name: name.to_owned(),
            })
            .await?;
        Ok(reply.into_inner().removed)
    }

    /// The process holding a global name.
    ///
    /// # Errors
    ///
    /// The node's refusal.
    pub async fn whereis_global(&self, name: &str) -> Result<Option<Pid>, ClientError> {
        let reply = self
            .registry_api()
            .whereis(pb::WhereisRequest {
                name: name.to_owned(),
                local_only: false,
            })
            .await?
            .into_inner();
        if reply.pid.is_empty() {
            return Ok(None);
        }
        Ok(Some(crate::messaging::decode_pid(&reply.pid)?))
    }

    /// Every global name the node knows of.
    ///
    /// # Errors
    ///
    /// The node's refusal.
    pub async fn registry(&self) -> Result<Vec<RegistryEntry>, ClientError> {
        let reply = self
            .registry_api()
            .list(pb::RegistryListRequest {})
            .await?
            .into_inner();
        Ok(reply
            .names
            .iter()
            .map(RegistryEntry::from_wire)
            .collect::<Result<_, _>>()?)
    }

    /// Opens `module`'s stream `function` with `args` on this client's node; see
    /// [`StreamRef`](crate::StreamRef).
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for an unknown module or stream, `INVALID_ARGUMENT` for arguments the
    /// stream refuses, `RESOURCE_EXHAUSTED` when the node runs too many instances.
    pub async fn open_stream(
        &self,
        module: &str,
        function: &str,
        args: &Term,
        options: crate::StreamOptions,
    ) -> Result<crate::StreamRef, ClientError> {
        let source = steinadler_host::StreamSource::Function {
            module: module.to_owned(),
            function: function.to_owned(),
        };
        Ok(crate::StreamRef::open(self.channel.clone(), &source, args, options).await?)
    }

    /// Opens a stream whose items the process `process` (a PID or a registered name) on this
    /// client's node emits; see [`Node::open_process_stream`](crate::Node::open_process_stream).
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` if no such process runs on the node, `INVALID_ARGUMENT` for a malformed
    /// address.
    pub async fn open_process_stream(
        &self,
        process: &str,
        args: &Term,
        options: crate::StreamOptions,
    ) -> Result<crate::StreamRef, ClientError> {
        let source = steinadler_host::StreamSource::Process(process.to_owned());
        Ok(crate::StreamRef::open(self.channel.clone(), &source, args, options).await?)
    }

    /// The baseline of the stream benchmark: `count` copies of `batch` (holding
    /// `items_per_batch` items), streamed back by the node with no producer behind them. Each
    /// batch comes as a [`Sequence`] to decode, as [`StreamRef::next_batch`] gives them, so
    /// that the bench consumes both with the same code.
    ///
    /// [`Sequence`]: steinadler_core::codec::Sequence
    /// [`StreamRef::next_batch`]: crate::StreamRef::next_batch
    ///
    /// # Errors
    ///
    /// The node's refusal or a broken link; a batch that does not decode is `DATA_LOSS`.
    pub async fn stream_echo(
        &self,
        batch: bytes::Bytes,
        count: u32,
        items_per_batch: u64,
    ) -> Result<
        impl futures::Stream<Item = Result<steinadler_core::codec::Sequence<bytes::Bytes>, ClientError>>
        + Send
        + Unpin
        + use<>,
        ClientError,
    > {
        use futures::StreamExt as _;
        let stream = steinadler_proto::v1::streams_client::StreamsClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .echo(pb::StreamEchoRequest {
                batch,
                count,
                items_per_batch,
            })
            .await?
            .into_inner();
        Ok(stream.map(|batch| {
            crate::streams::consume::batch_items(batch?.items).map_err(|e| {
                tonic::Status::data_loss(format!("an echoed batch did not decode: {e}")).into()
            })
        }))
    }

    /// Starts a supervised child; answers once it runs.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a malformed spec, `FAILED_PRECONDITION` when no node fits the
    /// placement, and the start's own failure (unknown module, failed `init`).
    pub async fn start_child(&self, spec: &ChildSpec) -> Result<Child, ClientError> {
        let reply = self
            .supervisor_api()
            .start_child(pb::StartChildRequest {
                spec: Some(spec.to_wire()),
                id: String::new(),
            })
            .await?
            .into_inner();
        let record = reply.child.unwrap_or_default();
        Ok(Child::from_wire(&record)?)
    }

    /// Stops a supervised child for good.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` if there is no such child.
    pub async fn stop_child(&self, id: &str) -> Result<Child, ClientError> {
        let reply = self
            .supervisor_api()
            .stop_child(pb::StopChildRequest { id: id.to_owned() })
            .await?
            .into_inner();
        Ok(Child::from_wire(&reply.child.unwrap_or_default())?)
    }

    /// Every supervised child the node knows of.
    ///
    /// # Errors
    ///
    /// The node's refusal.
    pub async fn children(&self) -> Result<Vec<Child>, ClientError> {
        let reply = self
            .supervisor_api()
            .list_children(pb::ListChildrenRequest {})
            .await?
            .into_inner();
        Ok(reply
            .children
            .iter()
            .map(Child::from_wire)
            .collect::<Result<_, _>>()?)
    }
}
