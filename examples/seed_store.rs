//! Fills a maskd store with N open sessions (two participants each) for the start-up
//! benchmark (`scripts/bench-startup`): through the engine, as the API would, but without HTTP
//! and without waiting for each commit (one wait per 10,000 sessions), so a million sessions
//! take a minute, not an hour.
//!
//! Usage: cargo run --release --example seed_store -- STORE_PATH SESSIONS

use std::sync::Arc;

use maskd::core::engine::{Engine, EngineOptions, NewParticipant, NewSession};
use maskd::core::E164;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: seed_store STORE_PATH SESSIONS");
        std::process::exit(64);
    };
    let store = Arc::new(
        maskd::store::SqliteStore::open(std::path::Path::new(path), Box::new(|_| {}))
            .expect("open the store"),
    );
    let now_ms = maskd::clock::now_ms();
    let engine = Engine::open(store, EngineOptions::default(), now_ms).expect("load the store");
    let now = now_ms / 1000;
    // The pool: 100 numbers; each participant gets one it does not already use.
    let numbers: Vec<E164> = (0..100)
        .map(|i| E164::parse(&format!("+1415555{:04}", i)).expect("a number"))
        .collect();
    engine
        .ensure_service("startup", 0, 0, false, &numbers, now)
        .expect("the service")
        .wait_blocking()
        .expect("durable");
    let svc = engine.resolve_service("startup").expect("the service");
    let started = std::time::Instant::now();
    let mut last = None;
    for i in 0..n {
        let p = |k: u64| NewParticipant {
            identifier: format!("+1{:010}", 2_000_000_000 + i * 2 + k),
            ..NewParticipant::default()
        };
        let (_, _, durable) = engine
            .create_session(
                svc,
                NewSession {
                    participants: vec![p(0), p(1)],
                    ..NewSession::default()
                },
                now,
            )
            .expect("a session");
        last = Some(durable);
        if i % 10_000 == 9_999 {
            if let Some(d) = last.take() {
                d.wait_blocking().expect("durable");
            }
        }
    }
    if let Some(d) = last {
        d.wait_blocking().expect("durable");
    }
    eprintln!(
        "seeded {n} sessions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
