//! [`Client`]: talks to one node, for the CLI and any Rust program.

use crate::coordinator::NodeResult;
use crate::invoke_results::InvokeResults;
use crate::wire;
use std::sync::Arc;
use steinadler_core::ModuleId;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::node_client::NodeClient;
use steinadler_security::{ANY_NODE_SERVER_NAME, ClientCredentials, CookieSigner, Material};
use steinadler_transport::{self as transport, ClientTls};
use tonic::transport::Channel;

/// Deploy chunks are this large, so a module of any size streams within message limits.
const CHUNK: usize = 1 << 20;

/// A client of one node.
#[derive(Debug, Clone)]
pub struct Client {
    inner: NodeClient<Channel>,
    /// The connection, for the registry and supervisor services.
    pub(crate) channel: Channel,
    addr: String,
    /// Signs node-only requests when the client holds a node's material.
    pub(crate) signer: Option<Arc<CookieSigner>>,
}

/// How a [`Client`] proves who it is.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Plaintext, for clusters started with `--insecure`.
    Insecure,
    /// Mutual TLS with a client certificate, from `steinadler login` or
    /// `steinadler cluster issue-client`. Enough to deploy, invoke and inspect.
    Certificate(Arc<ClientCredentials>),
    /// Mutual TLS with a node's own certificate and cluster cookie, read from its security
    /// directory: for operator actions such as rotating the gossip key.
    Node(Arc<Material>),
}

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error(
        "cannot reach a node at {addr}: {detail}. Is it running? Pass its gRPC address with --node or STEINADLER_NODE"
    )]
    Connect {
        /// The address tried.
        addr: String,
        /// The cause, with its chain (a certificate problem shows only there).
        detail: String,
    },
    /// The credentials could not be used.
    #[error(transparent)]
    Security(#[from] steinadler_security::SecurityError),
    /// The node refused or failed the request.
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
    /// The certificate a renewal returned does not fit the credentials it should replace.
    #[error("the node at {addr} returned an unusable client certificate: {reason}")]
    Renewal {
        /// The node.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Client {
    /// Connects to the node's gRPC address, like `127.0.0.1:7100`. With a certificate, the node
    /// must present a node certificate from the same cluster CA.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] if nothing answers there or the TLS handshake fails.
    pub async fn connect(addr: &str, auth: &ClientAuth) -> Result<Self, ClientError> {
        let (tls, signer) = Self::tls_of(auth)?;
        let channel = transport::connect(addr, tls)
            .await
            .map_err(|e| ClientError::Connect {
                addr: addr.to_owned(),
                detail: transport::error_chain(&e),
            })?;
        Ok(Self::over(channel, addr, signer))
    }

    /// A client on `channel`, to the node at `addr`.
    pub(crate) fn over(channel: Channel, addr: &str, signer: Option<Arc<CookieSigner>>) -> Self {
        Self {
            channel: channel.clone(),
            inner: NodeClient::new(channel)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
            addr: addr.to_owned(),
            signer,
        }
    }

    /// How `auth` secures a connection (to any node of the cluster), and its cookie signer.
    pub(crate) fn tls_of(
        auth: &ClientAuth,
    ) -> Result<(ClientTls, Option<Arc<CookieSigner>>), ClientError> {
        Ok(match auth {
            ClientAuth::Insecure => (ClientTls::Off, None),
            ClientAuth::Certificate(c) => (
                ClientTls::On {
                    config: steinadler_security::client_config(
                        &c.ca_cert_pem,
                        Some((&c.cert_pem, &c.key_pem)),
                    )?,
                    server_name: ANY_NODE_SERVER_NAME.to_owned(),
                },
                None,
            ),
            ClientAuth::Node(m) => (
                ClientTls::On {
                    config: steinadler_security::client_config(
                        &m.ca_cert_pem,
                        Some((&m.cert_pem, &m.key_pem)),
                    )?,
                    server_name: ANY_NODE_SERVER_NAME.to_owned(),
                },
                Some(Arc::new(CookieSigner::new(&m.secret))),
            ),
        })
    }

    /// The generated gRPC client on this client's connection, for calls this type does not wrap.
    pub fn raw(&self) -> NodeClient<Channel> {
        self.inner.clone()
    }

    /// The connection, for the other services (`Registry`, `Supervisor`, `Streams`).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Renews the client certificate in `creds`, which this client is connected with: a new
    /// key and CSR, signed by the node (which must hold the CA key) for the name the current
    /// certificate proves. Returns the new credentials; the key never leaves this process.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`] if the node refuses (`FAILED_PRECONDITION`: it is no CA
    /// holder), [`ClientError::Renewal`] if the certificate that came back does not fit.
    pub async fn renew_certificate(
        &self,
        creds: &ClientCredentials,
    ) -> Result<ClientCredentials, ClientError> {
        let name = steinadler_security::identity_of(&steinadler_security::first_cert_der(
            &creds.cert_pem,
        )?)?
        .name;
        let csr = steinadler_security::make_csr(&name)?;
        let reply = self
            .raw()
            .renew_client(pb::RenewRequest {
                name: name.clone(),
                csr: csr.der.into(),
            })
            .await?
            .into_inner();
        let unusable = |reason: String| ClientError::Renewal {
            addr: self.addr.clone(),
            reason,
        };
        if reply.ca_cert_pem.trim() != creds.ca_cert_pem.trim() {
            return Err(unusable("it comes from another CA".into()));
        }
        let id = steinadler_security::identity_of(&steinadler_security::first_cert_der(
            &reply.cert_pem,
        )?)?;
        if id.role != steinadler_security::Role::Client || id.name != name {
            return Err(unusable(format!(
                "it is issued to {} {:?}, not to client {name:?}",
                id.role, id.name
            )));
        }
        Ok(ClientCredentials {
            ca_cert_pem: creds.ca_cert_pem.clone(),
            cert_pem: reply.cert_pem,
            key_pem: csr.key_pem,
        })
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

    /// Spreads the module `module` (a name or id the node holds) to every live node and
    /// compiles it there, through the fan-out tree; calls `progress` with the nodes done and
    /// the total as groups finish. Returns one result per node: a nil value, or why not.
    ///
    /// # Errors
    ///
    /// The node's refusal, such as `NOT_FOUND` for a module it does not hold.
    pub async fn spread(
        &mut self,
        module: &str,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<NodeResult>, ClientError> {
        let mut stream = self.spread_reports(module).await?;
        let mut results = Vec::new();
        while let Some(report) = stream.message().await? {
            results.extend(report.results.into_iter().map(NodeResult::from_reply));
            progress(report.done as usize, report.total as usize);
        }
        Ok(results)
    }

    /// Starts spreading `module` as [`Client::spread`] does, and returns once the node has
    /// started: the spread goes on without the caller.
    ///
    /// # Errors
    ///
    /// As [`Client::spread`].
    pub async fn start_spread(&mut self, module: &str) -> Result<(), ClientError> {
        self.spread_reports(module).await?.message().await?;
        Ok(())
    }

    async fn spread_reports(
        &mut self,
        module: &str,
    ) -> Result<tonic::Streaming<pb::SpreadProgress>, ClientError> {
        let request = pb::SpreadRequest {
            module: module.to_owned(),
        };
        Ok(self.inner.spread(request).await?.into_inner())
    }

    /// Runs a function on the nodes `target` selects (see [`Target`](crate::Target)); the
    /// results in node-name order, once all have arrived.
    ///
    /// # Errors
    ///
    /// The coordinating node's refusal: an unknown module, a bad target, limits over its
    /// maximums, or no matching node.
    pub async fn invoke(
        &mut self,
        target: &str,
        module: &str,
        function: &str,
        args: Vec<u8>,
        deadline: std::time::Duration,
        idempotent: bool,
    ) -> Result<Vec<NodeResult>, ClientError> {
        let span = crate::telemetry::call("client invoke", target, module, function);
        let mut request = invoke_request(target, module, function, args, deadline, idempotent);
        crate::telemetry::inject_from(&span, request.metadata_mut());
        let reply = tracing::Instrument::instrument(self.inner.invoke_on(request), span)
            .await?
            .into_inner();
        Ok(reply
            .results
            .into_iter()
            .map(NodeResult::from_reply)
            .collect())
    }

    /// Like [`invoke`](Self::invoke), but each node's result is given as it arrives.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(mut client: steinadler_node::Client) -> Result<(), steinadler_node::ClientError> {
    /// let mut results = client
    ///     .invoke_streaming("all", "hello", "greet", vec![0x90], std::time::Duration::from_secs(5), false)
    ///     .await?;
    /// println!("{} nodes", results.selected());
    /// while let Some(result) = results.next().await {
    ///     println!("{}: {:?}", result?.node, results.received());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`invoke`](Self::invoke), before any result.
    pub async fn invoke_streaming(
        &mut self,
        target: &str,
        module: &str,
        function: &str,
        args: Vec<u8>,
        deadline: std::time::Duration,
        idempotent: bool,
    ) -> Result<InvokeResults, ClientError> {
        let span = crate::telemetry::call("client invoke", target, module, function);
        let mut request = invoke_request(target, module, function, args, deadline, idempotent);
        crate::telemetry::inject_from(&span, request.metadata_mut());
        let stream = tracing::Instrument::instrument(self.inner.invoke_on_stream(request), span)
            .await?
            .into_inner();
        InvokeResults::start(stream).await
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

    /// The live members, as the node sees them, and whether the cluster runs insecure.
    ///
    /// # Errors
    ///
    /// The node's refusal.
    pub async fn members(&mut self) -> Result<pb::ListMembersReply, ClientError> {
        Ok(self
            .inner
            .list_members(pb::ListMembersRequest {})
            .await?
            .into_inner())
    }

    /// Rotates the gossip key on every live node. Needs [`ClientAuth::Node`].
    ///
    /// # Errors
    ///
    /// `PERMISSION_DENIED` with a client certificate; `ABORTED` naming the nodes that failed a
    /// step.
    pub async fn rotate_gossip_key(&mut self) -> Result<Vec<String>, ClientError> {
        let mut request = tonic::Request::new(pb::RotateGossipKeyRequest {});
        if let Some(signer) = &self.signer {
            let value = signer.sign(
                "/steinadler.v1.Node/RotateGossipKey",
                &prost::Message::encode_to_vec(request.get_ref()),
            );
            if let Ok(value) = value.parse() {
                request
                    .metadata_mut()
                    .insert(steinadler_security::COOKIE_HEADER, value);
            }
        }
        Ok(self
            .inner
            .rotate_gossip_key(request)
            .await?
            .into_inner()
            .nodes)
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

    /// Starts a process of `module` on this client's node; returns its PID.
    ///
    /// # Errors
    ///
    /// The node's refusal: an unknown or non-process module, a taken name, a failed `init`.
    pub async fn spawn(
        &mut self,
        module: &str,
        args: &steinadler_core::Term,
        name: Option<&str>,
    ) -> Result<steinadler_core::Pid, ClientError> {
        let reply = self
            .inner
            .spawn(pb::SpawnRequest {
                module: module.to_owned(),
                args: args.encode().into(),
                name: name.unwrap_or_default().to_owned(),
            })
            .await?
            .into_inner();
        Ok(crate::messaging::decode_pid(&reply.pid)?)
    }

    /// Sends `msg` to a process, through this client's node.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` (noproc), `UNAVAILABLE` (noconnection), `RESOURCE_EXHAUSTED` (full mailbox).
    pub async fn send(
        &mut self,
        to: &crate::Address,
        msg: &steinadler_core::Term,
    ) -> Result<(), ClientError> {
        let span = crate::telemetry::call("client send", to, "", "");
        let mut request = tonic::Request::new(pb::SendRequest {
            to: Some(to.to_wire()),
            msg: msg.encode().into(),
            from: Default::default(),
        });
        crate::telemetry::inject_from(&span, request.metadata_mut());
        tracing::Instrument::instrument(self.inner.send(request), span).await?;
        Ok(())
    }

    /// Sends `msg` to a process and waits up to `timeout` for its reply.
    ///
    /// # Errors
    ///
    /// As [`Client::send`], plus `DEADLINE_EXCEEDED` and `ABORTED` (the process failed).
    pub async fn call(
        &mut self,
        to: &crate::Address,
        msg: &steinadler_core::Term,
        timeout: std::time::Duration,
    ) -> Result<steinadler_core::Term, ClientError> {
        let mut request = tonic::Request::new(pb::CallRequest {
            to: Some(to.to_wire()),
            msg: msg.encode().into(),
            from: Default::default(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
        request.set_timeout(timeout + std::time::Duration::from_secs(1));
        let span = crate::telemetry::call("client call", to, "", "");
        crate::telemetry::inject_from(&span, request.metadata_mut());
        let reply = tracing::Instrument::instrument(self.inner.call(request), span)
            .await?
            .into_inner();
        Ok(crate::messaging::decode_term(&reply.reply)?)
    }

    /// The processes on this client's node.
    ///
    /// # Errors
    ///
    /// The node's refusal.
    pub async fn processes(&mut self) -> Result<pb::ListProcessesReply, ClientError> {
        Ok(self
            .inner
            .list_processes(pb::ListProcessesRequest {})
            .await?
            .into_inner())
    }
}

/// An `InvokeOn` request with the caller's deadline, and a gRPC timeout as long as the
/// coordinator waits for its nodes, plus slack for the network.
fn invoke_request(
    target: &str,
    module: &str,
    function: &str,
    args: Vec<u8>,
    deadline: std::time::Duration,
    idempotent: bool,
) -> tonic::Request<pb::InvokeOnRequest> {
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
    request.set_timeout(crate::limits::answer_within(deadline) + std::time::Duration::from_secs(2));
    request
}
