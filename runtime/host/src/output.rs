//! Guest output: stdout, stderr and log records, forwarded line by line to `tracing`.
//!
//! Every record is tagged with the module and function that wrote it, under the `tracing` target
//! `steinadler::guest`. One [`OutputBudget`] per invocation bounds the total; past it, output is
//! dropped (never trapped on) and counted, and one warning reports the count when the call ends.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line forwarded as one record; longer lines are split.
const MAX_LINE: usize = 4 << 10;

/// One invocation's output allowance, shared by its streams and its log import.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    module: Arc<str>,
    function: Arc<str>,
    remaining: AtomicU64,
    limit: u64,
    dropped: AtomicU64,
}

impl OutputBudget {
    pub(crate) fn new(module: Arc<str>, function: Arc<str>, limit: u64) -> Self {
        Self {
            module,
            function,
            remaining: AtomicU64::new(limit),
            limit,
            dropped: AtomicU64::new(0),
        }
    }

    /// Reserves up to `len` bytes; returns how many may be written, or `None` if none may.
    pub(crate) fn take(&self, len: u32) -> Option<u32> {
        let want = u64::from(len);
        let mut granted = 0;
        let _ = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                granted = want.min(left);
                Some(left - granted)
            });
        self.dropped.fetch_add(want - granted, Ordering::Relaxed);
        (granted > 0).then_some(granted as u32)
    }

    /// Emits one log record from the guest's `log` import.
    pub(crate) fn log(&self, level: u32, msg: &str) {
        let (module, function) = (&*self.module, &*self.function);
        match level {
            0 => tracing::trace!(target: "steinadler::guest", module, function, "{msg}"),
            1 => tracing::debug!(target: "steinadler::guest", module, function, "{msg}"),
            2 => tracing::info!(target: "steinadler::guest", module, function, "{msg}"),
            3 => tracing::warn!(target: "steinadler::guest", module, function, "{msg}"),
            _ => tracing::error!(target: "steinadler::guest", module, function, "{msg}"),
        }
    }

    fn line(&self, stream: &'static str, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let (module, function) = (&*self.module, &*self.function);
        tracing::info!(target: "steinadler::guest", module, function, stream, "{text}");
    }

    /// Reports what was dropped and starts a fresh budget: a process gets one per message.
    pub(crate) fn refill(&self) {
        self.finish();
        self.dropped.store(0, Ordering::Relaxed);
        self.remaining.store(self.limit, Ordering::Relaxed);
    }

    /// Reports dropped output, once, when the invocation ends.
    pub(crate) fn finish(&self) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                target: "steinadler::guest",
                module = &*self.module,
                function = &*self.function,
                dropped,
                limit = self.limit,
                "guest output truncated: {dropped} bytes dropped past the limit of {} bytes",
                self.limit
            );
        }
    }
}

/// A guest's stdout or stderr, as given to WASI.
#[derive(Debug, Clone)]
pub(crate) struct GuestStdio {
    budget: Arc<OutputBudget>,
    stream: &'static str,
}

impl GuestStdio {
    pub(crate) fn new(budget: Arc<OutputBudget>, stream: &'static str) -> Self {
        Self { budget, stream }
    }
}

impl IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            stdio: self.clone(),
            partial: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Preview 1 writes through `p2_stream`; nothing reaches this one.
        Box::new(tokio::io::sink())
    }
}

/// Splits writes into lines and forwards each within the budget.
struct LineWriter {
    stdio: GuestStdio,
    partial: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        let budget = &self.stdio.budget;
        let len = u32::try_from(line.len()).unwrap_or(u32::MAX);
        if let Some(granted) = budget.take(len) {
            budget.line(self.stdio.stream, &line[..granted as usize]);
        }
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut rest = &bytes[..];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(nl);
            if self.partial.is_empty() {
                self.emit(head);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.emit(&line);
            }
            rest = &tail[1..];
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() >= MAX_LINE {
            let line: Vec<u8> = self.partial.drain(..MAX_LINE).collect();
            self.emit(&line);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always accept: output past the budget is dropped and counted, never a trap.
        Ok(64 << 10)
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}
