//! Embeds two Steinadler nodes in one program with the library API: start them with the
//! builder, deploy `hello` to one, invoke it on both, and shut down.
//!
//! Run it with `cargo run -p steinadler-example-embed`.

use std::time::Duration;
use steinadler_core::Term;
use steinadler_node::{Node, Target};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A first node creates a cluster: a CA, its certificate and a join token. A second node
    // joins through it with that token and runs mutual TLS from then on.
    let first = Node::builder()
        .name("first")
        .label("role", "demo")
        .start()
        .await?;
    let token = first.join_token().ok_or("the first node made no token")?;
    let second = Node::builder()
        .name("second")
        .seed(first.grpc_addr())
        .token(token)
        .start()
        .await?;
    first.wait_for_members(2, Duration::from_secs(10)).await?;

    // Deploy to the first node only; the second pulls the module when it first needs it.
    let id = first
        .deploy("hello", steinadler_test_modules::HELLO_WASM)
        .await?;
    println!("deployed hello as {id}");

    let args = Term::list([Term::from("embedder")]).encode();
    for result in first.invoke(&Target::All, "hello", "greet", &args).await? {
        let value = Term::decode(&result.outcome?)?;
        println!("{}: {value} in {:?}", result.node, result.elapsed);
    }

    second.shutdown().await;
    first.shutdown().await;
    Ok(())
}
