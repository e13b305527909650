//! The cluster CA ([`Ca`]): generating or loading it, and issuing node and client certificates,
//! directly ([`Ca::issue_node`], [`Ca::issue_client`]) or from a joining node's CSR
//! ([`Ca::sign_csr`], with [`make_csr`] on the joining side).
//!
//! Every certificate this CA issues has an ECDSA P-256 key, a random serial, an authority key
//! identifier, and a `not_before` backdated by [`BACKDATE`] so that a peer whose clock is a
//! little behind still accepts it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};

use crate::error::rcgen_err;
use crate::identity::{parse_cert, validate_client_name, validate_node_name};
use crate::{Role, SecurityError};

/// Default validity of a node certificate a node signs (token join, renewal): 7 days. Nodes
/// renew theirs at two thirds of its lifetime ([`Identity::renew_at`](crate::Identity::renew_at)).
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default validity of a client certificate a node signs (`steinadler login`): 30 days.
pub const CLIENT_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Validity of a node certificate from the offline PKI (`cluster issue`): 365 days. Nobody
/// online holds that CA's key, so the operator renews these by hand.
pub const OFFLINE_NODE_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Validity of a client certificate from the offline PKI (`cluster issue-client`): 90 days.
pub const OFFLINE_CLIENT_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Validity of a generated CA: 10 years.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far `not_before` is set in the past, to tolerate clock skew between nodes: 1 hour.
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// Subject CN of a generated CA.
const CA_NAME: &str = "Steinadler cluster CA";

/// A freshly issued certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// A certificate signing request and the private key it was made with.
#[derive(Clone)]
pub struct Csr {
    /// The PKCS#10 request, DER.
    pub der: Vec<u8>,
    /// The private key (PKCS#8 PEM); stays with the requester.
    pub key_pem: String,
}

impl fmt::Debug for Csr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Csr")
            .field("der_len", &self.der.len())
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// Makes a CSR with subject CN `name` and a fresh ECDSA P-256 key.
///
/// # Errors
///
/// [`SecurityError::Rcgen`] if key generation or encoding fails.
pub fn make_csr(name: &str) -> Result<Csr, SecurityError> {
    let key = new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name);
    let csr = params.serialize_request(&key).map_err(rcgen_err)?;
    Ok(Csr {
        der: csr.der().to_vec(),
        key_pem: key.serialize_pem(),
    })
}

/// A cluster CA: a key and its self-signed CA certificate.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("hash", &hex::encode(self.hash()))
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Ca {
    /// Generates a new CA: ECDSA P-256 key, CN "Steinadler cluster CA <8 random hex digits>"
    /// (so that a certificate from another cluster's CA fails as "unknown issuer", not as a bad
    /// signature), valid 10 years,
    /// basicConstraints CA with path length 0, key usage keyCertSign and cRLSign.
    ///
    /// # Errors
    ///
    /// [`SecurityError::Rcgen`] if key generation or signing fails.
    pub fn generate() -> Result<Ca, SecurityError> {
        let key = new_key()?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let tag: [u8; 4] = crate::random_bytes();
        params.distinguished_name = subject(&format!("{CA_NAME} {}", hex::encode(tag)));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        set_window(
            &mut params,
            now.checked_sub(BACKDATE),
            now.checked_add(CA_VALIDITY),
        )?;
        let cert = params.self_signed(&key).map_err(rcgen_err)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and private key, checking that the certificate is a CA
    /// and that the key belongs to it. The CA may come from the operator (any key type rcgen
    /// can sign with).
    ///
    /// # Errors
    ///
    /// [`SecurityError::Pem`] / [`SecurityError::Certificate`] for unreadable input,
    /// [`SecurityError::BadCa`] if the certificate is not a CA or the key does not match it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, SecurityError> {
        let cert_der = crate::first_cert_der(cert_pem)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| SecurityError::Pem {
            what: "CA private key".to_owned(),
            reason: e.to_string(),
        })?;
        {
            let x509 = parse_cert(cert_der.as_ref())?;
            let is_ca = x509
                .basic_constraints()
                .map_err(|e| SecurityError::BadCa(format!("bad basicConstraints: {e}")))?
                .is_some_and(|bc| bc.value.ca);
            if !is_ca {
                return Err(SecurityError::BadCa(
                    "the CA certificate lacks basicConstraints CA=true; use the cluster's CA \
                     certificate (ca.crt), not a node or client certificate"
                        .to_owned(),
                ));
            }
            if x509.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
                return Err(SecurityError::BadCa(
                    "the CA private key does not belong to the CA certificate; ca.key and \
                     ca.crt must come from the same `cluster init`"
                        .to_owned(),
                ));
            }
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(rcgen_err)?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM.
    #[must_use]
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA certificate, DER.
    #[must_use]
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// SHA-256 of the CA certificate's DER: what a join token pins.
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        crate::sha256(self.cert_der.as_ref())
    }

    /// Issues a node certificate: CN and first DNS SAN `name`, further DNS SANs `dns`, IP SANs
    /// `ips` plus 127.0.0.1 and ::1, EKU serverAuth and clientAuth, valid for `validity`.
    ///
    /// # Errors
    ///
    /// [`SecurityError::BadName`] for an invalid node name or DNS name,
    /// [`SecurityError::Rcgen`] if generation fails.
    pub fn issue_node(
        &self,
        name: &str,
        ips: &[IpAddr],
        dns: &[String],
        validity: Duration,
    ) -> Result<IssuedCert, SecurityError> {
        let now = SystemTime::now();
        self.issue(
            Role::Node,
            name,
            ips,
            dns,
            now.checked_sub(BACKDATE),
            now.checked_add(validity),
        )
    }

    /// Issues a client certificate: CN `name`, EKU clientAuth only, valid for `validity`.
    ///
    /// # Errors
    ///
    /// [`SecurityError::BadName`] for an invalid client name,
    /// [`SecurityError::Rcgen`] if generation fails.
    pub fn issue_client(
        &self,
        name: &str,
        validity: Duration,
    ) -> Result<IssuedCert, SecurityError> {
        let now = SystemTime::now();
        self.issue(
            Role::Client,
            name,
            &[],
            &[],
            now.checked_sub(BACKDATE),
            now.checked_add(validity),
        )
    }

    /// For tests: a node certificate valid exactly from `not_before` to `not_after`.
    ///
    /// # Errors
    ///
    /// As [`Ca::issue_node`].
    pub fn issue_node_with_window(
        &self,
        name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, SecurityError> {
        self.issue(
            Role::Node,
            name,
            &[],
            &[],
            Some(not_before),
            Some(not_after),
        )
    }

    /// Signs a PKCS#10 CSR (DER). Only the CSR's public key is used (after checking the CSR's
    /// self-signature); subject, SANs and EKU come from `role` and `name` exactly as
    /// [`Ca::issue_node`] (with no extra SANs) or [`Ca::issue_client`] set them, because the
    /// name is authorised by the join MAC, not by the CSR. Returns the certificate PEM.
    ///
    /// # Errors
    ///
    /// [`SecurityError::Csr`] if the CSR cannot be parsed or its signature is wrong,
    /// [`SecurityError::BadName`] for an invalid name, [`SecurityError::Rcgen`] on failure.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        role: Role,
        name: &str,
        validity: Duration,
    ) -> Result<String, SecurityError> {
        self.sign_request(csr_der, role, name, &[], &[], validity)
    }

    /// As [`Ca::sign_csr`] for a node, with the further SANs `ips` and `dns` as
    /// [`Ca::issue_node`] sets them: for a node renewing a certificate whose SANs the signer
    /// already trusts (its own, read with [`sans_of`](crate::sans_of)), never SANs a CSR asks for.
    ///
    /// # Errors
    ///
    /// As [`Ca::sign_csr`].
    pub fn sign_node_csr(
        &self,
        csr_der: &[u8],
        name: &str,
        ips: &[IpAddr],
        dns: &[String],
        validity: Duration,
    ) -> Result<String, SecurityError> {
        self.sign_request(csr_der, Role::Node, name, ips, dns, validity)
    }

    fn sign_request(
        &self,
        csr_der: &[u8],
        role: Role,
        name: &str,
        ips: &[IpAddr],
        dns: &[String],
        validity: Duration,
    ) -> Result<String, SecurityError> {
        let request =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| SecurityError::Csr(e.to_string()))?;
        let now = SystemTime::now();
        let params = leaf_params(
            role,
            name,
            ips,
            dns,
            now.checked_sub(BACKDATE),
            now.checked_add(validity),
        )?;
        let cert = params
            .signed_by(&request.public_key, &self.issuer)
            .map_err(rcgen_err)?;
        Ok(cert.pem())
    }

    fn issue(
        &self,
        role: Role,
        name: &str,
        ips: &[IpAddr],
        dns: &[String],
        not_before: Option<SystemTime>,
        not_after: Option<SystemTime>,
    ) -> Result<IssuedCert, SecurityError> {
        let params = leaf_params(role, name, ips, dns, not_before, not_after)?;
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_err)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn new_key() -> Result<KeyPair, SecurityError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_err)
}

fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A random positive 128-bit serial.
fn random_serial() -> SerialNumber {
    let mut bytes = crate::random_bytes::<16>();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // keep it 16 bytes long and non-zero
    SerialNumber::from_slice(&bytes)
}

fn set_window(
    params: &mut CertificateParams,
    not_before: Option<SystemTime>,
    not_after: Option<SystemTime>,
) -> Result<(), SecurityError> {
    let (Some(not_before), Some(not_after)) = (not_before, not_after) else {
        return Err(SecurityError::Rcgen("validity is out of range".to_owned()));
    };
    params.not_before = time::OffsetDateTime::from(not_before);
    params.not_after = time::OffsetDateTime::from(not_after);
    Ok(())
}

/// Parameters of a node or client certificate (see [`Ca::issue_node`], [`Ca::issue_client`]).
fn leaf_params(
    role: Role,
    name: &str,
    ips: &[IpAddr],
    dns: &[String],
    not_before: Option<SystemTime>,
    not_after: Option<SystemTime>,
) -> Result<CertificateParams, SecurityError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_window(&mut params, not_before, not_after)?;
    match role {
        Role::Node => {
            validate_node_name(name)?;
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            params.subject_alt_names = node_sans(name, ips, dns)?;
        }
        Role::Client => {
            validate_client_name(name)?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    Ok(params)
}

fn node_sans(name: &str, ips: &[IpAddr], dns: &[String]) -> Result<Vec<SanType>, SecurityError> {
    let mut names: Vec<&str> = vec![name];
    for extra in dns {
        if rustls_pki_types::DnsName::try_from(extra.as_str()).is_err() {
            return Err(SecurityError::BadName(format!(
                "invalid DNS name {extra:?} for the node certificate"
            )));
        }
        if !names.iter().any(|n| n.eq_ignore_ascii_case(extra)) {
            names.push(extra);
        }
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    for ip in ips.iter().chain(&loopback) {
        if !addrs.contains(ip) {
            addrs.push(*ip);
        }
    }
    let mut sans = Vec::with_capacity(names.len() + addrs.len());
    for name in names {
        let ia5 = name.try_into().map_err(rcgen_err)?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(addrs.into_iter().map(SanType::IpAddress));
    Ok(sans)
}
