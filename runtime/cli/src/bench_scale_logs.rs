//! The scale harness's reading of its nodes' logs: when each survivor declared each victim of
//! the kill -9 dead, by the timestamp of its own `member failed` line.
//!
//! The harness also polls every survivor's `ListMembers`, which is what a user sees, but with
//! hundreds of node processes on 2 cores the harness's own process is starved as much as any
//! node, and its poll replies arrive a second or more after the node changed its view. The log
//! line is written by the node when memberlist declares the member dead, so it times the
//! failure detector itself. Both figures are printed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the survivors' logs say about the victims: for each survivor that logged every victim
/// dead, the latest of those times since `killed`; and the survivors that did not.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    /// Per survivor that declared all the victims dead: when the last of them was, since the kill.
    pub(crate) all_dead_after: Vec<Duration>,
    /// Survivors whose log lacks a `member failed` line for some victim.
    pub(crate) incomplete: Vec<String>,
}

impl Declared {
    /// When the last survivor had declared the last victim dead, if every survivor did.
    pub(crate) fn by_all(&self) -> Option<Duration> {
        if self.incomplete.is_empty() {
            self.all_dead_after.iter().max().copied()
        } else {
            None
        }
    }
}

/// Reads `logs/NAME.log` for each of `survivors` and finds, for each, the time of its
/// `member failed` line for every name in `victims`, relative to `killed`.
pub(crate) fn declared_dead(
    logs: &Path,
    survivors: &[String],
    victims: &BTreeSet<String>,
    killed: SystemTime,
) -> Declared {
    let mut out = Declared::default();
    for name in survivors {
        let text = std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
        let mut seen = BTreeSet::new();
        let mut last = Duration::ZERO;
        for line in text.lines().filter(|l| l.contains("member failed")) {
            let (Some(at), Some(victim)) = (line_time(line), field(line, "node")) else {
                continue;
            };
            if victims.contains(victim) && at >= killed && seen.insert(victim.to_owned()) {
                last = last.max(at.duration_since(killed).unwrap_or_default());
            }
        }
        if seen.len() == victims.len() {
            out.all_dead_after.push(last);
        } else {
            out.incomplete.push(name.clone());
        }
    }
    out
}

/// The value of `key=value` in a log line, up to the next space.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()
}

/// The RFC 3339 UTC timestamp that starts a `tracing` line, as in
/// `2026-12-04T04:47:18.310119Z`.
fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<u64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    let days = u64::try_from(days_from_civil(y, m, day)).ok()?;
    let whole = days * 86_400 + h * 3_600 + min * 60;
    Some(UNIX_EPOCH + Duration::from_secs(whole) + Duration::from_secs_f64(sec))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_nodes_failure_lines() {
        let dir = std::env::temp_dir().join(format!("scale-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = |t: &str, v: &str| {
            format!(
                "{t}  WARN member failed: declared dead after it stopped answering probes \
                 (a crash or a partition) local=n1 node={v} gossip=127.0.0.1:1 state=dead\n"
            )
        };
        let n1 = line("2026-12-04T04:47:18.500000Z", "n7")
            + &line("2026-12-04T04:47:20.250000Z", "n9")
            + &line("2026-12-04T04:40:00.000000Z", "n8");
        std::fs::write(dir.join("n1.log"), n1).unwrap();
        std::fs::write(dir.join("n2.log"), line("2026-12-04T04:47:19Z", "n7")).unwrap();
        let killed = line_time("2026-12-04T04:47:18.000000Z x").unwrap();
        let victims = BTreeSet::from(["n7".to_owned(), "n9".to_owned()]);
        let got = declared_dead(&dir, &["n1".into(), "n2".into()], &victims, killed);
        assert_eq!(got.all_dead_after, [Duration::from_millis(2250)]);
        assert_eq!(got.incomplete, ["n2"]);
        assert_eq!(got.by_all(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_timestamps_as_unix_time() {
        let t = line_time("1970-01-02T00:00:01.5Z rest").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_millis(86_401_500));
        let t = line_time("2026-12-04T04:47:18Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_359_638
        );
    }
}
