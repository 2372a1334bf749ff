//! The B2BUA's own CPU per call (issue 17), without sockets or the kernel: the call flow of
//! `load.rs` at 1,000 calls/s in steady state, only the time inside the B2BUA counted.
//! Run: `cargo bench --bench b2bua`.

mod load;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

/// The daemon's allocator (src/main.rs), so the figures are the daemon's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn b2bua_call(c: &mut Criterion) {
    let mut load = load::steady(|| 0);
    c.bench_function("b2bua_call_at_1000_per_s", |b| {
        b.iter_custom(|iters| {
            load.spent = Duration::ZERO;
            for _ in 0..iters {
                load.step();
            }
            load.spent
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = b2bua_call
}
criterion_main!(benches);
