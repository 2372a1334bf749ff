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
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sip::{answered_call, header, invite, respond, socket};
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};

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
fn carrier_b(
    smpp: SocketAddr,
    got: Arc<Mutex<HashMap<String, usize>>>,
) -> std::thread::JoinHandle<()> {
    let mut cb = Peer::bound(smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while !cb.closed && Instant::now() < deadline {
            cb.recv(Duration::from_millis(50));
            let mut g = got.lock().unwrap();
            for m in &cb.messages[seen..] {
                *g.entry(String::from_utf8_lossy(&m.short_message).to_string())
                    .or_default() += 1;
            }
            seen = cb.messages.len();
        }
    })
}

/// Carrier A: submits numbered messages from each A_i to its proxy until `stop` or the link
/// dies; records those answered ESME_ROK.
fn carrier_a(
    smpp: SocketAddr,
    round: usize,
    proxies: Vec<String>,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut ca = Peer::connect(smpp);
        if ca.bind(BindKind::Transceiver, "carrier-a", "secret-a") != status::ESME_ROK {
            return;
        }
        for n in 0..100_000 {
            if stop.load(Ordering::Relaxed) || ca.closed {
                return;
            }
            // Eight in flight at a time.
            let batch: Vec<(u32, String)> = (0..8)
                .map(|k| {
                    let i = (n * 8 + k) % PAIRS;
                    let text = format!("r{round}-n{n}-k{k}");
                    let seq = ca.send(Body::SubmitSm(sm(
                        &a_of(i)[1..],
                        proxies[i].trim_start_matches('+'),
                        text.as_bytes(),
                    )));
                    (seq, text)
                })
                .collect();
            for (seq, text) in batch {
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ca.wait_resp(seq)));
                match r {
                    Ok(p) if p.status == status::ESME_ROK => acked.lock().unwrap().push(text),
                    Ok(_) => {}
                    Err(_) => return, // killed mid-answer
                }
            }
        }
    })
}

/// Calls: INVITE → trunk answers 200 → ACK → BYE → 200, over and over until `stop`.
fn caller(
    sip: SocketAddr,
    round: usize,
    proxies: Vec<String>,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (a, port) = socket();
        a.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 8192];
        for n in 0..100_000 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let i = n % PAIRS;
            let id = format!("r{round}c{n}");
            a.send_to(invite(port, &a_of(i), &proxies[i], &id).as_bytes(), sip)
                .unwrap();
            let mut ok = None;
            for _ in 0..10 {
                let Ok((len, _)) = a.recv_from(&mut buf) else {
                    break;
                };
                let t = String::from_utf8_lossy(&buf[..len]).to_string();
                if t.starts_with("SIP/2.0 200") && header(&t, "Call-ID") == id {
                    ok = Some(t);
                    break;
                }
            }
            let Some(ok) = ok else { continue };
            let to = header(&ok, "To").to_string();
            let (proxy, caller) = (&proxies[i], a_of(i));
            for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
                let m = format!(
                    "{method} sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}{id}\r\n\
                     From: <sip:{caller}@127.0.0.1>;tag=t{id}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                );
                a.send_to(m.as_bytes(), sip).unwrap();
            }
            for _ in 0..10 {
                let Ok((len, _)) = a.recv_from(&mut buf) else {
                    break;
                };
                let t = String::from_utf8_lossy(&buf[..len]);
                if t.starts_with("SIP/2.0 200") && header(&t, "CSeq").ends_with("BYE") {
                    done.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    })
}

/// The trunk: answers INVITE and BYE with 200 until `stop`.
fn trunk_answering(trunk: UdpSocket, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<UdpSocket> {
    std::thread::spawn(move || {
        trunk
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 8192];
        for _ in 0..1_000_000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok((len, from)) = trunk.recv_from(&mut buf) else {
                continue;
            };
            let t = String::from_utf8_lossy(&buf[..len]).to_string();
            if t.starts_with("INVITE ") || t.starts_with("BYE ") {
                respond(&trunk, &t, from, 200, "OK");
            }
        }
        trunk
    })
}

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

    let got: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = carrier_b(d.smpp, got.clone());
        let sender = carrier_a(d.smpp, round, proxies.clone(), acked.clone(), stop.clone());
        let trunk_t = trunk_answering(trunk, stop.clone());
        let call_t = caller(d.sip, round, proxies.clone(), calls.clone(), stop.clone());
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
    let receiver = carrier_b(d.smpp, got.clone());
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
