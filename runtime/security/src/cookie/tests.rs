use std::collections::{BTreeSet, HashSet};

use super::*;

const METHOD: &str = "/steinadler.v1.Node/Invoke";

fn secret() -> ClusterSecret {
    ClusterSecret::from_bytes([5; 32])
}

fn pair() -> (CookieSigner, CookieVerifier) {
    (CookieSigner::new(&secret()), CookieVerifier::new(&secret()))
}

fn senders(verifier: &CookieVerifier) -> BTreeSet<SenderId> {
    verifier.senders().windows.keys().copied().collect()
}

/// A small deterministic generator (xorshift64*), to shuffle without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[test]
fn ok_then_replay() {
    let (signer, verifier) = pair();
    let cookie = signer.sign(METHOD, b"body");
    assert!(cookie.starts_with("v1."));
    verifier.verify(METHOD, b"body", Some(&cookie)).unwrap();
    assert_eq!(
        verifier.verify(METHOD, b"body", Some(&cookie)),
        Err(AuthError::Replay)
    );
    // A fresh cookie for the same request is fine.
    verifier
        .verify(METHOD, b"body", Some(&signer.sign(METHOD, b"body")))
        .unwrap();
}

#[test]
fn header_format_and_nonce_layout() {
    let (signer, _) = pair();
    let first = signer.sign_at(METHOD, b"", 1_700_000_000_123);
    let second = signer.sign_at(METHOD, b"", 1_700_000_000_124);
    let parts: Vec<&str> = first.split('.').collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0], "v1");
    assert_eq!(parts[1], "1700000000123");
    assert_eq!(parts[2].len(), 32);
    assert_eq!(parts[3].len(), 64);
    assert!(
        parts[2..]
            .iter()
            .all(|p| p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    );
    // Sender id, then the counter big-endian from 1.
    let sender = hex::encode(signer.sender);
    assert_eq!(parts[2], format!("{sender}0000000000000001"));
    assert_eq!(
        second.split('.').nth(2).unwrap(),
        format!("{sender}0000000000000002")
    );
    // The MAC is over the same fields as before.
    let nonce = make_nonce(signer.sender, 1);
    let tag = cookie_mac_fields(&signer.key, METHOD, 1_700_000_000_123, &nonce, b"", mac);
    assert_eq!(parts[3], hex::encode(tag));
    // A new signer is a new sender.
    assert_ne!(CookieSigner::new(&secret()).sender, signer.sender);
}

#[test]
fn wrong_secret_method_or_body_is_bad_mac() {
    let (signer, verifier) = pair();
    let other = CookieSigner::new(&ClusterSecret::from_bytes([6; 32]));
    let err = verifier
        .verify(METHOD, b"b", Some(&other.sign(METHOD, b"b")))
        .unwrap_err();
    assert_eq!(err, AuthError::BadMac);
    assert!(err.to_string().contains("wrong cluster cookie"));
    let cookie = signer.sign(METHOD, b"b");
    assert_eq!(
        verifier.verify("/other", b"b", Some(&cookie)),
        Err(AuthError::BadMac)
    );
    assert_eq!(
        verifier.verify(METHOD, b"c", Some(&cookie)),
        Err(AuthError::BadMac)
    );
    // Forged requests added no sender...
    assert!(senders(&verifier).is_empty());
    // ... and did not burn the nonce.
    verifier.verify(METHOD, b"b", Some(&cookie)).unwrap();
    assert_eq!(senders(&verifier), BTreeSet::from([signer.sender]));
}

#[test]
fn skew_both_ways() {
    let (signer, verifier) = pair();
    let old = signer.sign_at(METHOD, b"", now_ms() - 45_000);
    let err = verifier.verify(METHOD, b"", Some(&old)).unwrap_err();
    assert!(
        matches!(err, AuthError::Skew { seconds: -45 | -46 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "request timestamp is 45 s away from this node's clock; the window is ±30 s (check \
         the clocks, e.g. NTP)"
    );
    let future = signer.sign_at(METHOD, b"", now_ms() + 60_000);
    assert!(matches!(
        verifier.verify(METHOD, b"", Some(&future)),
        Err(AuthError::Skew { seconds: 59 | 60 })
    ));
    // Skewed requests added no sender.
    assert!(senders(&verifier).is_empty());
    // Within the window is fine.
    let near = signer.sign_at(METHOD, b"", now_ms() - 20_000);
    verifier.verify(METHOD, b"", Some(&near)).unwrap();
}

#[test]
fn missing_and_malformed() {
    let (signer, verifier) = pair();
    assert_eq!(verifier.verify(METHOD, b"", None), Err(AuthError::Missing));
    let good = signer.sign(METHOD, b"");
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        "garbage".to_owned(),
        format!("v2.{}.{}.{}", parts[1], parts[2], parts[3]),
        format!("v1.x{}.{}.{}", parts[1], parts[2], parts[3]),
        format!("v1.{}.{}.{}", parts[1], &parts[2][1..], parts[3]),
        format!("v1.{}.{}.{}0", parts[1], parts[2], parts[3]),
        format!("{good}.extra"),
        "v1.99999999999999999999999.00.00".to_owned(),
    ];
    for case in cases {
        assert!(
            matches!(
                verifier.verify(METHOD, b"", Some(&case)),
                Err(AuthError::Malformed(_))
            ),
            "{case:?}"
        );
    }
    assert!(senders(&verifier).is_empty());
}

#[test]
fn reordered_burst_is_accepted_once() {
    let (signer, verifier) = pair();
    let mut cookies: Vec<String> = (0..1_000).map(|_| signer.sign(METHOD, b"x")).collect();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    rng.shuffle(&mut cookies);
    for cookie in &cookies {
        verifier.verify(METHOD, b"x", Some(cookie)).unwrap();
    }
    rng.shuffle(&mut cookies);
    for cookie in &cookies {
        assert_eq!(
            verifier.verify(METHOD, b"x", Some(cookie)),
            Err(AuthError::Replay)
        );
    }
    assert_eq!(senders(&verifier).len(), 1);
}

#[test]
fn counter_far_behind_the_window_is_a_replay() {
    let (signer, verifier) = pair();
    let first = signer.sign(METHOD, b""); // counter 1
    let second = signer.sign(METHOD, b""); // counter 2
    // Jump the counter so that the newest seen is 1 + WINDOW_BITS.
    signer.counter.store(1 + WINDOW_BITS, Ordering::Relaxed);
    verifier
        .verify(METHOD, b"", Some(&signer.sign(METHOD, b"")))
        .unwrap();
    // Counter 1 is exactly WINDOW_BITS behind: too old, never seen or not.
    assert_eq!(
        verifier.verify(METHOD, b"", Some(&first)),
        Err(AuthError::Replay)
    );
    // Counter 2 is the oldest one still inside the window: accepted once.
    verifier.verify(METHOD, b"", Some(&second)).unwrap();
    assert_eq!(
        verifier.verify(METHOD, b"", Some(&second)),
        Err(AuthError::Replay)
    );
    // A jump far beyond the window forgets everything behind it.
    signer.counter.store(u64::MAX / 2, Ordering::Relaxed);
    verifier
        .verify(METHOD, b"", Some(&signer.sign(METHOD, b"")))
        .unwrap();
    let stale = signer.sign_at(METHOD, b"", now_ms());
    signer.counter.store(u64::MAX / 2 + 10, Ordering::Relaxed);
    verifier
        .verify(METHOD, b"", Some(&signer.sign(METHOD, b"")))
        .unwrap();
    verifier.verify(METHOD, b"", Some(&stale)).unwrap();
}

#[test]
fn two_senders_interleaved() {
    let secret = secret();
    let (a, b) = (CookieSigner::new(&secret), CookieSigner::new(&secret));
    let verifier = CookieVerifier::new(&secret);
    // Both counters run from 1; the windows must not mix them up.
    let mut cookies = Vec::new();
    for _ in 0..200 {
        cookies.push(a.sign(METHOD, b"a"));
        cookies.push(b.sign(METHOD, b"b"));
    }
    for (i, cookie) in cookies.iter().enumerate() {
        let body: &[u8] = if i % 2 == 0 { b"a" } else { b"b" };
        verifier.verify(METHOD, body, Some(cookie)).unwrap();
    }
    for (i, cookie) in cookies.iter().enumerate().rev() {
        let body: &[u8] = if i % 2 == 0 { b"a" } else { b"b" };
        assert_eq!(
            verifier.verify(METHOD, body, Some(cookie)),
            Err(AuthError::Replay)
        );
    }
    assert_eq!(senders(&verifier), BTreeSet::from([a.sender, b.sender]));
}

#[test]
fn clones_never_repeat_a_nonce() {
    let (signer, verifier) = pair();
    let clones = [signer.clone(), signer.clone(), signer.clone()];
    let threads: Vec<_> = clones
        .into_iter()
        .map(|clone| {
            std::thread::spawn(move || {
                (0..500)
                    .map(|_| clone.sign(METHOD, b""))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut cookies: Vec<String> = (0..500).map(|_| signer.sign(METHOD, b"")).collect();
    for thread in threads {
        cookies.extend(thread.join().unwrap());
    }
    let nonces: HashSet<&str> = cookies
        .iter()
        .map(|c| c.split('.').nth(2).unwrap())
        .collect();
    assert_eq!(nonces.len(), 2_000);
    for cookie in &cookies {
        verifier.verify(METHOD, b"", Some(cookie)).unwrap();
    }
    assert_eq!(senders(&verifier), BTreeSet::from([signer.sender]));
    assert_eq!(signer.counter.load(Ordering::Relaxed), 2_001);
}

#[test]
fn idle_senders_are_dropped_after_twice_the_window() {
    let secret = secret();
    let verifier = CookieVerifier::new(&secret);
    let (a, b, c) = (
        CookieSigner::new(&secret),
        CookieSigner::new(&secret),
        CookieSigner::new(&secret),
    );
    let t0 = 1_700_000_000_000;
    let idle = 2 * window_ms();
    // A's cookie may be timestamped up to the window ahead of the verifier's clock.
    let a_cookie = a.sign_at(METHOD, b"", t0 + window_ms());
    verifier
        .verify_at(METHOD, b"", Some(&a_cookie), t0)
        .unwrap();
    // Exactly twice the window later, A is kept (B's arrival sweeps).
    let t1 = t0 + idle;
    verifier
        .verify_at(METHOD, b"", Some(&b.sign_at(METHOD, b"", t1)), t1)
        .unwrap();
    assert_eq!(senders(&verifier), BTreeSet::from([a.sender, b.sender]));
    // Past it, and a sweep interval on, C's arrival drops A but keeps B.
    let t2 = t1 + GC_EVERY_MS;
    verifier
        .verify_at(METHOD, b"", Some(&c.sign_at(METHOD, b"", t2)), t2)
        .unwrap();
    assert_eq!(senders(&verifier), BTreeSet::from([b.sender, c.sender]));
    // A's old cookie cannot come back: its timestamp is out of the window by now.
    assert!(matches!(
        verifier.verify_at(METHOD, b"", Some(&a_cookie), t2),
        Err(AuthError::Skew { .. })
    ));
    // A itself may come back with new cookies.
    verifier
        .verify_at(METHOD, b"", Some(&a.sign_at(METHOD, b"", t2)), t2)
        .unwrap();
    // Sweeps happen at most once per interval: D arriving just after does not drop B.
    let d = CookieSigner::new(&secret);
    let t3 = t2 + 1;
    let before = senders(&verifier);
    verifier
        .verify_at(METHOD, b"", Some(&d.sign_at(METHOD, b"", t3)), t3)
        .unwrap();
    assert!(before.is_subset(&senders(&verifier)));
}

#[test]
fn sender_limit_refuses_new_senders_but_keeps_known_ones() {
    let secret = secret();
    let verifier = CookieVerifier::with_max_senders(&secret, 2);
    let signers: Vec<CookieSigner> = (0..3).map(|_| CookieSigner::new(&secret)).collect();
    let t0 = 1_700_000_000_000;
    for signer in &signers[..2] {
        verifier
            .verify_at(METHOD, b"", Some(&signer.sign_at(METHOD, b"", t0)), t0)
            .unwrap();
    }
    let refused = signers[2].sign_at(METHOD, b"", t0 + 5_000);
    let err = verifier
        .verify_at(METHOD, b"", Some(&refused), t0 + 5_000)
        .unwrap_err();
    assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
    assert!(
        err.to_string().contains("tracks the most cookie senders"),
        "{err}"
    );
    // Known senders go on working.
    verifier
        .verify_at(
            METHOD,
            b"",
            Some(&signers[0].sign_at(METHOD, b"", t0 + 5_000)),
            t0 + 5_000,
        )
        .unwrap();
    // Once the others are idle long enough, there is room again.
    let later = t0 + 5_000 + 2 * window_ms() + 1;
    verifier
        .verify_at(
            METHOD,
            b"",
            Some(&signers[2].sign_at(METHOD, b"", later)),
            later,
        )
        .unwrap();
    assert_eq!(senders(&verifier), BTreeSet::from([signers[2].sender]));
}

/// The window against a plain model (every counter ever accepted, and the highest), over
/// random counters around a frontier that moves by small and large steps.
#[test]
fn window_matches_a_reference_model() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut window = Window::new(1_000, 0);
    let mut seen = HashSet::from([1_000u64]);
    let mut highest = 1_000u64;
    let mut counts = [0usize; 3];
    for _ in 0..300_000 {
        let counter = match rng.below(100) {
            // Far ahead.
            0 => highest + WINDOW_BITS + rng.next() % 1_000,
            // Ahead, sliding part of the window.
            1..=9 => highest + 1 + rng.next() % (WINDOW_BITS / 2),
            // Near the edge of the window, either side.
            10..=29 => (highest + 200).saturating_sub(WINDOW_BITS + rng.next() % 400),
            // Recent.
            _ => highest.saturating_sub(rng.next() % 2_000) + rng.next() % 4,
        };
        let expected = if counter > highest {
            Verdict::Fresh
        } else if highest - counter >= WINDOW_BITS {
            Verdict::TooOld
        } else if seen.contains(&counter) {
            Verdict::Seen
        } else {
            Verdict::Fresh
        };
        assert_eq!(
            window.check(counter),
            expected,
            "counter {counter}, highest {highest}"
        );
        if expected == Verdict::Fresh {
            seen.insert(counter);
            highest = highest.max(counter);
        }
        counts[expected as usize] += 1;
    }
    // Every outcome was exercised.
    assert!(counts.iter().all(|&n| n > 1_000), "{counts:?}");
}

#[test]
fn window_clears_whole_and_partial_words() {
    let mut window = Window::new(63, 0);
    for c in 0..63 {
        assert_eq!(window.check(c), Verdict::Fresh);
    }
    // Sliding by 64 + 65 reuses the slots of 0..=128 for 65 536..=65 664; only those
    // counters' bits may be cleared.
    assert_eq!(window.check(WINDOW_BITS + 128), Verdict::Fresh);
    for c in 129..=WINDOW_BITS + 128 {
        let expected = if c == WINDOW_BITS + 128 {
            Verdict::Seen
        } else {
            Verdict::Fresh
        };
        assert_eq!(window.check(c), expected, "{c}");
    }
    for c in 0..=128 {
        assert_eq!(window.check(c), Verdict::TooOld, "{c}");
    }
    for c in 129..=WINDOW_BITS + 128 {
        assert_eq!(window.check(c), Verdict::Seen, "{c}");
    }
}
