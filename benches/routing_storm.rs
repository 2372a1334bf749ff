//! What the data planes feel of the routing table while the engine writes it: lookup
//! latency percentiles on a reading thread at 1M sessions (2M route keys) while another
//! thread changes route keys at a steady rate (0, 10k and 100k changes a second: a change is
//! one insert or one remove), and while 100k sessions (200k route keys) expire on one tick,
//! over and over. The candidates side by side, in the same run: DashMap (the table before
//! issue 19), papaya (lock-free reads; its default incremental resizing and blocking
//! resizing), left-right (wait-free reads over two copies, one writer that publishes its
//! changes once a millisecond; routes inline in each copy, or one `Arc` shared by both), and
//! maskd's `RoutingTable` as adopted (left-right with shared routes, a read handle per
//! thread, each tick's changes in one batch). Also the memory per route and the writer's
//! cost per change.
//!
//! Run: `cargo bench --bench routing_storm [-- SESSIONS SECONDS [TABLE...]]` (default
//! 1000000 5, every table). `scripts/bench-routing` runs each table in a process of its
//! own, so each one's memory figure is its own (freed memory is not given back at once).
//! The reader and the writer each get one of this machine's two cores; every lookup is
//! timed on its own (`Instant`, ~20 ns of the figure on this machine, the same for all).

#![allow(clippy::print_stdout)] // a benchmark: its report is its output

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use left_right::Absorb;
use maskd::core::model::Mode;
use maskd::core::routing::{Route, RouteKey, RoutingTable, SessionLive};
use maskd::core::{Sid, SidKind, E164};

type Hasher = foldhash::fast::RandomState;

fn number(base: u64, i: u64) -> E164 {
    E164::from_u64(base + i).expect("valid test number")
}

/// Session `i`'s two route keys and routes, as the engine makes them.
fn session(i: u64, svc: Sid) -> [(RouteKey, Route); 2] {
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
    let route = |p, o, real, proxy| Route {
        service: svc,
        session,
        participant: p,
        counterpart: o,
        counterpart_real: real,
        counterpart_proxy: proxy,
        mode: Mode::VoiceAndMessage,
        live: live.clone(),
    };
    [
        (RouteKey::new(pa, a), route(kpa, kpb, b, pb)),
        (RouteKey::new(pb, b), route(kpb, kpa, a, pa)),
    ]
}

/// One change the writer makes.
enum Change {
    Insert(RouteKey, Route),
    Remove(RouteKey),
}

/// A lookup made on the reading thread.
type Lookup<'a> = Box<dyn FnMut(&RouteKey) -> Option<u64> + 'a>;

/// A table under test: a reader made on the reading thread, and a writer.
trait Table: Send + Sync + 'static {
    type Writer: Send + 'static;
    /// A lookup as the data planes make it: read two fields in place.
    fn reader(&self) -> Lookup<'_>;
    fn apply(&self, w: &mut Self::Writer, c: Change);
    /// Makes what was applied visible (left-right publishes; the others need nothing).
    fn publish(&self, _w: &mut Self::Writer) {}
}

struct Dash(DashMap<RouteKey, Route, Hasher>);

impl Table for Dash {
    type Writer = ();
    fn reader(&self) -> Lookup<'_> {
        Box::new(|k| {
            self.0
                .get(k)
                .map(|r| r.counterpart_real.as_u64() ^ r.counterpart_proxy.as_u64())
        })
    }
    fn apply(&self, _: &mut (), c: Change) {
        match c {
            Change::Insert(k, r) => {
                self.0.insert(k, r);
            }
            Change::Remove(k) => {
                self.0.remove(&k);
            }
        }
    }
}

struct Papaya(papaya::HashMap<RouteKey, Route, Hasher>);

impl Table for Papaya {
    type Writer = ();
    fn reader(&self) -> Lookup<'_> {
        Box::new(|k| {
            self.0
                .pin()
                .get(k)
                .map(|r| r.counterpart_real.as_u64() ^ r.counterpart_proxy.as_u64())
        })
    }
    fn apply(&self, _: &mut (), c: Change) {
        match c {
            Change::Insert(k, r) => {
                self.0.pin().insert(k, r);
            }
            Change::Remove(k) => {
                self.0.pin().remove(&k);
            }
        }
    }
}

/// A left-right copy: routes held inline (each copy has its own), or behind an `Arc` (both
/// copies share one allocation per route: half the memory, one more pointer per lookup).
struct Inner<V>(HashMap<RouteKey, V, Hasher>);

impl<V> Default for Inner<V> {
    fn default() -> Self {
        Inner(HashMap::default())
    }
}

trait Value: Clone + Send + Sync + 'static {
    fn of(r: Route) -> Self;
    fn route(&self) -> &Route;
}

impl Value for Route {
    fn of(r: Route) -> Self {
        r
    }
    fn route(&self) -> &Route {
        self
    }
}

impl Value for Arc<Route> {
    fn of(r: Route) -> Self {
        Arc::new(r)
    }
    fn route(&self) -> &Route {
        self
    }
}

/// A change as left-right logs it: the value made once, cloned into the first copy and
/// moved into the second.
enum Op<V> {
    Insert(RouteKey, V),
    Remove(RouteKey),
}

impl<V: Value> Absorb<Op<V>> for Inner<V> {
    fn absorb_first(&mut self, c: &mut Op<V>, _: &Self) {
        match c {
            Op::Insert(k, v) => {
                self.0.insert(*k, v.clone());
            }
            Op::Remove(k) => {
                self.0.remove(k);
            }
        }
    }
    fn absorb_second(&mut self, c: Op<V>, _: &Self) {
        match c {
            Op::Insert(k, v) => {
                self.0.insert(k, v);
            }
            Op::Remove(k) => {
                self.0.remove(&k);
            }
        }
    }
    fn sync_with(&mut self, first: &Self) {
        self.0 = first.0.clone();
    }
}

/// left-right: the reading thread takes a handle of its own from the factory.
struct LeftRight<V: Value>(left_right::ReadHandleFactory<Inner<V>>);

impl<V: Value> Table for LeftRight<V> {
    type Writer = left_right::WriteHandle<Inner<V>, Op<V>>;
    fn reader(&self) -> Lookup<'_> {
        let h = self.0.handle();
        Box::new(move |k| {
            let g = h.enter()?;
            g.0.get(k).map(|v| {
                let r = v.route();
                r.counterpart_real.as_u64() ^ r.counterpart_proxy.as_u64()
            })
        })
    }
    fn apply(&self, w: &mut Self::Writer, c: Change) {
        w.append(match c {
            Change::Insert(k, r) => Op::Insert(k, V::of(r)),
            Change::Remove(k) => Op::Remove(k),
        });
    }
    fn publish(&self, w: &mut Self::Writer) {
        w.publish();
    }
}

/// maskd's own table (left-right, routes shared between the copies, a read handle per
/// thread): the changes of each tick applied in one batch, one publish, as the engine does
/// for a tick of the timer wheel.
struct Maskd(RoutingTable);

impl Table for Maskd {
    type Writer = Vec<Change>;
    fn reader(&self) -> Lookup<'_> {
        Box::new(|k| {
            let (proxy, sender) = (E164::from_u64(k.proxy)?, E164::from_u64(k.sender)?);
            self.0.with_route(proxy, sender, |r| {
                r.counterpart_real.as_u64() ^ r.counterpart_proxy.as_u64()
            })
        })
    }
    fn apply(&self, w: &mut Vec<Change>, c: Change) {
        w.push(c);
    }
    fn publish(&self, w: &mut Vec<Change>) {
        let _batch = self.0.batch();
        for c in w.drain(..) {
            match c {
                Change::Insert(k, r) => self.0.insert(k, r),
                Change::Remove(k) => self.0.remove(&k),
            }
        }
    }
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// What the writer does during a measurement.
#[derive(Clone, Copy, Debug)]
enum Load {
    /// Changes per second, spread over 1-ms ticks: remove a session's routes, put them back.
    Rate(u64),
    /// 100k sessions' routes removed in one go, then put back, then again.
    Expiry(u64),
}

struct Result {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    lookups: usize,
    changes: u64,
    write_ns: f64,
}

fn measure<T: Table>(
    t: &Arc<T>,
    mut w: T::Writer,
    sessions: u64,
    routes: &[[(RouteKey, Route); 2]],
    load: Load,
    secs: u64,
) -> (Result, T::Writer) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(2));
    let reader = {
        let (t, stop, start) = (t.clone(), stop.clone(), start.clone());
        let keys: Vec<RouteKey> = (0..1_000_000u64)
            .map(|i| {
                // A fixed pseudo-random walk over all sessions (both keys).
                let s = (i.wrapping_mul(2_654_435_761)) % sessions;
                routes[s as usize][(i & 1) as usize].0
            })
            .collect();
        std::thread::spawn(move || {
            let mut look = t.reader();
            // Bounded: at most 60M samples (~240 MB), whatever the duration.
            let mut lat: Vec<u32> = Vec::with_capacity(60_000_000);
            let mut sink = 0u64;
            start.wait();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && lat.len() < lat.capacity() {
                let k = &keys[i % keys.len()];
                let t0 = Instant::now();
                sink ^= look(k).unwrap_or(1);
                lat.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                i += 1;
            }
            std::hint::black_box(sink);
            lat
        })
    };
    start.wait();
    let begin = Instant::now();
    let end = begin + Duration::from_secs(secs);
    let mut changes = 0u64;
    let mut write_time = Duration::ZERO;
    let mut next = 0usize; // the next session the writer churns
    let churn = sessions as usize / 2; // it churns the second half only
    match load {
        Load::Rate(0) => std::thread::sleep(Duration::from_secs(secs)),
        Load::Rate(rate) => {
            let mut tick = 0u64;
            while Instant::now() < end {
                tick += 1;
                // Changes due by this tick (two per session: its two keys).
                let due = rate * tick / 1000;
                let w0 = Instant::now();
                while changes < due {
                    let s = churn + next % (sessions as usize - churn);
                    let [(ka, ra), (kb, rb)] = routes[s].clone();
                    // Removed and put back: two changes per key.
                    t.apply(&mut w, Change::Remove(ka));
                    t.apply(&mut w, Change::Insert(ka, ra));
                    t.apply(&mut w, Change::Remove(kb));
                    t.apply(&mut w, Change::Insert(kb, rb));
                    changes += 4;
                    next += 1;
                }
                t.publish(&mut w);
                write_time += w0.elapsed();
                let at = begin + Duration::from_millis(tick);
                if let Some(d) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        }
        Load::Expiry(n) => {
            let mut round = 0usize;
            while Instant::now() < end {
                let first = churn + (round * n as usize) % (sessions as usize - churn);
                let batch = first..(first + n as usize).min(sessions as usize);
                let w0 = Instant::now();
                for s in batch.clone() {
                    for (k, _) in &routes[s] {
                        t.apply(&mut w, Change::Remove(*k));
                    }
                }
                t.publish(&mut w);
                for s in batch.clone() {
                    for (k, r) in routes[s].clone() {
                        t.apply(&mut w, Change::Insert(k, r));
                    }
                }
                t.publish(&mut w);
                write_time += w0.elapsed();
                changes += 4 * batch.len() as u64;
                round += 1;
                // One expiry tick a second, as the wheel would fire a mass expiry.
                let at = begin + Duration::from_secs(round as u64);
                if let Some(d) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d.min(end.saturating_duration_since(Instant::now())));
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = reader.join().expect("reader");
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as u64;
    (
        Result {
            p50: pct(0.50),
            p99: pct(0.99),
            p999: pct(0.999),
            max: *lat.last().unwrap_or(&0) as u64,
            lookups: lat.len(),
            changes,
            write_ns: if changes > 0 {
                write_time.as_nanos() as f64 / changes as f64
            } else {
                0.0
            },
        },
        w,
    )
}

fn run<T: Table>(
    name: &str,
    t: T,
    mut w: T::Writer,
    sessions: u64,
    routes: &[[(RouteKey, Route); 2]],
    secs: u64,
    mem: u64,
) {
    let t = Arc::new(t);
    println!(
        "table={name} sessions={sessions} routes={} bytes_per_route={}",
        sessions * 2,
        mem / (sessions * 2)
    );
    for load in [
        Load::Rate(0),
        Load::Rate(10_000),
        Load::Rate(100_000),
        Load::Expiry(100_000),
    ] {
        let (r, back) = measure(&t, w, sessions, routes, load, secs);
        w = back;
        println!(
            "table={name} load={load:?} lookups={} p50_ns={} p99_ns={} p999_ns={} max_ns={} changes={} write_ns_per_change={:.0}",
            r.lookups, r.p50, r.p99, r.p999, r.max, r.changes, r.write_ns
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let sessions: u64 = args
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let secs: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(5);
    let tables: Vec<&str> = match args.get(2..) {
        Some(t) if !t.is_empty() => t.iter().map(String::as_str).collect(),
        _ => vec!["dashmap", "papaya", "left-right", "left-right-arc", "maskd"],
    };
    let svc = Sid::generate(SidKind::Service);
    let routes: Vec<[(RouteKey, Route); 2]> = (0..sessions).map(|i| session(i, svc)).collect();
    let n = (sessions * 2) as usize;

    if tables.contains(&"dashmap") {
        let before = rss();
        let dash = Dash(DashMap::with_capacity_and_hasher(n, Hasher::default()));
        for s in &routes {
            for (k, r) in s.clone() {
                dash.0.insert(k, r);
            }
        }
        let mem = rss().saturating_sub(before);
        run("dashmap", dash, (), sessions, &routes, secs, mem);
    }
    for (name, mode) in [
        ("papaya", papaya::ResizeMode::default()),
        ("papaya-blocking", papaya::ResizeMode::Blocking),
    ] {
        if !tables.contains(&name) {
            continue;
        }
        let before = rss();
        let pap = Papaya(
            papaya::HashMap::builder()
                .capacity(n)
                .resize_mode(mode)
                .hasher(Hasher::default())
                .build(),
        );
        {
            let m = pap.0.pin();
            for s in &routes {
                for (k, r) in s.clone() {
                    m.insert(k, r);
                }
            }
        }
        let mem = rss().saturating_sub(before);
        run(name, pap, (), sessions, &routes, secs, mem);
    }
    if tables.contains(&"maskd") {
        let before = rss();
        let t = RoutingTable::with_capacity(n);
        {
            let _batch = t.batch();
            for s in &routes {
                for (k, r) in s.clone() {
                    t.insert(k, r);
                }
            }
        }
        let mem = rss().saturating_sub(before);
        run("maskd", Maskd(t), Vec::new(), sessions, &routes, secs, mem);
    }
    if tables.contains(&"left-right") {
        left_right_table::<Route>("left-right", sessions, &routes, secs);
    }
    if tables.contains(&"left-right-arc") {
        left_right_table::<Arc<Route>>("left-right-arc", sessions, &routes, secs);
    }
}

fn left_right_table<V: Value>(
    name: &str,
    sessions: u64,
    routes: &[[(RouteKey, Route); 2]],
    secs: u64,
) {
    let before = rss();
    let (mut w, r) = left_right::new::<Inner<V>, Op<V>>();
    for s in routes {
        for (k, rt) in s.clone() {
            w.append(Op::Insert(k, V::of(rt)));
        }
    }
    w.publish();
    w.publish(); // both copies filled
    let mem = rss().saturating_sub(before);
    run(name, LeftRight(r.factory()), w, sessions, routes, secs, mem);
}
