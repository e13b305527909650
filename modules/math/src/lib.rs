//! `math.add` and `math.fib`.

/// Adds two integers; overflow is a guest error rather than a wrap.
#[steinadler::function]
fn add(a: i64, b: i64) -> Result<i64, String> {
    a.checked_add(b)
        .ok_or_else(|| format!("{a} + {b} overflows a 64-bit integer"))
}

/// The `n`th Fibonacci number, computed iteratively; `fib(0) = 0`, `fib(1) = 1`.
///
/// Returns a guest error past `fib(93)`, the largest that fits in a `u64`.
#[steinadler::function]
fn fib(n: u32) -> Result<u64, String> {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        let next = a
            .checked_add(b)
            .ok_or_else(|| format!("fib({n}) does not fit in 64 bits"))?;
        a = b;
        b = next;
    }
    Ok(a)
}
