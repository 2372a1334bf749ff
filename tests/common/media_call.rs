//! One call through a daemon that anchors media, driven by hand: the daemon and its session,
//! a caller and a trunk speaking SIP over UDP from their own sockets, RTP and RTCP between
//! them, and the relay's metrics (tests/media.rs, tests/idle.rs).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::sip::{header, recv_until, socket};
use super::Daemon;

pub const CALLER: &str = "+14155551001";
pub const CALLEE: &str = "+14155552002";

/// A daemon whose trunk is `trunk_port`, relaying on ports `range`, with `media_extra` keys
/// under `media:`, and one session between CALLER and CALLEE; returns (daemon, P_A).
pub fn start(
    dir: &std::path::Path,
    trunk_port: u16,
    range: &str,
    media_extra: &str,
) -> (Daemon, String) {
    start_with_services(dir, trunk_port, range, media_extra, "")
}

pub fn start_with_services(
    dir: &std::path::Path,
    trunk_port: u16,
    range: &str,
    media_extra: &str,
    service_extra: &str,
) -> (Daemon, String) {
    let cfg = media_config(dir, trunk_port, range, media_extra, service_extra);
    let d = Daemon::start_with(dir, &cfg);
    let (pa, _) = super::two_party_session(&d, "voice", "call", CALLER, CALLEE);
    (d, pa)
}

/// The config `start_with_services` runs with (the `sip:`, `media:` and `services:` keys).
pub fn media_config(
    dir: &std::path::Path,
    trunk_port: u16,
    range: &str,
    media_extra: &str,
    service_extra: &str,
) -> String {
    format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{trunk_port}\"\n\
         media:\n  port_range: \"{range}\"\n  recording:\n    dir: \"{rec}\"\n{media_extra}\
         services:\n  - unique_name: \"voice\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n{service_extra}",
        rec = dir.join("recordings").display()
    )
}

pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The RTP address an SDP names (its c= and first m= port).
pub fn media_addr(msg: &str) -> SocketAddr {
    let b = body(msg);
    let ip = b
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("a c= line")
        .trim();
    let port = b
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .expect("an m=audio line");
    format!("{ip}:{port}").parse().unwrap()
}

pub fn origin_version(msg: &str) -> u64 {
    body(msg)
        .lines()
        .find_map(|l| l.strip_prefix("o="))
        .and_then(|o| o.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .expect("an o= line with a version")
}

pub fn with_sdp(head: &str, sdp: &str) -> String {
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with("Content-Length:"))
        .collect();
    let head = head.join("\r\n");
    format!(
        "{head}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The trunk answers `req` with `code` and `sdp` (None: no body).
pub fn answer(trunk: &UdpSocket, req: &str, to: SocketAddr, code: u16, sdp: Option<&str>) {
    let tag = if header(req, "To").contains("tag=") {
        ""
    } else {
        ";tag=far"
    };
    let head = format!(
        "SIP/2.0 {code} OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}{tag}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:{CALLEE}@127.0.0.1:{}>\r\nContent-Length: 0\r\n",
        header(req, "Via"),
        header(req, "From"),
        header(req, "To"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
        trunk.local_addr().unwrap().port(),
    );
    let msg = match sdp {
        Some(s) => with_sdp(&head, s),
        None => format!("{head}\r\n"),
    };
    trunk.send_to(msg.as_bytes(), to).unwrap();
}

/// A request from the caller in the dialog maskd's 200 `ok` set up.
pub fn in_dialog(
    method: &str,
    cseq: u32,
    id: &str,
    port: u16,
    ok: &str,
    proxy: &str,
    sdp: Option<&str>,
) -> String {
    let head = format!(
        "{method} sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{id}\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
         Contact: <sip:{CALLER}@127.0.0.1:{port}>\r\nContent-Length: 0\r\n",
        header(ok, "From"),
        header(ok, "To"),
        header(ok, "Call-ID"),
    );
    match sdp {
        Some(s) => with_sdp(&head, s),
        None => format!("{head}\r\n"),
    }
}

/// The two sides' sockets: SIP, RTP and RTCP for the caller; RTP and RTCP for the callee
/// (its SIP socket is the trunk's).
pub struct Peers {
    pub a_sip: UdpSocket,
    pub a_rtp: UdpSocket,
    pub a_rtcp: UdpSocket,
    pub b_rtp: UdpSocket,
    pub b_rtcp: UdpSocket,
}

pub fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

pub fn port(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

impl Peers {
    pub fn new() -> Peers {
        Peers {
            a_sip: socket().0,
            a_rtp: udp(),
            a_rtcp: udp(),
            b_rtp: udp(),
            b_rtcp: udp(),
        }
    }
}

/// An answered call: what each side got, and maskd's relay addresses each side sends to.
pub struct Answered {
    /// Leg B's INVITE at the trunk.
    pub invite_b: String,
    /// maskd's 200 to the caller.
    pub ok_a: String,
    /// Where the caller sends RTP (maskd's A-facing port), and the callee.
    pub relay_a: SocketAddr,
    pub relay_b: SocketAddr,
}

/// The caller offers `offer` (an SDP), the trunk answers 200 with `answer_sdp`, the caller
/// ACKs.
pub fn call(
    d: &Daemon,
    p: &Peers,
    trunk: &UdpSocket,
    pa: &str,
    id: &str,
    offer: &str,
    answer_sdp: &str,
) -> Answered {
    let a_port = port(&p.a_sip);
    let inv = with_sdp(&super::sip::invite(a_port, CALLER, pa, id), offer);
    p.a_sip.send_to(inv.as_bytes(), d.sip).unwrap();
    let (invite_b, b_from) = recv_until(trunk, "INVITE ");
    answer(trunk, &invite_b, b_from, 200, Some(answer_sdp));
    recv_until(trunk, "ACK ");
    let (ok_a, _) = recv_until(&p.a_sip, "SIP/2.0 200");
    let ack = in_dialog("ACK", 1, &format!("{id}ack"), a_port, &ok_a, pa, None);
    p.a_sip.send_to(ack.as_bytes(), d.sip).unwrap();
    Answered {
        relay_a: media_addr(&ok_a),
        relay_b: media_addr(&invite_b),
        invite_b,
        ok_a,
    }
}

/// The caller hangs up `c` (a BYE with `id` as its branch, answered 200 by the trunk);
/// returns once the relay gave the call's ports back.
pub fn hang_up(d: &Daemon, p: &Peers, trunk: &UdpSocket, pa: &str, c: &Answered, id: &str) {
    let bye = in_dialog("BYE", 2, id, port(&p.a_sip), &c.ok_a, pa, None);
    p.a_sip.send_to(bye.as_bytes(), d.sip).unwrap();
    let (bye_b, from) = recv_until(trunk, "BYE ");
    answer(trunk, &bye_b, from, 200, None);
    recv_until(&p.a_sip, "SIP/2.0 200");
    wait_metric(
        d,
        "maskd_media_ports{state=\"in_use\"}",
        |v| v == 0.0,
        "the call's ports never came back",
    );
}

/// An RTP packet: PT `pt`, sequence `seq`, 160 bytes of payload `fill`.
pub fn rtp(pt: u8, seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[fill; 160]);
    p
}

/// The next datagram on `s` (None after its read timeout), with its source.
pub fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from))
}

pub fn metric(d: &Daemon, prefix: &str) -> f64 {
    d.metrics_text()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (at most 3 s: the relay flushes its counters every half second) until the sum of
/// the metric lines starting with `prefix` satisfies `ok`.
pub fn wait_metric(d: &Daemon, prefix: &str, ok: impl Fn(f64) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !ok(metric(d, prefix)) {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}
