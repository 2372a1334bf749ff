//! Plain UDP SIP helpers for end-to-end tests: a loopback socket, reading datagrams, and
//! reading a header out of a message.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A UDP socket on loopback with a 5 s read timeout, and its port.
pub fn socket() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

/// Receives until a datagram that does not start with `skip` (at most 20 read; `None` on a
/// read timeout).
pub fn recv_not(s: &UdpSocket, skip: &str) -> Option<String> {
    let mut buf = [0u8; 8192];
    for _ in 0..20 {
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let t = String::from_utf8_lossy(&buf[..n]).to_string();
        if !t.starts_with(skip) {
            return Some(t);
        }
    }
    None
}

/// The value of the first `name` header line of `msg` (case-insensitive), or "".
pub fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l.split_once(':').unwrap().1.trim())
        .unwrap_or("")
}

/// An INVITE without a body from `caller` at `local` for `proxy`; `call_id` also makes the
/// branch and the From tag.
pub fn invite(local: u16, caller: &str, proxy: &str, call_id: &str) -> String {
    format!(
        "INVITE sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:{caller}@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:{proxy}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{caller}@127.0.0.1:{local}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Answers request `req` from socket `s` with `code` (echoing Via, From, To, Call-ID, CSeq;
/// a To tag added when the request had none).
pub fn respond(s: &UdpSocket, req: &str, to: SocketAddr, code: u16, reason: &str) {
    let tag = if header(req, "To").contains("tag=") {
        ""
    } else {
        ";tag=far"
    };
    let r = format!(
        "SIP/2.0 {code} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {}{tag}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:x@127.0.0.1:{}>\r\nContent-Length: 0\r\n\r\n",
        header(req, "Via"),
        header(req, "From"),
        header(req, "To"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
        s.local_addr().unwrap().port(),
    );
    s.send_to(r.as_bytes(), to).unwrap();
}

/// Receives until a message starting with `want` (at most 50 read; panics on a timeout).
pub fn recv_until(s: &UdpSocket, want: &str) -> (String, SocketAddr) {
    let mut buf = [0u8; 8192];
    for _ in 0..50 {
        let (n, from) = s.recv_from(&mut buf).expect("a SIP message in time");
        let t = String::from_utf8_lossy(&buf[..n]).to_string();
        if t.starts_with(want) {
            return (t, from);
        }
    }
    panic!("no {want}");
}

/// A call from `caller` (socket `a`) to `proxy` through maskd at `sip`, answered 200 by the
/// trunk and ACKed by the caller. Returns leg B's INVITE as the trunk got it.
pub fn answered_call(
    sip: SocketAddr,
    a: &UdpSocket,
    trunk: &UdpSocket,
    caller: &str,
    proxy: &str,
    id: &str,
) -> String {
    let port = a.local_addr().unwrap().port();
    a.send_to(invite(port, caller, proxy, id).as_bytes(), sip)
        .unwrap();
    let (inv, from) = recv_until(trunk, "INVITE ");
    respond(trunk, &inv, from, 200, "OK");
    let (ok, _) = recv_until(a, "SIP/2.0 200");
    let ack = format!(
        "ACK sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKack{id}\r\n\
         From: <sip:{caller}@127.0.0.1>;tag=t{id}\r\nTo: {}\r\nCall-ID: {id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "To")
    );
    a.send_to(ack.as_bytes(), sip).unwrap();
    inv
}
