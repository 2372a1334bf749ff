//! Crash safety: kill -9 the daemon while sessions are being created; after restart every
//! session that was answered 201 is there, with its participants, and routable.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use maskd::core::engine::{Engine, EngineOptions};
use maskd::core::E164;

const SERVICES: &str = r#"services:
  - unique_name: "crash"
    default_ttl: 0
    numbers: ["+14155550101", "+14155550102", "+14155550103", "+14155550104"]
"#;

/// What the client was told: session path → [(identifier, proxy_identifier)].
type Acked = Arc<Mutex<HashMap<String, Vec<(String, String)>>>>;

fn creator(
    api: std::net::SocketAddr,
    worker: usize,
    acked: Acked,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    for i in 0..10_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let a = format!("+1415{:07}", worker * 100_000 + i * 2);
        let b = format!("+1415{:07}", worker * 100_000 + i * 2 + 1);
        let p1 = format!(r#"{{"Identifier":"{a}"}}"#);
        let p2 = format!(r#"{{"Identifier":"{b}"}}"#);
        let body = encode(&[("Participants", &p1), ("Participants", &p2)]);
        let result = std::panic::catch_unwind(|| {
            http(
                api,
                "POST",
                "/v1/Services/crash/Sessions",
                Some((ACCOUNT, TOKEN)),
                Some(&body),
            )
        });
        let Ok(r) = result else { return }; // the daemon died mid-request
        if r.status != 201 {
            return;
        }
        let sid = r.json()["sid"].as_str().unwrap().to_string();
        // Participants of an acknowledged session, read back while the daemon lives.
        let pr = std::panic::catch_unwind(|| {
            http(
                api,
                "GET",
                &format!("/v1/Services/crash/Sessions/{sid}/Participants"),
                Some((ACCOUNT, TOKEN)),
                None,
            )
        });
        let parts = match pr {
            Ok(p) if p.status == 200 => p.json()["participants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["identifier"].as_str().unwrap().to_string(),
                        p["proxy_identifier"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        acked.lock().unwrap().insert(sid, parts);
        count.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn kill_9_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_with(dir.path(), SERVICES);
    let acked: Acked = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, count, stop, api) = (acked.clone(), count.clone(), stop.clone(), d.api);
            std::thread::spawn(move || creator(api, w, acked, count, stop))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Relaxed) < 200 {
        assert!(
            Instant::now() < deadline,
            "daemon too slow to create 200 sessions"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    d.kill9(); // mid-traffic: requests are in flight
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    let d2 = Daemon::restart(dir.path(), SERVICES);
    for (sid, parts) in &acked {
        let r = d2.get(&format!("/v1/Services/crash/Sessions/{sid}"));
        assert_eq!(r.status, 200, "acknowledged session {sid} lost: {}", r.body);
        assert_eq!(r.json()["status"], "open");
        let got = participant_pairs(&d2, "crash", sid);
        if !parts.is_empty() {
            assert_eq!(
                &got, parts,
                "participants of {sid} changed across the crash"
            );
        }
        assert_eq!(got.len(), 2);
    }
    let metrics = d2.metrics_text();
    let routes: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("maskd_routing_table_entries "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        routes >= acked.len() * 2,
        "{routes} routes for {} sessions",
        acked.len()
    );
    drop(d2);

    // Routable: the engine rebuilt from the store resolves every acknowledged pair to its
    // counterpart's real and proxy numbers.
    let store = common::open_store(dir.path());
    let engine = Engine::open(store, EngineOptions::default(), maskd::clock::now_ms()).unwrap();
    engine.check_invariants().unwrap();
    for parts in acked.values().filter(|p| p.len() == 2) {
        let (a, pa) = (
            E164::parse(&parts[0].0).unwrap(),
            E164::parse(&parts[0].1).unwrap(),
        );
        let (b, pb) = (
            E164::parse(&parts[1].0).unwrap(),
            E164::parse(&parts[1].1).unwrap(),
        );
        let r = engine.routes().resolve(pa, a).expect("route for A");
        assert_eq!((r.counterpart_real, r.counterpart_proxy), (b, pb));
        let r = engine.routes().resolve(pb, b).expect("route for B");
        assert_eq!((r.counterpart_real, r.counterpart_proxy), (a, pa));
    }
}
