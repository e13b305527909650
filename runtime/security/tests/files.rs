//! On-disk material: `Material` save/load, `ClientCredentials`, and the offline `pki`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use steinadler_security::{
    ClientCredentials, Material, NODE_CERT_VALIDITY, Role, SecurityError, Token, client_config,
    expires_in, first_cert_der, identity_of, pki, server_config,
};

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn material_round_trip_with_private_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    assert!(!Material::exists(&dir));
    let material = Material::bootstrap(
        "n1",
        &["10.1.2.3".parse().unwrap()],
        &[],
        NODE_CERT_VALIDITY,
    )
    .unwrap();
    material.save(&dir).unwrap();
    assert!(Material::exists(&dir));

    let loaded = Material::load(&dir).unwrap();
    assert_eq!(loaded.ca_cert_pem, material.ca_cert_pem);
    assert_eq!(loaded.ca_key_pem, material.ca_key_pem);
    assert_eq!(loaded.cert_pem, material.cert_pem);
    assert_eq!(loaded.key_pem, material.key_pem);
    assert_eq!(loaded.secret.as_bytes(), material.secret.as_bytes());
    assert_eq!(loaded.gossip_keys, vec![material.secret.gossip_key()]);
    assert_eq!(loaded.token_secret, material.token_secret);
    assert_eq!(loaded.token_policy, material.token_policy);
    assert_eq!(loaded.token_policy.generation, 1);
    assert!(loaded.token_policy.expires_at_ms.is_some());

    let id = loaded.identity().unwrap();
    assert_eq!((id.role, id.name.as_str()), (Role::Node, "n1"));
    let ca = loaded
        .ca()
        .unwrap()
        .expect("a bootstrapped node holds the CA key");
    assert_eq!(loaded.ca_hash().unwrap(), ca.hash());
    let token = loaded.token().unwrap();
    assert_eq!(token.ca_hash, ca.hash());
    assert_eq!(token.to_string().parse::<Token>().unwrap(), token);

    let debug = format!("{loaded:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(
        !debug.contains(&hex::encode(loaded.secret.as_bytes())),
        "{debug}"
    );

    #[cfg(unix)]
    {
        for secret in [
            "ca.key",
            "node.key",
            "cluster.secret",
            "gossip.keys",
            "token.secret",
        ] {
            assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
        }
        assert_eq!(mode(&dir), 0o700);
    }
    // No temporary files left behind.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected = [
        "ca.crt",
        "ca.key",
        "cluster.secret",
        "gossip.keys",
        "node.crt",
        "node.key",
        "token.policy",
        "token.secret",
    ];
    assert_eq!(names, expected);
}

#[test]
fn a_token_from_before_lifetimes_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let material = Material::bootstrap("n1", &[], &[], NODE_CERT_VALIDITY).unwrap();
    material.save(dir).unwrap();
    // A directory written before token.policy existed: the token has no expiry and no limit.
    fs::remove_file(dir.join("token.policy")).unwrap();
    let loaded = Material::load(dir).unwrap();
    assert_eq!(loaded.token(), material.token());
    assert_eq!(
        loaded.token_policy,
        steinadler_security::TokenPolicy::default()
    );
    loaded.token_policy.check_expiry().unwrap();
    // A newer token replaces it, policy and secret together.
    let mut newer = loaded.clone();
    newer.token_policy = steinadler_security::TokenPolicy::mint(1, "n1", None, Some(3));
    assert!(newer.token_policy.supersedes(&loaded.token_policy));
    newer.save_token(dir).unwrap();
    assert_eq!(Material::load(dir).unwrap().token_policy.max_uses, Some(3));
}

#[test]
fn material_defaults_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut material = Material::bootstrap("n1", &[], &[], NODE_CERT_VALIDITY).unwrap();
    material.ca_key_pem = None;
    material.token_secret = None;
    material.gossip_keys.clear();
    material.save(dir).unwrap();
    let loaded = Material::load(dir).unwrap();
    assert_eq!(loaded.ca_key_pem, None);
    assert!(loaded.ca().unwrap().is_none());
    assert!(loaded.token().is_none());
    assert_eq!(loaded.gossip_keys, vec![material.secret.gossip_key()]);

    // Rotation: several gossip keys, primary first.
    fs::write(
        dir.join("gossip.keys"),
        format!("{}\n{}\n", hex::encode([1; 32]), hex::encode([2; 32])),
    )
    .unwrap();
    assert_eq!(
        Material::load(dir).unwrap().gossip_keys,
        vec![[1; 32], [2; 32]]
    );

    fs::write(dir.join("cluster.secret"), "not hex\n").unwrap();
    let err = Material::load(dir).unwrap_err();
    assert!(matches!(err, SecurityError::BadFile { .. }), "{err}");
    assert!(err.to_string().contains("cluster.secret"), "{err}");

    fs::remove_file(dir.join("node.key")).unwrap();
    let err = Material::load(dir).unwrap_err();
    assert!(matches!(err, SecurityError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("node.key"), "{err}");

    fs::write(dir.join("node.crt"), "garbage").unwrap();
    let err = Material::load(dir).unwrap_err().to_string();
    assert!(
        err.contains("node.crt") && err.contains("no certificate found"),
        "{err}"
    );
}

#[test]
fn material_rejects_a_foreign_ca_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut material = Material::bootstrap("n1", &[], &[], NODE_CERT_VALIDITY).unwrap();
    material.ca_key_pem = Material::bootstrap("n2", &[], &[], NODE_CERT_VALIDITY)
        .unwrap()
        .ca_key_pem;
    material.save(tmp.path()).unwrap();
    let err = Material::load(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("ca.key") && err.contains("does not belong"),
        "{err}"
    );
}

#[test]
fn pki_init_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    pki::init(&dir).unwrap();
    let ca_key = fs::read_to_string(dir.join("ca.key")).unwrap();
    let err = pki::init(&dir).unwrap_err();
    assert!(matches!(err, SecurityError::AlreadyExists { .. }), "{err}");
    assert!(err.to_string().contains("ca.key"), "{err}");
    assert_eq!(fs::read_to_string(dir.join("ca.key")).unwrap(), ca_key);
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(&dir.join("cluster.secret")), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
}

#[test]
fn pki_issues_usable_node_dirs_and_client_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    pki::init(dir).unwrap();

    let n1_dir = pki::issue_node(dir, "n1", &[], &["n1.example.com".to_owned()]).unwrap();
    assert_eq!(n1_dir, dir.join("nodes/n1"));
    assert!(!n1_dir.join("ca.key").exists(), "offline nodes do not sign");
    let n1 = Material::load(&n1_dir).unwrap();
    let n2 = Material::load(&pki::issue_node(dir, "n2", &[], &[]).unwrap()).unwrap();
    assert_eq!(n1.identity().unwrap().name, "n1");
    assert_eq!(n1.ca_cert_pem, n2.ca_cert_pem);
    assert_eq!(n1.secret.as_bytes(), n2.secret.as_bytes());
    assert_eq!(n1.gossip_keys, n2.gossip_keys);
    assert!(n1.token().is_none());

    let alice_dir = pki::issue_client(dir, "alice").unwrap();
    assert_eq!(alice_dir, dir.join("clients/alice"));
    let alice = ClientCredentials::load(&alice_dir).unwrap();
    let id = identity_of(&first_cert_der(&alice.cert_pem).unwrap()).unwrap();
    assert_eq!((id.role, id.name.as_str()), (Role::Client, "alice"));
    assert!(!format!("{alice:?}").contains("PRIVATE KEY"));
    #[cfg(unix)]
    assert_eq!(mode(&alice_dir.join("client.key")), 0o600);

    // The issued material builds TLS configs.
    server_config(&n1.ca_cert_pem, &n1.cert_pem, &n1.key_pem).unwrap();
    client_config(&alice.ca_cert_pem, Some((&alice.cert_pem, &alice.key_pem))).unwrap();

    // Bad names never touch the disk.
    assert!(matches!(
        pki::issue_node(dir, "../evil", &[], &[]),
        Err(SecurityError::BadName(_))
    ));
    assert!(matches!(
        pki::issue_client(dir, "../evil"),
        Err(SecurityError::BadName(_))
    ));
    assert!(!dir.join("evil").exists());

    // Issuing from a directory that is not a PKI says so.
    let err = pki::issue_node(&dir.join("nodes"), "n3", &[], &[]).unwrap_err();
    assert!(matches!(err, SecurityError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("cluster init"), "{err}");
}

#[test]
fn client_credentials_round_trip_and_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let material = Material::bootstrap("n1", &[], &[], NODE_CERT_VALIDITY).unwrap();
    let left = expires_in(&material.cert_pem).unwrap();
    assert!(left > NODE_CERT_VALIDITY - Duration::from_secs(60));

    let creds = ClientCredentials {
        ca_cert_pem: material.ca_cert_pem.clone(),
        cert_pem: material.cert_pem.clone(),
        key_pem: material.key_pem.clone(),
    };
    creds.save(tmp.path()).unwrap();
    let loaded = ClientCredentials::load(tmp.path()).unwrap();
    assert_eq!(loaded.cert_pem, creds.cert_pem);
    assert_eq!(loaded.key_pem, creds.key_pem);
    let err = ClientCredentials::load(&tmp.path().join("none")).unwrap_err();
    assert!(err.to_string().contains("ca.crt"), "{err}");
}
