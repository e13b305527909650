//! The cluster CA: issuing node and client certificates, loading a CA, and signing CSRs.

use std::time::{Duration, SystemTime};

use steinadler_security::{
    CLIENT_CERT_VALIDITY, Ca, NODE_CERT_VALIDITY, Role, SecurityError, first_cert_der, identity_of,
    make_csr, sans_of,
};

#[test]
fn node_and_client_identities() {
    let ca = Ca::generate().unwrap();
    let node = ca
        .issue_node(
            "n1",
            &["10.0.0.1".parse().unwrap()],
            &["n1.example.com".into()],
            NODE_CERT_VALIDITY,
        )
        .unwrap();
    let id = identity_of(&first_cert_der(&node.cert_pem).unwrap()).unwrap();
    assert_eq!((id.role, id.name.as_str()), (Role::Node, "n1"));
    let left = id.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(left > NODE_CERT_VALIDITY - Duration::from_secs(60));

    let client = ca.issue_client("alice", CLIENT_CERT_VALIDITY).unwrap();
    let id = identity_of(&first_cert_der(&client.cert_pem).unwrap()).unwrap();
    assert_eq!((id.role, id.name.as_str()), (Role::Client, "alice"));
    assert!(!format!("{client:?}").contains("PRIVATE"));
}

#[test]
fn a_renewal_keeps_the_sans_the_signer_reads_from_the_old_certificate() {
    let ca = Ca::generate().unwrap();
    let ip: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let old = ca
        .issue_node("n1", &[ip], &["n1.example.com".into()], NODE_CERT_VALIDITY)
        .unwrap();
    let (ips, dns) = sans_of(&first_cert_der(&old.cert_pem).unwrap()).unwrap();
    assert!(ips.contains(&ip), "{ips:?}");
    assert_eq!(dns, ["n1.example.com"]);
    let csr = make_csr("n1").unwrap();
    let renewed = ca
        .sign_node_csr(&csr.der, "n1", &ips, &dns, NODE_CERT_VALIDITY)
        .unwrap();
    let der = first_cert_der(&renewed).unwrap();
    assert_eq!(sans_of(&der).unwrap(), (ips, dns));
    assert_eq!(identity_of(&der).unwrap().name, "n1");
}

#[test]
fn renewal_is_due_two_thirds_into_the_lifetime_not_counting_the_backdating() {
    let ca = Ca::generate().unwrap();
    for lifetime in [Duration::from_secs(30), NODE_CERT_VALIDITY] {
        let issued = SystemTime::now();
        let node = ca.issue_node("n1", &[], &[], lifetime).unwrap();
        let id = identity_of(&first_cert_der(&node.cert_pem).unwrap()).unwrap();
        let due = id.renew_at().duration_since(issued).unwrap();
        let want = lifetime * 2 / 3;
        // Certificate times have whole seconds.
        assert!(
            due + Duration::from_secs(2) > want && due < want + Duration::from_secs(2),
            "{lifetime:?}: renewal due after {due:?}, want {want:?}"
        );
    }
    // A window shorter than the backdating (an operator's certificate) counts whole.
    let now = SystemTime::now();
    let short = ca
        .issue_node_with_window("n1", now, now + Duration::from_secs(90))
        .unwrap();
    let id = identity_of(&first_cert_der(&short.cert_pem).unwrap()).unwrap();
    let due = id.renew_at().duration_since(id.not_before).unwrap();
    assert_eq!(due, Duration::from_secs(60));
}

#[test]
fn ca_is_not_an_identity_and_round_trips() {
    let ca = Ca::generate().unwrap();
    assert!(matches!(
        identity_of(&ca.cert_der()),
        Err(SecurityError::NoRole)
    ));
    let again = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    assert_eq!(again.hash(), ca.hash());
    assert!(!format!("{again:?}").contains("PRIVATE"));
    // Certificates from the reloaded CA chain to the same certificate.
    again
        .issue_node("n2", &[], &[], NODE_CERT_VALIDITY)
        .unwrap();
}

#[test]
fn from_pem_rejects_mismatched_key_and_non_ca() {
    let ca = Ca::generate().unwrap();
    let other = Ca::generate().unwrap();
    let err = Ca::from_pem(ca.cert_pem(), &other.key_pem()).unwrap_err();
    assert!(matches!(err, SecurityError::BadCa(_)), "{err}");
    let node = ca.issue_node("n1", &[], &[], NODE_CERT_VALIDITY).unwrap();
    let err = Ca::from_pem(&node.cert_pem, &node.key_pem).unwrap_err();
    assert!(err.to_string().contains("CA=true"), "{err}");
}

#[test]
fn sign_csr_takes_only_the_key() {
    let ca = Ca::generate().unwrap();
    let csr = make_csr("evil").unwrap();
    let pem = ca
        .sign_csr(&csr.der, Role::Node, "n2", NODE_CERT_VALIDITY)
        .unwrap();
    let id = identity_of(&first_cert_der(&pem).unwrap()).unwrap();
    assert_eq!((id.role, id.name.as_str()), (Role::Node, "n2"));
    let pem = ca
        .sign_csr(&csr.der, Role::Client, "bob", CLIENT_CERT_VALIDITY)
        .unwrap();
    let id = identity_of(&first_cert_der(&pem).unwrap()).unwrap();
    assert_eq!((id.role, id.name.as_str()), (Role::Client, "bob"));
    assert!(!format!("{csr:?}").contains("PRIVATE"));
}

#[test]
fn sign_csr_rejects_garbage_and_tampering() {
    let ca = Ca::generate().unwrap();
    let err = ca
        .sign_csr(b"nope", Role::Node, "n2", NODE_CERT_VALIDITY)
        .unwrap_err();
    assert!(matches!(err, SecurityError::Csr(_)), "{err}");
    let mut der = make_csr("n2").unwrap().der;
    let last = der.len() - 1;
    der[last] ^= 1;
    assert!(
        ca.sign_csr(&der, Role::Node, "n2", NODE_CERT_VALIDITY)
            .is_err()
    );
}

#[test]
fn bad_names_are_refused() {
    let ca = Ca::generate().unwrap();
    assert!(matches!(
        ca.issue_node("no_good", &[], &[], NODE_CERT_VALIDITY),
        Err(SecurityError::BadName(_))
    ));
    assert!(matches!(
        ca.issue_node("n1", &[], &["bad name".into()], NODE_CERT_VALIDITY),
        Err(SecurityError::BadName(_))
    ));
    assert!(matches!(
        ca.issue_client("../x", CLIENT_CERT_VALIDITY),
        Err(SecurityError::BadName(_))
    ));
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Ca>();
    check::<steinadler_security::CookieSigner>();
    check::<steinadler_security::CookieVerifier>();
    check::<steinadler_security::Material>();
    check::<SecurityError>();
}
