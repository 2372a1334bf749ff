//! maskd on IPv6 (SPEC §2.7): every listener on `::1` (API, metrics, SMPP, SIP, the media
//! relay), a trunk on `[::1]`, SIP headers naming maskd as an IPv6 reference (`[::1]`). An app
//! creates a session over the API, a carrier's message crosses over SMPP, a call crosses to
//! the trunk.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::sip::{header, respond};
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};

const A: &str = "+14155551001";
const B: &str = "+14155552002";

fn v6_socket() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("[::1]:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

/// Receives until a message starting with `want` (bounded).
fn recv_until(s: &UdpSocket, want: &str) -> (String, SocketAddr) {
    let mut buf = [0u8; 8192];
    for _ in 0..50 {
        let (n, from) = s.recv_from(&mut buf).expect("a message within 5 s");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with(want) {
            return (text, from);
        }
    }
    panic!("no {want}");
}

#[test]
fn api_smpp_and_sip_work_over_ipv6() {
    if UdpSocket::bind("[::1]:0").is_err() {
        panic!("this machine has no IPv6 loopback (::1): the IPv6 test cannot run");
    }
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = v6_socket();
    let services = format!(
        "{}sip:\n  listen: \"[::1]:0\"\n  advertised_host: \"::1\"\n  trusted_cidrs: [\"::1/128\"]\n  trunk: \"[::1]:{trunk_port}\"\n\
         media:\n  listen_ip: \"::1\"\n  advertised_ip: \"::1\"\n\
         services:\n  - unique_name: \"s\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        two_carriers("")
    );
    let mut d = Daemon::start_edited(dir.path(), &services, |cfg| {
        cfg.replace("listen: \"127.0.0.1:", "listen: \"[::1]:")
    });
    d.api = SocketAddr::new("::1".parse().unwrap(), d.api.port());
    d.metrics = SocketAddr::new("::1".parse().unwrap(), d.metrics.port());
    assert!(d.smpp.is_ipv6() && d.sip.is_ipv6(), "{} {}", d.smpp, d.sip);

    // The API over ::1.
    let (pa, pb) = two_party_session(&d, "s", "chat", A, B);
    assert!(d.metrics_text().contains("maskd_sessions"));

    // A message over SMPP on ::1.
    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    let r = a.request(Body::SubmitSm(sm(&A[1..], &pa[1..], b"over ipv6")));
    assert_eq!(r.status, status::ESME_ROK);
    assert!(b.wait_messages(1, Duration::from_secs(5)));
    assert_eq!(b.messages[0].source.addr, pb[1..]);

    // A call over SIP on ::1, to a trunk on [::1].
    let (caller, caller_port) = v6_socket();
    let invite = format!(
        "INVITE sip:{pa}@[::1] SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:{caller_port};branch=z9hG4bKv6a\r\n\
         From: <sip:{A}@[::1]>;tag=tv6\r\nTo: <sip:{pa}@[::1]>\r\nCall-ID: v6call\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{A}@[::1]:{caller_port}>\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(invite.as_bytes(), d.sip).unwrap();
    let (leg_b, from) = recv_until(&trunk, "INVITE ");
    assert!(
        leg_b.starts_with(&format!("INVITE sip:{B}@[::1]:{trunk_port} ")),
        "{leg_b}"
    );
    assert!(
        header(&leg_b, "Via").starts_with(&format!("SIP/2.0/UDP [::1]:{}", d.sip.port())),
        "maskd's Via names it as [::1]: {leg_b}"
    );
    assert!(
        header(&leg_b, "From").contains(&format!("<sip:{pb}@[::1]>")),
        "{leg_b}"
    );
    assert!(!leg_b.contains(A), "the caller's number stays on leg A");
    respond(&trunk, &leg_b, from, 200, "OK");
    let (ok, _) = recv_until(&caller, "SIP/2.0 200");
    assert_eq!(header(&ok, "Call-ID"), "v6call");
}
