//! `steinadler bench --only erlang`: Steinadler's rows, in one process and with the callee in
//! a process of its own, beside Erlang Distribution's, measured in the same run when `erl` is
//! on the PATH; without it the section says so. No timing is asserted: only that every row has
//! figures, and (with `erl`) a ratio. `.ci/run` installs `erlang-base` and sets
//! `STEINADLER_REQUIRE_ERLANG`, so that there the Erlang half must run.

use std::process::Command;

#[test]
fn the_bench_measures_erlang_beside_its_own_rows() {
    let out = Command::new(env!("CARGO_BIN_EXE_steinadler"))
        .args([
            "bench", "--only", "erlang", "--calls", "400", "--rounds", "1",
        ])
        .env("RUST_LOG", "error")
        .output()
        .expect("the steinadler binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("  remote invoke") || l.starts_with("  process "))
        .map(|l| l.split_whitespace().rev().take(4).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    let erlang = !stdout.contains("Erlang is not measured");
    if std::env::var_os("STEINADLER_REQUIRE_ERLANG").is_some() {
        assert!(erlang, "erl is required here, and was not run:\n{stdout}");
    }
    for row in &rows {
        // Reversed: ratio, Erlang, apart, one process.
        for cell in &row[2..] {
            assert!(
                cell.parse::<f64>().is_ok_and(|v| v > 0.0),
                "{row:?} in\n{stdout}"
            );
        }
        if erlang {
            assert!(row[0].parse::<f64>().is_ok(), "{row:?} in\n{stdout}");
            assert!(row[1].parse::<f64>().is_ok_and(|v| v > 0.0), "{row:?}");
        } else {
            assert_eq!(&row[..2], ["-", "-"], "{stdout}");
        }
    }
}
