//! Tests of `steinadler node start`'s settings: the TOML file, flags over it, and refusals.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    start: StartArgs,
}

async fn config(file: &str, flags: &[&str]) -> anyhow::Result<NodeConfig> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("steinadler-node-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, file).unwrap();
    let mut argv = vec![
        "node",
        "--name",
        "n1",
        "--insecure",
        "--config",
        path.to_str().unwrap(),
    ];
    argv.extend_from_slice(flags);
    let parsed = node_config(Cli::try_parse_from(argv)?.start).await;
    let _ = std::fs::remove_file(&path);
    parsed
}

#[tokio::test]
async fn the_maximums_come_from_the_file_and_flags_override_them() {
    let defaults = config("", &[]).await.unwrap();
    assert_eq!(
        defaults.max_memory_bytes,
        steinadler_node::DEFAULT_MAX_MEMORY
    );
    assert_eq!(defaults.max_timeout, steinadler_node::DEFAULT_MAX_TIMEOUT);

    let file = "max_memory = \"128MiB\"\nmax_timeout = \"30s\"\n";
    let from_file = config(file, &[]).await.unwrap();
    assert_eq!(from_file.max_memory_bytes, 128 << 20);
    assert_eq!(from_file.max_timeout, Duration::from_secs(30));

    let flags = config(file, &["--max-memory", "1GiB", "--max-timeout", "2m"])
        .await
        .unwrap();
    assert_eq!(flags.max_memory_bytes, 1 << 30);
    assert_eq!(flags.max_timeout, Duration::from_secs(120));
}

#[tokio::test]
async fn certificate_lifetimes_come_from_the_file_and_flags_override_them() {
    let defaults = config("", &[]).await.unwrap();
    assert_eq!(defaults.cert_lifetime, Duration::from_secs(7 * 86_400));
    assert_eq!(
        defaults.client_cert_lifetime,
        Duration::from_secs(30 * 86_400)
    );
    let file = "cert_lifetime = \"1d\"\nclient_cert_lifetime = \"12h\"\n";
    let from_file = config(file, &[]).await.unwrap();
    assert_eq!(from_file.cert_lifetime, Duration::from_secs(86_400));
    assert_eq!(
        from_file.client_cert_lifetime,
        Duration::from_secs(12 * 3600)
    );
    let flags = config(file, &["--cert-lifetime", "20s"]).await.unwrap();
    assert_eq!(flags.cert_lifetime, Duration::from_secs(20));
    assert_eq!(flags.client_cert_lifetime, Duration::from_secs(12 * 3600));
    let e = config("", &["--client-cert-lifetime", "5s"])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least 10s"), "{e}");
}

#[tokio::test]
async fn metrics_are_off_unless_the_file_or_a_flag_sets_an_address() {
    assert_eq!(config("", &[]).await.unwrap().metrics, None);
    let file = "metrics = \"127.0.0.1:9464\"\n";
    let from_file = config(file, &[]).await.unwrap();
    assert_eq!(from_file.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    let flag = config(file, &["--metrics", "0.0.0.0:9465"]).await.unwrap();
    assert_eq!(flag.metrics, Some("0.0.0.0:9465".parse().unwrap()));
    let e = config("metrics = \"nowhere\"\n", &[]).await.unwrap_err();
    assert!(format!("{e:#}").contains("metrics"), "{e:#}");
}

#[test]
fn otlp_is_off_unless_the_file_or_a_flag_names_a_collector() {
    let path = std::env::temp_dir().join(format!("steinadler-otlp-{}.toml", std::process::id()));
    let otlp = |file: &str, flags: &[&str]| {
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["node", "--name", "n1", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(flags);
        otlp_of(&Cli::try_parse_from(argv).unwrap().start)
    };
    assert_eq!(otlp("", &[]), None);
    let file = "otlp = \"http://127.0.0.1:4317\"\n";
    assert_eq!(otlp(file, &[]).as_deref(), Some("http://127.0.0.1:4317"));
    let flag = otlp(file, &["--otlp", "http://collector:4317"]);
    assert_eq!(flag.as_deref(), Some("http://collector:4317"));
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn maximums_too_small_to_run_anything_are_refused() {
    let e = config("max_memory = \"64KiB\"\n", &[]).await.unwrap_err();
    assert!(e.to_string().contains("at least 1MiB"), "{e}");
    let e = config("max_timeout = \"0s\"\n", &[]).await.unwrap_err();
    assert!(e.to_string().contains("more than zero"), "{e}");
    let e = config("max_memory = \"lots\"\n", &[]).await.unwrap_err();
    assert!(e.to_string().contains("max_memory in --config"), "{e:#}");
}
