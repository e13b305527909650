//! Invocation cost: a fresh instance plus one call, end to end through `Host::invoke`.
//!
//! - `math.add`: the fixed cost of an invocation (store, WASI context, instantiate, ABI calls).
//! - `echo` of a 1 MiB bytes value: the cost of moving a large argument in and out.
//! - baseline: `Term` encode + decode of the same 1 MiB value on the host, no wasm at all.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use steinadler_host::{Host, HostConfig, Term};

fn bench(c: &mut Criterion) {
    let host = Host::new(HostConfig::default()).expect("host");
    let limits = host.default_limits();
    let math = host.load_file(steinadler_test_modules::MATH).expect("math");
    let echo = host.load_file(steinadler_test_modules::ECHO).expect("echo");

    let add_args = Term::List(vec![Term::Int(2), Term::Int(40)]).encode();
    let out = host.invoke(&math, "add", &add_args, &limits).expect("add");
    assert_eq!(Term::decode(&out), Ok(Term::Int(42)));
    c.bench_function("math.add (instantiate + call)", |b| {
        b.iter(|| host.invoke(&math, "add", black_box(&add_args), &limits))
    });

    let big = Term::Bytes(vec![7u8; 1 << 20]);
    let echo_args = Term::List(vec![big.clone()]).encode();
    let out = host
        .invoke(&echo, "echo", &echo_args, &limits)
        .expect("echo");
    assert_eq!(Term::decode(&out).as_ref(), Ok(&big));
    let mut group = c.benchmark_group("1 MiB bytes");
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("echo (instantiate + call)", |b| {
        b.iter(|| host.invoke(&echo, "echo", black_box(&echo_args), &limits))
    });
    group.bench_function("baseline: host encode + decode", |b| {
        b.iter(|| Term::decode(&black_box(&big).encode()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
