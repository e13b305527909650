mod common;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_converge4() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or("info".into()))
        .with_test_writer()
        .try_init();
    for trial in 0..200 {
        let nodes = cluster(4).await;
        let want = expected(&nodes);
        let t = wait_for(Duration::from_secs(20), || async {
            for n in &nodes {
                if n.members().await != want {
                    return false;
                }
            }
            true
        })
        .await;
        println!("trial {trial}: {t:?}");
        if t.map_or(true, |t| t > Duration::from_secs(1)) {
            for n in &nodes {
                println!("{} sees {:?}", n.local_name(), names(n).await);
            }
        }
        stop(&nodes).await;
    }
}
