//! `steinadler registry` and `steinadler sup`: the cluster registry and the distributed
//! supervisor from the command line.

use crate::Failure;
use crate::auth::NodeAddr;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use steinadler_core::json;
use steinadler_node::{Child, ChildSpec, ChildState, Placement, Restart};

#[derive(Debug, Args)]
pub(crate) struct RegistryArgs {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeAddr,
}

/// Lists the global names as the node sees them.
pub(crate) async fn registry(args: RegistryArgs) -> Result<(), Failure> {
    let client = args.node.connect().await?;
    let names = client
        .registry()
        .await
        .map_err(|e| Failure::Runtime(anyhow!("listing the registry failed: {e}")))?;
    if !args.json {
        println!(
            "{:<24} {:<32} {:<12} REGISTERED (ms)",
            "NAME", "PID", "NODE"
        );
    }
    for e in names {
        if args.json {
            let line = serde_json::json!({
                "name": e.name, "pid": e.pid.to_string(), "node": e.pid.node,
                "registered_ms": e.registered_ms, "epoch": e.epoch,
            });
            println!("{line}");
        } else {
            println!(
                "{:<24} {:<32} {:<12} {}",
                e.name,
                e.pid.to_string(),
                e.pid.node,
                e.registered_ms
            );
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum SupCommand {
    /// Start a supervised child somewhere in the cluster and print its id and PID.
    Start(StartArgs),
    /// List the supervised children: id, state, PID, restarts, module, name, placement.
    Ls(LsArgs),
    /// Stop a supervised child for good.
    Stop(StopArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// The process module, by name or id.
    module: String,
    /// The init argument, one JSON value.
    #[arg(long, default_value = "null")]
    args: String,
    /// Read --args from PATH instead, or from stdin with `-`: for arguments past the
    /// command line's length limit.
    #[arg(long, value_name = "PATH", conflicts_with = "args")]
    args_file: Option<PathBuf>,
    /// A global name the child registers each time it starts.
    #[arg(long)]
    name: Option<String>,
    /// permanent (always restart), transient (after a crash) or temporary (never).
    #[arg(long, default_value = "permanent")]
    restart: String,
    /// any, label:k=v[,k2=v2], or key:KEY (children with one key share a node).
    #[arg(long, default_value = "any")]
    place: String,
    /// Restarts allowed within --max-seconds before the supervisor gives up.
    #[arg(long, default_value_t = 3)]
    max_restarts: u32,
    /// The window for --max-restarts.
    #[arg(long, default_value_t = 5)]
    max_seconds: u32,
    #[command(flatten)]
    node: NodeAddr,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeAddr,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// The child's id, from `sup start` or `sup ls`.
    id: String,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn run(cmd: SupCommand) -> Result<(), Failure> {
    match cmd {
        SupCommand::Start(args) => start(args).await,
        SupCommand::Ls(args) => ls(args).await,
        SupCommand::Stop(args) => stop(args).await,
    }
}

async fn start(args: StartArgs) -> Result<(), Failure> {
    let text = crate::input::json_text(&args.args, args.args_file.as_deref(), "--args-file")?;
    let init = json::parse_json(&text)
        .map_err(|e| Failure::Usage(anyhow!("--args: {e}. Pass one JSON value")))?;
    let restart: Restart = args
        .restart
        .parse()
        .map_err(|e| Failure::Usage(anyhow!("--restart: {e}")))?;
    let placement: Placement = args
        .place
        .parse()
        .map_err(|e| Failure::Usage(anyhow!("--place: {e}")))?;
    let spec = ChildSpec {
        restart,
        name: args.name,
        placement,
        max_restarts: args.max_restarts,
        max_seconds: args.max_seconds,
        ..ChildSpec::new(&args.module, init)
    };
    let client = args.node.connect().await?;
    let child = client
        .start_child(&spec)
        .await
        .map_err(|e| Failure::Runtime(anyhow!("the child did not start: {e}")))?;
    println!("{} {}", child.id, pid_of(&child));
    Ok(())
}

fn pid_of(child: &Child) -> String {
    match &child.state {
        ChildState::Running(pid) | ChildState::NodeDown(pid) => pid.to_string(),
        _ => "-".into(),
    }
}

async fn ls(args: LsArgs) -> Result<(), Failure> {
    let client = args.node.connect().await?;
    let children = client
        .children()
        .await
        .map_err(|e| Failure::Runtime(anyhow!("listing the children failed: {e}")))?;
    if !args.json {
        println!(
            "{:<16} {:<8} {:<32} {:>8} {:<10} {:<10} {:<10} {:<14} REASON",
            "ID", "STATE", "PID", "RESTARTS", "MODULE", "NAME", "RESTART", "PLACE"
        );
    }
    for c in children {
        let reason = match &c.state {
            ChildState::Done(why) | ChildState::GaveUp(why) => why.as_str(),
            ChildState::NodeDown(_) => "its node was declared dead; not restarted yet",
            _ => "",
        };
        if args.json {
            let line = serde_json::json!({
                "id": c.id, "state": c.state.to_string(), "pid": pid_of(&c),
                "restarts": c.restarts, "module": c.spec.module,
                "name": c.spec.name, "restart": c.spec.restart.to_string(),
                "place": c.spec.placement.to_string(), "reason": reason,
            });
            println!("{line}");
        } else {
            println!(
                "{:<16} {:<8} {:<32} {:>8} {:<10} {:<10} {:<10} {:<14} {reason}",
                c.id,
                c.state.to_string(),
                pid_of(&c),
                c.restarts,
                c.spec.module,
                c.spec.name.as_deref().unwrap_or("-"),
                c.spec.restart.to_string(),
                c.spec.placement.to_string(),
            );
        }
    }
    Ok(())
}

async fn stop(args: StopArgs) -> Result<(), Failure> {
    let client = args.node.connect().await?;
    let child = client
        .stop_child(&args.id)
        .await
        .map_err(|e| Failure::Runtime(anyhow!("stopping {} failed: {e}", args.id)))?;
    println!("{} {}", child.id, child.state);
    Ok(())
}
