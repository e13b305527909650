//! `steinadler`: the command-line tool.
//!
//! This binary owns argument parsing, output formatting and exit codes; the work itself lives in
//! the library crates (`steinadler-host` runs functions). Exit codes: 0 success, 1 a function or
//! runtime error, 2 a usage error.

mod parse;
mod run;

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
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
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

/// Logs go to stderr through `tracing`. Guest output (target `steinadler::guest`) shows at info;
/// everything else at warn unless `RUST_LOG` says otherwise.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,steinadler::guest=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}
