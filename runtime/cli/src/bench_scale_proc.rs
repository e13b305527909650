//! The scale harness's node processes: starting them, killing them whatever happens, and what
//! it reads from `/proc` about them (established TCP connections, resident memory, CPU time).

use crate::bench_scale::secs;
use anyhow::{Context, anyhow, bail};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Nodes started at once.
pub(crate) const BATCH: usize = 8;
/// A joining node's seeds are among the first this many nodes...
const SEED_POOL: usize = 5;
/// ...and it gets this many of them, in random order.
const SEEDS: usize = 3;
/// How long a batch of nodes may take to print their banners.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The node processes, killed when this is dropped.
pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    pub(crate) nodes: Vec<NodeProc>,
    /// Keep the logs when dropped (the run failed).
    pub(crate) keep_logs: bool,
    /// `--gossip-wire` for every node.
    pub(crate) gossip_wire: crate::node_cmd::WireArg,
}

/// One node process.
pub(crate) struct NodeProc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) grpc: String,
    /// The ports it listens on (gRPC and gossip): a connection on one of them came in.
    pub(crate) ports: Vec<u16>,
    /// Kept open, so that the node's writes to stdout never fail; taken while its banner is
    /// read.
    stdout: Option<BufReader<ChildStdout>>,
}

impl Cluster {
    pub(crate) fn new(gossip_wire: crate::node_cmd::WireArg) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("steinadler-scale-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("cannot make the bench's directory {}", dir.display()))?;
        Ok(Self {
            dir,
            nodes: Vec::new(),
            // For reading how a run went (when each node declared each victim dead, say).
            keep_logs: std::env::var_os("STEINADLER_SCALE_KEEP_LOGS").is_some(),
            gossip_wire,
        })
    }

    /// Starts n1, then the others in batches; returns the join token n1 printed.
    pub(crate) async fn start_all(&mut self, n: usize, t0: Instant) -> anyhow::Result<String> {
        self.spawn("n1", &[], None)?;
        let banner = self.banners(&[0], true).await?.remove(0);
        let token = banner.token.clone();
        let token = token.ok_or_else(|| anyhow!("n1 printed no join token"))?;
        self.nodes[0].serves(banner)?;
        println!("  started 1/{n} nodes ({})", secs(t0.elapsed()));
        let mut rng = Rng::new();
        let mut shown = Instant::now();
        while self.nodes.len() < n {
            let started = self.nodes.len();
            let batch: Vec<usize> = (started..(started + BATCH).min(n)).collect();
            for &i in &batch {
                let pool = started.min(SEED_POOL);
                let seeds: Vec<String> = rng
                    .pick(pool, SEEDS.min(pool))
                    .into_iter()
                    .map(|s| self.nodes[s].grpc.clone())
                    .collect();
                self.spawn(&format!("n{}", i + 1), &seeds, Some(&token))?;
            }
            for (&i, banner) in batch.iter().zip(self.banners(&batch, false).await?) {
                self.nodes[i].serves(banner)?;
            }
            if self.nodes.len() == n || shown.elapsed() > Duration::from_secs(1) {
                println!(
                    "  started {}/{n} nodes ({})",
                    self.nodes.len(),
                    secs(t0.elapsed())
                );
                shown = Instant::now();
            }
        }
        Ok(token)
    }

    /// Starts `node start --name NAME` on free ports, joining through `seeds` with `token`.
    fn spawn(&mut self, name: &str, seeds: &[String], token: Option<&str>) -> anyhow::Result<()> {
        let log_path = self.dir.join("logs").join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let exe = std::env::current_exe().context("cannot find this program's own binary")?;
        let mut command = Command::new(&exe);
        command.args(["node", "start", "--name", name]);
        command.args(["--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0"]);
        command.args(["--gossip-wire", self.gossip_wire.as_str()]);
        // The first call after a deploy waits up to 120 s on a loaded machine (bench_scale.rs).
        command.args(["--max-timeout", "300s"]);
        command.arg("--data-dir").arg(self.dir.join(name));
        for seed in seeds {
            command.args(["--join", seed]);
        }
        // Through the environment, so that `ps` does not show it.
        command.env_remove("STEINADLER_TOKEN");
        if let Some(token) = token {
            command.env("STEINADLER_TOKEN", token);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name} ({} node start)", exe.display()))?;
        let stdout = child.stdout.take().map(BufReader::new);
        self.nodes.push(NodeProc {
            name: name.to_owned(),
            pid: child.id(),
            child,
            grpc: String::new(),
            ports: Vec::new(),
            stdout,
        });
        Ok(())
    }

    /// Reads the banners of the nodes at `indexes`, all at once; with `creates`, the join token
    /// too.
    async fn banners(&mut self, indexes: &[usize], creates: bool) -> anyhow::Result<Vec<Banner>> {
        let readers: Vec<_> = indexes
            .iter()
            .map(|&i| {
                let stdout = self.nodes[i].stdout.take().expect("a new node's stdout");
                tokio::task::spawn_blocking(move || read_banner(stdout, creates))
            })
            .collect();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut banners = Vec::new();
        for (&i, reader) in indexes.iter().zip(readers) {
            let read = tokio::time::timeout_at(deadline, reader).await;
            let node = &mut self.nodes[i];
            let banner = match read {
                Ok(joined) => {
                    let (stdout, banner) = joined.context("a banner reader panicked")?;
                    node.stdout = Some(stdout);
                    banner
                }
                Err(_) => {
                    // Its reader sees the end of its output once it is dead.
                    let _ = node.child.kill();
                    Err(anyhow!("printed nothing in {}", secs(START_TIMEOUT)))
                }
            };
            let log = self.dir.join("logs").join(format!("{}.log", node.name));
            banners.push(banner.with_context(|| {
                format!(
                    "{} did not start; the end of its log {}:\n{}",
                    node.name,
                    log.display(),
                    tail(&log, 10)
                )
            })?);
        }
        Ok(banners)
    }
}

impl NodeProc {
    /// Takes the addresses it printed.
    fn serves(&mut self, banner: Banner) -> anyhow::Result<()> {
        for addr in [&banner.grpc, &banner.gossip] {
            let addr: std::net::SocketAddr = addr
                .parse()
                .with_context(|| format!("{} printed a bad address {addr:?}", self.name))?;
            self.ports.push(addr.port());
        }
        self.grpc = banner.grpc;
        Ok(())
    }
}

impl Drop for Cluster {
    /// Never leaves a node behind, whatever failed.
    fn drop(&mut self) {
        for p in &mut self.nodes {
            let _ = p.child.kill();
        }
        for p in &mut self.nodes {
            let _ = p.child.wait();
        }
        if self.keep_logs {
            for p in &self.nodes {
                let _ = std::fs::remove_dir_all(self.dir.join(&p.name));
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What a node printed when it started.
struct Banner {
    grpc: String,
    gossip: String,
    /// The join token, from a node that created the cluster.
    token: Option<String>,
}

/// `node NAME serving gRPC on ADDR and gossip on ADDR ...`, then, from a node that created
/// the cluster, the join token on the line after `Join token`. Blocking.
fn read_banner(
    mut stdout: BufReader<ChildStdout>,
    creates: bool,
) -> (BufReader<ChildStdout>, anyhow::Result<Banner>) {
    let mut next = || -> anyhow::Result<String> {
        let mut line = String::new();
        match stdout.read_line(&mut line) {
            Ok(0) => Err(anyhow!("it exited before it served")),
            Ok(_) => Ok(line),
            Err(e) => Err(anyhow!("cannot read its output: {e}")),
        }
    };
    let banner = (|| {
        let first = next()?;
        let after = |words: &str| {
            first
                .split_once(words)
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("unexpected first line: {first:?}"))
        };
        let (grpc, gossip) = (after("serving gRPC on ")?, after("gossip on ")?);
        if !first.contains("(mutual TLS)") {
            bail!("it did not start secure: {first:?}");
        }
        let mut token = None;
        if creates {
            while !next()?.contains("Join token") {}
            token = Some(next()?.trim().to_owned());
        }
        Ok(Banner {
            grpc,
            gossip,
            token,
        })
    })();
    (stdout, banner)
}

/// The last `lines` lines of the file at `path`, for an error message.
fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A small xorshift generator: seeds and victims need only to vary from run to run.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(nanos ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// `k` distinct numbers below `n`, in random order.
    pub(crate) fn pick(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k.min(n));
        all
    }
}

/// One TCP socket of this network namespace: its endpoints as `/proc/net/tcp` spells them
/// (`0100007F:1F90`), enough to compare them.
struct Socket {
    local: String,
    remote: String,
}

/// The established TCP sockets of this network namespace, by inode (`/proc/self/net/tcp` and
/// `tcp6`: every process of the namespace sees the same tables).
pub(crate) struct TcpTable {
    established: HashMap<u64, Socket>,
}

impl TcpTable {
    /// Reads both tables now.
    ///
    /// # Errors
    ///
    /// If `/proc/self/net/tcp` cannot be read (no procfs: not Linux, or a sandbox).
    pub(crate) fn read() -> anyhow::Result<Self> {
        let mut established = HashMap::new();
        for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
            let text = match std::fs::read_to_string(table) {
                Ok(text) => text,
                // No IPv6 in this kernel: no tcp6 table.
                Err(_) if table.ends_with('6') => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot read {table}; the scale bench needs Linux's /proc")
                    });
                }
            };
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(remote), Some(&"01"), Some(inode)) =
                    (f.get(1), f.get(2), f.get(3), f.get(9))
                else {
                    continue;
                };
                if let Ok(inode) = inode.parse() {
                    let socket = Socket {
                        local: (*local).to_owned(),
                        remote: (*remote).to_owned(),
                    };
                    established.insert(inode, socket);
                }
            }
        }
        Ok(Self { established })
    }

    /// The local endpoints of the established sockets that process `pid` holds.
    pub(crate) fn local_endpoints(&self, pid: u32) -> anyhow::Result<HashSet<String>> {
        Ok(socket_inodes(pid)?
            .iter()
            .filter_map(|inode| self.established.get(inode))
            .map(|s| s.local.clone())
            .collect())
    }

    /// How many established TCP sockets process `pid` holds, and how many of them came in on
    /// one of its `ports`, leaving out those whose far end is one of `not_to` (the harness's
    /// own client connections).
    pub(crate) fn established(
        &self,
        pid: u32,
        ports: &[u16],
        not_to: &HashSet<String>,
    ) -> anyhow::Result<(usize, usize)> {
        let sockets: Vec<&Socket> = socket_inodes(pid)?
            .iter()
            .filter_map(|inode| self.established.get(inode))
            .filter(|s| !not_to.contains(&s.remote))
            .collect();
        let port = |s: &&Socket| {
            let hex = s.local.rsplit_once(':').map_or("", |(_, p)| p);
            u16::from_str_radix(hex, 16).ok()
        };
        let incoming = sockets
            .iter()
            .filter(|s| port(s).is_some_and(|p| ports.contains(&p)))
            .count();
        Ok((sockets.len(), incoming))
    }
}

/// The inodes of the sockets among process `pid`'s open files (`socket:[INODE]` links).
fn socket_inodes(pid: u32) -> anyhow::Result<Vec<u64>> {
    let dir = format!("/proc/{pid}/fd");
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}: has it exited?"))?;
    let mut inodes = Vec::new();
    for entry in entries.flatten() {
        // An fd closed while listing is no longer there to read.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
        {
            inodes.push(inode);
        }
    }
    Ok(inodes)
}

/// Process `pid`'s resident memory (`VmRSS` in `/proc/PID/status`), in bytes.
pub(crate) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    status_bytes(pid, "VmRSS:")
}

/// Process `pid`'s resident anonymous memory (`RssAnon`), in bytes: its own heap and stacks,
/// without the pages of its binary, which every node on the machine shares.
pub(crate) fn rss_anon_bytes(pid: u32) -> anyhow::Result<u64> {
    status_bytes(pid, "RssAnon:")
}

/// Process `pid`'s proportional set size (`Pss` in `/proc/PID/smaps_rollup`), in bytes: its
/// resident pages, each shared page divided by the number of processes that map it. With N
/// nodes of one binary on a machine, the binary's pages count 1/N in each.
pub(crate) fn pss_bytes(pid: u32) -> anyhow::Result<u64> {
    proc_kb(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// The size after `key` in `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, key: &str) -> anyhow::Result<u64> {
    proc_kb(&format!("/proc/{pid}/status"), key)
}

/// The size in kB after `key` in the `/proc` file `path`, in bytes.
fn proc_kb(path: &str, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| anyhow!("{path} has no {key} line"))?;
    Ok(kb * 1024)
}

/// Process `pid`'s CPU time so far, user plus system, in clock ticks (`/proc/PID/stat`).
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so split after the last
    // ')'. From STATE (field 3) on, utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(utime), Some(stime)) => Ok(utime + stime),
        _ => Err(anyhow!("{path} is not in the expected format: {stat}")),
    }
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
pub(crate) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Raises this process's limit of open files to its hard limit: the harness holds a client
/// connection and a pipe for every node.
pub(crate) fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls read or write only `limit`, a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The 1-minute load average (`/proc/loadavg`), as printed there; `?` if unreadable.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
