//! Real `steinadler node start` processes for the CLI tests: start one on free ports and read
//! what it prints, run the CLI against it, and wait for membership.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_steinadler");

pub(crate) struct NodeProc {
    pub(crate) child: Child,
    pub(crate) grpc: String,
    /// The join token, printed by a node that created a new cluster.
    pub(crate) token: Option<String>,
    /// Kept open: a node whose stdout is closed must not be disturbed by it, but the test
    /// should not rely on that.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node on free ports and reads the addresses it prints; with a seed, it joins the
/// seed's cluster with its token.
pub(crate) fn start(name: &str, zone: &str, join: Option<&NodeProc>) -> NodeProc {
    let zone = format!("zone={zone}");
    let mut args = vec!["--label", &zone];
    if let Some(seed) = join {
        args.extend(["--join", &seed.grpc]);
        args.extend([
            "--token",
            seed.token.as_deref().expect("the seed printed a token"),
        ]);
    }
    start_with(name, &args, join.is_none())
}

/// Starts `node start --name NAME` with `args` on free ports. A node that creates a new cluster
/// (`creates`) prints its token on the following lines.
pub(crate) fn start_with(name: &str, args: &[&str], creates: bool) -> NodeProc {
    let mut child = Command::new(BIN)
        .args([
            "node",
            "start",
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--gossip",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a node");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("read the node's first line");
    // "node n1 serving gRPC on ADDR and gossip on ADDR (mutual TLS)"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words.get(2),
        Some(&"serving"),
        "unexpected first line: {line:?}"
    );
    let insecure = args.contains(&"--insecure");
    assert_eq!(line.contains("(mutual TLS)"), !insecure, "{line:?}");
    let grpc = words[5].to_owned();
    let token = if creates {
        // "created a new cluster. Join token (keep it secret):" then the token.
        let mut header = String::new();
        stdout.read_line(&mut header).unwrap();
        assert!(header.contains("created a new cluster"), "{header:?}");
        let mut token = String::new();
        stdout.read_line(&mut token).unwrap();
        Some(token.trim().to_owned())
    } else {
        None
    };
    NodeProc {
        grpc,
        token,
        child,
        _stdout: stdout,
    }
}

/// Where this test's CLI keeps its login.
pub(crate) fn config_home() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("steinadler-cli-test-{}", std::process::id()))
}

pub(crate) fn cli(node: &NodeProc, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("STEINADLER_NODE", &node.grpc)
        .env("XDG_CONFIG_HOME", config_home())
        .output()
        .expect("run the CLI")
}

pub(crate) fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\nstdout:\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits until `node` lists `n` members, using the CLI with `auth` flags.
pub(crate) fn wait_members(node: &NodeProc, auth: &[&str], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut args = vec!["nodes", "--json"];
        args.extend(auth);
        let out = ok(&cli(node, &args));
        if out.matches("\"name\"").count() == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "membership did not converge: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
