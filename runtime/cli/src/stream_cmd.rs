//! `steinadler stream` (and `invoke --stream`): print a stream's items as JSON lines as they
//! arrive.

use crate::Failure;
use crate::auth::NodeAddr;
use anyhow::anyhow;
use clap::Args;
use futures::StreamExt;
use std::io::Write;
use steinadler_core::{Term, json};
use steinadler_node::StreamOptions;

#[derive(Debug, Args)]
pub(crate) struct StreamArgs {
    /// The module's name or id.
    module: String,
    /// The stream function.
    function: String,
    /// The arguments as JSON: an array, or one non-array value as the only argument.
    #[arg(long, default_value = "[]")]
    args: String,
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
    print(
        &args.node,
        &args.module,
        &args.function,
        &args.args,
        &args.on,
        args.window,
    )
    .await
}

/// Opens the stream and prints every item as one JSON line, flushing as it goes.
pub(crate) async fn print(
    node: &NodeAddr,
    module: &str,
    function: &str,
    args: &str,
    on: &str,
    window: u32,
) -> Result<(), Failure> {
    let call_args = crate::run::parse_args(args).map_err(Failure::Usage)?;
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
            client = node.connect_to(&member.grpc_addr).await?;
        }
    }
    let mut stream = client
        .open_stream(
            module,
            function,
            &Term::List(call_args),
            StreamOptions { window },
        )
        .await
        .map_err(|e| Failure::Runtime(anyhow!("the stream did not open: {e}")))?;
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
