//! The one-port set-up (issue 21 §4): secure hosts whose nodes gossip on their TLS port
//! (`--gossip-wire tls`), and a firewall on a host that admits one inbound TCP port, the
//! node's gRPC port, and drops everything else that was not a reply to the host's own
//! traffic.

use super::{GRPC_PORT, Hosts, must};

impl Hosts {
    /// Makes `n` secure hosts whose nodes gossip on the TLS port, or says why it cannot and
    /// returns `None`.
    pub(crate) fn up_one_port(n: usize) -> Option<Self> {
        let mut hosts = Self::up_secure(n)?;
        hosts.gossip_wire = Some("tls");
        Some(hosts)
    }

    /// Host `i` admits only TCP to port 7100 (and replies to what it sent), counting the
    /// inbound packets it drops.
    pub(crate) fn admit_only_grpc(&self, i: usize) {
        let rules = format!(
            "table inet sffw {{\n\
             \tchain in {{ type filter hook input priority 0; policy accept;\n\
             \t\tiif lo accept\n\
             \t\tct state established,related accept\n\
             \t\ttcp dport {GRPC_PORT} accept\n\
             \t\tcounter drop\n\
             \t}}\n\
             }}\n"
        );
        let file = self.dir.join(format!("firewall{i}.nft"));
        std::fs::write(&file, rules).unwrap();
        must(&[
            "ip",
            "netns",
            "exec",
            &self.ns(i),
            "nft",
            "-f",
            file.to_str().unwrap(),
        ]);
    }

    /// How many inbound packets host `i`'s firewall dropped.
    pub(crate) fn firewall_drops(&self, i: usize) -> u64 {
        let out = super::run(&[
            "ip",
            "netns",
            "exec",
            &self.ns(i),
            "nft",
            "list",
            "table",
            "inet",
            "sffw",
        ])
        .expect("list the firewall");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {text}"))
    }
}
