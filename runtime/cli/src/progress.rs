//! Progress on stderr for commands that can take more than about 2 s, drawn by `indicatif`.
//!
//! A bar or spinner appears only when stderr is a terminal, and only once the command has
//! taken [`AFTER`]: quick commands, logs, pipes and JSON on stdout stay clean, and nothing is
//! drawn on stdout. It is cleared when the work ends, so the command's own output follows as
//! if it had not been there.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How long a command runs before its progress shows.
pub(crate) const AFTER: Duration = Duration::from_secs(2);

/// A count of things done out of a total, such as `results 57/200`.
pub(crate) struct Count {
    bar: Option<ProgressBar>,
    prefix: &'static str,
    suffix: &'static str,
    started: Instant,
}

impl Count {
    /// Progress on a count of things, shown as `{prefix} {done}/{total} {suffix}`.
    pub(crate) fn new(prefix: &'static str, suffix: &'static str) -> Self {
        Self {
            bar: None,
            prefix,
            suffix,
            started: Instant::now(),
        }
    }

    /// `done` of `total` are done; draws once [`AFTER`] has passed, on a terminal.
    pub(crate) fn set(&mut self, done: u64, total: u64) {
        if self.bar.is_none() && done < total && self.started.elapsed() >= AFTER && terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} {pos}/{len} {msg} {wide_bar} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(self.prefix);
            bar.set_message(self.suffix);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Writes `line` to stdout, with the bar (if drawn) taken away meanwhile and redrawn after.
    pub(crate) fn println(&self, line: &str) {
        let write = || {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Removes the bar, if it was drawn.
    pub(crate) fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Awaits `work`; if it takes longer than [`AFTER`] and stderr is a terminal, a spinner with
/// `message` runs on stderr until it ends.
pub(crate) async fn while_waiting<T>(
    message: impl Into<String>,
    work: impl Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        () = tokio::time::sleep(AFTER) => {}
    }
    if !terminal() {
        return work.await;
    }
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(message.into());
    spinner.enable_steady_tick(Duration::from_millis(120));
    let out = work.await;
    spinner.finish_and_clear();
    out
}

fn terminal() -> bool {
    std::io::stderr().is_terminal()
}
