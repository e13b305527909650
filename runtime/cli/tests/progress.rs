//! Progress on long commands (issue 22 §5): `invoke --on all` that takes more than 2 s shows
//! `results N/M` on stderr when stderr is a terminal (a pseudo-terminal here), and prints
//! nothing of the kind when it is not; stdout carries the JSON result lines only, either way.

// Shared by the CLI tests; this one uses part of it.
#[allow(dead_code)]
mod nodes;

use nodes::{BIN, ok, start_with};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};

/// A pseudo-terminal of 100 columns: (the master to read, the slave to hand a child).
fn pty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the locals; the name pointer may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

/// `invoke spin forever --on all --json` with a 3 s deadline: a call that takes 3 s and fails.
fn slow_invoke(node: &str, stderr: Stdio) -> std::process::Child {
    Command::new(BIN)
        .args(["invoke", "spin", "forever", "--on", "all", "--json"])
        .args(["--timeout", "3s", "--insecure", "--node", node])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("run the CLI")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[test]
fn a_slow_invoke_shows_progress_on_a_terminal_only_and_keeps_stdout_json() {
    let n = start_with("p1", &["--insecure"], false);
    ok(&Command::new(BIN)
        .args([
            "deploy",
            steinadler_test_modules::SPIN,
            "--name",
            "spin",
            "--wait",
        ])
        .args(["--insecure", "--node", &n.grpc])
        .output()
        .unwrap());

    // On a terminal: the progress line, on stderr.
    let (mut master, slave) = pty();
    let child = slow_invoke(&n.grpc, Stdio::from(slave));
    let out = child.wait_with_output().unwrap();
    let mut seen = Vec::new();
    // The slave is closed with the child: reading ends with EIO once the output is drained.
    let mut buf = [0u8; 4096];
    while let Ok(k) = master.read(&mut buf) {
        if k == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..k]);
    }
    let terminal = String::from_utf8_lossy(&seen);
    assert!(terminal.contains("results 0/1"), "{terminal:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["ok"], false, "{lines:?}");

    // Not a terminal: no progress at all.
    let out = slow_invoke(&n.grpc, Stdio::piped())
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("results"), "{stderr}");
    assert_eq!(json_lines(&out).len(), 1);
}
