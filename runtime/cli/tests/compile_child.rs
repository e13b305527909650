//! Compiling in a child process: the hidden `compile-child` subcommand's protocol, and real
//! `steinadler node start` processes that compile in a child (the default) or in-process,
//! refuse a module that does not compile with a clear error, and keep serving.

use std::io::Write;
use std::process::{Command, Output, Stdio};

// Shared by the CLI tests; this one uses part of it.
#[allow(dead_code)]
mod nodes;

use nodes::{BIN, cli, ok, start_with};

/// Runs `steinadler compile-child` with `input` on stdin.
fn compile_child(input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("compile-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start compile-child");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A module with the wasm header and a type section that claims more bytes than it has.
const TRUNCATED: &[u8] = b"\0asm\x01\0\0\0\x01\x7f\x01";

#[test]
fn compile_child_speaks_its_protocol() {
    let header = b"STEINADLER-COMPILE/1 max_wasm_stack=524288\n";

    let o = compile_child(b"hello\n");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("run by a node"), "{}", stderr(&o));

    let o = compile_child(&[&header[..], TRUNCATED].concat());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(!stderr(&o).trim().is_empty());
    assert!(o.stdout.is_empty());

    let hello = std::fs::read(steinadler_test_modules::HELLO).unwrap();
    let o = compile_child(&[&header[..], &hello].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    // wasmtime's precompiled artifacts are ELF images.
    assert!(o.stdout.starts_with(b"\x7fELF"), "not an artifact");
}

/// Deploys a module that does not compile, then hello, and calls it.
fn refuses_bad_then_serves(compile: &str) {
    let node = start_with("c1", &["--compile", compile], true);
    let token = node.token.clone().unwrap();
    ok(&cli(
        &node,
        &["login", "--token", &token, "--name", "tester"],
    ));

    let bad = std::env::temp_dir().join(format!("truncated-{}-{compile}.wasm", std::process::id()));
    std::fs::write(&bad, TRUNCATED).unwrap();
    let o = cli(&node, &["deploy", "--wait", bad.to_str().unwrap()]);
    let _ = std::fs::remove_file(&bad);
    assert!(!o.status.success(), "a truncated module was accepted");
    assert!(
        stderr(&o).contains("invalid module") || stderr(&o).contains("not a valid"),
        "{compile}: {}",
        stderr(&o)
    );

    ok(&cli(
        &node,
        &["deploy", "--wait", steinadler_test_modules::HELLO],
    ));
    let out = ok(&cli(
        &node,
        &["invoke", "hello", "greet", "--args", r#"["World"]"#],
    ));
    assert!(out.contains("Hello, World!"), "{compile}: {out}");
}

/// One test, because the CLI's login lives in one config home per test process.
#[test]
fn a_node_refuses_a_module_that_does_not_compile_and_keeps_serving() {
    refuses_bad_then_serves("child");
    refuses_bad_then_serves("in-process");
}
