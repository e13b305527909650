//! Builds `modules/` for `wasm32-wasip1` and writes one path constant per module, the way
//! wasmtime's `test-programs` crate does, so `cargo test` at the root builds all it needs.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const MODULES: &[&str] = &[
    "hello", "math", "echo", "noop", "spin", "hog", "crash", "deep", "chatty", "counter", "kv",
    "sink", "range",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("tests/modules sits two levels below the workspace root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: share one build across profiles.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map_or_else(|| out_dir.join("wasm-modules"), |t| t.join("wasm-modules"));

    for dir in ["modules", "guest-sdk", "runtime/core"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target=wasm32-wasip1")
        .arg("--manifest-path")
        .arg(root.join("modules/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags and wrappers (clippy, coverage, sanitizers) are not for guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo to build modules/");
    if !status.success() {
        panic!(
            "building modules/ for wasm32-wasip1 failed (see the errors above). \
             If the target is missing, run `rustup target add wasm32-wasip1`."
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip1/release");
    let mut src = String::new();
    let mut all =
        String::from("/// Every module, as `(name, path)`.\npub const ALL: &[(&str, &str)] = &[\n");
    for name in MODULES {
        let path = wasm_dir.join(format!("{name}.wasm"));
        assert!(exists(&path), "{} was not built", path.display());
        let konst = name.to_uppercase();
        let path = path.display().to_string();
        writeln!(src, "/// Path of the `{name}` guest module.").unwrap();
        writeln!(src, "pub const {konst}: &str = {path:?};").unwrap();
        writeln!(src, "/// The bytes of the `{name}` guest module.").unwrap();
        writeln!(
            src,
            "pub const {konst}_WASM: &[u8] = include_bytes!({path:?});"
        )
        .unwrap();
        writeln!(all, "    ({name:?}, {konst}),").unwrap();
    }
    all.push_str("];\n");
    src.push_str(&all);
    std::fs::write(out_dir.join("modules.rs"), src).expect("write modules.rs");
}

fn exists(path: &Path) -> bool {
    path.is_file()
}
