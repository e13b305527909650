//! `deep.recurse`: recursion as deep as asked, which overflows the stack for large `n`.

/// Recurses `n` levels and returns `n`. Each level keeps a frame alive, so nothing is optimized
/// into a loop.
#[steinadler::function]
fn recurse(n: u64) -> u64 {
    down(n)
}

#[inline(never)]
fn down(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let frame = std::hint::black_box([n; 16]);
    1 + down(std::hint::black_box(n - 1)) + frame[15] - frame[0]
}
