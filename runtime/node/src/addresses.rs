//! The addresses this node tells others to reach it at: the gRPC address in its gossiped
//! metadata, and its gossip address.
//!
//! Each is the `--advertise` (`--advertise-gossip`) address when one is set: for a node behind
//! a port-forward, in a container or behind a load balancer, where the address others dial is
//! not the one it binds. Without one it is the bound address, except that a wildcard bind
//! (`0.0.0.0`, `[::]`) advertises the machine's first non-loopback address of that family, and
//! says so in the log. A node never gossips a wildcard address: when it cannot tell what to
//! advertise it refuses to start. [`crate::node::Node::start`] calls these before it starts
//! gossip; the certificate a new cluster bootstraps covers the advertised host too
//! ([`crate::setup`]).

use crate::node::NodeError;
use std::net::{IpAddr, SocketAddr};

/// The gRPC address to gossip for a node that accepts no connections (`--no-inbound`): one
/// nobody can dial ([`crate::relay::unreachable_addr`]). Its listener still serves clients
/// that reach it where it runs, the CLI on its machine say; peers never learn that address.
///
/// # Errors
///
/// [`NodeError::Advertise`] with gossip on its own port, which peers would have to reach,
/// or with `--advertise`.
pub(crate) fn no_inbound(config: &crate::NodeConfig) -> Result<String, NodeError> {
    if config.gossip_mode != crate::GossipMode::Tls {
        return Err(NodeError::Advertise(
            "--no-inbound needs gossip on the TLS links, since nobody can send this node a \
             packet: start it, and every node of its cluster, with --gossip-wire tls"
                .into(),
        ));
    }
    if let Some(addr) = &config.advertise {
        return Err(NodeError::Advertise(format!(
            "--no-inbound means no peer dials this node, so there is no address to \
             advertise: drop --advertise {addr}, or drop --no-inbound if others can reach it"
        )));
    }
    Ok(crate::relay::unreachable_addr(&config.name).to_string())
}

/// The gRPC address to gossip, for a listener bound at `bound` (its real port, when port 0
/// was asked for).
///
/// # Errors
///
/// [`NodeError::Advertise`] if `advertise` is not `HOST:PORT`, names a wildcard IP, or is unset
/// while `bound` is a wildcard on a machine with no non-loopback address.
pub(crate) fn grpc(bound: SocketAddr, advertise: Option<&str>) -> Result<String, NodeError> {
    if let Some(addr) = advertise {
        check_host_port(addr)?;
        return Ok(addr.to_owned());
    }
    resolve_wildcard(bound, "--listen", "--advertise").map(|a| a.to_string())
}

/// The gossip address to advertise, for gossip bound at `bind`: `None` leaves it to gossip,
/// which advertises the bound address (with its real port, for port 0).
///
/// # Errors
///
/// [`NodeError::Advertise`] if `advertise` is a wildcard IP or port 0, or if it is unset while
/// `bind` is a wildcard on a machine with no non-loopback address.
pub(crate) fn gossip(
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
) -> Result<Option<SocketAddr>, NodeError> {
    if let Some(addr) = advertise {
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(NodeError::Advertise(format!(
                "--advertise-gossip {addr} is not an address others can reach: give the IP and port that other nodes send gossip to"
            )));
        }
        return Ok(Some(addr));
    }
    if !bind.ip().is_unspecified() || bind.port() == 0 {
        // Port 0 on a wildcard: the port is only known once bound, and memberlist then
        // advertises the machine's first private address with it.
        return Ok(None);
    }
    resolve_wildcard(bind, "--gossip", "--advertise-gossip").map(Some)
}

/// `addr` itself, or for a wildcard IP the first non-loopback address of its family.
fn resolve_wildcard(addr: SocketAddr, bound_by: &str, flag: &str) -> Result<SocketAddr, NodeError> {
    if !addr.ip().is_unspecified() {
        return Ok(addr);
    }
    let candidates = local_addresses(addr.is_ipv6());
    let picked = pick(addr, &candidates).ok_or_else(|| {
        NodeError::Advertise(format!(
            "{bound_by} {addr} binds every address, and this machine has no non-loopback {} address to advertise instead: pass {flag} HOST:PORT with the address other nodes reach this one at",
            if addr.is_ipv6() { "IPv6" } else { "IPv4" }
        ))
    })?;
    tracing::info!(
        bound = %addr, advertised = %picked,
        "{bound_by} binds every address: advertising the first non-loopback one; pass {flag} to choose another"
    );
    Ok(picked)
}

/// The first of `candidates` of `wildcard`'s family that is neither loopback nor a wildcard,
/// with `wildcard`'s port.
fn pick(wildcard: SocketAddr, candidates: &[IpAddr]) -> Option<SocketAddr> {
    candidates
        .iter()
        .find(|ip| ip.is_ipv6() == wildcard.is_ipv6() && !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(*ip, wildcard.port()))
}

/// This machine's addresses of one family on interfaces with a route, loopback excluded.
fn local_addresses(v6: bool) -> Vec<IpAddr> {
    let listed = if v6 {
        getifs::local_ipv6_addrs().map(|a| a.iter().map(|n| IpAddr::V6(n.addr())).collect())
    } else {
        getifs::local_ipv4_addrs().map(|a| a.iter().map(|n| IpAddr::V4(n.addr())).collect())
    };
    listed.unwrap_or_else(|e| {
        tracing::warn!("cannot list this machine's addresses: {e}");
        Vec::new()
    })
}

/// Checks that `--advertise` `addr` is `HOST:PORT` (or `[V6]:PORT`) with a port other nodes
/// can dial and a host that is not a wildcard IP.
fn check_host_port(addr: &str) -> Result<(), NodeError> {
    let bad = |why: &str| {
        NodeError::Advertise(format!(
            "--advertise {addr:?} {why}: give HOST:PORT, the name or IP and port other nodes reach this node's gRPC port at"
        ))
    };
    let (host, port, bracketed) = split(addr).ok_or_else(|| bad("has no port"))?;
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(bad("has no usable port")),
        Ok(_) => {}
    }
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if !bracketed && host.contains(':') {
        return Err(bad("is an IPv6 address without [brackets]"));
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => Err(bad("is a wildcard address, which nobody can dial")),
        _ => Ok(()),
    }
}

/// `HOST:PORT` split into the host (without IPv6 brackets), the port, and whether the host
/// was bracketed.
fn split(addr: &str) -> Option<(&str, &str, bool)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some(
        match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(inner) => (inner, port, true),
            None => (host, port, false),
        },
    )
}

/// The host part of an advertised `HOST:PORT`, for the certificate: an IP, or else a name.
pub(crate) fn host_of(addr: &str) -> Option<Result<IpAddr, String>> {
    let (host, _, _) = split(addr)?;
    Some(host.parse::<IpAddr>().map_err(|_| host.to_owned()))
}

/// The gossip address in the one-port mode (`--gossip-wire tls`): the advertised gRPC
/// address, resolved once if it is a name, since gossip addresses are IPs.
///
/// # Errors
///
/// [`NodeError::Advertise`] if `grpc` does not resolve.
pub(crate) async fn gossip_on_links(grpc: &str) -> Result<SocketAddr, NodeError> {
    if let Ok(addr) = grpc.parse() {
        return Ok(addr);
    }
    let resolved = tokio::net::lookup_host(grpc)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next());
    resolved.ok_or_else(|| {
        NodeError::Advertise(format!(
            "--advertise {grpc} does not resolve to an IP address, and with --gossip-wire tls \
             gossip reaches this node there: give IP:PORT, or a name that resolves"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_wildcard_bind_advertises_the_first_non_loopback_address_of_its_family() {
        let ips: Vec<IpAddr> = ["127.0.0.1", "::1", "fe80::1", "10.1.2.3", "192.168.0.9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(pick(sa("0.0.0.0:7100"), &ips), Some(sa("10.1.2.3:7100")));
        assert_eq!(pick(sa("[::]:7100"), &ips), Some(sa("[fe80::1]:7100")));
        assert_eq!(pick(sa("0.0.0.0:7100"), &ips[..2]), None);
    }

    #[test]
    fn a_bound_address_is_advertised_as_it_is() {
        assert_eq!(grpc(sa("127.0.0.1:7100"), None).unwrap(), "127.0.0.1:7100");
        assert_eq!(gossip(sa("127.0.0.1:7101"), None).unwrap(), None);
    }

    #[test]
    fn an_advertised_address_must_be_one_others_can_dial() {
        let bound = sa("0.0.0.0:7100");
        for good in [
            "node1.example.com:443",
            "203.0.113.7:7100",
            "[2001:db8::1]:7100",
        ] {
            assert_eq!(grpc(bound, Some(good)).unwrap(), good);
        }
        for bad in [
            "0.0.0.0:7100",
            "[::]:7100",
            "host",
            "host:0",
            ":7100",
            "2001:db8::1:7100",
        ] {
            let err = grpc(bound, Some(bad)).unwrap_err().to_string();
            assert!(
                err.contains("--advertise") && err.contains("HOST:PORT"),
                "{bad}: {err}"
            );
        }
        assert!(gossip(bound, Some(sa("0.0.0.0:7101"))).is_err());
        assert!(gossip(bound, Some(sa("10.0.0.1:0"))).is_err());
        assert_eq!(
            gossip(bound, Some(sa("10.0.0.1:7101"))).unwrap(),
            Some(sa("10.0.0.1:7101"))
        );
    }

    #[test]
    fn the_host_of_an_advertised_address_is_an_ip_or_a_name() {
        assert_eq!(
            host_of("10.0.0.1:7100"),
            Some(Ok("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(host_of("[::1]:7100"), Some(Ok("::1".parse().unwrap())));
        assert_eq!(
            host_of("node.example:7100"),
            Some(Err("node.example".into()))
        );
    }
}
