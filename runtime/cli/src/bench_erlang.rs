//! `steinadler bench`'s section against Erlang Distribution, the peer users compare with.
//!
//! When `erl` and `erlc` are on the PATH it compiles [`dist_bench.erl`](ERLANG_BENCH) (a copy
//! of the peer benchmark in `shared/peers/erlang`), starts an Erlang node `b`, and in each
//! round runs an Erlang node `a` against it (`erpc:call` latency and throughput, and 8
//! processes casting `inc` to a counter on `b`) right after Steinadler's own round, so both see
//! the same minute of this noisy machine. Each row then gives the median round of each and
//! their ratio. Without `erl` it says so and prints Steinadler's figures only.
//!
//! Steinadler is measured two ways, both over mutual TLS: with both nodes in this process (as
//! the rest of the bench), and *apart*, with the callee a `steinadler node start` child
//! process, as users (and Erlang) run nodes. Erlang's two nodes are always two OS processes,
//! over plain TCP (Distribution without `inet_tls_dist`).

use crate::bench::{Figures, Scenario, measure};
use crate::bench_proc::ProcFigures;
use crate::bench_stream_apart::ProducerNode;
use anyhow::{Context, anyhow};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{Address, Client, Node, Target};

/// The Erlang side of the benchmark.
const ERLANG_BENCH: &str = include_str!("dist_bench.erl");

/// Concurrent callers for the throughput rows, on both sides.
const IN_FLIGHT: usize = 16;

/// Runs the section: `nodes` is the bench's mutual-TLS cluster (n1 calls n2).
pub(crate) async fn run(nodes: &[Arc<Node>], rounds: usize, calls: usize) -> anyhow::Result<()> {
    let erlang = match ErlangPeer::start() {
        Ok(peer) => Some(peer),
        Err(why) => {
            println!("  Erlang is not measured: {why:#}. Steinadler's figures only:");
            None
        }
    };
    let apart = Apart::start().await?;
    let near = Pair::new(nodes[0].clone(), "n2", spawn_counter_on(&nodes[1]).await?);
    let mut ours: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    let mut theirs = Vec::new();
    let measured = async {
        for round in 0..rounds.max(1) {
            let doing = format!("bench: against Erlang, round {} of {rounds}", round + 1);
            let ours_now = crate::progress::while_waiting(doing.clone(), async {
                Ok::<_, anyhow::Error>([near.round(calls).await?, apart.pair.round(calls).await?])
            })
            .await?;
            for (all, now) in ours.iter_mut().zip(ours_now) {
                all.push(now);
            }
            if let Some(peer) = &erlang {
                let peer = peer.clone_handle();
                let figures = crate::progress::while_waiting(
                    doing,
                    tokio::task::spawn_blocking(move || peer.round(calls)),
                )
                .await??;
                theirs.push(figures);
            }
        }
        anyhow::Ok(())
    }
    .await;
    apart.stop().await;
    measured?;
    print_rows(&ours, &theirs);
    Ok(())
}

/// One round of Steinadler's rows.
#[derive(Debug, Clone, Copy)]
struct Round {
    invoke_one: Figures,
    invoke_many: Figures,
    process: ProcFigures,
}

/// A caller node, the callee's name, and a counter process on the callee.
struct Pair {
    from: Arc<Node>,
    to: String,
    counter: Address,
}

impl Pair {
    fn new(from: Arc<Node>, to: &str, counter: Address) -> Self {
        Self {
            from,
            to: to.to_owned(),
            counter,
        }
    }

    async fn round(&self, calls: usize) -> anyhow::Result<Round> {
        let invoke = Scenario::Invoke(
            self.from.clone(),
            Target::Node(self.to.clone()),
            Term::List(vec![]).encode(),
        );
        Ok(Round {
            invoke_one: measure(&invoke, 1, calls).await?,
            invoke_many: measure(&invoke, IN_FLIGHT, calls).await?,
            process: crate::bench_proc::measure(&self.from, &self.counter, calls).await?,
        })
    }
}

async fn spawn_counter_on(node: &Node) -> anyhow::Result<Address> {
    node.deploy("counter", steinadler_test_modules::COUNTER_WASM)
        .await?;
    Ok(Address::Pid(
        node.spawn("counter", Term::Int(0), None).await?,
    ))
}

/// The callee in a process of its own, and a caller node here in its cluster.
struct Apart {
    child: ProducerNode,
    pair: Pair,
}

impl Apart {
    async fn start() -> anyhow::Result<Self> {
        let child = ProducerNode::start(true, None)?;
        let token = child
            .token
            .clone()
            .context("a secure child gives a token")?;
        let from = Node::builder()
            .name("e1")
            .seed(child.addr.clone())
            .token(token.clone())
            .start()
            .await?;
        from.wait_for_members(2, Duration::from_secs(10)).await?;
        let auth = crate::bench::client_auth(&child.addr, Some(&token)).await?;
        let mut client = Client::connect(&child.addr, &auth).await?;
        client
            .deploy("noop", steinadler_test_modules::NOOP_WASM)
            .await?;
        client
            .deploy("counter", steinadler_test_modules::COUNTER_WASM)
            .await?;
        let pid = client.spawn("counter", &Term::Int(0), None).await?;
        // The caller holds it by name too, as n1 does in the rest of the bench: a caller that
        // does not asks which module the name is first.
        from.deploy("noop", steinadler_test_modules::NOOP_WASM)
            .await?;
        let from = Arc::new(from);
        // Warm: the first call fetches and compiles the module.
        from.invoke(
            &Target::Node(child.name().to_owned()),
            "noop",
            "noop",
            &Term::List(vec![]).encode(),
        )
        .await?;
        let pair = Pair::new(from, child.name(), Address::Pid(pid));
        Ok(Self { child, pair })
    }

    async fn stop(self) {
        self.pair.from.shutdown().await;
        self.child.stop();
    }
}

/// Erlang's figures for one round.
#[derive(Debug, Clone, Copy)]
struct ErlangFigures {
    rpc_p50: Duration,
    calls_per_s: f64,
    sends_per_s: f64,
}

/// An Erlang node `b` to measure against, and what runs node `a`.
struct ErlangPeer {
    dir: Arc<PathBuf>,
    b: Option<Child>,
    b_name: String,
    cookie: String,
}

impl ErlangPeer {
    /// Compiles the benchmark and starts node `b`.
    fn start() -> anyhow::Result<Self> {
        for tool in ["erl", "erlc", "epmd"] {
            which(tool).ok_or_else(|| {
                anyhow!("`{tool}` is not on the PATH (apt-get install erlang-base)")
            })?;
        }
        let tag = format!("{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("steinadler-bench-erlang-{tag}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("dist_bench.erl"), ERLANG_BENCH)?;
        let compiled = Command::new("erlc")
            .arg("dist_bench.erl")
            .current_dir(&dir)
            .output()
            .context("cannot run erlc")?;
        if !compiled.status.success() {
            return Err(anyhow!(
                "erlc failed: {}",
                String::from_utf8_lossy(&compiled.stderr)
            ));
        }
        // Already running is fine: then it exits at once.
        Command::new("epmd").arg("-daemon").status()?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
        let host = host.trim().split('.').next().unwrap_or("localhost");
        let cookie = format!("bench{tag}{:x}", rand_u64());
        let b_name = format!("sb{tag}b@{host}");
        let b = Command::new("erl")
            .args([
                "-sname",
                &format!("sb{tag}b"),
                "-setcookie",
                &cookie,
                "-noshell",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start an Erlang node")?;
        Ok(Self {
            dir: Arc::new(dir),
            b: Some(b),
            b_name,
            cookie,
        })
    }

    /// What a round needs, for a blocking task.
    fn clone_handle(&self) -> ErlangRound {
        ErlangRound {
            dir: self.dir.clone(),
            b_name: self.b_name.clone(),
            cookie: self.cookie.clone(),
        }
    }
}

impl Drop for ErlangPeer {
    fn drop(&mut self) {
        if let Some(mut b) = self.b.take() {
            let _ = b.kill();
            let _ = b.wait();
        }
        let _ = std::fs::remove_dir_all(&*self.dir);
    }
}

/// One round against node `b`.
struct ErlangRound {
    dir: Arc<PathBuf>,
    b_name: String,
    cookie: String,
}

impl ErlangRound {
    /// Runs node `a` once: `calls` sequential calls, as many with [`IN_FLIGHT`] callers, and
    /// five times as many casts from 8 senders.
    fn round(&self, calls: usize) -> anyhow::Result<ErlangFigures> {
        let eval = format!(
            "dist_bench:main([\"{}\", \"{calls}\", \"{IN_FLIGHT}\"]), init:stop().",
            self.b_name
        );
        let a = format!("sb{}a{:x}", std::process::id(), rand_u64() & 0xffff);
        // Node b may still be starting on the first round: try a few times.
        let mut last = String::new();
        for _ in 0..20 {
            let out = Command::new("erl")
                .args([
                    "-sname",
                    &a,
                    "-setcookie",
                    &self.cookie,
                    "-noshell",
                    "-pa",
                    ".",
                ])
                .args(["-eval", &eval])
                .current_dir(&*self.dir)
                .stdin(Stdio::null())
                .output()
                .context("cannot run an Erlang node")?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if let Some(figures) = parse(&text) {
                return Ok(figures);
            }
            last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(anyhow!("the Erlang benchmark printed no figures: {last}"))
    }
}

/// The figures in `dist_bench:main`'s output.
fn parse(text: &str) -> Option<ErlangFigures> {
    let field = |name: &str| -> Option<f64> {
        let at = text.find(&format!("{name}="))? + name.len() + 1;
        text[at..].split_whitespace().next()?.parse().ok()
    };
    Some(ErlangFigures {
        rpc_p50: Duration::from_secs_f64(field("rpc_p50_us")? / 1e6),
        calls_per_s: field("throughput_calls_per_s")?,
        sends_per_s: field("send_msgs_per_s")?,
    })
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

/// The median of `values` by `key`.
fn median<T: Copy>(values: &[T], key: impl Fn(&T) -> f64) -> Option<f64> {
    let mut keys: Vec<f64> = values.iter().map(key).collect();
    keys.sort_by(f64::total_cmp);
    keys.get(keys.len() / 2).copied()
}

/// A row's label, Steinadler's medians (in one process, apart) and Erlang's.
type Row<'a> = (&'a str, [Option<f64>; 2], Option<f64>);

fn print_rows(ours: &[Vec<Round>; 2], theirs: &[ErlangFigures]) {
    println!(
        "  {:<44} {:>12} {:>12} {:>12} {:>8}",
        "row (mTLS; median round)", "one process", "apart", "Erlang", "ratio"
    );
    let us = |f: &dyn Fn(&Round) -> f64| ours.each_ref().map(|r| median(r, f));
    let rows: [Row<'_>; 4] = [
        (
            "remote invoke p50 / erpc:call p50 (us)",
            us(&|r| r.invoke_one.p50.as_secs_f64() * 1e6),
            median(theirs, |e| e.rpc_p50.as_secs_f64() * 1e6),
        ),
        (
            "remote invoke / erpc:call, 16 callers (calls/s)",
            us(&|r| r.invoke_many.rate),
            median(theirs, |e| e.calls_per_s),
        ),
        (
            "process call p50 / erpc:call p50 (us)",
            us(&|r| r.process.call_p50.as_secs_f64() * 1e6),
            median(theirs, |e| e.rpc_p50.as_secs_f64() * 1e6),
        ),
        (
            "process send / ! , 8 senders (msg/s)",
            us(&|r| r.process.sends_per_s),
            median(theirs, |e| e.sends_per_s),
        ),
    ];
    for (label, [near, apart], erlang) in rows {
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        let ratio = match (apart, erlang) {
            (Some(a), Some(e)) if e > 0.0 => format!("{:.2}", a / e),
            _ => "-".to_owned(),
        };
        println!(
            "  {label:<44} {:>12} {:>12} {:>12} {ratio:>8}",
            cell(near),
            cell(apart),
            cell(erlang)
        );
    }
    println!(
        "  (ratio: apart / Erlang; for latency lower is better, for rates higher; the goals are a process call at most 0.8 and a send at least 1.5)"
    );
}
