//! `hello.greet`: the first function every user runs.

/// Greets `name`.
#[steinadler::function]
fn greet(name: String) -> String {
    steinadler::log::info!("greeting {name}");
    format!("Hello, {name}!")
}
