//! The [`Client`] side of the cluster registry and the supervisor.

use crate::client::{Client, ClientError};
use crate::registry::RegistryEntry;
use crate::supervisor::{Child, ChildSpec};
use steinadler_core::{Pid, Term};
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::registry_client::RegistryClient;
use steinadler_proto::v1::supervisor_client::SupervisorClient;

impl Client {
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
