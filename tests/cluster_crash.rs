//! Two nodes on one PostgreSQL under SMS, call and API load on both at once; node 1 is killed
//! (SIGKILL) in the middle of it (SPEC §2.6, issue 14 item 7). Nothing either node
//! acknowledged is lost: every message answered `ESME_ROK` reaches carrier B (node 1's
//! through node 2, which claims them once node 1 has been silent for `store.node_timeout`;
//! carrier B is bound to node 2 only),
//! and every session answered 201 is there, read through node 2's API. Node 2 carries on:
//! its calls keep completing and its API keeps creating sessions after the kill.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::load::{caller, carrier_a, carrier_b, trunk_answering};
use common::sip::socket;
use common::*;

const PAIRS: usize = 4;

fn config(trunk: u16) -> String {
    format!(
        r#"{}sip:
  listen: "127.0.0.1:0"
  trunk: "127.0.0.1:{trunk}"
services:
  - unique_name: "m"
    default_ttl: 0
    numbers: ["+14155550101", "+14155550102", "+14155550103", "+14155550104"]
"#,
        two_carriers("  response_timeout: \"2s\"\n")
    )
}

/// An app creating one-participant sessions on `api` (identifiers `+1415555{series}NNN`)
/// until `stop` or the node stops answering; the SIDs answered 201, and when each was.
fn app(
    api: SocketAddr,
    series: u32,
    created: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for k in 0..1000 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let p = format!(r#"{{"Identifier":"+1415555{series}{k:03}"}}"#);
            let body = encode(&[("Participants", &p)]);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                http(
                    api,
                    "POST",
                    "/v1/Services/m/Sessions",
                    Some((ACCOUNT, TOKEN)),
                    Some(&body),
                )
            }));
            match r {
                Ok(r) if r.status == 201 => {
                    let sid = r.json()["sid"].as_str().unwrap().to_string();
                    created.lock().unwrap().push((sid, Instant::now()));
                }
                // Killed mid-answer, or gone.
                Ok(r) if r.status == 0 => return,
                Ok(r) => panic!("{}: {}", r.status, r.body),
                Err(_) => return,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn a_node_killed_under_sms_call_and_api_load_loses_nothing_and_the_other_carries_on() {
    let url = pg::fresh_database("crash");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (trunk, trunk_port) = socket();
    let cfg = config(trunk_port);
    let mut n1 = pg::node(d1.path(), &url, 1, &cfg);
    let n2 = pg::node(d2.path(), &url, 2, &cfg);
    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        let (a, b) = (format!("+1415555100{i}"), format!("+1415555200{i}"));
        let (pa, _) = two_party_session(&n1, "m", &format!("s{i}"), &a, &b);
        pairs.push((a, pa));
    }
    // Node 2 routes them (followed).
    let t = Instant::now();
    while (0..PAIRS).any(|i| n2.get(&format!("/v1/Services/m/Sessions/s{i}")).status != 200) {
        assert!(t.elapsed() < Duration::from_secs(5), "node 2 follows");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Load on both nodes: carrier A submits to each, calls through each, an app creating
    // sessions on each. Carrier B is bound to node 2 only: node 1 holds what it accepts for
    // 2 s before letting go of it for node 2, and is killed before that.
    let stop = Arc::new(AtomicBool::new(false));
    let got: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let created: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let (calls1, calls2) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut threads = vec![
        carrier_b(n2.smpp, got.clone(), stop.clone()),
        carrier_a(
            n1.smpp,
            "n1".into(),
            pairs.clone(),
            acked.clone(),
            stop.clone(),
        ),
        carrier_a(
            n2.smpp,
            "n2".into(),
            pairs.clone(),
            acked.clone(),
            stop.clone(),
        ),
        caller(
            n1.sip,
            "n1".into(),
            pairs.clone(),
            calls1.clone(),
            stop.clone(),
        ),
        caller(
            n2.sip,
            "n2".into(),
            pairs.clone(),
            calls2.clone(),
            stop.clone(),
        ),
        app(n1.api, 3, created.clone(), stop.clone()),
        app(n2.api, 4, created.clone(), stop.clone()),
    ];
    let trunk_t = trunk_answering(trunk, stop.clone());
    let t = Instant::now();
    while calls1.load(Ordering::Relaxed) < 3 || calls2.load(Ordering::Relaxed) < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "calls through both nodes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let acked_on_1 = || {
        acked
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.starts_with("n1-"))
            .count()
    };
    let t = Instant::now();
    while acked_on_1() < 50 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "messages through node 1"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    n1.kill9();
    let killed = Instant::now();
    let calls2_at_kill = calls2.load(Ordering::Relaxed);
    // Node 2 carries on: its calls complete and its API creates sessions.
    let t = Instant::now();
    while calls2.load(Ordering::Relaxed) < calls2_at_kill + 5
        || !created.lock().unwrap().iter().any(|(_, at)| *at > killed)
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "node 2 carries on: {} calls after the kill",
            calls2.load(Ordering::Relaxed) - calls2_at_kill
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads.drain(..) {
        let _ = t.join();
    }
    let _trunk = trunk_t.join().unwrap();

    // Every acknowledged message reaches carrier B, node 1's through node 2 (after
    // `store.node_timeout`, 3 s): a new bind of B on node 2 receives what is still queued.
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = carrier_b(n2.smpp, got.clone(), stop.clone());
    let acked = acked.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = |g: &HashMap<String, usize>| -> Vec<String> {
        acked
            .iter()
            .filter(|t| !g.contains_key(*t))
            .cloned()
            .collect()
    };
    while Instant::now() < deadline && !missing(&got.lock().unwrap()).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let g = got.lock().unwrap().clone();
    let lost = missing(&g);
    let duplicated: usize = g.values().map(|n| n - 1).sum();
    let created = created.lock().unwrap().clone();
    eprintln!(
        "{} messages acknowledged ({} on node 1), {} delivered, {} lost, {} extra deliveries; \
         calls completed: node 1 {}, node 2 {} ({} after the kill); {} sessions created",
        acked.len(),
        acked.iter().filter(|t| t.starts_with("n1-")).count(),
        g.len(),
        lost.len(),
        duplicated,
        calls1.load(Ordering::Relaxed),
        calls2.load(Ordering::Relaxed),
        calls2.load(Ordering::Relaxed) - calls2_at_kill,
        created.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged and never delivered: {lost:?}"
    );
    // A duplicate is a message handed to B whose answer was not yet durable when the kill
    // hit: at most B's window on node 1.
    assert!(duplicated <= 64, "{duplicated} duplicates");
    // Every session answered 201, on either node, is there.
    for (sid, _) in &created {
        let r = n2.get(&format!("/v1/Services/m/Sessions/{sid}"));
        assert_eq!(
            r.status, 200,
            "session {sid} answered 201 is gone: {}",
            r.body
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
}
