//! The TCP listeners' bounds (issue 18). API: 5,000 idle half-sent requests (slowloris) do
//! not keep a new request from being served within 100 ms, and are closed once the header
//! timeout passes; an idle keep-alive connection is closed after the idle timeout and not
//! before; a source address at its cap has its next connection closed at once while another
//! address is served. SMPP and SIP over TCP: a connection flood from one address leaves SIP
//! over UDP and another carrier's bind served. Refusals are counted and logged as a summary
//! line per interval, not a line each.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn bounded(header: &str, idle: &str, per_address: u32) -> impl Fn(&str) -> String {
    let keys = format!(
        "  max_connections: 20000\n  max_connections_per_address: {per_address}\n  \
         header_timeout: \"{header}\"\n  idle_timeout: \"{idle}\"\n"
    );
    move |text: &str| text.replacen("api:\n", &format!("api:\n{keys}"), 1)
}

fn metric(d: &Daemon, line_start: &str) -> f64 {
    d.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Whether the server has closed `s` (read gives end of file or a reset), waiting at most
/// `within`.
fn closed(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (e.g. 408) before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn timed_get(addr: SocketAddr) -> (u16, Duration) {
    let t = Instant::now();
    let r = http(addr, "GET", "/v1/Services", Some((ACCOUNT, TOKEN)), None);
    (r.status, t.elapsed())
}

#[test]
fn five_thousand_half_sent_requests_neither_starve_others_nor_stay() {
    let dir = tempfile::tempdir().unwrap();
    // Opening 5,000 takes seconds here (the accept queue holds 1,024; the rest retry their
    // SYN): the header timeout leaves room for that.
    let d = Daemon::start_edited(dir.path(), "", bounded("15s", "60s", 20000));
    let mut idle = Vec::with_capacity(5000);
    let first = Instant::now();
    for _ in 0..5000 {
        let mut s = TcpStream::connect(d.api).unwrap();
        s.write_all(b"GET /v1/Services HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .unwrap();
        idle.push(s);
    }
    // The daemon takes them from its accept queue (bounded wait).
    let open = |d: &Daemon| metric(d, "maskd_connections_open{listener=\"api\"}");
    while open(&d) < 5000.0 && first.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(open(&d) >= 5000.0, "{} of 5,000 held", open(&d));
    // While they are all held, a new request is served at once (best of three: the test
    // runner shares the cores).
    let best = (0..3)
        .map(|_| timed_get(d.api))
        .min_by_key(|(_, t)| *t)
        .unwrap();
    assert_eq!(best.0, 200);
    assert!(
        best.1 < Duration::from_millis(100),
        "served in {:?}",
        best.1
    );
    assert_eq!(
        metric(
            &d,
            "maskd_api_connections_closed_total{reason=\"header_timeout\"}"
        ),
        0.0,
        "none closed before its time"
    );
    // Their header never comes: each is closed once its 15 s pass (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut still_open = 0;
    for s in idle.iter_mut() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        if !closed(s, left) {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "half-sent requests left open");
    assert!(first.elapsed() >= Duration::from_secs(14));
    assert!(
        metric(
            &d,
            "maskd_api_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 5000.0
    );
    let (status, _) = timed_get(d.api);
    assert_eq!(status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_edited(dir.path(), "", bounded("2s", "2s", 100));
    let mut s = TcpStream::connect(d.api).unwrap();
    let req = |s: &mut TcpStream| {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
        s.write_all(
            format!("GET /v1/Services HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut buf = vec![0u8; 65536];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert!(req(&mut s).starts_with("HTTP/1.1 200"));
    // Within the idle time, the same connection serves again.
    std::thread::sleep(Duration::from_millis(800));
    assert!(req(&mut s).starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    assert!(
        closed(&mut s, Duration::from_secs(6)),
        "idle connection kept"
    );
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "closed after {after:?}, before its time"
    );
    assert!(
        metric(
            &d,
            "maskd_api_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 1.0
    );
}

#[test]
fn a_source_address_at_its_cap_is_refused_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_edited(dir.path(), "", bounded("30s", "60s", 5));
    let held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(d.api).unwrap()).collect();
    // Give the daemon the moment to count them (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&d, "maskd_connections_open{listener=\"api\"}") < 5.0 {
        assert!(Instant::now() < deadline, "the five were never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A flood of 200 more from the same address: each closed at accept.
    for _ in 0..200 {
        let mut s = TcpStream::connect(d.api).unwrap();
        assert!(
            closed(&mut s, Duration::from_secs(5)),
            "a sixth connection was kept"
        );
    }
    // Another address is served.
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    let sock = socket_from("127.0.0.2", d.api);
    let r = raw_over(
        sock,
        &format!(
            "GET /v1/Services HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        metric(
            &d,
            "maskd_connections_refused_total{listener=\"api\",reason=\"per_address\"}"
        ) >= 200.0
    );
    let lines = d.drain_log();
    let summaries = lines
        .iter()
        .filter(|l| l.contains("connections refused"))
        .count();
    assert!(
        (1..=3).contains(&summaries),
        "{summaries} log lines for 200 refusals"
    );
    drop(held);
}

/// A TCP connection to `to` from source address `from` (a loopback address of its own).
fn socket_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2_like::connect_from(from, to);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn raw_over(mut s: TcpStream, req: &str) -> String {
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Binding a client socket to a chosen loopback source, with std and nix only.
mod socket2_like {
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

    pub fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        let src: std::net::SocketAddrV4 = format!("{from}:0").parse().unwrap();
        bind(fd.as_raw_fd(), &SockaddrIn::from(src)).unwrap();
        let SocketAddr::V4(dst) = to else {
            panic!("IPv4 only")
        };
        connect(fd.as_raw_fd(), &SockaddrIn::from(dst)).unwrap();
        TcpStream::from(fd)
    }
}

#[test]
fn a_connection_flood_on_smpp_and_sip_leaves_the_others_served() {
    use common::smpp::Peer;
    use maskd::smpp::pdu::BindKind;
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_edited(dir.path(), &two_carriers(""), |text: &str| {
        text.replacen("smpp:\n", "smpp:\n  max_connections_per_address: 20\n", 1)
            .replacen("sip:\n", "sip:\n  tcp_max_connections_per_address: 20\n", 1)
    });
    // 500 connections to each from 127.0.0.1: 20 held, the rest closed at accept.
    let mut held = Vec::new();
    for addr in [d.smpp, d.sip] {
        let mut kept = 0;
        for _ in 0..500 {
            let mut s = TcpStream::connect(addr).unwrap();
            if closed(&mut s, Duration::from_millis(200)) {
                continue;
            }
            kept += 1;
            held.push(s);
        }
        assert_eq!(kept, 20, "{addr}: held beyond its address's cap");
    }
    // SIP over UDP is answered.
    let (udp, port) = common::sip::socket();
    let options = format!(
        "OPTIONS sip:maskd@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKflood1\r\n\
         From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:maskd@127.0.0.1>\r\nCall-ID: flood1\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    udp.send_to(options.as_bytes(), d.sip).unwrap();
    let (answer, _) = common::sip::recv_until(&udp, "SIP/2.0 ");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    // Another carrier, from another address, binds and is served.
    let mut b = Peer::from_stream(socket_from("127.0.0.2", d.smpp));
    let status = b.bind(BindKind::Transceiver, "carrier-b", "secret-b");
    assert_eq!(status, maskd::smpp::pdu::status::ESME_ROK);
    for listener in ["smpp", "sip"] {
        let key = format!(
            "maskd_connections_refused_total{{listener=\"{listener}\",reason=\"per_address\"}}"
        );
        assert!(metric(&d, &key) >= 480.0, "{key}");
    }
    let lines = d.drain_log();
    for listener in ["smpp", "sip"] {
        let n = lines
            .iter()
            .filter(|l| {
                l.contains("connections refused") && l.contains(&format!("listener=\"{listener}\""))
            })
            .count();
        assert!(
            (1..=3).contains(&n),
            "{listener}: {n} log lines for 480 refusals"
        );
    }
    drop(held);
}

/// A request whose body stops coming is cut once nothing has moved for the idle timeout.
#[test]
fn a_request_body_that_stops_coming_is_cut() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_edited(dir.path(), "", bounded("2s", "2s", 100));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    let mut s = TcpStream::connect(d.api).unwrap();
    s.write_all(
        format!(
            "POST /v1/Services HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nUniqueName=sl"
        )
        .as_bytes(),
    )
    .unwrap();
    let sent = Instant::now();
    assert!(
        closed(&mut s, Duration::from_secs(8)),
        "a stalled request kept"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(1500),
        "cut before its time"
    );
    assert!(metric(&d, "maskd_api_connections_closed_total{reason=\"stalled\"}") >= 1.0);
}
