//! Who a certificate speaks for: [`Role`] and name read from a certificate ([`identity_of`]),
//! name rules for nodes and clients, and expiry helpers.
//!
//! Roles come from the Extended Key Usage, so certificates from an operator's own CA work too:
//! serverAuth makes a node (named by its first DNS SAN, else its subject CN), clientAuth without
//! serverAuth makes a client (named by its subject CN).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::SecurityError;

/// How long before expiry [`expires_in`] results should turn into a warning: 14 days.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// What a certificate lets its holder be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A cluster node: serves (serverAuth) and calls other nodes (clientAuth).
    Node,
    /// A CLI user or application: clientAuth only.
    Client,
}

impl Role {
    /// "node" or "client".
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Role, name and expiry of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Node or client.
    pub role: Role,
    /// The node name (first DNS SAN, else CN) or the client name (CN).
    pub name: String,
    /// Start of the validity window.
    pub not_before: SystemTime,
    /// End of the validity window.
    pub not_after: SystemTime,
}

impl Identity {
    /// When the certificate is due for renewal: two thirds into its lifetime. The lifetime
    /// runs from its issue, which for this cluster's certificates is `not_before` plus
    /// [`BACKDATE`](crate::BACKDATE) (backdated for clock skew); a window no longer than that
    /// (an operator's certificate) counts whole. Always inside the window.
    #[must_use]
    pub fn renew_at(&self) -> SystemTime {
        let window = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        let (issued, lifetime) = if window > crate::BACKDATE {
            (self.not_before + crate::BACKDATE, window - crate::BACKDATE)
        } else {
            (self.not_before, window)
        };
        issued + lifetime * 2 / 3
    }
}

pub(crate) fn parse_cert<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, SecurityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| SecurityError::Certificate(format!("cannot parse X.509 DER: {e}")))?;
    Ok(cert)
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn first_dns_san(cert: &X509Certificate<'_>) -> Result<Option<String>, SecurityError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SecurityError::Certificate(format!("bad subjectAltName: {e}")))?;
    Ok(san.and_then(|san| {
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
    }))
}

fn not_after_of(cert: &X509Certificate<'_>) -> SystemTime {
    at(cert.validity().not_after.timestamp())
}

fn at(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

/// The subject alternative names of a DER certificate: its IP addresses, and its DNS names
/// after the first (which names a node).
///
/// # Errors
///
/// [`SecurityError::Certificate`] if the certificate or its SAN extension cannot be parsed.
pub fn sans_of(cert: &CertificateDer<'_>) -> Result<(Vec<IpAddr>, Vec<String>), SecurityError> {
    let x509 = parse_cert(cert.as_ref())?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| SecurityError::Certificate(format!("bad subjectAltName: {e}")))?;
    let (mut ips, mut dns) = (Vec::new(), Vec::new());
    for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(name) => dns.push((*name).to_owned()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    if !dns.is_empty() {
        dns.remove(0);
    }
    Ok((ips, dns))
}

/// Reads role, name and expiry from a DER certificate.
///
/// # Errors
///
/// [`SecurityError::Certificate`] if the certificate cannot be parsed or has no usable name,
/// [`SecurityError::NoRole`] if its EKU has neither serverAuth nor clientAuth.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity, SecurityError> {
    let x509 = parse_cert(cert.as_ref())?;
    let eku = x509
        .extended_key_usage()
        .map_err(|e| SecurityError::Certificate(format!("bad extended key usage: {e}")))?
        .ok_or(SecurityError::NoRole)?;
    let role = if eku.value.server_auth {
        Role::Node
    } else if eku.value.client_auth {
        Role::Client
    } else {
        return Err(SecurityError::NoRole);
    };
    let name = match role {
        Role::Node => first_dns_san(&x509)?.or_else(|| common_name(&x509)),
        Role::Client => common_name(&x509),
    }
    .ok_or_else(|| {
        SecurityError::Certificate(format!(
            "the {role} certificate has no name (no DNS subjectAltName and no subject CN)"
        ))
    })?;
    Ok(Identity {
        role,
        name,
        not_before: at(x509.validity().not_before.timestamp()),
        not_after: not_after_of(&x509),
    })
}

/// Time left until the first certificate in `cert_pem` expires; zero if it already has.
/// Compare with [`EXPIRY_WARNING`] to warn early.
///
/// # Errors
///
/// [`SecurityError::Pem`] or [`SecurityError::Certificate`] if the PEM holds no parsable
/// certificate.
pub fn expires_in(cert_pem: &str) -> Result<Duration, SecurityError> {
    let der = crate::first_cert_der(cert_pem)?;
    let not_after = not_after_of(&parse_cert(der.as_ref())?);
    Ok(not_after
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO))
}

/// Checks that `name` can be a node name, which must also be a DNS name (it goes into the
/// certificate's DNS SAN and peers check it as a TLS server name): labels of 1-63 characters of
/// `[a-z0-9-]` (either case) separated by '.', not starting or ending with '-', at most 253
/// characters, and the last label not all digits (it would read as an IP address).
///
/// # Errors
///
/// [`SecurityError::BadName`] saying which rule the name breaks.
pub fn validate_node_name(name: &str) -> Result<(), SecurityError> {
    let bad = |why: &str| {
        Err(SecurityError::BadName(format!(
            "invalid node name {name:?}: {why} (node names are DNS names: labels of 1-63 \
             letters, digits or '-', separated by '.', e.g. \"node-1\")"
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("it has an empty label");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("it has a character other than a letter, digit, '-' or '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    if rustls_pki_types::DnsName::try_from(name).is_err() {
        return bad("its last label is a number, so it would read as an IP address");
    }
    Ok(())
}

/// Checks that `name` can be a client name: 1-64 characters of letters, digits, '-', '_', '.'
/// or '@', not starting with '.' (it becomes a directory name under `clients/`).
///
/// # Errors
///
/// [`SecurityError::BadName`] saying which rule the name breaks.
pub fn validate_client_name(name: &str) -> Result<(), SecurityError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(SecurityError::BadName(format!(
            "invalid client name {name:?}: use 1-64 letters, digits, '-', '_', '.' or '@', not \
             starting with '.', e.g. \"alice\""
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["n1", "node-1", "Node-1.example.com", "a", "x1.y2"] {
            validate_node_name(ok).unwrap();
        }
        let long_label = "a".repeat(64);
        let long_name = ["a"; 127].join(".") + ".bb";
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "a b",
            "ü",
            "1",
            "n.42",
            &long_label,
            &long_name,
        ] {
            assert!(validate_node_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn client_names() {
        validate_client_name("alice@example.com").unwrap();
        validate_client_name("ci_bot-2").unwrap();
        for bad in ["", ".", "..", "../x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_client_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn role_display() {
        assert_eq!(Role::Node.to_string(), "node");
        assert_eq!(Role::Client.to_string(), "client");
    }
}
