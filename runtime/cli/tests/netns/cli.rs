//! The CLI on test hosts: run it from a host against a node, and read what nodes list
//! (members, global names).

use super::{BIN, Hosts};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

impl Hosts {
    /// Runs the CLI on host `i` against its own node; for the host behind the router, on host 1
    /// against the router's forwarded port, as a user outside reaches it, or where the router
    /// forwards nothing, on the host itself against its private address.
    pub(crate) fn cli(&self, i: usize, args: &[&str]) -> Output {
        let from = if self.nat == Some(i) && !self.no_inbound {
            1
        } else {
            i
        };
        self.cli_from(from, i, args)
    }

    /// Runs the CLI on host `from` against host `node`'s node.
    pub(crate) fn cli_from(&self, from: usize, node: usize, args: &[&str]) -> Output {
        let addr = if self.nat == Some(node) && self.no_inbound {
            format!("{}:{}", self.private_ip(node), super::GRPC_PORT)
        } else {
            self.grpc(node)
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(from), BIN])
            .args(args)
            .args(["--node", &addr])
            .env("RUST_LOG", "warn");
        if self.secure.is_some() {
            cmd.env("XDG_CONFIG_HOME", self.config_home());
        } else {
            cmd.arg("--insecure");
        }
        cmd.output().expect("run the CLI")
    }

    /// The PID node `i` resolves the global name `name` to.
    pub(crate) fn holder(&self, i: usize, name: &str) -> Option<String> {
        let out = self.cli(i, &["registry", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["name"] == name)
            .and_then(|e| e["pid"].as_str().map(str::to_owned))
    }

    /// The names of the live members node `i` lists, or `None` if it does not answer.
    pub(crate) fn members(&self, i: usize) -> Option<Vec<String>> {
        let out = self.cli(i, &["nodes", "--json"]);
        if !out.status.success() {
            return None;
        }
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let mut names: Vec<String> = list
            .as_array()?
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        Some(names)
    }

    /// Waits until node `i` lists exactly `names` as live members.
    pub(crate) fn wait_members(&self, i: usize, names: &[&str], within: Duration) -> Duration {
        let started = Instant::now();
        let want: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        loop {
            let seen = self.members(i);
            if seen.as_ref() == Some(&want) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "n{i} lists {seen:?}, not {want:?}, after {within:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `invoke hello greet --on all --json` from host `from` through host `node`'s node:
    /// `Ok` if every one of the `nodes` answered, else what the CLI printed.
    pub(crate) fn greet_all(&self, from: usize, node: usize, nodes: usize) -> Result<(), String> {
        let out = self.cli_from(
            from,
            node,
            &[
                "invoke",
                "hello",
                "greet",
                "--args",
                "[\"World\"]",
                "--on",
                "all",
                "--json",
                "--timeout",
                "10s",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.matches("\"ok\":true").count() == nodes {
            Ok(())
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Drops `pct` % of host `lossy`'s packets for `secs` seconds while host 1 calls every
    /// one of the `nodes` through n1 every 300 ms ([`Hosts::greet_all`]); returns how many
    /// calls it made and what the failed ones printed.
    pub(crate) fn greet_all_under_loss(
        &self,
        lossy: usize,
        pct: u32,
        secs: u64,
        nodes: usize,
    ) -> (usize, Vec<String>) {
        self.loss(lossy, pct);
        let started = std::time::Instant::now();
        let (mut calls, mut failed) = (0, Vec::new());
        while started.elapsed() < Duration::from_secs(secs) {
            calls += 1;
            if let Err(e) = self.greet_all(1, 1, nodes) {
                failed.push(e);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        self.loss(lossy, 0);
        (calls, failed)
    }
}
