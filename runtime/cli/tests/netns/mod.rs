//! Test hosts in network namespaces for the fault suite: `N` hosts on a bridge of their own,
//! each running a real `steinadler node start` process, with faults injected the way a network
//! fails: a host's link cut, or a share of its outgoing packets dropped by nftables (the kernel
//! here has no netem).
//!
//! Each [`Hosts`] has its own bridge, namespaces and subnet (`10.N.0.0/24`, N from the process
//! id and a counter), so that tests run in parallel, and removes all of them when dropped, on
//! a failed assertion too. [`Hosts::up_behind_nat`] puts one host behind a router instead, as a
//! home router or a cloud NAT gateway: the host has a private address, the router has the
//! host's address on the bridge, masquerades what the host sends out, and forwards the node's
//! two ports to it (DNAT), so the node advertises the router's address. [`Hosts::up`] returns `None`, after saying why, where the machine
//! cannot make hosts: not root, or no `ip` or `nft`.

// Shared by the fault suite and the reach tests, which each use part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_steinadler");

/// The time a test gives a wait that normally takes a few seconds: room for a cold, loaded
/// machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// The gRPC port of every node; gossip is the next one.
const GRPC_PORT: u16 = 7100;

/// A set of test hosts; dropping it kills their nodes and removes the hosts.
pub(crate) struct Hosts {
    tag: String,
    subnet: u32,
    n: usize,
    /// The host behind a router, if any.
    nat: Option<usize>,
    nodes: Vec<Option<Child>>,
    pub(crate) dir: PathBuf,
    /// `--gossip-wire` for every node, if not the default ([`Hosts::up_one_port`]).
    gossip_wire: Option<&'static str>,
    /// The host behind the router runs `--no-inbound`, and the router forwards nothing
    /// ([`Hosts::up_behind_nat_without_forward`]).
    no_inbound: bool,
    /// Mutual TLS and the cookie ([`Hosts::up_secure`]): the cluster's join token, once host
    /// 1's node made the cluster.
    secure: Option<Option<String>>,
}

mod cli;
mod dial_out;
mod firewall;
mod secure;

fn run(cmd: &[&str]) -> Result<Output, String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The stdout of a CLI run that must have succeeded; its stderr and stdout if it did not.
pub(crate) fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\nstdout:\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits until `check` holds, for at most [`PATIENCE`].
pub(crate) fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < PATIENCE, "{what} after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn must(cmd: &[&str]) {
    if let Err(e) = run(cmd) {
        panic!("{e}");
    }
}

impl Hosts {
    /// Makes `n` hosts, or says why it cannot and returns `None`.
    pub(crate) fn up(n: usize) -> Option<Self> {
        Self::make(n, None)
    }

    /// Makes `n` hosts with host `nat` (not host 1, which the others join through) behind a
    /// router that forwards the node's ports to it, or says why it cannot and returns `None`.
    pub(crate) fn up_behind_nat(n: usize, nat: usize) -> Option<Self> {
        assert!(
            nat > 1 && nat <= n,
            "host {nat} cannot be behind the router"
        );
        Self::make(n, Some(nat))
    }

    fn make(n: usize, nat: Option<usize>) -> Option<Self> {
        // SAFETY: geteuid has no preconditions and no memory effects.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping the fault suite: it needs root to make network namespaces");
            return None;
        }
        for tool in [["ip", "-V"], ["nft", "--version"]] {
            if run(&tool).is_err() {
                eprintln!(
                    "skipping the fault suite: `{}` is missing (apt-get install iproute2 nftables)",
                    tool[0]
                );
                return None;
            }
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        // A subnet whose bridge does not exist yet: another test binary may hold one.
        let mut subnet = 100 + (std::process::id() * 7 + k * 37) % 150;
        while run(&["ip", "link", "show", &format!("sf{subnet}br")]).is_ok() {
            subnet = 100 + (subnet - 100 + 1) % 150;
        }
        let tag = format!("sf{subnet}");
        let dir = std::env::temp_dir().join(format!("steinadler-faults-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = Self {
            tag,
            subnet,
            n,
            nat,
            nodes: (0..n).map(|_| None).collect(),
            dir,
            gossip_wire: None,
            no_inbound: false,
            secure: None,
        };
        hosts.clean();
        let br = hosts.bridge();
        if let Err(e) = run(&["ip", "link", "add", &br, "type", "bridge"]) {
            eprintln!("skipping the fault suite: this machine cannot make test hosts ({e})");
            return None;
        }
        must(&["ip", "link", "set", &br, "up"]);
        for i in 1..=n {
            // On the bridge: the host itself, or the router in front of it.
            let (ns, veth) = (hosts.bridged_ns(i), hosts.veth(i));
            must(&["ip", "netns", "add", &ns]);
            must(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            must(&["ip", "link", "set", &veth, "master", &br, "up"]);
            let addr = format!("{}/24", hosts.ip(i));
            must(&[
                "ip", "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", "eth0",
            ]);
            must(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
            ]);
            must(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            if nat == Some(i) {
                hosts.route_through(i);
            }
        }
        Some(hosts)
    }

    /// Puts host `i` behind the router that holds its address on the bridge.
    fn route_through(&self, i: usize) {
        let (router, ns) = (self.router_ns(i), self.ns(i));
        let (inside, gateway) = (self.private_ip(i), self.private_gateway());
        must(&["ip", "netns", "add", &ns]);
        must(&[
            "ip", "netns", "exec", &router, "ip", "link", "add", "lan0", "type", "veth", "peer",
            "name", "eth0", "netns", &ns,
        ]);
        let gateway_cidr = format!("{gateway}/24");
        must(&[
            "ip",
            "netns",
            "exec",
            &router,
            "ip",
            "addr",
            "add",
            &gateway_cidr,
            "dev",
            "lan0",
        ]);
        must(&[
            "ip", "netns", "exec", &router, "ip", "link", "set", "lan0", "up",
        ]);
        let inside_cidr = format!("{inside}/24");
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &inside_cidr,
            "dev",
            "eth0",
        ]);
        must(&[
            "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
        ]);
        must(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        must(&[
            "ip", "netns", "exec", &ns, "ip", "route", "add", "default", "via", &gateway,
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            &router,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ]);
        let (grpc, gossip) = (GRPC_PORT, GRPC_PORT + 1);
        let rules = format!(
            "table ip sfnat {{\n\
             \tchain pre {{ type nat hook prerouting priority dstnat;\n\
             \t\tiifname \"eth0\" tcp dport {{ {grpc}, {gossip} }} dnat to {inside}\n\
             \t\tiifname \"eth0\" udp dport {gossip} dnat to {inside}\n\
             \t}}\n\
             \tchain post {{ type nat hook postrouting priority srcnat;\n\
             \t\toifname \"eth0\" masquerade\n\
             \t}}\n\
             }}\n"
        );
        let file = self.dir.join("nat.nft");
        std::fs::write(&file, rules).unwrap();
        must(&[
            "ip",
            "netns",
            "exec",
            &router,
            "nft",
            "-f",
            file.to_str().unwrap(),
        ]);
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    /// The namespace of host `i`'s router.
    fn router_ns(&self, i: usize) -> String {
        format!("{}r{i}", self.tag)
    }

    /// The namespace on the bridge for host `i`: its router's, if it is behind one.
    fn bridged_ns(&self, i: usize) -> String {
        if self.nat == Some(i) {
            self.router_ns(i)
        } else {
            self.ns(i)
        }
    }

    /// The address of the host behind the router, on its private network.
    fn private_ip(&self, i: usize) -> String {
        format!("192.168.{}.{}", self.subnet, 100 + i)
    }

    fn private_gateway(&self) -> String {
        format!("192.168.{}.1", self.subnet)
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }

    /// Host `i`'s address on the bridge: for the host behind the router, the router's.
    pub(crate) fn ip(&self, i: usize) -> String {
        format!("10.{}.0.{i}", self.subnet)
    }

    /// Host `i`'s node's gRPC address.
    pub(crate) fn grpc(&self, i: usize) -> String {
        format!("{}:{GRPC_PORT}", self.ip(i))
    }

    /// Host `i`'s node's log (its stderr).
    pub(crate) fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}.log"))
    }

    /// Every node's log, concatenated.
    pub(crate) fn logs(&self) -> String {
        (1..=self.n)
            .map(|i| std::fs::read_to_string(self.log(i)).unwrap_or_default())
            .collect()
    }

    /// Starts node `n{i}` on host `i` (plaintext unless [`Hosts::up_secure`]), joining through
    /// host 1 unless it is host 1. Its data dir is kept across restarts.
    pub(crate) fn start(&mut self, i: usize) {
        let token = (i != 1).then(|| self.token()).flatten();
        assert!(self.nodes[i - 1].is_none(), "n{i} already runs");
        let bound = if self.nat == Some(i) {
            self.private_ip(i)
        } else {
            self.ip(i)
        };
        let listen = format!("{bound}:{GRPC_PORT}");
        let gossip = format!("{bound}:{}", GRPC_PORT + 1);
        let data = self.dir.join(format!("n{i}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i), BIN, "node", "start"])
            .args(["--name", &format!("n{i}")])
            .args(["--listen", &listen, "--gossip", &gossip])
            .arg("--data-dir")
            .arg(&data);
        if self.secure.is_none() {
            cmd.arg("--insecure");
        }
        if let Some(wire) = self.gossip_wire {
            cmd.args(["--gossip-wire", wire]);
        }
        if i != 1 {
            cmd.args(["--join", &self.grpc(1)]);
        }
        if let Some(token) = &token {
            cmd.args(["--token", token]);
        }
        if self.nat == Some(i) && self.no_inbound {
            cmd.arg("--no-inbound");
        } else if self.nat == Some(i) {
            let gossip = format!("{}:{}", self.ip(i), GRPC_PORT + 1);
            cmd.args(["--advertise", &self.grpc(i), "--advertise-gossip", &gossip]);
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a node");
        self.nodes[i - 1] = Some(child);
        if i == 1 {
            self.made_cluster();
        }
    }

    /// Starts every host's node, n1 first (the others join through it), and waits until each
    /// lists all of them.
    pub(crate) fn start_all(&mut self) {
        self.start(1);
        self.wait_members(1, &["n1"], PATIENCE);
        for i in 2..=self.n {
            self.start(i);
        }
        let names: Vec<String> = (1..=self.n).map(|i| format!("n{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for i in 1..=self.n {
            self.wait_members(i, &names, PATIENCE);
        }
    }

    /// Kills node `i` with SIGKILL.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id of node `i`'s `ip netns exec` (which execs the node itself).
    pub(crate) fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i - 1].as_ref().map(Child::id)
    }

    /// Cuts host `i`'s link.
    pub(crate) fn cut(&self, i: usize) {
        must(&["ip", "link", "set", &self.veth(i), "down"]);
    }

    /// Restores host `i`'s link.
    pub(crate) fn heal(&self, i: usize) {
        must(&["ip", "link", "set", &self.veth(i), "up"]);
    }

    /// Drops `pct` % of host `i`'s outgoing packets at random; 0 stops dropping.
    pub(crate) fn loss(&self, i: usize, pct: u32) {
        let ns = self.ns(i);
        let _ = run(&[
            "ip", "netns", "exec", &ns, "nft", "delete", "table", "inet", "sfloss",
        ]);
        if pct > 0 {
            must(&[
                "ip", "netns", "exec", &ns, "nft", "add", "table", "inet", "sfloss",
            ]);
            must(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "nft",
                "add",
                "chain",
                "inet",
                "sfloss",
                "out",
                "{ type filter hook output priority 0; }",
            ]);
            let rule = format!("numgen random mod 100 < {pct} drop");
            must(&[
                "ip", "netns", "exec", &ns, "nft", "add", "rule", "inet", "sfloss", "out", &rule,
            ]);
        }
    }

    /// Removes whatever an earlier run with this tag left.
    fn clean(&self) {
        for i in 1..=self.n {
            // Deleting the namespace deletes the veth pair too, but not at once: delete it first.
            let _ = run(&["ip", "link", "del", &self.veth(i)]);
            let _ = run(&["ip", "netns", "del", &self.ns(i)]);
            let _ = run(&["ip", "netns", "del", &self.router_ns(i)]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge()]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 1..=self.n {
            self.kill(i);
        }
        self.clean();
    }
}
