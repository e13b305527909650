//! Three real `steinadler node start` processes, driven by the real CLI: token join over mutual
//! TLS, login, deploy, invoke on all and by label, list nodes, and a graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_steinadler");

struct NodeProc {
    child: Child,
    grpc: String,
    /// The join token, printed by a node that created a new cluster.
    token: Option<String>,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node on free ports and reads the addresses it prints; with a seed, it joins the
/// seed's cluster with its token.
fn start(name: &str, zone: &str, join: Option<&NodeProc>) -> NodeProc {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "node",
        "start",
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--gossip",
        "127.0.0.1:0",
    ])
    .args(["--label", &format!("zone={zone}")])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(seed) = join {
        cmd.args(["--join", &seed.grpc]);
        cmd.args([
            "--token",
            seed.token.as_deref().expect("the seed printed a token"),
        ]);
    }
    let mut child = cmd.spawn().expect("start a node");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("read the node's first line");
    // "node n1 serving gRPC on ADDR and gossip on ADDR"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words.get(2),
        Some(&"serving"),
        "unexpected first line: {line:?}"
    );
    assert!(
        line.contains("(mutual TLS)"),
        "not secure by default: {line:?}"
    );
    let grpc = words[5].to_owned();
    let token = if join.is_none() {
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
    NodeProc { grpc, token, child }
}

/// Where this test's CLI keeps its login.
fn config_home() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("steinadler-cli-test-{}", std::process::id()))
}

fn cli(node: &NodeProc, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("STEINADLER_NODE", &node.grpc)
        .env("XDG_CONFIG_HOME", config_home())
        .output()
        .expect("run the CLI")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn three_processes_deploy_invoke_list_and_stop() {
    let n1 = start("n1", "a", None);
    let n2 = start("n2", "a", Some(&n1));
    let n3 = start("n3", "b", Some(&n1));

    // Without a login the CLI says what to do.
    let o = cli(&n2, &["nodes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("steinadler login"),
        "{o:?}"
    );
    let token = n1.token.clone().unwrap();
    let login = ok(&cli(&n1, &["login", "--token", &token, "--name", "tester"]));
    assert!(login.contains("logged in as tester"), "{login}");

    // Wait until n2 sees all three.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ok(&cli(&n2, &["nodes", "--json"]));
        if out.matches("\"alive\"").count() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "membership did not converge: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let deployed = ok(&cli(&n1, &["deploy", steinadler_test_modules::HELLO]));
    assert!(deployed.contains("deployed hello"), "{deployed}");

    // Coordinate from n3, which must find the module on n1.
    let out = ok(&cli(
        &n3,
        &[
            "invoke",
            "hello",
            "greet",
            "--args",
            r#"["World"]"#,
            "--on",
            "all",
            "--json",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for node in ["n1", "n2", "n3"] {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("\"node\":\"{node}\"")))
            .unwrap_or_else(|| panic!("{node} missing: {out}"));
        assert!(line.contains(r#""value":"Hello, World!""#), "{line}");
    }
    let out = ok(&cli(
        &n3,
        &[
            "invoke",
            "hello",
            "greet",
            "--args",
            "\"B\"",
            "--on",
            "label:zone=a",
            "--json",
        ],
    ));
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!out.contains("\"n3\""), "{out}");

    let table = ok(&cli(&n1, &["nodes"]));
    assert!(
        table.contains("zone=b") && table.contains("hello"),
        "{table}"
    );

    // A function error exits 1 with a per-node line.
    let o = cli(&n1, &["invoke", "hello", "nope", "--on", "node:n2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("exports no function"),
        "{o:?}"
    );

    // SIGTERM: each node leaves and exits 0.
    for mut node in [n3, n2, n1] {
        let pid = node.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = node.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
    let _ = std::fs::remove_dir_all(config_home());
}

#[test]
fn unreachable_node_is_a_clear_error() {
    let o = Command::new(BIN)
        .args(["nodes", "--node", "127.0.0.1:1", "--insecure"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot reach a node at 127.0.0.1:1") && err.contains("--node"),
        "{err}"
    );
}
