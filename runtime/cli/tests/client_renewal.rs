//! A `steinadler login` certificate renews itself: once it is two thirds through its lifetime
//! (30 s here, from a real node started with `--client-cert-lifetime 30s`), the next CLI command
//! gets a new one from the node over its current mutual-TLS identity and stores it.

use std::time::{Duration, SystemTime};
use steinadler_security::{Identity, first_cert_der, identity_of};

#[allow(dead_code)]
mod nodes;

use nodes::{cli, config_home, ok, start_with};

fn identity(pem: &str) -> Identity {
    identity_of(&first_cert_der(pem).unwrap()).unwrap()
}

#[test]
fn the_cli_renews_its_client_certificate_two_thirds_into_its_lifetime() {
    let n1 = start_with("n1", &["--client-cert-lifetime", "30s"], true);
    let token = n1.token.clone().unwrap();
    ok(&cli(&n1, &["login", "--token", &token, "--name", "tester"]));
    let crt = config_home().join("steinadler").join("client.crt");
    let first = std::fs::read_to_string(&crt).unwrap();
    let old = identity(&first);

    // Before its renewal time, a command leaves the certificate alone.
    ok(&cli(&n1, &["nodes"]));
    if SystemTime::now() < old.renew_at() {
        assert_eq!(std::fs::read_to_string(&crt).unwrap(), first);
    }

    // Past it, the next command renews it; the ones after use the new certificate.
    while SystemTime::now() < old.renew_at() {
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(&cli(&n1, &["nodes"]));
    let second = std::fs::read_to_string(&crt).unwrap();
    assert_ne!(second, first, "the certificate was not renewed");
    let new = identity(&second);
    assert_eq!(new.name, "tester");
    assert!(new.not_after > old.not_after, "{new:?} after {old:?}");
    ok(&cli(&n1, &["nodes"]));
    let _ = std::fs::remove_dir_all(config_home());
}
