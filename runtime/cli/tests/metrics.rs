//! `/metrics` on three real `steinadler node start --metrics` processes: after real calls (a
//! deploy, `invoke --on all` that succeeds and one that fails, process messages, a plaintext
//! connection to a TLS port), each node's scrape shows the counters moved, and the exposition
//! passes `promtool check metrics` when promtool is installed (`.ci/run` installs it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// Shared by the CLI tests; this one uses part of it.
#[allow(dead_code)]
mod nodes;

use nodes::{NodeProc, cli, config_home, ok, start_with};

/// A port nobody listens on now (bound, read and released).
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `GET /metrics` over a plain TCP connection; the body of a 200.
fn scrape(addr: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// The value of the sample `name` whose labels include all of `labels`, if there is one.
fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().find_map(|line| {
        let (series, v) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        if !(rest.is_empty() || rest.starts_with('{')) {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            .then(|| v.parse().ok())?
    })
}

fn node(name: &str, metrics: &str, seed: Option<&NodeProc>) -> NodeProc {
    let mut args = vec!["--metrics", metrics];
    if let Some(seed) = seed {
        args.extend(["--join", &seed.grpc]);
        args.extend(["--token", seed.token.as_deref().unwrap()]);
    }
    start_with(name, &args, seed.is_none())
}

#[test]
fn three_nodes_count_their_calls_members_and_refusals() {
    let addrs = [free_addr(), free_addr(), free_addr()];
    let n1 = node("n1", &addrs[0], None);
    let n2 = node("n2", &addrs[1], Some(&n1));
    let n3 = node("n3", &addrs[2], Some(&n1));
    let token = n1.token.clone().unwrap();
    ok(&cli(&n1, &["login", "--token", &token, "--name", "tester"]));

    // Members: each node's gauge says 3 alive once gossip has converged.
    let deadline = Instant::now() + Duration::from_secs(20);
    for addr in &addrs {
        loop {
            let body = scrape(addr);
            if value(&body, "steinadler_members", &[("state", "alive")]) == Some(3.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} never saw 3 alive:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    ok(&cli(&n1, &["deploy", steinadler_test_modules::HELLO]));
    let invoke = ["invoke", "hello", "greet", "--args", r#"["World"]"#];
    let out = ok(&cli(
        &n3,
        &[&invoke[..], &["--on", "all", "--timeout", "60s"]].concat(),
    ));
    assert_eq!(out.lines().count(), 3, "{out}");
    // A failing call on every node: the function does not exist.
    let o = cli(&n3, &["invoke", "hello", "nope", "--on", "all"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    // Process messages: a counter on n2, a send and a call through n1.
    ok(&cli(&n1, &["deploy", steinadler_test_modules::COUNTER]));
    ok(&cli(
        &n1,
        &[
            "spawn", "counter", "--args", "5", "--name", "c", "--on", "node:n2",
        ],
    ));
    ok(&cli(&n1, &["send", "c@n2", "\"inc\""]));
    assert_eq!(ok(&cli(&n1, &["call", "c@n2", "\"get\""])).trim(), "6");
    // A plaintext client on a TLS port: refused before any handshake.
    {
        let mut tcp = TcpStream::connect(&n1.grpc).unwrap();
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\n\r\n");
        let _ = tcp.read(&mut [0u8; 64]);
    }

    let scrapes: Vec<String> = addrs.iter().map(|a| scrape(a)).collect();
    // Modules are labelled by id, the same on every node; where hello was deployed, its name.
    let hello = scrapes[0]
        .lines()
        .find(|l| l.starts_with("steinadler_module_names{") && l.contains("name=\"hello\""))
        .and_then(|l| l.split("module=\"").nth(1)?.split('"').next())
        .unwrap_or_else(|| panic!("no module name for hello:\n{}", scrapes[0]))
        .to_owned();
    for (name, body) in ["n1", "n2", "n3"].iter().zip(&scrapes) {
        let at_least = |metric: &str, labels: &[(&str, &str)], min: f64| {
            let v = value(body, metric, labels);
            assert!(
                v.is_some_and(|v| v >= min),
                "{name}: {metric}{labels:?} is {v:?}, expected at least {min}:\n{body}"
            );
        };
        let ok_call = [
            ("module", hello.as_str()),
            ("function", "greet"),
            ("outcome", "ok"),
        ];
        at_least("steinadler_invocations_total", &ok_call, 1.0);
        // An unknown function is no label of its own: callers cannot grow the label set.
        let failed = [
            ("module", hello.as_str()),
            ("function", "(unknown)"),
            ("outcome", "function_not_found"),
        ];
        at_least("steinadler_invocations_total", &failed, 1.0);
        at_least(
            "steinadler_invocation_duration_seconds_count",
            &[("module", hello.as_str()), ("function", "greet")],
            1.0,
        );
        at_least(
            "steinadler_invocation_duration_seconds_bucket",
            &[("function", "greet"), ("le", "+Inf")],
            1.0,
        );
        at_least("steinadler_members", &[("state", "alive")], 3.0);
        at_least(
            "steinadler_module_loads_total",
            // `steinadler node` compiles in a child process by default.
            &[("source", "compiled"), ("place", "child")],
            1.0,
        );
        at_least("process_resident_memory_bytes", &[], 1.0);
        at_least("process_cpu_seconds_total", &[], 0.0);
        assert!(
            body.lines().any(|l| l.starts_with("memberlist_")),
            "{name}: no memberlist metrics:\n{body}"
        );
        assert!(
            !body.contains("pid=\"") && !body.contains("request_id=\""),
            "{name}: a high-cardinality label:\n{body}"
        );
    }
    let [s1, s2, s3] = &scrapes[..] else {
        unreachable!()
    };
    // n3 coordinated both calls to all three.
    let fanout = value(s3, "steinadler_fanout_targets_count", &[]);
    assert!(fanout.is_some_and(|v| v >= 2.0), "{fanout:?}:\n{s3}");
    let targets = value(s3, "steinadler_fanout_targets_sum", &[]);
    assert!(targets.is_some_and(|v| v >= 6.0), "{targets:?}:\n{s3}");
    // n2 and n3 fetched hello from n1 (n2 fetched counter too).
    for body in [s2, s3] {
        let fetched = value(
            body,
            "steinadler_module_fetches_total",
            &[("outcome", "ok")],
        );
        assert!(fetched.is_some_and(|v| v >= 1.0), "{fetched:?}:\n{body}");
    }
    for kind in ["send", "call"] {
        let sent = value(
            s1,
            "steinadler_messages_sent_total",
            &[("kind", kind), ("to", "remote")],
        );
        assert!(sent.is_some_and(|v| v >= 1.0), "{kind} {sent:?}:\n{s1}");
    }
    let received = value(s2, "steinadler_messages_received_total", &[]);
    assert!(received.is_some_and(|v| v >= 2.0), "{received:?}:\n{s2}");
    assert_eq!(value(s2, "steinadler_processes", &[]), Some(1.0), "{s2}");
    let refused = value(
        s1,
        "steinadler_rejections_total",
        &[("kind", "tls"), ("reason", "no_client_hello")],
    );
    assert!(refused.is_some_and(|v| v >= 1.0), "{refused:?}:\n{s1}");

    // For `.ci/check-deploy --scrape`: the Grafana dashboard may name only metrics a real
    // scrape has.
    if let Some(path) = std::env::var_os("STEINADLER_SCRAPE_OUT") {
        std::fs::write(&path, scrapes.concat()).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
    }

    // The exposition is well formed, as Prometheus's own checker reads it.
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut promtool) => {
            promtool
                .stdin
                .take()
                .unwrap()
                .write_all(s3.as_bytes())
                .unwrap();
            let out = promtool.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{}{}\n{s3}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // `.ci/run` sets STEINADLER_REQUIRE_PROMTOOL where it installed promtool.
        Err(e) if std::env::var_os("STEINADLER_REQUIRE_PROMTOOL").is_some() => {
            panic!("STEINADLER_REQUIRE_PROMTOOL is set but promtool cannot run: {e}")
        }
        Err(e) => eprintln!("promtool is not installed ({e}): skipped `promtool check metrics`"),
    }
    // Other paths are not found.
    let mut tcp = TcpStream::connect(&addrs[0]).unwrap();
    write!(
        tcp,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    drop((n3, n2, n1));
    let _ = std::fs::remove_dir_all(config_home());
}
