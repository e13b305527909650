//! Where modules are compiled: in this process, or in a short-lived child process.
//!
//! Compiling with cranelift is the one thing a node does that pulls about 5 MB of compiler code
//! into memory and leaves about 10 MB of freed heap behind (glibc keeps its arenas), so a node
//! that has compiled once stays near 40 MB resident, where one that only loaded precompiled
//! artifacts stays near 25 MB. [`Compiler::Child`] moves that cost out of the node: the child
//! is the node's own binary, started with a hidden subcommand that calls
//! [`run_compile_child`]. It reads a one-line header and the wasm bytes on stdin, compiles them
//! with the node's code-generation settings, writes the precompiled artifact to stdout and
//! exits. The child limits its own address space ([`CHILD_ADDRESS_SPACE`]) and CPU time
//! ([`CHILD_CPU_SECONDS`]), so a module built to exhaust the compiler kills the child, not
//! the node.
//!
//! The parent deserializes the artifact with its own engine, which checks the artifact's
//! engine-compatibility hash; an artifact from a mismatched binary (one replaced on disk while
//! the node ran) is rejected and the node compiles in-process instead. The store
//! (`store.rs`) calls [`compile`] and keeps the artifact on disk as before.

use crate::InvokeError;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Module};

/// The header's first word; the version after the slash changes with the header's format.
const HEADER: &str = "STEINADLER-COMPILE/1";
/// The most address space a compiler child may map.
pub const CHILD_ADDRESS_SPACE: u64 = 4 << 30;
/// The most CPU time a compiler child may use.
pub const CHILD_CPU_SECONDS: u64 = 120;
/// The child's exit code when the module itself is invalid (its message is on stderr).
const EXIT_INVALID: u8 = 3;

/// How a [`Host`](crate::Host) compiles the modules it loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Compiler {
    /// Compile on the calling thread, in this process. The default, and what an embedding
    /// that has no child binary uses.
    #[default]
    InProcess,
    /// Start `program` with `args` for each compile; it must call [`run_compile_child`].
    Child {
        /// The program, usually the node's own binary.
        program: PathBuf,
        /// The arguments that select the compile subcommand.
        args: Vec<OsString>,
    },
}

impl Compiler {
    /// A [`Compiler::Child`] that runs this process's own executable with `args`.
    ///
    /// On Linux this is `/proc/self/exe`, which still names the running binary after the file
    /// on disk was replaced or removed.
    pub fn this_executable(args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        let proc_exe = PathBuf::from("/proc/self/exe");
        let program = if proc_exe.exists() {
            proc_exe
        } else {
            std::env::current_exe().unwrap_or(proc_exe)
        };
        Self::Child {
            program,
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// A compiled module, and its precompiled artifact when the compile produced one.
pub(crate) struct Compiled {
    pub(crate) module: Module,
    pub(crate) artifact: Option<Vec<u8>>,
    /// Where it was compiled: `"child"` or `"in-process"`.
    pub(crate) place: &'static str,
}

/// The engine configuration that decides the generated code. The host adds its instance
/// allocator on top; the child uses the on-demand allocator, which does not change the code.
pub(crate) fn codegen_config(max_wasm_stack: usize) -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .max_wasm_stack(max_wasm_stack)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(64));
    cfg
}

/// Compiles `bytes` for `engine` the way `compiler` says.
pub(crate) fn compile(
    compiler: &Compiler,
    engine: &Engine,
    max_wasm_stack: usize,
    bytes: &[u8],
) -> Result<Compiled, InvokeError> {
    if let Compiler::Child { program, args } = compiler
        && let Some(artifact) = compile_in_child(program, args, max_wasm_stack, bytes)?
    {
        // SAFETY: the artifact comes from this node's own binary (see `this_executable`),
        // just written over a pipe; wasmtime checks its header and engine-compatibility
        // hash before using it, as it does for the artifacts in the data directory.
        match unsafe { Module::deserialize(engine, &artifact) } {
            Ok(module) => {
                return Ok(Compiled {
                    module,
                    artifact: Some(artifact),
                    place: "child",
                });
            }
            Err(e) => tracing::warn!(
                "the compiler process produced an artifact this node cannot use, so it \
                     compiles in-process; restart the node if its binary was replaced: {e:#}"
            ),
        }
    }
    let module =
        Module::new(engine, bytes).map_err(|e| InvokeError::InvalidModule(format!("{e:#}")))?;
    Ok(Compiled {
        module,
        artifact: None,
        place: "in-process",
    })
}

/// Runs one compile in a child. `Ok(None)` means the child could not be started, and the
/// caller compiles in-process.
fn compile_in_child(
    program: &PathBuf,
    args: &[OsString],
    max_wasm_stack: usize,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, InvokeError> {
    let spawned = Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(
                program = %program.display(),
                "cannot start the compiler process, so this node compiles in-process: {e}"
            );
            return Ok(None);
        }
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = [
        format!("{HEADER} max_wasm_stack={max_wasm_stack}\n").as_bytes(),
        bytes,
    ]
    .concat();
    // Write from a thread, so a child that writes a large artifact before reading all of its
    // input cannot deadlock against us.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut artifact = Vec::new();
    let read = child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut artifact);
    let status = child.wait();
    let _ = writer.join();
    let message = reader.join().unwrap_or_default();
    let message = message.trim();
    let status = status.map_err(|e| child_failed(&format!("cannot wait for it: {e}")))?;
    if status.code() == Some(i32::from(EXIT_INVALID)) {
        return Err(InvokeError::InvalidModule(message.to_owned()));
    }
    if !status.success() {
        return Err(child_failed(&format!("it exited with {status}: {message}")));
    }
    read.map_err(|e| child_failed(&format!("cannot read its output: {e}")))?;
    Ok(Some(artifact))
}

fn child_failed(what: &str) -> InvokeError {
    InvokeError::InvalidModule(format!(
        "the compiler process failed, {what}. It may have hit its limits ({} GiB of address \
         space, {CHILD_CPU_SECONDS} s of CPU): make the module smaller, or start the node with \
         `--compile in-process` to compile without them",
        CHILD_ADDRESS_SPACE >> 30
    ))
}

/// The compiler child's whole job: limit itself, read the header and the wasm from stdin,
/// compile, and write the artifact to stdout.
///
/// Exit codes: 0 on success; 3 when the module is invalid, with the reason on stderr; 1 for
/// anything else, such as a malformed header.
pub fn run_compile_child() -> ExitCode {
    limit_self();
    match compile_stdin() {
        Ok(artifact) => match std::io::stdout().lock().write_all(&artifact) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the artifact: {e}");
                ExitCode::FAILURE
            }
        },
        Err(ChildError::Invalid(message)) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(ChildError::Other(message)) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

enum ChildError {
    Invalid(String),
    Other(String),
}

fn compile_stdin() -> Result<Vec<u8>, ChildError> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut input)
        .map_err(|e| ChildError::Other(format!("cannot read stdin: {e}")))?;
    let newline = input
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| ChildError::Other("no header line on stdin".to_owned()))?;
    let header = std::str::from_utf8(&input[..newline])
        .map_err(|_| ChildError::Other("the header is not UTF-8".to_owned()))?;
    let max_wasm_stack = parse_header(header).map_err(ChildError::Other)?;
    let mut cfg = codegen_config(max_wasm_stack);
    cfg.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine = Engine::new(&cfg).map_err(|e| ChildError::Other(format!("{e:#}")))?;
    engine
        .precompile_module(&input[newline + 1..])
        .map_err(|e| ChildError::Invalid(format!("{e:#}")))
}

fn parse_header(header: &str) -> Result<usize, String> {
    let mut words = header.split(' ');
    if words.next() != Some(HEADER) {
        return Err(format!(
            "expected a `{HEADER}` header; this subcommand is run by a node, not by hand"
        ));
    }
    words
        .find_map(|w| w.strip_prefix("max_wasm_stack="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "the header has no max_wasm_stack".to_owned())
}

fn limit_self() {
    for (resource, limit) in [
        (libc::RLIMIT_AS, CHILD_ADDRESS_SPACE),
        (libc::RLIMIT_CPU, CHILD_CPU_SECONDS),
    ] {
        let rlim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
        unsafe { libc::setrlimit(resource, &rlim) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        assert_eq!(
            parse_header(&format!("{HEADER} max_wasm_stack=524288")),
            Ok(524288)
        );
        assert!(parse_header("STEINADLER-COMPILE/0 max_wasm_stack=1").is_err());
        assert!(parse_header(HEADER).is_err());
    }

    #[test]
    fn a_missing_program_falls_back_to_in_process() {
        let engine = Engine::new(&codegen_config(512 << 10)).unwrap();
        let compiler = Compiler::Child {
            program: "/nonexistent/steinadler".into(),
            args: vec![],
        };
        let wasm = b"\0asm\x01\0\0\0";
        let compiled = compile(&compiler, &engine, 512 << 10, wasm).unwrap();
        assert_eq!(compiled.place, "in-process");
        assert!(compiled.artifact.is_none());
    }
}
