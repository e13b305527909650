//! `steinadler bench --only scale`: the scale harness runs end to end on a small cluster of
//! real node processes, prints its summary, exits 0 and leaves no directory behind. No timing
//! is asserted: this machine is too noisy for that.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_scale_bench_prints_its_summary_for_4_nodes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steinadler"))
        .args(["bench", "--only", "scale", "--nodes", "4", "--rounds", "1"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the steinadler binary runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Generous: a debug build on a loaded 2-core machine is slow to start nodes and compile.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the bench") {
            break status;
        }
        if Instant::now() > deadline {
            // SIGINT first: the harness takes it as Ctrl-C and kills its nodes on the way out.
            let pid = i32::try_from(child.id()).expect("a pid");
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid, libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("the scale bench did not finish in 600 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    let summary = out
        .lines()
        .find(|l| l.starts_with("scale, N=4:"))
        .unwrap_or_else(|| panic!("no summary line for N=4\nstdout:\n{out}\nstderr:\n{err}"));
    for part in ["converge", "warm --on all p50", "TCP conns/node", "kill -9"] {
        assert!(summary.contains(part), "{part:?} missing: {summary}");
    }
    // The survivors' own logs time the failure detector: every one declared the victim dead.
    assert!(
        summary.contains("declared dead by all in") && !summary.contains("not in every"),
        "the survivors' logs were not read: {summary}\nstdout:\n{out}"
    );
    // The first line names the bench's temporary directory, which must be gone.
    let logs = out
        .lines()
        .next()
        .and_then(|l| l.split_once("logs in "))
        .map(|(_, dir)| std::path::PathBuf::from(dir.trim()))
        .expect("the first line names the logs' directory");
    let dir = logs.parent().expect("the bench's directory");
    assert!(!dir.exists(), "{} was left behind", dir.display());
}
