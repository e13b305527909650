//! `steinadler run`: run one function of a local module, without a cluster.

use crate::{Failure, parse};
use anyhow::anyhow;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use steinadler_core::{InvokeError, Term, json};
use steinadler_host::{Host, HostConfig};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The module: a .wasm file built for wasm32-wasip1 with the steinadler guest SDK.
    module: PathBuf,
    /// The function to call.
    function: String,
    /// The arguments as JSON: an array of arguments, or one non-array value as the only argument.
    /// See docs/json-mapping.md for atoms, bytes, tuples and other non-JSON types.
    #[arg(long, default_value = "[]")]
    args: String,
    /// Read --args from PATH instead, or from stdin with `-`: for arguments past the
    /// command line's length limit.
    #[arg(long, value_name = "PATH", conflicts_with = "args")]
    args_file: Option<PathBuf>,
    /// How long the call may run, like 5s or 250ms.
    #[arg(long, default_value = "5s", value_parser = parse::duration)]
    timeout: Duration,
    /// The most linear memory the guest may use, like 64MiB.
    #[arg(long, default_value = "64MiB", value_parser = parse::size)]
    memory: u64,
    /// The wasm stack size, like 512KiB.
    #[arg(long, default_value = "512KiB", value_parser = parse::size)]
    stack: u64,
    /// The largest result the guest may return, like 16MiB.
    #[arg(long, default_value = "16MiB", value_parser = parse::size)]
    max_output: u64,
    /// On a trap, also print the wasm backtrace.
    #[arg(long)]
    backtrace: bool,
}

pub(crate) fn run(args: RunArgs) -> Result<(), Failure> {
    let text = crate::input::json_text(&args.args, args.args_file.as_deref(), "--args-file")?;
    let call_args = parse_args(&text).map_err(Failure::Usage)?;
    let bytes = std::fs::read(&args.module).map_err(|e| {
        Failure::Usage(anyhow!(
            "cannot read module {}: {e}. Pass the path of a .wasm file",
            args.module.display()
        ))
    })?;

    let mut config = HostConfig::default();
    config.max_instances = 4;
    config.max_wasm_stack = usize::try_from(args.stack).unwrap_or(usize::MAX);
    config.max_memory_bytes = config.max_memory_bytes.max(args.memory);
    let limits = {
        let mut l = config.default_limits.clone();
        l.deadline = args.timeout;
        l.memory_bytes = args.memory;
        l.max_output_bytes = args.max_output;
        l
    };
    let host = Host::new(config).map_err(|e| Failure::Runtime(e.into()))?;
    let module = host.load(&bytes).map_err(|e| runtime(e, false))?;
    let result = host
        .invoke_term(&module, &args.function, &call_args, &limits)
        .map_err(|e| runtime(e, args.backtrace))?;
    println!("{}", json::term_to_json(&result));
    Ok(())
}

/// `--args` is a JSON array of arguments; any other JSON value is the single argument.
pub(crate) fn parse_args(text: &str) -> anyhow::Result<Vec<Term>> {
    match json::parse_json(text) {
        Ok(Term::List(items)) => Ok(items),
        Ok(single) => Ok(vec![single]),
        Err(e) => Err(anyhow!(
            "--args: {e}. Pass a JSON array of arguments, e.g. --args '[\"World\"]' \
             (docs/json-mapping.md lists the forms for atoms, bytes and tuples)"
        )),
    }
}

/// One line for the error; with `--backtrace`, a trap's wasm backtrace follows it.
fn runtime(err: InvokeError, with_backtrace: bool) -> Failure {
    match &err {
        InvokeError::GuestError(term) => {
            Failure::Runtime(anyhow!("guest error: {}", json::term_to_json(term)))
        }
        InvokeError::Trap { backtrace, .. } if with_backtrace && !backtrace.is_empty() => {
            Failure::Runtime(anyhow!("{err}\n{}", backtrace.trim_end()))
        }
        InvokeError::Trap { .. } => Failure::Runtime(anyhow!(
            "{err} (rerun with --backtrace for the wasm backtrace)"
        )),
        _ => Failure::Runtime(err.into()),
    }
}
