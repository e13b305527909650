//! A Steinadler node: the pieces that turn a wasm host into a cluster member.
//!
//! This crate owns:
//! - [`Node`] and its [`NodeBuilder`]: a gRPC server (tonic, with the health and reflection
//!   services), gossip membership, and the wasm [`Host`](steinadler_host::Host), started together
//!   and shut down gracefully;
//! - remote invoke: [`Target`] selection over live members, concurrent fan-out, per-node results,
//!   retries of transient failures with backoff, admission control (`RESOURCE_EXHAUSTED` past the
//!   node's limit), content-addressed argument caching, and pulling a missing module from a peer
//!   with its hash verified;
//! - security: mutual TLS on every link (the handshake runs in `steinadler-transport`, with the
//!   node's configuration), the cluster cookie on node-to-node requests, per-method access rules (`security`), token join
//!   ([`request_certificate`]), and gossip key rotation;
//! - the cluster registry of global names ([`registry`](Node::register_global)) and the
//!   distributed DynamicSupervisor ([`Node::start_child`]), replicated by anti-entropy;
//! - streams with demand-based backpressure ([`Node::open_stream`], [`StreamRef`], and
//!   [`Typed`] for items decoded as a Rust type);
//! - Prometheus metrics on `/metrics` ([`NodeBuilder::metrics`], [`MetricsError`]);
//! - traces across nodes: spans for each call, hop and guest run, joined into one trace by a
//!   W3C `traceparent` on invoke frames and in gRPC metadata, exported over OTLP
//!   ([`telemetry`]);
//! - [`Client`], which the CLI (or any Rust program) uses to talk to a node;
//! - the wire conversions ([`wire`]): the one place where core types become proto messages and
//!   `tonic::Status`.
//!
//! # Examples
//!
//! ```no_run
//! use steinadler_node::{Node, Target};
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder().name("n1").label("zone", "a").start().await?;
//! let id = node.deploy("hello", &std::fs::read("hello.wasm")?).await?;
//! let results = node
//!     .invoke(&Target::All, "hello", "greet", &steinadler_core::Term::list(["World".into()]).encode())
//!     .await?;
//! for r in results {
//!     println!("{}: {:?}", r.node, r.outcome);
//! }
//! node.shutdown().await;
//! # let _ = id;
//! # Ok(())
//! # }
//! ```

mod addresses;
mod admission;
mod answer;
mod args;
mod ca_holders;
mod client;
mod client_cluster;
mod client_relay;
mod cluster_service;
mod config;
mod coordinator;
mod dial_out;
mod fetch;
mod gossip;
mod guest_ops;
mod invoke_results;
mod join;
mod limits;
mod local;
mod messaging;
mod metrics;
mod monitor;
mod mux_h2;
mod node;
mod process_api;
mod processes;
mod quorum;
mod reconnect;
mod registry;
mod relay;
mod renew;
mod rotate;
mod security;
mod server;
mod service;
mod setup;
mod spread;
mod stats;
mod streams;
mod supervisor;
mod target;
pub mod telemetry;
mod tokens;
mod tree;
pub mod wire;

pub use client::{Client, ClientAuth, ClientError};
pub use client_cluster::NewToken;
pub use config::{DEFAULT_FANOUT, GossipMode, NodeBuilder, NodeConfig, SecurityMode};
pub use coordinator::NodeResult;
pub use invoke_results::InvokeResults;
pub use join::{JoinError, Joined, request_certificate, request_certificate_as};
pub use limits::{DEFAULT_MAX_MEMORY, DEFAULT_MAX_TIMEOUT, answer_within};
pub use messaging::{Address, AddressError, DEFAULT_TIMEOUT};
pub use metrics::MetricsError;
pub use monitor::{ExitReason, Monitor};
pub use node::{Node, NodeError, Stats};
pub use processes::{MAILBOX_CAPACITY, ProcessInfo};
pub use registry::{RegistryEntry, SYNC_IDLE_INTERVAL, SYNC_INTERVAL};
pub use steinadler_host::StreamSource;
pub use steinadler_transport::PoolStats;
pub use streams::{NextItem, StreamError, StreamOptions, StreamRef, Typed};
pub use supervisor::{Child, ChildSpec, ChildState, Placement, Restart};
pub use target::{Target, TargetError};
