//! Crash safety under mixed traffic: SMS (SMPP, carrier A → maskd → carrier B) and calls
//! (SIP over UDP, caller → maskd → trunk) run together while the daemon is killed with
//! SIGKILL at random points, several times. After each restart every session and participant
//! is intact and a new call goes through at once; at the end every message maskd
//! acknowledged has reached carrier B, and a message arrives twice only if it was in flight
//! towards B when a kill hit (the test reports how many did).
//!
//! The kill points come from a seed printed by the test (`MASKD_CRASH_SEED` replays one).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::load::{caller, carrier_a, carrier_b, trunk_answering};
use common::sip::{answered_call, socket};
use common::*;

const PAIRS: usize = 4;
const KILLS: usize = 3;

fn a_of(i: usize) -> String {
    format!("+1415555100{i}")
}
fn b_of(i: usize) -> String {
    format!("+1415555200{i}")
}

fn services(trunk: u16) -> String {
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

/// xorshift64: the kill points, reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// (session sid → [(identifier, proxy_identifier)]) as the API shows it.
fn sessions(d: &Daemon) -> HashMap<String, Vec<(String, String)>> {
    let list = d.get("/v1/Services/m/Sessions?PageSize=100").json();
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let sid = s["sid"].as_str().unwrap().to_string();
            let mut parts = participant_pairs(d, "m", &sid);
            parts.sort();
            (sid, parts)
        })
        .collect()
}

/// The proxy number A_i dials to reach B_i.
fn proxy_for_a(all: &HashMap<String, Vec<(String, String)>>, i: usize) -> String {
    let a = a_of(i);
    all.values()
        .find_map(|p| {
            p.iter()
                .find(|(id, _)| *id == a)
                .map(|(_, proxy)| proxy.clone())
        })
        .unwrap()
}

/// Carrier B: answers every deliver_sm and counts each text, until its link closes.
#[test]
fn sigkill_at_random_points_under_sms_and_call_load_loses_nothing_acknowledged() {
    let seed = std::env::var("MASKD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("MASKD_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let (mut trunk, trunk_port) = socket();
    let cfg = services(trunk_port);
    let mut d = Daemon::start_with(dir.path(), &cfg);
    for i in 0..PAIRS {
        let p1 = format!(r#"{{"Identifier":"{}"}}"#, a_of(i));
        let p2 = format!(r#"{{"Identifier":"{}"}}"#, b_of(i));
        let r = d.post(
            "/v1/Services/m/Sessions",
            &[("Participants", &p1), ("Participants", &p2)],
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let before = sessions(&d);
    assert_eq!(before.len(), PAIRS);
    let proxies: Vec<String> = (0..PAIRS).map(|i| proxy_for_a(&before, i)).collect();
    let pairs: Vec<(String, String)> = (0..PAIRS).map(|i| (a_of(i), proxies[i].clone())).collect();

    let got: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = carrier_b(d.smpp, got.clone(), stop.clone());
        let sender = carrier_a(
            d.smpp,
            format!("r{round}"),
            pairs.clone(),
            acked.clone(),
            stop.clone(),
        );
        let trunk_t = trunk_answering(trunk, stop.clone());
        let call_t = caller(
            d.sip,
            format!("r{round}"),
            pairs.clone(),
            calls.clone(),
            stop.clone(),
        );
        // A random point 200–1,200 ms into the load.
        let at = Duration::from_millis(200 + rng.next() % 1_000);
        std::thread::sleep(at);
        let acked_before_kill = acked.lock().unwrap().len();
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        sender.join().unwrap();
        receiver.join().unwrap();
        call_t.join().unwrap();
        trunk = trunk_t.join().unwrap();
        eprintln!(
            "round {round}: killed after {at:?}, {acked_before_kill} messages acknowledged so far"
        );

        d = Daemon::restart(dir.path(), &cfg);
        // Sessions and participants are intact, and a new call goes through at once.
        assert_eq!(sessions(&d), before, "sessions changed across kill {round}");
        trunk
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (a, _) = socket();
        let leg_b = answered_call(
            d.sip,
            &a,
            &trunk,
            &a_of(0),
            &proxies[0],
            &format!("after{round}"),
        );
        assert!(
            leg_b.starts_with(&format!("INVITE sip:{}@", b_of(0))),
            "{leg_b}"
        );
    }
    // Carrier B binds once more: every acknowledged message arrives (from the queue).
    let receiver = carrier_b(d.smpp, got.clone(), Arc::new(AtomicBool::new(false)));
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let g = got.lock().unwrap();
        if acked.iter().all(|t| g.contains_key(t)) {
            break;
        }
        drop(g);
        std::thread::sleep(Duration::from_millis(50));
    }
    let g = got.lock().unwrap().clone();
    let lost: Vec<&String> = acked.iter().filter(|t| !g.contains_key(*t)).collect();
    let duplicated: usize = g.values().map(|n| n - 1).sum();
    eprintln!(
        "{} messages acknowledged, {} delivered, {} lost, {} extra deliveries (in flight at a kill), {} calls completed",
        acked.len(),
        g.len(),
        lost.len(),
        duplicated,
        calls.load(Ordering::Relaxed)
    );
    assert!(
        lost.is_empty(),
        "acknowledged and never delivered: {lost:?}"
    );
    // A duplicate is a message handed to B whose answer was not yet durable when the kill hit:
    // at most what can be in flight towards B at once (its window) per kill.
    assert!(duplicated <= KILLS * 64, "{duplicated} duplicates");
    assert!(
        calls.load(Ordering::Relaxed) > 0,
        "calls ran during the load"
    );
    drop(d);
    let _ = receiver.join();
}
