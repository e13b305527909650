//! `steinadler deploy`, `invoke` and `nodes`: commands that talk to a running node.

use crate::auth::NodeAddr;
use crate::{Failure, parse};
use anyhow::anyhow;
use clap::Args;
use futures::StreamExt;
use std::path::PathBuf;
use std::time::Duration;
use steinadler_core::{Term, json};
use steinadler_node::NodeResult;
use steinadler_node::wire::RemoteError;

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The module: a .wasm file built with the steinadler guest SDK.
    file: PathBuf,
    /// The name to call it by [default: the file's stem].
    #[arg(long)]
    name: Option<String>,
    /// Wait until every live node holds the module, compiled, showing progress; exit 1 if any
    /// could not get it. Without it, the nodes get it in the background.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn deploy(args: DeployArgs) -> Result<(), Failure> {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Failure::Usage(anyhow!("cannot read {}: {e}", args.file.display())))?;
    let name = match args.name {
        Some(n) => n,
        None => args
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .ok_or_else(|| Failure::Usage(anyhow!("pass --name: the file name is not UTF-8")))?,
    };
    let mut client = args.node.connect().await?;
    let sending = format!(
        "sending {name} ({} KiB) to {} and compiling it there",
        bytes.len().div_ceil(1024),
        client.addr()
    );
    let (id, functions) = crate::progress::while_waiting(sending, client.deploy(&name, &bytes))
        .await
        .map_err(|e| Failure::Runtime(anyhow!("deploy failed: {e}")))?;
    println!(
        "deployed {name} ({id}) to {}: {} bytes, functions: {}",
        client.addr(),
        bytes.len(),
        functions.join(", ")
    );
    if !args.wait {
        // The node spreads it in the background once it has said so.
        if let Err(e) = client.start_spread(&id.to_string()).await {
            tracing::warn!("the nodes will pull {name} on its first call instead: {e}");
        }
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut progress = crate::progress::Count::new("compiled on", "nodes");
    let results = client
        .spread(&id.to_string(), |done, total| {
            progress.set(done as u64, total as u64);
        })
        .await
        .map_err(|e| Failure::Runtime(anyhow!("spreading {name} to the nodes failed: {e}")))?;
    progress.clear();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|e| format!("{}: {e}", r.node)))
        .collect();
    println!(
        "{name} is on {} of {} nodes ({:.1?})",
        results.len() - failed.len(),
        results.len(),
        started.elapsed()
    );
    if !failed.is_empty() {
        return Err(Failure::Runtime(anyhow!(
            "{} nodes could not get {name}: {}. Check them with `steinadler nodes`; they pull it again on the first call",
            failed.len(),
            failed.join("; ")
        )));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct InvokeArgs {
    /// The module's name or id.
    module: String,
    /// The function.
    function: String,
    /// The arguments as JSON: an array, or one non-array value as the only argument.
    #[arg(long, default_value = "[]")]
    args: String,
    /// Read --args from PATH instead, or from stdin with `-`: for arguments past the
    /// command line's length limit.
    #[arg(long, value_name = "PATH", conflicts_with = "args")]
    args_file: Option<PathBuf>,
    /// Where to run: all, any, node:NAME, or label:k=v,k2=v2.
    #[arg(long, default_value = "any")]
    on: String,
    /// The call's deadline, like 5s.
    #[arg(long, default_value = "5s", value_parser = parse::duration)]
    timeout: Duration,
    /// Allow retrying the call if it may already have run.
    #[arg(long)]
    idempotent: bool,
    /// Print one JSON object per node instead of a table.
    #[arg(long)]
    json: bool,
    /// The function is a stream: print its items as JSON lines as they arrive (`--on any` or
    /// `node:NAME`).
    #[arg(long)]
    stream: bool,
    /// Export this call's span to the OTLP/gRPC collector at ENDPOINT, like
    /// http://127.0.0.1:4317, so that the trace starts here [default: off].
    #[arg(long, value_name = "ENDPOINT", env = "STEINADLER_OTLP")]
    pub(crate) otlp: Option<String>,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn invoke(args: InvokeArgs) -> Result<(), Failure> {
    let text = crate::input::json_text(&args.args, args.args_file.as_deref(), "--args-file")?;
    if args.stream {
        let source = steinadler_node::StreamSource::Function {
            module: args.module.clone(),
            function: args.function.clone(),
        };
        return crate::stream_cmd::print(&args.node, source, &text, &args.on, 1024).await;
    }
    let call_args = crate::run::parse_args(&text).map_err(Failure::Usage)?;
    let mut client = args.node.connect().await?;
    let mut results = client
        .invoke_streaming(
            &args.on,
            &args.module,
            &args.function,
            Term::List(call_args).encode(),
            args.timeout,
            args.idempotent,
        )
        .await
        .map_err(|e| Failure::Runtime(anyhow!("invoke failed: {e}")))?;
    // Each node's line is printed as its result arrives; past 2 s a progress line on stderr
    // (a terminal only) counts them.
    let mut progress = crate::progress::Count::new("results", "");
    let selected = results.selected() as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut failed = 0;
    loop {
        let r = tokio::select! {
            r = results.next() => r,
            _ = tick.tick() => {
                progress.set(results.received() as u64, selected);
                continue;
            }
        };
        let Some(r) = r else { break };
        let r = r.map_err(|e| Failure::Runtime(anyhow!("invoke failed: {e}")))?;
        let (value, error) = outcome(&r);
        failed += usize::from(error.is_some());
        let line = if args.json {
            serde_json::json!({
                "node": r.node,
                "ok": error.is_none(),
                "value": value,
                "error": error,
                "elapsed_us": r.elapsed.as_micros() as u64,
            })
            .to_string()
        } else {
            let shown = match (&value, &error) {
                (Some(v), _) => v.to_string(),
                (None, Some(e)) => format!("error: {e}"),
                (None, None) => String::new(),
            };
            format!(
                "{:<12} {:>9}  {shown}",
                r.node,
                format!("{:.1?}", r.elapsed)
            )
        };
        progress.println(&line);
        progress.set(results.received() as u64, selected);
    }
    progress.clear();
    if failed > 0 {
        return Err(Failure::Runtime(anyhow!(
            "{failed} of {} nodes failed",
            results.received()
        )));
    }
    Ok(())
}

fn outcome(r: &NodeResult) -> (Option<serde_json::Value>, Option<String>) {
    match &r.outcome {
        Ok(bytes) => match Term::decode(bytes) {
            Ok(t) => (Some(json::term_to_json(&t)), None),
            Err(e) => (None, Some(format!("undecodable result: {e}"))),
        },
        Err(RemoteError::Invoke(steinadler_core::InvokeError::GuestError(t))) => (
            None,
            Some(format!("guest error: {}", json::term_to_json(t))),
        ),
        Err(e) => (None, Some(e.to_string())),
    }
}

#[derive(Debug, Args)]
pub(crate) struct NodesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeAddr,
}

/// How long `nodes` waits for one node's module list.
const NODE_PROBE: Duration = Duration::from_secs(1);

pub(crate) async fn nodes(args: NodesArgs) -> Result<(), Failure> {
    let mut client = args.node.connect().await?;
    let reply = client
        .members()
        .await
        .map_err(|e| Failure::Runtime(anyhow!("listing members failed: {e}")))?;
    let alive = if reply.insecure { "insecure" } else { "alive" };
    // The module index travels over gRPC, not gossip: ask every node at once, each for at most
    // NODE_PROBE, so that a node not yet known to be unreachable (a partition, a stopped
    // process) costs the listing that long, not a connect timeout per node.
    let probes = futures::stream::iter(reply.members.iter().map(|m| async {
        let ask = async {
            let mut c = args
                .node
                .connect_to_member(&m.name, &m.grpc_addr, &m.relay_addrs)
                .await
                .ok()?;
            c.modules().await.ok()
        };
        tokio::time::timeout(NODE_PROBE, ask).await.ok().flatten()
    }))
    .buffered(64)
    .collect::<Vec<_>>()
    .await;
    let mut rows = Vec::new();
    for (m, answer) in reply.members.iter().zip(probes) {
        let (status, modules) = match answer {
            Some(reply) => (
                alive,
                reply
                    .modules
                    .iter()
                    .flat_map(|i| i.names.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            None => ("no answer", "?".to_owned()),
        };
        let mut labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        // A node that accepts no connections has no address to give: say how it is reached.
        let addr = if m.relay_addrs.is_empty() {
            m.grpc_addr.clone()
        } else {
            format!("via {}", m.relay_addrs.join(","))
        };
        rows.push((m.name.clone(), addr, status, labels.join(","), modules));
    }
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(name, addr, status, labels, modules)| {
                serde_json::json!({"name": name, "address": addr, "status": status, "labels": labels, "modules": modules})
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        println!(
            "{:<12} {:<22} {:<9} {:<20} MODULES",
            "NAME", "ADDRESS", "STATUS", "LABELS"
        );
        for (name, addr, status, labels, modules) in rows {
            println!("{name:<12} {addr:<22} {status:<9} {labels:<20} {modules}");
        }
    }
    Ok(())
}
