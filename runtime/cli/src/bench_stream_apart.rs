//! The stream bench with each node in a process of its own, held to a core of its own.
//!
//! In [`bench_stream`](crate::bench_stream) both nodes and the consumer share one process and
//! the machine's two cores, so every cycle the producer spends running its guest is a cycle the
//! consumer does not get, while the echo's server spends next to nothing. Nodes of a cluster
//! run on machines of their own, so this section measures that shape too:
//!
//! - the producer is a `steinadler node start` child, held to one core before it starts (so its
//!   runtime has one worker);
//! - the consumer is a node in this process, on a thread held to the other core, with a
//!   one-worker runtime of its own; it joins the child's cluster and takes the streams as
//!   `bench_stream` does, as a task;
//! - the echo's server is the child node, and its client runs on the consumer's core.
//!
//! Both links are real TCP between the two processes, plaintext or mutual TLS. With fewer
//! than two cores, the section says so and is skipped.

use crate::bench_cpu::CpuClock;
use crate::bench_stream::{Place, cases, measure};
use anyhow::{Context, anyhow};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use steinadler_node::{Client, Node};

/// Runs the section: each case over plaintext, then over mutual TLS.
pub(crate) async fn run(rounds: usize, only: Option<String>) -> anyhow::Result<()> {
    let cpus = allowed_cpus()?;
    let [consumer_cpu, producer_cpu, ..] = cpus[..] else {
        println!(
            "  skipped: this process may run on {} core(s), and the section needs 2",
            cpus.len()
        );
        return Ok(());
    };
    println!(
        "  (the producer's node runs in its own process on core {producer_cpu}, the consumer's on core {consumer_cpu})"
    );
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-consumer".into())
        .spawn(move || {
            let _ = done.send(consume(consumer_cpu, producer_cpu, rounds, only.as_deref()));
        })?;
    result.await?
}

/// The consumer's thread: holds itself to `cpu`, starts a plaintext and a mutual-TLS child
/// node on `producer_cpu`, and measures each.
fn consume(
    cpu: usize,
    producer_cpu: usize,
    rounds: usize,
    only: Option<&str>,
) -> anyhow::Result<()> {
    pin(cpu).context("cannot hold the consumer to its core")?;
    // Started here, the runtime's worker inherits the core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let producers = [
        ProducerNode::start(false, Some(producer_cpu))?,
        ProducerNode::start(true, Some(producer_cpu))?,
    ];
    let measured = runtime.block_on(async {
        let mut consumers = Vec::new();
        let result = async {
            for producer in &producers {
                let (node, client) = join(producer).await?;
                let clocks = [
                    CpuClock::this_process("the consumer's node"),
                    CpuClock::of_process(producer.child.id(), "the producer's node")?,
                ];
                consumers.push((node, client, clocks));
            }
            for case in cases().iter().filter(|c| c.selected(only)) {
                for ((node, client, clocks), mode) in consumers.iter().zip(["plain", "mTLS"]) {
                    // A task on the one worker: the consumer, its node and its links share a
                    // thread.
                    let place = Place::Task;
                    let rates =
                        measure(node, PRODUCER, client, case, rounds, place, clocks).await?;
                    case.print_row(&format!("{mode}, a core each"), &rates);
                }
            }
            anyhow::Ok(())
        }
        .await;
        // The bench is done with its clusters: their goodbyes need no logs.
        crate::shutting_down();
        for (node, ..) in consumers {
            node.shutdown().await;
        }
        result
    });
    for producer in producers {
        producer.stop();
    }
    measured
}

/// A consumer node in the child's cluster, with `range` deployed on the child, and a client of
/// the child for the echo.
async fn join(producer: &ProducerNode) -> anyhow::Result<(Arc<Node>, Client)> {
    let mut builder = Node::builder().name("c").seed(producer.addr.clone());
    builder = match &producer.token {
        Some(token) => builder.token(token.clone()),
        None => builder.insecure(),
    };
    let consumer = Arc::new(builder.start().await?);
    consumer
        .wait_for_members(2, Duration::from_secs(10))
        .await?;
    let auth = crate::bench::client_auth(&producer.addr, producer.token.as_deref()).await?;
    let mut client = Client::connect(&producer.addr, &auth).await?;
    client
        .deploy("range", steinadler_test_modules::RANGE_WASM)
        .await?;
    Ok((consumer, client))
}

/// The child node's name.
const PRODUCER: &str = "p";

/// A `steinadler node start` child, held to one core or not.
pub(crate) struct ProducerNode {
    child: Child,
    /// Kept open, so that the node's writes to stdout never fail.
    _stdout: BufReader<ChildStdout>,
    pub(crate) addr: String,
    /// The join token of the cluster the child created (mutual TLS only).
    pub(crate) token: Option<String>,
    dir: PathBuf,
}

impl ProducerNode {
    /// Starts a child node named [`PRODUCER`], held to `cpu` if one is given.
    pub(crate) fn start(secure: bool, cpu: Option<usize>) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "steinadler-bench-{}-{}-{}",
            std::process::id(),
            if secure { "tls" } else { "plain" },
            cpu.map_or_else(|| "any".to_owned(), |c| c.to_string())
        ));
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["node", "start", "--name", PRODUCER]);
        command.args(["--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0"]);
        command.arg("--data-dir").arg(&dir);
        if !secure {
            command.arg("--insecure");
        }
        command
            // Its errors only, and not memberlist's (see `init_tracing`).
            .env("RUST_LOG", "error,memberlist_core::broadcast=off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some(cpu) = cpu {
            // SAFETY: between fork and exec the closure makes one system call and touches no
            // lock or allocation.
            unsafe {
                command.pre_exec(move || pin(cpu));
            }
        }
        let mut child = command
            .spawn()
            .context("cannot start the producer's node (`steinadler node start`)")?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let banner = read_banner(&mut stdout, secure);
        let (addr, token) = match banner {
            Ok(b) => b,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Self {
            child,
            _stdout: stdout,
            addr,
            token,
            dir,
        })
    }

    /// The child node's name.
    pub(crate) fn name(&self) -> &'static str {
        PRODUCER
    }

    /// Stops the child as an operator would (SIGTERM), and removes its data.
    pub(crate) fn stop(mut self) {
        // Its pid is its own: the child has not been waited for.
        let pid = i32::try_from(self.child.id()).unwrap_or(i32::MAX);
        // SAFETY: kill(2) has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills it if it has not exited yet.
    }
}

impl Drop for ProducerNode {
    /// Never leaves the child behind, whatever failed.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The gRPC address from `node ... serving gRPC on ADDR and ...`, and with mutual TLS the
/// join token on the line after `Join token`.
fn read_banner(
    stdout: &mut BufReader<ChildStdout>,
    secure: bool,
) -> anyhow::Result<(String, Option<String>)> {
    let mut lines = stdout.lines();
    let mut next = || -> anyhow::Result<String> {
        lines
            .next()
            .ok_or_else(|| {
                anyhow!("the producer's node exited before it served (its errors are above)")
            })?
            .context("cannot read the producer's node's output")
    };
    let first = next()?;
    let addr = first
        .split_once("serving gRPC on ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .ok_or_else(|| anyhow!("unexpected output from the producer's node: {first}"))?
        .to_owned();
    if !secure {
        return Ok((addr, None));
    }
    while !next()?.contains("Join token") {}
    Ok((addr, Some(next()?.trim().to_owned())))
}

/// The cores this process may run on.
fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is an empty set, and the call writes at most its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot read this process's cores");
        }
        set
    };
    // SAFETY: CPU_ISSET reads the set within its size.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Holds the calling thread (and the threads it starts from now on) to `cpu`.
fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes within the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
