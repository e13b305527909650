//! The fault suite's sends under a crash (issue 23): four senders, two through n1 and two
//! through n3, each running `steinadler send g '"inc"'` one after another to a counter on n2,
//! and n3 killed with SIGKILL while they send. A send the CLI reports as done was put in the
//! counter's mailbox (a send across nodes waits for the receiving node), and no send is
//! delivered twice (nothing retries a message that may have arrived), so at the end the counter
//! holds every acknowledged send, and more only by the sends that were in flight through n3
//! when it died: at most one per sender there. n1 goes on serving its senders meanwhile. Like
//! `faults.rs`, this needs root, `ip` and `nft`, and says so and passes without them.

mod netns;

use netns::{Hosts, PATIENCE, eventually, ok};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The hosts the senders send through.
const THROUGH: [usize; 4] = [1, 1, 3, 3];

/// Sends acknowledged in all, before n3 is killed (or [`BEFORE_KILL`] passed).
const ACKED_BEFORE_KILL: u64 = 120;
const BEFORE_KILL: Duration = Duration::from_secs(40);

/// After the kill: how long n1's senders go on once n1 has declared n3 dead.
const AFTER_DEATH: Duration = Duration::from_secs(3);

/// A sender's hard bounds, whatever happens to the main thread.
const MAX_ATTEMPTS: u64 = 2_000;
const MAX_TIME: Duration = Duration::from_secs(180);

/// A sender through n3 stops after this many failures once the kill was under way.
const FAILURES_AFTER_KILL: u64 = 5;

/// What one sender saw.
#[derive(Debug, Default)]
struct Tally {
    host: usize,
    attempted: u64,
    acked: u64,
    /// Of `acked`, those started once n3 was dead.
    acked_after_kill: u64,
    /// Failures through n3 once its kill was under way.
    failed_after_kill: u64,
    /// Of those, the sends started while n3 was alive: they may have been delivered.
    in_flight_at_kill: u64,
    /// What the CLI said on the first failure through n3 after its kill.
    first_failure: Option<String>,
    /// Failures before the kill, or through n1 at any time: stderr of each.
    unexpected: Vec<String>,
}

/// The counter's value, read through n1.
fn count(h: &Hosts) -> u64 {
    let out = ok(&h.cli(1, &["call", "g", "\"get\""]));
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("a count, not {out:?}: {e}"))
}

/// Where the kill of n3 is: `killing` is set before the signal, `dead` once n3 is gone.
#[derive(Default)]
struct Kill {
    killing: AtomicBool,
    dead: AtomicBool,
}

/// Sends `"inc"` to `g` through host `host` until told to stop (or a bound is reached).
fn sender(
    h: &Hosts,
    host: usize,
    acked_total: &AtomicU64,
    kill: &Kill,
    stop: &AtomicBool,
) -> Tally {
    let mut t = Tally {
        host,
        ..Tally::default()
    };
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst)
        && t.attempted < MAX_ATTEMPTS
        && started.elapsed() < MAX_TIME
        && t.failed_after_kill < FAILURES_AFTER_KILL
    {
        let n3_was_alive = !kill.dead.load(Ordering::SeqCst);
        let out = h.cli(host, &["send", "g", "\"inc\""]);
        t.attempted += 1;
        if out.status.success() {
            t.acked += 1;
            if !n3_was_alive {
                t.acked_after_kill += 1;
            }
            acked_total.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        // Read after the failure: a failure the kill caused sees the flag set.
        if host == 3 && kill.killing.load(Ordering::SeqCst) {
            t.failed_after_kill += 1;
            if t.first_failure.is_none() {
                t.first_failure = Some(String::from_utf8_lossy(&out.stderr).trim().to_owned());
            }
            if n3_was_alive {
                t.in_flight_at_kill += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        } else {
            t.unexpected
                .push(String::from_utf8_lossy(&out.stderr).trim().to_owned());
            // Keep trying, but do not spin on a broken node.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    t
}

/// Sets its flag when dropped: the senders stop on a failed assertion too.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sends SIGKILL to the process `pid` and waits until it is dead (a zombie: our child, not
/// yet waited for), as `Hosts::kill` does, but while the senders hold the hosts.
fn sigkill(pid: u32) {
    // SAFETY: kill has no memory effects; `pid` is our own child, not yet waited for.
    let sent = unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
    assert_eq!(
        sent,
        0,
        "SIGKILL {pid}: {}",
        std::io::Error::last_os_error()
    );
    // Polled closely: a send a sender starts before this returns counts as in flight.
    let sent_at = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // `pid (comm) S ...`: the state follows the last parenthesis.
        if stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
        {
            return;
        }
        assert!(sent_at.elapsed() < PATIENCE, "{pid} lives on after SIGKILL");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn kill_9_of_a_node_during_sends_loses_no_acknowledged_send_and_counts_none_twice() {
    let Some(mut h) = Hosts::up(3) else { return };
    h.start_all();
    ok(&h.cli(1, &["deploy", "--wait", steinadler_test_modules::COUNTER]));
    let pid = ok(&h.cli(
        1,
        &[
            "spawn", "counter", "--args", "0", "--global", "g", "--on", "node:n2",
        ],
    ));
    let pid = pid.trim().to_owned();
    assert!(pid.starts_with("<n2."), "spawned on n2: {pid}");
    for i in 1..=3 {
        eventually("every node resolves g", || {
            h.holder(i, "g").as_deref() == Some(&pid)
        });
    }
    assert_eq!(count(&h), 0);

    // n3's node process: `ip netns exec` execs it, so its PID is the node's.
    let n3 = h.pid(3).expect("n3 runs");
    let comm = std::fs::read_to_string(format!("/proc/{n3}/comm")).unwrap();
    assert_eq!(comm.trim(), "steinadler", "n3's PID is the node's");

    let (acked_total, kill, stop) = (AtomicU64::new(0), Kill::default(), AtomicBool::new(false));
    let started = Instant::now();
    let (tallies, before_kill, death) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let senders: Vec<_> = THROUGH
            .iter()
            .map(|&host| {
                let (h, acked_total, kill, stop) = (&h, &acked_total, &kill, &stop);
                s.spawn(move || sender(h, host, acked_total, kill, stop))
            })
            .collect();
        while acked_total.load(Ordering::SeqCst) < ACKED_BEFORE_KILL
            && started.elapsed() < BEFORE_KILL
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let before_kill = acked_total.load(Ordering::SeqCst);
        kill.killing.store(true, Ordering::SeqCst);
        sigkill(n3);
        kill.dead.store(true, Ordering::SeqCst);
        let killed_at = Instant::now();
        // n1's senders keep sending while n1 and n2 find n3 dead, and a little after.
        h.wait_members(1, &["n1", "n2"], PATIENCE);
        let death = killed_at.elapsed();
        std::thread::sleep(AFTER_DEATH);
        stop.store(true, Ordering::SeqCst);
        let tallies: Vec<Tally> = senders
            .into_iter()
            .map(|t| t.join().expect("a sender panicked"))
            .collect();
        (tallies, before_kill, death)
    });
    let sending = started.elapsed();
    h.kill(3);
    h.wait_members(2, &["n1", "n2"], PATIENCE);

    // Every acknowledged send is in the mailbox before its ack, so a `get` queued after them
    // sees them; a send in flight at the kill may still be on its way: wait until it settles.
    let mut counted = count(&h);
    let settling = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let again = count(&h);
        if again == counted {
            break;
        }
        assert!(settling.elapsed() < PATIENCE, "the count never settles");
        counted = again;
    }

    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let (acked, attempted) = (sum(|t| t.acked), sum(|t| t.attempted));
    let in_flight = sum(|t| t.in_flight_at_kill);
    let n1_after_kill: u64 = tallies
        .iter()
        .filter(|t| t.host == 1)
        .map(|t| t.acked_after_kill)
        .sum();
    let n3_failed: u64 = tallies
        .iter()
        .filter(|t| t.host == 3)
        .map(|t| t.failed_after_kill)
        .sum();
    eprintln!(
        "sends: {attempted} attempted, {acked} acknowledged ({before_kill} before the kill of \
         n3, {n1_after_kill} through n1 after it), {counted} counted; {n3_failed} failed \
         through n3 after the kill, {in_flight} of them in flight at it; n1 declared n3 dead \
         {death:.1?} after the kill; {sending:.1?} of sending"
    );
    for t in &tallies {
        eprintln!("sends: {t:?}");
    }

    let unexpected: Vec<_> = tallies
        .iter()
        .filter(|t| !t.unexpected.is_empty())
        .collect();
    assert!(unexpected.is_empty(), "failed sends: {unexpected:#?}");
    assert!(
        before_kill >= 20,
        "only {before_kill} sends acknowledged before the kill"
    );
    for t in tallies.iter().filter(|t| t.host == 3) {
        assert!(t.acked > 0, "a sender through n3 got no ack: {t:?}");
        assert!(
            t.failed_after_kill > 0,
            "a sender through n3 never saw it die: {t:?}"
        );
        assert!(t.in_flight_at_kill <= 1, "one send at a time: {t:?}");
        assert_eq!(t.acked_after_kill, 0, "acknowledged by a dead node: {t:?}");
    }
    assert!(n1_after_kill > 0, "n1 served no send after n3's kill");
    assert!(
        acked <= counted,
        "acknowledged sends lost: {acked} acknowledged, {counted} counted"
    );
    assert!(
        counted <= acked + in_flight,
        "sends counted twice: {acked} acknowledged, {in_flight} in flight at the kill, \
         {counted} counted"
    );
    assert!(counted <= attempted);

    let logs = h.logs();
    assert!(!logs.contains("panicked at"), "{logs}");
}
