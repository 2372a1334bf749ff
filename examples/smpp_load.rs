//! SMPP load tool: binds as two carriers and measures messages per second end to end
//! (carrier A → maskd → carrier B), with a window of outstanding submit_sm per bind. Every
//! message is durable in maskd before its submit_sm_resp. Loopback only.
//!
//! `smpp_load ADDR A PA SECONDS WINDOW BINDS` — A: sender's real number (digits), PA: its
//! proxy. Carrier A binds `BINDS` transmitters as `carrier-a`/`secret-a`; carrier B binds one
//! receiver as `carrier-b`/`secret-b` and answers every deliver_sm.
#![allow(clippy::print_stdout)] // a command-line tool: its report goes to stdout

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maskd::smpp::codec::{decode, encode};
use maskd::smpp::pdu::{status, Address, Bind, BindKind, Body, Pdu, ShortMessage};

fn bind(addr: SocketAddr, kind: BindKind, id: &str, pw: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).ok();
    let mut b = Vec::new();
    let body = Body::Bind(Bind {
        kind,
        system_id: id.into(),
        password: pw.into(),
        system_type: String::new(),
        interface_version: 0x34,
        addr_ton: 0,
        addr_npi: 0,
        address_range: String::new(),
    });
    encode(
        &Pdu {
            seq: 1,
            status: 0,
            body,
        },
        &mut b,
    );
    s.write_all(&b).expect("write bind");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("read bind_resp");
        assert!(n > 0, "closed during bind");
        buf.extend_from_slice(&chunk[..n]);
        if let Ok(Some((p, _))) = decode(&buf) {
            assert_eq!(p.status, status::ESME_ROK, "bind refused");
            return s;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: smpp_load ADDR A PA SECONDS WINDOW BINDS");
        std::process::exit(64);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR");
    assert!(addr.ip().is_loopback(), "load tools talk to loopback only");
    let (a, pa) = (args[2].clone(), args[3].clone());
    let secs: u64 = args[4].parse().expect("SECONDS");
    let window: usize = args[5].parse().expect("WINDOW");
    let binds: usize = args[6].parse().expect("BINDS");

    let received = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));

    let rx = bind(addr, BindKind::Receiver, "carrier-b", "secret-b");
    let receiver = {
        let (received, done) = (received.clone(), done.clone());
        std::thread::spawn(move || receive(rx, &received, &done))
    };
    let started = Instant::now();
    let senders: Vec<_> = (0..binds)
        .map(|_| {
            let s = bind(addr, BindKind::Transmitter, "carrier-a", "secret-a");
            let (acked, refused, stop, a, pa) = (
                acked.clone(),
                refused.clone(),
                stop.clone(),
                a.clone(),
                pa.clone(),
            );
            std::thread::spawn(move || send(s, &a, &pa, window, &acked, &refused, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
    let send_secs = started.elapsed().as_secs_f64();
    let total = acked.load(Ordering::Relaxed);
    // Wait (bounded) for the tail to arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let e2e_secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let got = received.load(Ordering::Relaxed);
    let _ = receiver.join();
    println!(
        "acked={total} refused={} delivered={got} binds={binds} window={window} ack_rate={:.0}/s end_to_end_rate={:.0}/s",
        refused.load(Ordering::Relaxed),
        total as f64 / send_secs,
        got as f64 / e2e_secs
    );
    if got < total {
        eprintln!(
            "{} acknowledged messages not delivered within 60 s",
            total - got
        );
        std::process::exit(1);
    }
}

fn send(
    mut s: TcpStream,
    a: &str,
    pa: &str,
    window: usize,
    acked: &AtomicU64,
    refused: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut outstanding = 0usize;
    let mut seq = 1u32;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let template = ShortMessage {
        source: Address {
            ton: 1,
            npi: 1,
            addr: a.into(),
        },
        dest: Address {
            ton: 1,
            npi: 1,
            addr: pa.into(),
        },
        short_message: b"load test message, GSM 7-bit".to_vec(),
        ..ShortMessage::default()
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && outstanding == 0 {
            return;
        }
        while !stopping && outstanding < window {
            seq += 1;
            encode(
                &Pdu {
                    seq,
                    status: 0,
                    body: Body::SubmitSm(template.clone()),
                },
                &mut out,
            );
            outstanding += 1;
        }
        if !out.is_empty() {
            s.write_all(&out).expect("write");
            out.clear();
        }
        let n = s.read(&mut chunk).expect("read");
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Ok(Some((p, u))) = decode(&buf[used..]) {
            used += u;
            if let Body::SubmitSmResp { .. } = p.body {
                outstanding = outstanding.saturating_sub(1);
                if p.status == status::ESME_ROK {
                    acked.fetch_add(1, Ordering::Relaxed);
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            } else if let Body::EnquireLink = p.body {
                encode(
                    &Pdu {
                        seq: p.seq,
                        status: 0,
                        body: Body::EnquireLinkResp,
                    },
                    &mut out,
                );
            }
        }
        buf.drain(..used);
    }
}

fn receive(mut s: TcpStream, received: &AtomicU64, done: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    while !done.load(Ordering::Relaxed) {
        let n = match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(_) => continue,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Ok(Some((p, u))) = decode(&buf[used..]) {
            used += u;
            let body = match p.body {
                Body::DeliverSm(_) => {
                    received.fetch_add(1, Ordering::Relaxed);
                    Body::DeliverSmResp {
                        message_id: String::new(),
                    }
                }
                Body::EnquireLink => Body::EnquireLinkResp,
                _ => continue,
            };
            encode(
                &Pdu {
                    seq: p.seq,
                    status: 0,
                    body,
                },
                &mut out,
            );
        }
        buf.drain(..used);
        if !out.is_empty() {
            let _ = s.write_all(&out);
            out.clear();
        }
    }
}
