//! `steinadler`: the command-line tool.
//!
//! This binary owns argument parsing, output formatting and exit codes; the work itself lives in
//! the library crates (`steinadler-host` runs functions). Exit codes: 0 success, 1 a function or
//! runtime error, 2 a usage error.

mod auth;
mod bench;
mod bench_cpu;
mod bench_erlang;
mod bench_proc;
mod bench_registry;
mod bench_relay;
mod bench_scale;
mod bench_scale_detect;
mod bench_scale_logs;
mod bench_scale_proc;
mod bench_stream;
mod bench_stream_apart;
mod client_cmd;
mod cluster_cmd;
mod demo;
mod input;
mod log_limit;
mod node_cmd;
mod parse;
mod process_cmd;
mod progress;
mod run;
mod stream_cmd;
mod sup_cmd;
mod trim;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Steinadler: run sandboxed WebAssembly functions, on one machine or across a cluster.
#[derive(Debug, Parser)]
#[command(name = "steinadler", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a function of a local .wasm module and print its result as JSON.
    Run(run::RunArgs),
    /// Run a node.
    #[command(subcommand)]
    Node(Box<node_cmd::NodeCommand>),
    /// Upload a module to the cluster, through one node.
    Deploy(client_cmd::DeployArgs),
    /// Run a function on one node, on the nodes matching labels, or on all nodes.
    Invoke(client_cmd::InvokeArgs),
    /// List the cluster's live nodes.
    Nodes(client_cmd::NodesArgs),
    /// Start a process (a module that defines one) and print its PID.
    Spawn(process_cmd::SpawnArgs),
    /// Send a message to a process, by PID, name@node or global name.
    Send(process_cmd::SendArgs),
    /// Send a message to a process and print its reply.
    Call(process_cmd::CallArgs),
    /// List processes: PID, module, name, mailbox, memory, messages handled.
    Ps(process_cmd::PsArgs),
    /// Open a stream and print its items as JSON lines as they arrive.
    Stream(stream_cmd::StreamArgs),
    /// List the cluster's global names: name, PID, node.
    Registry(sup_cmd::RegistryArgs),
    /// The distributed supervisor: children restarted by policy, moved when their node dies.
    #[command(subcommand)]
    Sup(sup_cmd::SupCommand),
    /// Cluster security: offline PKI, join tokens, gossip key rotation.
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCommand),
    /// Get a client certificate from a node with a join token; later commands use it.
    Login(cluster_cmd::LoginArgs),
    /// Start a local 3-node cluster, deploy `hello`, invoke it on one, some and all nodes.
    Demo,
    /// Measure remote invoke next to a raw TCP echo and a bare gRPC echo, in one run; with
    /// `--only scale`, measure a cluster of `--nodes` node processes instead.
    Bench(bench::BenchArgs),
    /// Compile one module for a node: a node starts this itself, with the module on stdin.
    #[command(name = "compile-child", hide = true)]
    CompileChild,
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The user asked for something malformed: exit code 2.
    Usage(anyhow::Error),
    /// The function or the runtime failed: exit code 1.
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::CompileChild) {
        return steinadler_host::run_compile_child();
    }
    // The demo prints its own story; logs would drown it.
    let quiet = matches!(cli.command, Command::Demo | Command::Bench(_));
    let filter = if quiet {
        "warn"
    } else {
        "warn,steinadler::guest=info,steinadler_node=info"
    };
    let result = match cli.command {
        Command::Run(args) => {
            let _ = init_tracing(filter, None);
            run::run(args)
        }
        other => match tokio::runtime::Runtime::new() {
            Ok(rt) => {
                let otlp = match &other {
                    Command::Node(cmd) => node_cmd::otlp_endpoint(cmd),
                    Command::Invoke(args) => args.otlp.clone(),
                    _ => None,
                };
                // The exporter's gRPC channel is made on the runtime, and dropped (exporting
                // what is left) while the runtime still runs.
                let traces = {
                    let _runtime = rt.enter();
                    init_tracing(filter, otlp.as_deref())
                };
                match traces {
                    Ok(_traces) => rt.block_on(run_async(other)),
                    Err(e) => Err(Failure::Usage(e.into())),
                }
            }
            Err(e) => {
                let _ = init_tracing(filter, None);
                Err(Failure::Runtime(anyhow::anyhow!(
                    "cannot start the async runtime: {e}"
                )))
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_async(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Node(cmd) => node_cmd::run(*cmd).await,
        Command::Deploy(args) => client_cmd::deploy(args).await,
        Command::Invoke(args) => client_cmd::invoke(args).await,
        Command::Nodes(args) => client_cmd::nodes(args).await,
        Command::Spawn(args) => process_cmd::spawn(args).await,
        Command::Send(args) => process_cmd::send(args).await,
        Command::Call(args) => process_cmd::call(args).await,
        Command::Ps(args) => process_cmd::ps(args).await,
        Command::Stream(args) => stream_cmd::run(args).await,
        Command::Registry(args) => sup_cmd::registry(args).await,
        Command::Sup(cmd) => sup_cmd::run(cmd).await,
        Command::Cluster(cmd) => cluster_cmd::run(cmd).await,
        Command::Login(args) => cluster_cmd::login(args).await,
        Command::Demo => demo::run().await,
        Command::Bench(args) => bench::run(args).await,
        // `main` runs it before any runtime starts.
        Command::CompileChild => Err(Failure::Usage(anyhow::anyhow!(
            "compile-child is started by a node; it does not run inside another command"
        ))),
    }
}

/// Set while this process's nodes shut down: memberlist then logs errors about its own closing
/// transport ("transport is being shutdown"), which are not news.
static SHUTTING_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Silences memberlist's logs from here on: call it just before shutting the nodes down.
pub(crate) fn shutting_down() {
    SHUTTING_DOWN.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Logs go to stderr through `tracing`. By default guest output (target `steinadler::guest`) and
/// node events show at info, everything else at warn; `RUST_LOG` overrides it. With `otlp`, the
/// node's spans are also exported to that OTLP/gRPC collector, until the guard is dropped; an
/// endpoint the exporter refuses is an error, and the logs are set up without it.
fn init_tracing(
    default_filter: &str,
    otlp: Option<&str>,
) -> Result<Option<steinadler_node::telemetry::OtlpGuard>, steinadler_node::telemetry::TelemetryError>
{
    use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, fmt};
    // memberlist logs an ERROR whenever a metadata broadcast finishes after the update call
    // stopped waiting for it (its receiver is gone). Nothing is lost; the update was gossiped.
    let default_filter = format!("{default_filter},memberlist_core::broadcast=off");
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let not_closing = filter_fn(|meta| {
        !(SHUTTING_DOWN.load(std::sync::atomic::Ordering::Relaxed)
            && meta.target().starts_with("memberlist"))
    });
    let (traces, guard, refused) =
        match otlp.map(|endpoint| steinadler_node::telemetry::otlp_layer(endpoint, "steinadler")) {
            Some(Ok((layer, guard))) => (Some(layer), Some(guard), None),
            Some(Err(e)) => (None, None, Some(e)),
            None => (None, None, None),
        };
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only on a terminal: a log file gets plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false)
                .compact()
                // memberlist's repeated lines (a failed send per packet under loss) are limited.
                .with_filter(
                    filter
                        .and(not_closing)
                        .and(log_limit::RateLimit::new("memberlist")),
                ),
        )
        .with(traces)
        .init();
    refused.map_or(Ok(guard), Err)
}
