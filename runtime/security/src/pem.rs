//! PEM helpers: turning PEM text into the DER types rustls and x509-parser work with.

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::SecurityError;

fn pem_err(what: &str, err: pem::Error) -> SecurityError {
    let reason = match err {
        pem::Error::NoItemsFound => {
            format!("no {what} found (expected a \"-----BEGIN ...\" block)")
        }
        other => other.to_string(),
    };
    SecurityError::Pem {
        what: what.to_owned(),
        reason,
    }
}

/// All certificates in `pem`, in order.
///
/// # Errors
///
/// [`SecurityError::Pem`] if the PEM is malformed or holds no certificate.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("certificate", e))?;
    if certs.is_empty() {
        return Err(pem_err("certificate", pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The first certificate in `pem`.
///
/// # Errors
///
/// [`SecurityError::Pem`] if the PEM is malformed or holds no certificate.
pub fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, SecurityError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| pem_err("certificate", e))
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in `pem`.
///
/// # Errors
///
/// [`SecurityError::Pem`] if the PEM is malformed or holds no private key.
pub fn private_key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| pem_err("private key", e))
}

/// SHA-256 of a DER certificate: the pin a join token carries for the CA.
#[must_use]
pub fn cert_hash(der: &CertificateDer<'_>) -> [u8; 32] {
    crate::sha256(der.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pem_names_what_is_missing() {
        let err = first_cert_der("hello").unwrap_err().to_string();
        assert!(err.contains("no certificate found"), "{err}");
        let err = private_key_from_pem("").unwrap_err().to_string();
        assert!(err.contains("no private key found"), "{err}");
        assert!(certs_from_pem("").is_err());
    }
}
