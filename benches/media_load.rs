//! Media relay load (not a timed test; `scripts/bench-media` runs it): CALLS concurrent G.711
//! calls, 20 ms packets both ways (50 packets/s per direction per call: 1,000 calls are
//! 100,000 packets/s), through a relay under test, either maskd (calls set up over SIP: this
//! program is the caller and the trunk) or rtpengine (set up over its ng control protocol,
//! bencode over UDP). The same streams go through either. It reports what crossed, the loss,
//! the delay each packet spent between this program's send and receive (p50/p99/max), and
//! the relay process's CPU per relayed packet over the measurement window (/proc/PID/stat).
//!
//! Environment: RELAY=maskd|rtpengine, PID (the relay's), CALLS (1000), SECS (10), WARMUP (2);
//! for maskd SIP (its listen address), TRUNK (the port maskd's sip.trunk names), PROXY (the
//! caller's proxy number) and CALLER; for rtpengine NG (its ng address).
//!
//! Every call's side A sends from one of a few sockets and side B from another few (a relay
//! latches per call and side, so calls may share a source), which keeps this program's own
//! cost low: sendmmsg/recvmmsg in batches, two threads.

#![allow(clippy::print_stdout, clippy::needless_range_loop)] // a load tool: its report is its output
use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

/// Media sockets per side.
const SOCKS: usize = 4;
const PAYLOAD: usize = 160;
const BATCH: usize = 32;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn sdp(user: &str, port: u16) -> String {
    format!(
        "v=0\r\no={user} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    )
}

fn media_port(text: &str) -> u16 {
    text.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in:\n{text}"))
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l.as_bytes()[name.len()] == b':'
        })
        .map(|l| l[name.len() + 1..].trim())
        .unwrap_or("")
}

fn recv_text(s: &UdpSocket, starts: &str) -> (String, SocketAddr) {
    let mut buf = [0u8; 8192];
    for _ in 0..50 {
        let (n, from) = s.recv_from(&mut buf).expect("a SIP message in time");
        let t = String::from_utf8_lossy(&buf[..n]).to_string();
        if t.starts_with(starts) {
            return (t, from);
        }
    }
    panic!("no {starts}");
}

/// Sets up `calls` calls through maskd over SIP; returns each call's (relay port for A,
/// relay port for B).
fn setup_maskd(calls: usize, a_ports: &[u16], b_ports: &[u16]) -> Vec<(SocketAddr, SocketAddr)> {
    let sip: SocketAddr = env("SIP", "127.0.0.1:5060").parse().unwrap();
    let proxy = env("PROXY", "+14155550101");
    let caller = env("CALLER", "+14155551001");
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let trunk = UdpSocket::bind(format!("127.0.0.1:{}", env("TRUNK", "5070"))).unwrap();
    for s in [&a, &trunk] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let ap = a.local_addr().unwrap().port();
    let mut out = Vec::new();
    for i in 0..calls {
        let body = sdp(&caller, a_ports[i % SOCKS]);
        let inv = format!(
            "INVITE sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{ap};branch=z9hG4bKml{i}\r\n\
             From: <sip:{caller}@127.0.0.1>;tag=a{i}\r\nTo: <sip:{proxy}@127.0.0.1>\r\nCall-ID: ml{i}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{caller}@127.0.0.1:{ap}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        a.send_to(inv.as_bytes(), sip).unwrap();
        let (inv_b, from) = recv_text(&trunk, "INVITE ");
        let relay_b = media_port(&inv_b);
        let ans = sdp("callee", b_ports[i % SOCKS]);
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=b{i}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             Contact: <sip:callee@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{ans}",
            header(&inv_b, "Via"),
            header(&inv_b, "From"),
            header(&inv_b, "To"),
            header(&inv_b, "Call-ID"),
            header(&inv_b, "CSeq"),
            trunk.local_addr().unwrap(),
            ans.len()
        );
        trunk.send_to(ok.as_bytes(), from).unwrap();
        let (ok_a, _) = recv_text(&a, "SIP/2.0 200");
        let relay_a = media_port(&ok_a);
        let ack = format!(
            "ACK sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{ap};branch=z9hG4bKmla{i}\r\n\
             From: <sip:{caller}@127.0.0.1>;tag=a{i}\r\nTo: {}\r\nCall-ID: ml{i}\r\nCSeq: 1 ACK\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            header(&ok_a, "To")
        );
        a.send_to(ack.as_bytes(), sip).unwrap();
        out.push((
            SocketAddr::from(([127, 0, 0, 1], relay_a)),
            SocketAddr::from(([127, 0, 0, 1], relay_b)),
        ));
    }
    // Keep the SIP sockets open (maskd's ACKs and retransmissions land there) until exit.
    std::mem::forget(a);
    std::mem::forget(trunk);
    out
}

/// Bencode, as much as rtpengine's ng protocol needs.
fn bencode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    let mut sorted = pairs.to_vec();
    sorted.sort();
    for (k, v) in sorted {
        out.extend_from_slice(format!("{}:{k}{}:", k.len(), v.len()).as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.push(b'e');
    out
}

/// The string value of `key` in a flat bencoded dictionary.
fn bdecode_str(data: &[u8], key: &str) -> Option<String> {
    let needle = format!("{}:{key}", key.len());
    let at = data
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let rest = &data[at..];
    let colon = rest.iter().position(|&b| b == b':')?;
    let n: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    Some(String::from_utf8_lossy(rest.get(colon + 1..colon + 1 + n)?).to_string())
}

fn ng(s: &UdpSocket, ng: SocketAddr, cookie: &str, pairs: &[(&str, &str)]) -> String {
    let mut msg = format!("{cookie} ").into_bytes();
    msg.extend_from_slice(&bencode(pairs));
    s.send_to(&msg, ng).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = s.recv_from(&mut buf).expect("rtpengine answers");
    let body = &buf[..n];
    assert_eq!(
        bdecode_str(body, "result").as_deref(),
        Some("ok"),
        "{}",
        String::from_utf8_lossy(body)
    );
    bdecode_str(body, "sdp").expect("an SDP back")
}

/// Sets up `calls` calls through rtpengine over ng (offer, then answer).
fn setup_rtpengine(
    calls: usize,
    a_ports: &[u16],
    b_ports: &[u16],
) -> Vec<(SocketAddr, SocketAddr)> {
    let addr: SocketAddr = env("NG", "127.0.0.1:22222").parse().unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    for i in 0..calls {
        let call = format!("ml{i}");
        let offer = ng(
            &s,
            addr,
            &format!("o{i}"),
            &[
                ("command", "offer"),
                ("call-id", &call),
                ("from-tag", "a"),
                ("sdp", &sdp("caller", a_ports[i % SOCKS])),
            ],
        );
        let answer = ng(
            &s,
            addr,
            &format!("a{i}"),
            &[
                ("command", "answer"),
                ("call-id", &call),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &sdp("callee", b_ports[i % SOCKS])),
            ],
        );
        out.push((
            SocketAddr::from(([127, 0, 0, 1], media_port(&answer))),
            SocketAddr::from(([127, 0, 0, 1], media_port(&offer))),
        ));
    }
    out
}

fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted from 1 with pid and comm: 12 and 13 here.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn micros(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}

fn main() {
    let relay = env("RELAY", "maskd");
    let calls: usize = env("CALLS", "1000").parse().unwrap();
    let secs: u64 = env("SECS", "10").parse().unwrap();
    let warmup: u64 = env("WARMUP", "2").parse().unwrap();
    let pid = env("PID", "");
    let socks = |_: ()| -> Vec<UdpSocket> {
        (0..SOCKS)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect()
    };
    let (a_socks, b_socks) = (socks(()), socks(()));
    let ports = |v: &[UdpSocket]| -> Vec<u16> {
        v.iter().map(|s| s.local_addr().unwrap().port()).collect()
    };
    let (a_ports, b_ports) = (ports(&a_socks), ports(&b_socks));
    let set_up = Instant::now();
    let relays = match relay.as_str() {
        "maskd" => setup_maskd(calls, &a_ports, &b_ports),
        "rtpengine" => setup_rtpengine(calls, &a_ports, &b_ports),
        other => panic!("RELAY={other}: maskd or rtpengine"),
    };
    eprintln!("{calls} calls set up in {:?}", set_up.elapsed());

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let sent = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    // Receiver: every socket of both sides, drained with recvmmsg.
    let rx_socks: Vec<(usize, UdpSocket)> = a_socks
        .iter()
        .map(|s| (1usize, s.try_clone().unwrap()))
        .chain(b_socks.iter().map(|s| (0usize, s.try_clone().unwrap())))
        .collect();
    let (stop_r, meas_r) = (stop.clone(), measuring.clone());
    let receiver = std::thread::spawn(move || {
        // Packets from side `dir` (0: A to B, 1: B to A) as received, and their delays (µs).
        let mut got = [0u64; 2];
        let mut delays: Vec<u32> = Vec::with_capacity(2_000_000);
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut bufs = vec![[0u8; 256]; BATCH];
        let mut poll = mio::Poll::new().unwrap();
        let mut mio_socks: Vec<(usize, mio::net::UdpSocket)> = rx_socks
            .into_iter()
            .map(|(d, s)| (d, mio::net::UdpSocket::from_std(s)))
            .collect();
        for (i, (_, s)) in mio_socks.iter_mut().enumerate() {
            poll.registry()
                .register(s, mio::Token(i), mio::Interest::READABLE)
                .unwrap();
        }
        let mut events = mio::Events::with_capacity(64);
        while !stop_r.load(Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            for ev in events.iter() {
                let (_, s) = &mio_socks[ev.token().0];
                loop {
                    let mut iovs: Vec<[IoSliceMut; 1]> =
                        bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                    let lens: Vec<usize> = match recvmmsg(
                        s.as_raw_fd(),
                        &mut headers,
                        iovs.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) {
                        Ok(r) => r.map(|m| m.bytes).collect(),
                        Err(_) => break,
                    };
                    let now = micros(t0);
                    let counting = meas_r.load(Ordering::Relaxed);
                    for (i, len) in lens.iter().enumerate() {
                        let b = &bufs[i];
                        if *len < 20 {
                            continue;
                        }
                        let dir = (b[11] & 1) as usize;
                        let at = u64::from_be_bytes(b[12..20].try_into().unwrap());
                        if counting {
                            got[dir] += 1;
                            delays.push(now.saturating_sub(at).min(u32::MAX as u64) as u32);
                        }
                    }
                    if lens.len() < BATCH {
                        break;
                    }
                }
            }
        }
        (got, delays)
    });

    // Sender: every 20 ms each call sends one packet each way, spread over 1-ms slots.
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut seq: u16 = 0;
    let total = warmup + secs;
    let mut measured_cpu = 0u64;
    let mut counted_sent = [0u64; 2];
    let mut tick = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(total) {
        if tick == warmup * 50 {
            measured_cpu = cpu_ticks(&pid);
            measuring.store(true, Ordering::Relaxed);
            counted_sent = [
                sent[0].load(Ordering::Relaxed),
                sent[1].load(Ordering::Relaxed),
            ];
        }
        for slot in 0..20u64 {
            let due = start + Duration::from_micros(tick * 20_000 + slot * 1_000);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (lo, hi) = (
                (calls * slot as usize) / 20,
                (calls * (slot as usize + 1)) / 20,
            );
            for dir in 0..2usize {
                let socks = if dir == 0 { &a_socks } else { &b_socks };
                for k in 0..SOCKS {
                    let targets: Vec<usize> = (lo..hi).filter(|c| c % SOCKS == k).collect();
                    for chunk in targets.chunks(BATCH) {
                        let now = micros(t0);
                        let pkts: Vec<Vec<u8>> = chunk
                            .iter()
                            .map(|&c| {
                                let mut p = vec![0x80, 0];
                                p.extend_from_slice(&seq.to_be_bytes());
                                p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
                                p.extend_from_slice(&((c as u32) << 1 | dir as u32).to_be_bytes());
                                p.extend_from_slice(&now.to_be_bytes());
                                p.resize(12 + PAYLOAD, 0xff);
                                p
                            })
                            .collect();
                        let addrs: Vec<Option<SockaddrStorage>> = chunk
                            .iter()
                            .map(|&c| {
                                let to = if dir == 0 { relays[c].0 } else { relays[c].1 };
                                Some(SockaddrStorage::from(to))
                            })
                            .collect();
                        let iov: Vec<[IoSlice; 1]> =
                            pkts.iter().map(|p| [IoSlice::new(p)]).collect();
                        let none: [ControlMessage; 0] = [];
                        if let Ok(r) = sendmmsg(
                            socks[k].as_raw_fd(),
                            &mut headers,
                            iov.iter(),
                            &addrs,
                            none,
                            MsgFlags::empty(),
                        ) {
                            sent[dir].fetch_add(r.count() as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        seq = seq.wrapping_add(1);
        tick += 1;
    }
    measuring.store(false, Ordering::Relaxed);
    let cpu = cpu_ticks(&pid).saturating_sub(measured_cpu);
    let sent_now = [
        sent[0].load(Ordering::Relaxed),
        sent[1].load(Ordering::Relaxed),
    ];
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (got, mut delays) = receiver.join().unwrap();
    let counted = [sent_now[0] - counted_sent[0], sent_now[1] - counted_sent[1]];
    delays.sort_unstable();
    let q = |f: f64| {
        delays
            .get(((delays.len() as f64 * f) as usize).min(delays.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let sent_total = counted[0] + counted[1];
    let got_total = got[0] + got[1];
    let loss = 100.0 * (sent_total.saturating_sub(got_total)) as f64 / sent_total.max(1) as f64;
    let hz = 100.0; // USER_HZ
    let cpu_us = cpu as f64 / hz * 1e6;
    let mut by_dir = HashMap::new();
    by_dir.insert("a_to_b", (counted[0], got[0]));
    by_dir.insert("b_to_a", (counted[1], got[1]));
    println!(
        "relay={relay} calls={calls} secs={secs} pps={:.0} sent={sent_total} received={got_total} \
         loss_pct={loss:.3} delay_us_p50={} p99={} max={} relay_cpu_s={:.2} cpu_us_per_packet={:.2} \
         a_to_b={:?} b_to_a={:?}",
        got_total as f64 / secs as f64,
        q(0.50),
        q(0.99),
        delays.last().copied().unwrap_or(0),
        cpu_us / 1e6,
        cpu_us / got_total.max(1) as f64,
        by_dir["a_to_b"],
        by_dir["b_to_a"],
    );
}
