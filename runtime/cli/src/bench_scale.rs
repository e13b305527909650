//! `steinadler bench --only scale --nodes N`: the scale harness (issue 20 §7).
//!
//! It starts N real `steinadler node start` processes of this binary on loopback, secure by
//! default (the first creates the cluster; the rest join with its token, through a few seeds
//! each, in parallel batches), and measures, as a user of the CLI would see it:
//!
//! - the time from the first start until every node lists all N members;
//! - a deploy of `noop` to n1, the first `--on all` after it, and warm `--on all` p50 and p99,
//!   checking that every call returns one Ok result per node;
//! - established TCP connections, resident memory and idle CPU per node process, from `/proc`;
//! - the time until every survivor stops listing the nodes a kill -9 of 10 % took, and any live
//!   node some survivor declared dead.
//!
//! Every child is killed when the harness ends, however it ends. Each node's stderr goes to
//! `logs/NAME.log` in the harness's temporary directory, which is kept if the run fails or
//! `STEINADLER_SCALE_KEEP_LOGS` is set.

use crate::bench_scale_proc::{self as procfs, BATCH, Cluster, TcpTable};
use anyhow::{Context, anyhow, bail};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use steinadler_node::{Client, NodeResult};

/// One `ListMembers` or connect.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Warm `--on all` calls per round (`--rounds`).
const CALLS_PER_ROUND: usize = 20;
/// The window with no calls over which idle CPU is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// Runs the harness with `n` nodes and `rounds` rounds of warm calls.
pub(crate) async fn run(
    n: usize,
    rounds: usize,
    gossip_wire: crate::node_cmd::WireArg,
) -> anyhow::Result<()> {
    procfs::raise_fd_limit();
    let mut cluster = Cluster::new(gossip_wire)?;
    let result = tokio::select! {
        r = scale(&mut cluster, n, rounds) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    result.map_err(|e| {
        cluster.keep_logs = true;
        e.context(format!(
            "the scale bench with {n} nodes failed (the nodes' logs are kept in {})",
            cluster.dir.join("logs").display()
        ))
    })
}

async fn scale(cluster: &mut Cluster, n: usize, rounds: usize) -> anyhow::Result<()> {
    let names: BTreeSet<String> = (1..=n).map(|k| format!("n{k}")).collect();
    println!(
        "scale: {n} node processes on 127.0.0.1, token join and mutual TLS, gossip on {}, {BATCH} started at once; logs in {}",
        match cluster.gossip_wire {
            crate::node_cmd::WireArg::Udp => "its own UDP port",
            crate::node_cmd::WireArg::Tls => "the TLS port",
        },
        cluster.dir.join("logs").display()
    );
    let load_at_start = procfs::load_average();
    let t0 = Instant::now();
    let token = cluster.start_all(n, t0).await?;
    let auth = crate::bench::client_auth(&cluster.nodes[0].grpc, Some(&token))
        .await
        .context("cannot log in to n1 with the join token it printed")?;
    let connects = cluster.nodes.iter().map(|p| async {
        let c = tokio::time::timeout(RPC_TIMEOUT, Client::connect(&p.grpc, &auth)).await;
        c.map_err(|_| anyhow!("timed out"))?
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot connect to {} at {}", p.name, p.grpc))
    });
    let mut clients: Vec<Client> = futures::future::try_join_all(connects).await?;
    let converge = converge(&mut clients, &names, t0).await?;
    println!(
        "  converged: all {n} nodes list {n} members ({})",
        secs(converge)
    );

    let mut c1 = clients[0].clone();
    let t = Instant::now();
    let spread_out = deploy_wait(&mut c1, &names).await?;
    let deploy = t.elapsed();
    println!(
        "  deploy --wait of noop through n1: {}{}; first --on all ...",
        dur(deploy),
        failure_note(&spread_out)
    );
    let t = Instant::now();
    let first = invoke_all(&mut c1, &names, Duration::from_secs(120)).await;
    let first_time = t.elapsed();
    println!(
        "  first --on all: {}{}",
        dur(first_time),
        failure_note(&first)
    );

    let calls = rounds.max(1) * CALLS_PER_ROUND;
    let (mut samples, mut bad) = (Vec::with_capacity(calls), 0);
    let mut shown = Instant::now();
    for i in 0..calls {
        let t = Instant::now();
        let outcome = invoke_all(&mut c1, &names, Duration::from_secs(30)).await;
        samples.push(t.elapsed());
        if let Err(e) = outcome {
            bad += 1;
            // A call that went wrong is worth reading the nodes' logs for.
            cluster.keep_logs = true;
            println!(
                "  warm call {}: {e:#} (the nodes' logs will be kept in {})",
                i + 1,
                cluster.dir.join("logs").display()
            );
        }
        if shown.elapsed() > Duration::from_secs(2) {
            println!("  warm --on all: {}/{calls} calls", i + 1);
            shown = Instant::now();
        }
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    let (p50, p99) = (pct(50), pct(99));
    let (conns, (rss, pss), cpu) = resources(cluster).await?;
    let deaths = crate::bench_scale_detect::detect(cluster, &mut clients, &names).await?;

    let failed = |r: &anyhow::Result<()>| if r.is_ok() { "" } else { " FAILED" };
    println!(
        "  load average {} at the start (high: other work shared the machine), {} at the end",
        load_at_start,
        procfs::load_average()
    );
    println!(
        "\nscale, N={n}: converge {} | deploy --wait {}{} | first --on all {}{} ({:.1}x warm p50) | warm --on all p50 {} p99 {} ({calls} calls, {bad} bad) | TCP conns/node {} (Erlang full mesh: {}) | RSS/node {} (PSS {}) | idle CPU/node {} | {deaths}",
        dur(converge),
        dur(deploy),
        failed(&spread_out),
        dur(first_time),
        failed(&first),
        first_time.as_secs_f64() / p50.as_secs_f64(),
        dur(p50),
        dur(p99),
        spread(&conns, "", 1, 0),
        n - 1,
        spread(&rss, " MB", 1, 1),
        spread(&pss, " MB", 1, 1),
        spread(&cpu, " %", 2, 2),
    );
    Ok(())
}

/// Deploys `noop` through `client` and spreads it to every node, as `deploy --wait` does: an
/// error if the deploy failed, `Ok(Err)` if some node did not get the module.
async fn deploy_wait(
    client: &mut Client,
    names: &BTreeSet<String>,
) -> anyhow::Result<anyhow::Result<()>> {
    let (id, _) = client
        .deploy("noop", steinadler_test_modules::NOOP_WASM)
        .await
        .context("cannot deploy noop to n1")?;
    let mut shown = Instant::now();
    let spread = client
        .spread(&id.to_string(), |done, total| {
            if shown.elapsed() > Duration::from_secs(2) {
                println!("  compiled on {done}/{total} nodes");
                shown = Instant::now();
            }
        })
        .await;
    Ok(spread
        .map_err(anyhow::Error::from)
        .and_then(|r| check(&r, names)))
}

/// `" (FAILED: why)"` for an error, else nothing.
fn failure_note(outcome: &anyhow::Result<()>) -> String {
    match outcome {
        Ok(()) => String::new(),
        Err(e) => format!(" (FAILED: {e:#})"),
    }
}

/// `noop` on all nodes through `client`: `Ok` if exactly one Ok result came for each of `names`.
async fn invoke_all(
    client: &mut Client,
    names: &BTreeSet<String>,
    deadline: Duration,
) -> anyhow::Result<()> {
    let noop = steinadler_core::Term::List(vec![]).encode();
    let results = client
        .invoke("all", "noop", "noop", noop, deadline, false)
        .await?;
    check(&results, names)
}

/// Per node: established TCP connections (without the harness's own) right after the calls,
/// RSS in MB, and CPU as % of a core over an idle window.
/// Per node: its established connections, its (RSS, PSS) in MB, and its idle CPU in %.
async fn resources(
    cluster: &Cluster,
) -> anyhow::Result<(Vec<f64>, (Vec<f64>, Vec<f64>), Vec<f64>)> {
    let pids: Vec<u32> = cluster.nodes.iter().map(|p| p.pid).collect();
    let table = TcpTable::read()?;
    // The harness's own connections to the nodes are not the cluster's.
    let harness = table.local_endpoints(std::process::id())?;
    let (mut conns, mut incoming, mut outgoing) = (Vec::new(), Vec::new(), Vec::new());
    for p in &cluster.nodes {
        let (all, came_in) = table.established(p.pid, &p.ports, &harness)?;
        conns.push(all as f64);
        incoming.push(came_in as f64);
        outgoing.push((all - came_in) as f64);
    }
    println!(
        "  TCP conns/node after the calls: opened by the node {}, opened by peers {}",
        spread(&outgoing, "", 1, 0),
        spread(&incoming, "", 1, 0)
    );
    println!(
        "  idle for {} with no calls, for CPU per node ...",
        secs(IDLE_WINDOW)
    );
    let ticks = |pids: &[u32]| -> anyhow::Result<Vec<u64>> {
        pids.iter().map(|&p| procfs::cpu_ticks(p)).collect()
    };
    let (before, t) = (ticks(&pids)?, Instant::now());
    tokio::time::sleep(IDLE_WINDOW).await;
    let (after, window) = (ticks(&pids)?, t.elapsed().as_secs_f64());
    let per_second = procfs::ticks_per_second();
    let cpu = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / per_second / window * 100.0)
        .collect();
    let megabytes = |read: fn(u32) -> anyhow::Result<u64>| {
        pids.iter()
            .map(|&p| read(p).map(|b| b as f64 / 1e6))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let (rss, anon, pss) = (
        megabytes(procfs::rss_bytes)?,
        megabytes(procfs::rss_anon_bytes)?,
        megabytes(procfs::pss_bytes)?,
    );
    println!(
        "  RSS/node {}, of which anonymous (the node's own heap and stacks) {}; the rest is the binary's pages, one copy for every node on the machine",
        spread(&rss, " MB", 1, 1),
        spread(&anon, " MB", 1, 1)
    );
    println!(
        "  PSS/node (each shared page divided among the processes that map it) {}",
        spread(&pss, " MB", 1, 1)
    );
    let table = TcpTable::read()?;
    let harness = table.local_endpoints(std::process::id())?;
    let idle_conns = cluster
        .nodes
        .iter()
        .map(|p| Ok(table.established(p.pid, &p.ports, &harness)?.0 as f64))
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "  TCP conns/node after the idle window: {}",
        spread(&idle_conns, "", 1, 0)
    );
    Ok((conns, (rss, pss), cpu))
}

/// Polls every node that does not yet list all of `names` until all do, then all of them once
/// more to confirm; the time from `t0` to the poll at which the last one did.
async fn converge(
    clients: &mut [Client],
    names: &BTreeSet<String>,
    t0: Instant,
) -> anyhow::Result<Duration> {
    let n = names.len();
    let deadline = t0 + Duration::from_secs(60 + n as u64);
    // How many of `names` each node listed at its last poll.
    let mut listed = vec![0; n];
    let (mut last_agreed, mut shown) = (t0.elapsed(), Instant::now());
    loop {
        let mut pending: Vec<usize> = (0..n).filter(|&i| listed[i] != n).collect();
        let confirming = pending.is_empty();
        if confirming {
            pending = (0..n).collect();
        }
        let polled = clients
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| pending.contains(i))
            .map(|(_, c)| c);
        let views = members(polled, t0).await;
        let at = t0.elapsed();
        for (&i, (view, replied)) in pending.iter().zip(views) {
            let count = view.map_or(0, |v| v.intersection(names).count());
            if count == n && listed[i] != n {
                last_agreed = last_agreed.max(replied);
            }
            listed[i] = count;
        }
        let agree = listed.iter().filter(|&&c| c == n).count();
        if agree == n && confirming {
            return Ok(last_agreed);
        }
        if shown.elapsed() > Duration::from_secs(2) {
            println!(
                "  converging: {agree}/{n} nodes list all {n} members ({})",
                secs(at)
            );
            shown = Instant::now();
        }
        if Instant::now() > deadline {
            let (worst, fewest) = (0..n)
                .map(|i| (i, listed[i]))
                .min_by_key(|x| x.1)
                .unwrap_or((0, 0));
            bail!(
                "membership did not converge in {}: {agree}/{n} nodes list all members, and n{} lists only {fewest}. Try a smaller --nodes",
                secs(at),
                worst + 1
            );
        }
        if agree < n {
            tokio::time::sleep(poll_interval(n)).await;
        }
    }
}

/// Each client's node's live members by name (`None` where the call failed or timed out), and
/// when, since `t0`, its reply arrived.
async fn members(
    clients: impl Iterator<Item = &mut Client>,
    t0: Instant,
) -> Vec<(Option<BTreeSet<String>>, Duration)> {
    let calls = clients.map(|c| crate::bench_scale_detect::member_view(c, t0));
    futures::future::join_all(calls).await
}

/// Polls stay cheap for the nodes at any N: about 5 ms a node, between 0.2 s and 1 s.
fn poll_interval(n: usize) -> Duration {
    (Duration::from_millis(5) * n as u32).clamp(Duration::from_millis(200), Duration::from_secs(1))
}

/// `Ok` if `results` hold exactly one Ok result for each of `names`.
fn check(results: &[NodeResult], names: &BTreeSet<String>) -> anyhow::Result<()> {
    let got: BTreeSet<&str> = results.iter().map(|r| r.node.as_str()).collect();
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|m| !got.contains(m))
        .collect();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|e| format!("{}: {e}", r.node)))
        .collect();
    if results.len() == names.len() && missing.is_empty() && failed.is_empty() {
        return Ok(());
    }
    Err(anyhow!(
        "{} results for {} nodes; missing {missing:?}; failed {failed:?}",
        results.len(),
        names.len()
    ))
}

/// `mean M max X (nK)` of one figure per node, nK the node with the most.
fn spread(v: &[f64], unit: &str, mean_digits: usize, max_digits: usize) -> String {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (at, max) =
        v.iter().copied().enumerate().fold(
            (0, 0.0),
            |best, (i, x)| if x > best.1 { (i, x) } else { best },
        );
    format!(
        "mean {mean:.mean_digits$}{unit} max {max:.max_digits$}{unit} (n{})",
        at + 1
    )
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Milliseconds below a second, seconds from there.
pub(crate) fn dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        secs(d)
    }
}
