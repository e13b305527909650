//! `steinadler spawn`, `send`, `call` and `ps`: processes from the command line.

use crate::auth::NodeAddr;
use crate::{Failure, parse};
use anyhow::anyhow;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;
use steinadler_core::{Term, json};
use steinadler_node::{Address, Target};

fn term(what: &str, text: &str) -> Result<Term, Failure> {
    json::parse_json(text).map_err(|e| {
        Failure::Usage(anyhow!(
            "{what}: {e}. Pass one JSON value, e.g. '\"inc\"' or '[\"add\", 5]' \
             (docs/json-mapping.md lists the forms for atoms, bytes and tuples)"
        ))
    })
}

fn address(text: &str) -> Result<Address, Failure> {
    text.parse().map_err(|e| Failure::Usage(anyhow!("{e}")))
}

/// The message given inline or in `--msg-file`; clap requires one of the two.
fn message(inline: Option<&str>, file: Option<&Path>) -> Result<Term, Failure> {
    let text = crate::input::json_text(inline.unwrap_or_default(), file, "--msg-file")?;
    term("the message", &text)
}

fn show(t: &Term) -> String {
    json::term_to_json(t).to_string()
}

#[derive(Debug, Args)]
pub(crate) struct SpawnArgs {
    /// The module, by name or id; it must define a process (`steinadler::process!`).
    module: String,
    /// The init argument, one JSON value.
    #[arg(long, default_value = "null")]
    args: String,
    /// Read --args from PATH instead, or from stdin with `-`: for arguments past the
    /// command line's length limit.
    #[arg(long, value_name = "PATH", conflicts_with = "args")]
    args_file: Option<PathBuf>,
    /// Where: `any` (the least loaded node), `node:NAME`, or `label:k=v` [default: the node
    /// the CLI talks to].
    #[arg(long)]
    on: Option<String>,
    /// Register the process under this name on its node.
    #[arg(long)]
    name: Option<String>,
    /// Register the process under this name across the cluster: `send NAME` then reaches it
    /// from any node.
    #[arg(long)]
    global: Option<String>,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn spawn(args: SpawnArgs) -> Result<(), Failure> {
    let text = crate::input::json_text(&args.args, args.args_file.as_deref(), "--args-file")?;
    let init = term("--args", &text)?;
    let mut client = args.node.connect().await?;
    if let Some(on) = &args.on {
        let target: Target = on
            .parse()
            .map_err(|e| Failure::Usage(anyhow!("--on: {e}")))?;
        let members = client
            .members()
            .await
            .map_err(|e| Failure::Runtime(anyhow!("listing members failed: {e}")))?
            .members;
        let mut fitting: Vec<_> = members
            .iter()
            .filter(|m| match &target {
                Target::Any => true,
                Target::Node(name) => &m.name == name,
                Target::Labels(want) => want.iter().all(|(k, v)| m.labels.get(k) == Some(v)),
                Target::All => false,
            })
            .collect();
        if matches!(target, Target::All) {
            return Err(Failure::Usage(anyhow!(
                "--on all: spawn starts one process; use any, node:NAME or label:k=v"
            )));
        }
        fitting.sort_by_key(|m| m.load);
        let chosen = fitting
            .first()
            .ok_or_else(|| Failure::Runtime(anyhow!("no live node matches --on {on}")))?;
        client = args
            .node
            .connect_to_member(&chosen.name, &chosen.grpc_addr, &chosen.relay_addrs)
            .await?;
    }
    let pid = client
        .spawn(&args.module, &init, args.name.as_deref())
        .await
        .map_err(|e| Failure::Runtime(anyhow!("spawn failed: {e}")))?;
    if let Some(global) = &args.global {
        client.register_global(global, &pid).await.map_err(|e| {
            Failure::Runtime(anyhow!(
                "{pid} started, but registering the global name {global:?} failed: {e}"
            ))
        })?;
    }
    println!("{pid}");
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// A PID like <n1.1764150000000.7>, a name like counter@n1, or a global name.
    target: String,
    /// The message, one JSON value.
    #[arg(required_unless_present = "msg_file")]
    msg: Option<String>,
    /// Read the message from PATH instead, or from stdin with `-`: for a message past the
    /// command line's length limit.
    #[arg(long, value_name = "PATH", conflicts_with = "msg")]
    msg_file: Option<PathBuf>,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn send(args: SendArgs) -> Result<(), Failure> {
    let to = address(&args.target)?;
    let msg = message(args.msg.as_deref(), args.msg_file.as_deref())?;
    let mut client = args.node.connect().await?;
    client
        .send(&to, &msg)
        .await
        .map_err(|e| Failure::Runtime(anyhow!("send to {to} failed: {e}")))
}

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// A PID like <n1.1764150000000.7>, a name like counter@n1, or a global name.
    target: String,
    /// The message, one JSON value.
    #[arg(required_unless_present = "msg_file")]
    msg: Option<String>,
    /// Read the message from PATH instead, or from stdin with `-`: for a message past the
    /// command line's length limit.
    #[arg(long, value_name = "PATH", conflicts_with = "msg")]
    msg_file: Option<PathBuf>,
    /// How long to wait for the reply, like 5s.
    #[arg(long, default_value = "5s", value_parser = parse::duration)]
    timeout: Duration,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn call(args: CallArgs) -> Result<(), Failure> {
    let to = address(&args.target)?;
    let msg = message(args.msg.as_deref(), args.msg_file.as_deref())?;
    let mut client = args.node.connect().await?;
    let reply = client
        .call(&to, &msg, args.timeout)
        .await
        .map_err(|e| Failure::Runtime(anyhow!("call to {to} failed: {e}")))?;
    println!("{}", show(&reply));
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// Only this node [default: every live node].
    #[arg(long = "on-node")]
    on_node: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeAddr,
}

pub(crate) async fn ps(args: PsArgs) -> Result<(), Failure> {
    let mut client = args.node.connect().await?;
    let members = client
        .members()
        .await
        .map_err(|e| Failure::Runtime(anyhow!("listing members failed: {e}")))?
        .members;
    if !args.json {
        println!(
            "{:<28} {:<10} {:<14} {:>7} {:>10} {:>9}",
            "PID", "MODULE", "NAME", "MAILBOX", "MEMORY", "HANDLED"
        );
    }
    for m in members {
        if args.on_node.as_ref().is_some_and(|n| *n != m.name) {
            continue;
        }
        let mut c = args
            .node
            .connect_to_member(&m.name, &m.grpc_addr, &m.relay_addrs)
            .await?;
        let reply = c.processes().await.map_err(|e| {
            Failure::Runtime(anyhow!("listing processes on {} failed: {e}", m.name))
        })?;
        for p in reply.processes {
            let pid = Term::decode(&p.pid).map_or_else(|e| format!("?{e}"), |t| t.to_string());
            if args.json {
                let line = serde_json::json!({
                    "pid": pid, "module": p.module, "name": p.name, "mailbox": p.mailbox,
                    "memory_bytes": p.memory_bytes, "handled": p.handled,
                });
                println!("{line}");
            } else {
                println!(
                    "{pid:<28} {:<10} {:<14} {:>7} {:>10} {:>9}",
                    p.module, p.name, p.mailbox, p.memory_bytes, p.handled
                );
            }
        }
    }
    Ok(())
}
