//! Request cookies through the public API: a throughput figure for the hot path (ignored by
//! default; run it in release mode) and cross-thread behaviour of shared signers and verifiers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use steinadler_security::{AuthError, ClusterSecret, CookieSigner, CookieVerifier};

const METHOD: &str = "/steinadler.v1.Node/Invoke";

fn pair() -> (CookieSigner, CookieVerifier) {
    let secret = ClusterSecret::from_bytes([9; 32]);
    (CookieSigner::new(&secret), CookieVerifier::new(&secret))
}

/// Sign+verify throughput. Run with
/// `cargo test -p steinadler-security --release --test cookie -- --ignored --nocapture`.
#[test]
#[ignore = "a timing figure; run in release mode with --ignored --nocapture"]
fn sign_verify_throughput() {
    const N: usize = 200_000;
    let (signer, verifier) = pair();
    let body = vec![7u8; 256];
    // Warm up (allocator, caches) and keep a few cookies to replay afterwards.
    let mut kept = Vec::new();
    for i in 0..1_000 {
        let cookie = signer.sign(METHOD, &body);
        verifier.verify(METHOD, &body, Some(&cookie)).unwrap();
        if i % 100 == 0 {
            kept.push(cookie);
        }
    }

    let started = Instant::now();
    let mut accepted = 0usize;
    for _ in 0..N {
        let cookie = signer.sign(METHOD, &body);
        if verifier.verify(METHOD, &body, Some(&cookie)).is_ok() {
            accepted += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(accepted, N, "every fresh cookie must be accepted");
    for cookie in &kept {
        assert_eq!(
            verifier.verify(METHOD, &body, Some(cookie)),
            Err(AuthError::Replay)
        );
    }

    let sign_started = Instant::now();
    let cookies: Vec<String> = (0..N).map(|_| signer.sign(METHOD, &body)).collect();
    let sign_elapsed = sign_started.elapsed();
    let verify_started = Instant::now();
    for cookie in &cookies {
        verifier.verify(METHOD, &body, Some(cookie)).unwrap();
    }
    let verify_elapsed = verify_started.elapsed();
    for cookie in cookies.iter().step_by(997) {
        assert_eq!(
            verifier.verify(METHOD, &body, Some(cookie)),
            Err(AuthError::Replay)
        );
    }

    let per = |d: std::time::Duration| d.as_secs_f64() * 1e9 / N as f64;
    println!(
        "{N} sign+verify pairs (256-byte body): {:.0} ns per pair ({:.0} ns sign, {:.0} ns \
         verify measured separately)",
        per(elapsed),
        per(sign_elapsed),
        per(verify_elapsed),
    );
}

/// Clones of one signer used from several threads, checked by one shared verifier: every
/// cookie is accepted exactly once, and no nonce repeats.
#[test]
fn shared_signer_and_verifier_across_threads() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2_000;
    let (signer, verifier) = pair();
    let verifier = Arc::new(verifier);
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let signer = signer.clone();
            let verifier = Arc::clone(&verifier);
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|_| {
                        let cookie = signer.sign(METHOD, b"x");
                        verifier.verify(METHOD, b"x", Some(&cookie)).unwrap();
                        cookie
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let cookies: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let nonces: HashSet<&str> = cookies
        .iter()
        .map(|c| c.split('.').nth(2).unwrap())
        .collect();
    assert_eq!(nonces.len(), THREADS * PER_THREAD);
    for cookie in &cookies {
        assert_eq!(
            verifier.verify(METHOD, b"x", Some(cookie)),
            Err(AuthError::Replay)
        );
    }
}
