//! `hog.grow`: allocates without bound. The node's memory limit must stop it.

/// Allocates and touches 1 MiB blocks until the allocation fails.
#[steinadler::function]
fn grow() -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&blocks);
    }
}
