//! `steinadler node start --config FILE`: the advertised addresses in the TOML file reach the
//! node, and one nobody can dial stops it with a message that says what to pass.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_steinadler");

fn config_file(name: &str, body: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("steinadler-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn the_advertised_address_in_the_config_file_is_the_one_the_node_gives_out() {
    let path = config_file(
        "advertise",
        "name = \"adv\"\nlisten = \"127.0.0.1:0\"\ngossip = \"127.0.0.1:0\"\nadvertise = \"localhost:7999\"\n",
    );
    let mut child = Command::new(BIN)
        .args(["node", "start", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    for _ in 0..5 {
        out.read_line(&mut banner).unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    assert!(
        banner.contains("(advertised as localhost:7999)"),
        "{banner}"
    );
    // The join hint gives the advertised address, the one others can reach.
    assert!(banner.contains("--join localhost:7999"), "{banner}");
}

#[test]
fn a_wildcard_advertised_address_in_the_config_file_stops_the_node_with_what_to_do() {
    let path = config_file(
        "advertise-bad",
        "name = \"bad\"\nlisten = \"127.0.0.1:0\"\ngossip = \"127.0.0.1:0\"\nadvertise = \"0.0.0.0:7100\"\n",
    );
    let out = Command::new(BIN)
        .args(["node", "start", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--advertise \"0.0.0.0:7100\" is a wildcard address")
            && err.contains("HOST:PORT"),
        "{err}"
    );
}
