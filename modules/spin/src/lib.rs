//! `spin.forever`: an endless loop. The node's deadline must stop it.

/// Never returns.
#[steinadler::function]
fn forever() -> u64 {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
