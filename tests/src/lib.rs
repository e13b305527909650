//! Helpers shared by the integration tests in `tests/tests/`.

use std::sync::Arc;
use steinadler_host::{Host, HostConfig, LoadedModule};

/// A host with default settings.
pub fn host() -> Host {
    Host::new(HostConfig::default()).expect("a default host starts")
}

/// Loads one of the modules in `modules/` by its path constant.
pub fn load(host: &Host, path: &str) -> Arc<LoadedModule> {
    host.load_file(path)
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// This process's resident set size, in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}
