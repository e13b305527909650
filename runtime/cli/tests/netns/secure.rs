//! Secure test hosts: mutual TLS and the cookie, as a user runs a cluster. Host 1's node makes
//! the cluster; the others join it with its token, and the CLI logs in with the token too.

use super::{BIN, Hosts, PATIENCE};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

impl Hosts {
    /// Makes `n` hosts whose nodes run secure (mutual TLS, the cookie), or says why it cannot
    /// and returns `None`.
    pub(crate) fn up_secure(n: usize) -> Option<Self> {
        let mut hosts = Self::make(n, None)?;
        hosts.secure = Some(None);
        Some(hosts)
    }

    /// Where the CLI keeps its login for these hosts.
    pub(super) fn config_home(&self) -> PathBuf {
        self.dir.join("cli")
    }

    /// The join token of host 1's cluster, for a secure node that joins it; `None` for
    /// plaintext hosts.
    pub(super) fn token(&self) -> Option<String> {
        let secure = self.secure.as_ref()?;
        Some(
            secure
                .clone()
                .expect("host 1's node starts first and makes the cluster"),
        )
    }

    /// After host 1's secure node started: reads the join token from its data dir, once the
    /// node made the cluster, and logs the CLI in with it through host 1.
    pub(super) fn made_cluster(&mut self) {
        if self.secure != Some(None) {
            return;
        }
        let data = self.dir.join("n1");
        let started = Instant::now();
        let token = loop {
            let out = Command::new(BIN)
                .args(["cluster", "token", "--data-dir"])
                .arg(&data)
                .output()
                .expect("run the CLI");
            if out.status.success() {
                break String::from_utf8_lossy(&out.stdout).trim().to_owned();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "n1 made no cluster: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        loop {
            let login = Command::new("ip")
                .args(["netns", "exec", &self.ns(1), BIN, "login"])
                .args([
                    "--node",
                    &self.grpc(1),
                    "--token",
                    &token,
                    "--name",
                    "tester",
                ])
                .env("XDG_CONFIG_HOME", self.config_home())
                .output()
                .expect("run the CLI");
            if login.status.success() {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the CLI cannot log in to n1: {}",
                String::from_utf8_lossy(&login.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.secure = Some(Some(token));
    }

    /// Runs `f` on a new thread inside host `i`'s network namespace (sockets it opens are
    /// host `i`'s), and returns its handle.
    pub(crate) fn in_host<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.ns(i));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on a namespace file this thread opened; it moves only this thread.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}
