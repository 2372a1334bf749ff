//! The B2BUA's heap allocations per call (issue 17): the call flow of `load.rs` at 1,000
//! calls/s in steady state, only allocations made inside the B2BUA counted. Each one is a
//! likely cache miss under real load (the allocator hands out a block freed long ago), so
//! their number is a lever the end-to-end figures are too noisy to resolve. Counted with
//! the system allocator behind `stats_alloc` (a count does not depend on the allocator).
//! Run: `cargo bench --bench b2bua_allocs`.
#![allow(clippy::print_stdout)] // a benchmark: its report is its output

mod load;

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn count() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut load = load::steady(count);
    const CALLS: u64 = 10_000;
    load.allocs = 0;
    for _ in 0..CALLS {
        load.step();
    }
    println!(
        "b2bua allocations (and reallocations) per call at 1000/s: {:.1}",
        load.allocs as f64 / CALLS as f64
    );
}
