//! Invocation cost: a fresh instance plus one call, end to end through `Host::invoke`.
//!
//! - `math.add`: the fixed cost of an invocation (store, WASI context, instantiate, ABI calls).
//! - `echo` of a 1 MiB bytes value: the cost of moving a large argument in and out.
//! - baseline: `Term` encode + decode of the same 1 MiB value on the host, no wasm at all.
//! - a stream producer's batch of 1,024 integers (`range.range`), next to decoding that batch
//!   on the host: what a stream's producer costs per item beside what its consumer does.

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

    let range = host
        .load(steinadler_test_modules::RANGE_WASM)
        .expect("range");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let open = Term::List(vec![Term::Int(0), Term::Int(i64::MAX)]).encode();
    let mut producer = rt
        .block_on(host.open_stream(&range, "range", &open, &limits))
        .expect("open");
    let batch = rt.block_on(producer.next(1024, 256 << 10)).expect("batch");
    assert_eq!(batch.count, 1024);
    let mut group = c.benchmark_group("stream batch of 1,024 integers");
    group.throughput(Throughput::Elements(1024));
    group.bench_function("producer: range.range next", |b| {
        b.iter(|| rt.block_on(producer.next(1024, 256 << 10)))
    });
    group.bench_function("consumer: decode the batch", |b| {
        b.iter(|| Term::decode(black_box(batch.items())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
