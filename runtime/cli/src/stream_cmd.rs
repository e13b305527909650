//! `steinadler stream` (and `invoke --stream`): print a stream's items as JSON lines as they
//! arrive.

use crate::Failure;
use crate::auth::NodeAddr;
use anyhow::anyhow;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use steinadler_core::{Term, json};
use steinadler_node::{Address, StreamOptions, StreamSource};

#[derive(Debug, Args)]
pub(crate) struct StreamArgs {
    /// The module's name or id (not with --process).
    #[arg(required_unless_present = "process")]
    module: Option<String>,
    /// The stream function (not with --process).
    #[arg(required_unless_present = "process")]
    function: Option<String>,
    /// Stream what a process emits instead: a PID like <n1.1764150000000.7>, or a registered
    /// name (name@node for a process on another node).
    #[arg(long, conflicts_with_all = ["module", "function"])]
    process: Option<String>,
    /// The arguments as JSON: an array, or one non-array value as the only argument.
    #[arg(long, default_value = "[]")]
    args: String,
    /// Read --args from PATH instead, or from stdin with `-`: for arguments past the
    /// command line's length limit.
    #[arg(long, value_name = "PATH", conflicts_with = "args")]
    args_file: Option<PathBuf>,
    /// Where the producer runs: any (the node the CLI talks to) or node:NAME.
    #[arg(long, default_value = "any")]
    on: String,
    /// Items in flight and buffered at most.
    #[arg(long, default_value_t = 1024)]
    window: u32,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn run(args: StreamArgs) -> Result<(), Failure> {
    let source = match (args.process, args.module, args.function) {
        (Some(process), _, _) => StreamSource::Process(process),
        (None, Some(module), Some(function)) => StreamSource::Function { module, function },
        _ => {
            return Err(Failure::Usage(anyhow!(
                "name a module and a stream function, or --process"
            )));
        }
    };
    let text = crate::input::json_text(&args.args, args.args_file.as_deref(), "--args-file")?;
    print(&args.node, source, &text, &args.on, args.window).await
}

/// Opens the stream and prints every item as one JSON line, flushing as it goes.
pub(crate) async fn print(
    node: &NodeAddr,
    source: StreamSource,
    args: &str,
    on: &str,
    window: u32,
) -> Result<(), Failure> {
    let call_args = crate::run::parse_args(args).map_err(Failure::Usage)?;
    // A process named with its node streams from that node.
    let own_node = match &source {
        StreamSource::Process(p) => p
            .parse::<Address>()
            .map_err(|e| Failure::Usage(anyhow!("--process: {e}")))?
            .node()
            .map(str::to_owned),
        StreamSource::Function { .. } => None,
    };
    let on = match (on, own_node) {
        ("any", Some(node)) => format!("node:{node}"),
        (on, _) => on.to_owned(),
    };
    let on = on.as_str();
    let mut client = node.connect().await?;
    match on {
        "any" => {}
        _ => {
            let Some(name) = on.strip_prefix("node:") else {
                return Err(Failure::Usage(anyhow!(
                    "--on {on}: a stream has one producer; use any or node:NAME"
                )));
            };
            let members = client
                .members()
                .await
                .map_err(|e| Failure::Runtime(anyhow!("listing members failed: {e}")))?
                .members;
            let member = members.iter().find(|m| m.name == name).ok_or_else(|| {
                Failure::Runtime(anyhow!(
                    "no live node is named {name}; `steinadler nodes` lists them"
                ))
            })?;
            client = node
                .connect_to_member(&member.name, &member.grpc_addr, &member.relay_addrs)
                .await?;
        }
    }
    let options = StreamOptions { window };
    let args = Term::List(call_args);
    let opened = match &source {
        StreamSource::Function { module, function } => {
            client.open_stream(module, function, &args, options).await
        }
        StreamSource::Process(process) => client.open_process_stream(process, &args, options).await,
    };
    let mut stream =
        opened.map_err(|e| Failure::Runtime(anyhow!("the stream did not open: {e}")))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    while let Some(item) = stream.next().await {
        match item {
            Ok(item) => {
                count += 1;
                let _ = writeln!(out, "{}", json::term_to_json(&item));
                // Flush when the stream pauses, so a slow producer's items show as they come.
                if stream.pending_items() == 0 {
                    let _ = out.flush();
                }
            }
            Err(e) => {
                let _ = out.flush();
                return Err(Failure::Runtime(anyhow!(
                    "the stream failed after {count} items: {e}"
                )));
            }
        }
    }
    let _ = out.flush();
    tracing::info!(items = count, "stream done");
    Ok(())
}
