//! The B2BUA's own CPU per call (issue 17), without sockets or the kernel: the call flow of
//! `load.rs` at 1,000 calls/s in steady state, only the time inside the B2BUA counted. Also
//! the same with cold caches (1 MiB, this machine's L2 per core, written over before every
//! datagram, untimed): in the daemon the kernel's delivery and the peers run between two
//! datagrams, and the same work costs there about twice what it costs warm.
//! Run: `cargo bench --bench b2bua`.
#![allow(clippy::print_stdout)] // the cold-cache figure is printed

mod load;

use std::time::Duration;

use criterion::{criterion_group, Criterion};

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
/// The cold-cache figure: a plain mean over 5,000 calls (criterion would run for minutes,
/// each timed microsecond costing ~100 untimed ones here).
fn cold() {
    let mut load = load::steady(|| 0);
    load.evict = Some(vec![0u8; 1 << 20]);
    for _ in 0..1_000 {
        load.step();
    }
    const CALLS: u32 = 5_000;
    load.spent = Duration::ZERO;
    for _ in 0..CALLS {
        load.step();
    }
    println!(
        "b2bua_call_at_1000_per_s with cold caches: {:.1} µs per call (mean of {CALLS})",
        load.spent.as_secs_f64() * 1e6 / f64::from(CALLS)
    );
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: criterion then checks
    // each bench once; the cold figure is left out.
    if std::env::args().any(|a| a == "--bench") {
        cold();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
