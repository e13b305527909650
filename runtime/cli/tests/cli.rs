//! `steinadler run` end to end: output, error lines and exit codes.

use std::process::{Command, Output};
use steinadler_test_modules as m;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steinadler"))
        .arg("run")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the steinadler binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn prints_the_result_as_json_and_exits_0() {
    let o = run(&[m::HELLO, "greet", "--args", r#"["World"]"#]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), r#""Hello, World!""#);
    // The guest's log line reaches stderr through tracing, tagged with the function.
    assert!(stderr(&o).contains("greeting World"), "{}", stderr(&o));
}

#[test]
fn a_single_non_array_value_is_the_only_argument() {
    let o = run(&[m::MATH, "fib", "--args", "10"]);
    assert_eq!((o.status.code(), stdout(&o)), (Some(0), "55".to_owned()));
    let o = run(&[
        m::ECHO,
        "echo",
        "--args",
        r#"{"$tuple":[{"$atom":"ok"},1]}"#,
    ]);
    assert_eq!(stdout(&o), r#"{"$tuple":[{"$atom":"ok"},1]}"#);
}

#[test]
fn function_errors_exit_1_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[m::MATH, "fib", "--args", "100"],
            "guest error: \"fib(100) does not fit in 64 bits\"",
        ),
        (
            &[m::SPIN, "forever", "--timeout", "200ms"],
            "timed out after 200 ms",
        ),
        (&[m::HOG, "grow", "--memory", "8MiB"], "out of memory"),
        (
            &[m::CRASH, "panic"],
            "boom: the crash module panicked on purpose",
        ),
        (
            &[m::MATH, "nope"],
            "exports no function \"nope\" (exported: add, fib)",
        ),
        (
            &[m::MATH, "add", "--args", r#"["x", 1]"#],
            "argument 1 (`a`)",
        ),
    ];
    for (args, needle) in cases {
        let o = run(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(stdout(&o).is_empty(), "{args:?} printed a result");
        let line = err
            .lines()
            .find(|l| l.starts_with("error: "))
            .expect("an error line");
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&[m::MATH, "add", "--args", "[1,"], "--args: "),
        (&[m::MATH, "add", "--args", r#"{"$atm":"x"}"#], "--args"),
        (&["/no/such/file.wasm", "f"], "cannot read module"),
        (&[m::MATH, "add", "--timeout", "soon"], "invalid duration"),
        (&[m::MATH], "FUNCTION"),
    ];
    for (args, needle) in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn non_wasm_file_is_a_clear_error() {
    let o = run(&[env!("CARGO_MANIFEST_DIR"), "f"]);
    // A directory cannot be read as a file: a usage error.
    assert_eq!(o.status.code(), Some(2));
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let o = run(&[manifest, "f"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a WebAssembly module"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn arguments_past_the_argv_limit_come_from_a_file_or_stdin() {
    use std::io::Write;
    // One command-line argument holds at most 128 KiB on Linux; this one is 1 MiB.
    let big = "x".repeat(1 << 20);
    let json = format!("[\"{big}\"]");
    let path = std::env::temp_dir().join(format!("steinadler-args-{}.json", std::process::id()));
    std::fs::write(&path, &json).unwrap();
    let from_file = run(&[m::ECHO, "echo", "--args-file", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(from_file.status.code(), Some(0), "{}", stderr(&from_file));
    assert_eq!(stdout(&from_file), format!("\"{big}\""));

    let mut child = Command::new(env!("CARGO_BIN_EXE_steinadler"))
        .args(["run", m::ECHO, "echo", "--args-file", "-"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(json.as_bytes()));
    let from_stdin = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(from_stdin.status.code(), Some(0), "{}", stderr(&from_stdin));
    assert_eq!(stdout(&from_stdin), format!("\"{big}\""));

    // Both at once is a usage error; so is a file that is not there.
    let both = run(&[m::ECHO, "echo", "--args", "[1]", "--args-file", "-"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
    let missing = run(&[m::ECHO, "echo", "--args-file", "/nonexistent/args.json"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("cannot read --args-file /nonexistent/args.json"),
        "{}",
        stderr(&missing)
    );
}
