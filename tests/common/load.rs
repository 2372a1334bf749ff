//! Load for crash tests: carrier A submitting numbered messages, carrier B counting what it
//! receives, callers placing short calls, a trunk answering them. Each runs on its own thread
//! until told to stop (or its link dies); every loop is bounded.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::sip::{header, invite, respond, socket};
use super::smpp::{sm, Peer};
use maskd::smpp::pdu::{status, BindKind, Body};

/// Carrier B: binds to `smpp` and counts each message text it receives, until `stop` or its
/// link dies (or a minute passes).
pub fn carrier_b(
    smpp: SocketAddr,
    got: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let mut cb = Peer::bound(smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while !cb.closed && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
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

/// Carrier A: submits numbered messages (texts starting with `tag`) from each pair's sender
/// to its proxy number (`pairs`: (sender, proxy), E.164) until `stop` or the link dies;
/// records those answered ESME_ROK.
pub fn carrier_a(
    smpp: SocketAddr,
    tag: String,
    pairs: Vec<(String, String)>,
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
                    let (from, proxy) = &pairs[(n * 8 + k) % pairs.len()];
                    let text = format!("{tag}-n{n}-k{k}");
                    let seq = ca.send(Body::SubmitSm(sm(
                        from.trim_start_matches('+'),
                        proxy.trim_start_matches('+'),
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

/// Calls from each pair's caller to its proxy number (`pairs`: (caller, proxy), E.164;
/// Call-IDs starting with `tag`): INVITE → trunk answers 200 → ACK → BYE → 200, over and
/// over until `stop`; counts the calls completed in `done`.
pub fn caller(
    sip: SocketAddr,
    tag: String,
    pairs: Vec<(String, String)>,
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
            let (caller, proxy) = &pairs[n % pairs.len()];
            let id = format!("{tag}c{n}");
            a.send_to(invite(port, caller, proxy, &id).as_bytes(), sip)
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
pub fn trunk_answering(
    trunk: UdpSocket,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<UdpSocket> {
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
