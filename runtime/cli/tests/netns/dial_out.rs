//! The dial-out-only set-up (issue 21 §3): a host behind a router that masquerades its
//! traffic and forwards no port, as a home router without a port-forward, or a firewall that
//! lets nothing in. Its node runs `--no-inbound`, and every node gossips on the TLS port.

use super::{Hosts, must};

impl Hosts {
    /// Makes `n` secure hosts gossiping on the TLS port, with host `nat` behind a router that
    /// forwards nothing to it, or says why it cannot and returns `None`.
    pub(crate) fn up_behind_nat_without_forward(n: usize, nat: usize) -> Option<Self> {
        let mut hosts = Self::up_behind_nat(n, nat)?;
        hosts.secure = Some(None);
        hosts.gossip_wire = Some("tls");
        hosts.no_inbound = true;
        // The router still masquerades what the host sends out; nothing comes in unasked.
        must(&[
            "ip",
            "netns",
            "exec",
            &hosts.router_ns(nat),
            "nft",
            "flush",
            "chain",
            "ip",
            "sfnat",
            "pre",
        ]);
        Some(hosts)
    }
}
