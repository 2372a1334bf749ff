//! Criterion benchmarks of the hot core: route lookup at 1M active sessions (2M route keys),
//! timer-wheel arm with 1M entries armed, and wheel expiry; then lookup and arm at 10k and
//! 100k, to show how the costs grow. Run: `cargo bench --bench core`.
//! The memory figures are printed by `cargo bench --bench core -- --memory` style lines at
//! start (see BENCHMARKS.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use maskd::core::model::Mode;
use maskd::core::routing::{Route, RouteKey, RoutingTable, SessionLive};
use maskd::core::{Sid, SidKind, E164};
use maskd::timer::TimerWheel;

const SESSIONS: u64 = 1_000_000;

fn number(base: u64, i: u64) -> E164 {
    E164::from_u64(base + i).expect("valid test number")
}

/// A table as the engine builds it: two route keys per session.
fn table(sessions: u64) -> RoutingTable {
    let t = RoutingTable::with_capacity((sessions * 2) as usize);
    let svc = Sid::generate(SidKind::Service);
    for i in 0..sessions {
        let (a, b) = (number(14_150_000_000, i), number(12_120_000_000, i));
        let (pa, pb) = (
            number(13_000_000_000, i % 500),
            number(13_000_000_000, 500 + i % 500),
        );
        let live = Arc::new(SessionLive::new(0));
        let session = Sid::generate(SidKind::Session);
        let (kpa, kpb) = (
            Sid::generate(SidKind::Participant),
            Sid::generate(SidKind::Participant),
        );
        for (me, proxy, other, other_proxy, p, o) in
            [(a, pa, b, pb, kpa, kpb), (b, pb, a, pa, kpb, kpa)]
        {
            t.insert(
                RouteKey::new(proxy, me),
                Route {
                    service: svc,
                    session,
                    participant: p,
                    counterpart: o,
                    counterpart_real: other,
                    counterpart_proxy: other_proxy,
                    mode: Mode::VoiceAndMessage,
                    live: live.clone(),
                },
            );
        }
    }
    t
}

/// The route keys of a table of `n` sessions, in a fixed pseudo-random walk (built before
/// timing).
fn hit_walk(n: u64) -> Vec<(E164, E164)> {
    (0..n)
        .map(|i| (i * 7919) % n)
        .map(|i| (number(13_000_000_000, i % 500), number(14_150_000_000, i)))
        .collect()
}

/// A wheel with `n` entries spread over a day.
fn armed_wheel(n: u64, sid: Sid) -> TimerWheel<Sid> {
    let mut w = TimerWheel::new(100, 4096, 0);
    for i in 0..n {
        w.insert(1_000 + (i * 37) % 86_400_000, sid);
    }
    w
}

/// Times `iters` arms into `w`; they are cancelled again outside the timing.
fn timed_arms(w: &mut TimerWheel<Sid>, sid: Sid, iters: u64) -> Duration {
    let mut keys = Vec::with_capacity(iters as usize);
    let start = Instant::now();
    for k in 0..iters {
        keys.push(w.insert(black_box(5_000 + (k * 131) % 3_600_000), sid));
    }
    let elapsed = start.elapsed();
    for key in keys {
        w.cancel(key);
    }
    elapsed
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

fn route_lookup(c: &mut Criterion) {
    let before = rss_kib();
    let t = table(SESSIONS);
    let after = rss_kib();
    eprintln!(
        "memory: routing table {} sessions ({} keys): {} KiB RSS, {:.0} bytes per session",
        SESSIONS,
        t.len(),
        after - before,
        (after - before) as f64 * 1024.0 / SESSIONS as f64
    );
    // Keys are built before timing; the order is a fixed pseudo-random walk.
    let hits = hit_walk(SESSIONS);
    let misses: Vec<(E164, E164)> = (0..SESSIONS)
        .map(|i| (number(13_000_000_000, 999), number(16_000_000_000, i)))
        .collect();
    let mut i = 0usize;
    c.bench_function("route_lookup_hit_1M_sessions", |bch| {
        bch.iter(|| {
            i = (i + 1) % hits.len();
            let (p, s) = hits[i];
            black_box(t.with_route(p, s, |r| (r.counterpart_real, r.counterpart_proxy)))
        })
    });
    c.bench_function("route_resolve_copy_1M_sessions", |bch| {
        bch.iter(|| {
            i = (i + 1) % hits.len();
            let (p, s) = hits[i];
            black_box(t.resolve(p, s).is_some())
        })
    });
    c.bench_function("route_lookup_miss_1M_sessions", |bch| {
        bch.iter(|| {
            i = (i + 1) % misses.len();
            let (p, s) = misses[i];
            black_box(t.with_route(p, s, |r| r.counterpart_real).is_none())
        })
    });
}

fn wheel(c: &mut Criterion) {
    let before = rss_kib();
    let sid = Sid::generate(SidKind::Session);
    let mut w = armed_wheel(SESSIONS, sid);
    let after = rss_kib();
    eprintln!(
        "memory: timer wheel {} entries: {} KiB RSS, {:.0} bytes per entry (slab entry {} bytes)",
        SESSIONS,
        after - before,
        (after - before) as f64 * 1024.0 / SESSIONS as f64,
        TimerWheel::<Sid>::entry_size()
    );
    // Arm into a wheel already holding 1M entries; the arms are cancelled outside the timing.
    c.bench_function("wheel_arm_with_1M_armed", |bch| {
        bch.iter_custom(|iters| timed_arms(&mut w, sid, iters))
    });
    // Expiry: 1M entries due within 100 s, fired tick by tick; per entry fired.
    c.bench_function("wheel_expire_1M_per_entry", |bch| {
        bch.iter_batched(
            || {
                let mut w: TimerWheel<u32> = TimerWheel::new(100, 4096, 0);
                for i in 0..SESSIONS as u32 {
                    w.insert(u64::from(i % 100_000), i);
                }
                w
            },
            |mut w| {
                let mut out = Vec::with_capacity(SESSIONS as usize);
                let mut late = 0u64;
                for now in (100..=100_100).step_by(100) {
                    let before = out.len();
                    w.expire(now, &mut out);
                    for (_, due) in &out[before..] {
                        late = late.max(now - due);
                    }
                }
                assert_eq!(out.len(), SESSIONS as usize);
                assert!(late < 1_000, "lateness {late} ms");
                black_box(out.len())
            },
            BatchSize::PerIteration,
        )
    });
}

/// How the per-operation costs grow with the table: route lookup (hit) and wheel arm at 10k
/// and 100k sessions, to set beside the 1M figures above.
fn scaling(c: &mut Criterion) {
    for n in [10_000u64, 100_000] {
        // (No RSS figure here: the allocator reuses what the 1M tables above freed.)
        let t = table(n);
        let hits = hit_walk(n);
        let mut i = 0usize;
        c.bench_function(&format!("route_lookup_hit_{n}_sessions"), |bch| {
            bch.iter(|| {
                i = (i + 1) % hits.len();
                let (p, s) = hits[i];
                black_box(t.with_route(p, s, |r| (r.counterpart_real, r.counterpart_proxy)))
            })
        });
        drop(t);
        let sid = Sid::generate(SidKind::Session);
        let mut w = armed_wheel(n, sid);
        c.bench_function(&format!("wheel_arm_with_{n}_armed"), |bch| {
            bch.iter_custom(|iters| timed_arms(&mut w, sid, iters))
        });
    }
}

/// Which carrier owns a proxy number (SPEC §2.7), the one lookup carrier routing adds per
/// outbound message and per leg B: 100 carriers owning 10 numbers and 10 prefixes each
/// (2,000 entries, longest match wins), looked up for owned and unowned numbers.
fn carrier_owner(c: &mut Criterion) {
    use maskd::core::carriers::{Carrier, Carriers};
    let list: Vec<Carrier> = (0..100)
        .map(|k| Carrier {
            name: format!("carrier-{k}"),
            smpp: Some(format!("carrier-{k}")),
            trunks: Vec::new(),
            options_interval: Duration::from_secs(30),
            register: None,
            specs: Vec::new(),
            mps: None,
        })
        .collect();
    let mut owned = Vec::new();
    for k in 0..100u64 {
        for j in 0..10u64 {
            owned.push((format!("+1{}", 4_155_550_000 + k * 10 + j), k as usize));
            owned.push((format!("+44{}", 20_000 + k * 10 + j), k as usize));
        }
    }
    let carriers = Carriers::new(list, owned);
    let numbers: Vec<E164> = (0..4096u64)
        .map(|i| match i % 3 {
            0 => number(14_155_550_000, i % 1000),
            1 => number(442_000_000_000, i * 7919 % 100_000_000),
            _ => number(16_505_550_000, i),
        })
        .collect();
    let mut i = 0usize;
    c.bench_function("carrier_owner_2000_entries", |bch| {
        bch.iter(|| {
            i = (i + 1) % numbers.len();
            black_box(carriers.owner(numbers[i]).map(|(k, _)| k))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = route_lookup, wheel, scaling, carrier_owner
}
criterion_main!(benches);
