//! Plain UDP SIP helpers for end-to-end tests: a loopback socket, reading datagrams, and
//! reading a header out of a message.

use std::net::UdpSocket;
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
