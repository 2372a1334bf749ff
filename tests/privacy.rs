//! Privacy across the data planes: a masked SMS and a masked call (and out-of-session ones)
//! go through the real daemon at debug log level; no log line, metric line or error answer
//! may contain a participant's real number (only its masked form, last four digits).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::media::{rtcp_with_identity, sdp};
use common::sip::{header, recv_not, socket};
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};

const A: &str = "+14155551001";
const B: &str = "+14155552002";
const STRANGER: &str = "+14155553003";

fn recv(s: &UdpSocket, skip: &str) -> String {
    recv_not(s, skip).unwrap_or_else(|| panic!("only {skip}…"))
}

fn invite(local: u16, from: &str, proxy: &str, call_id: &str) -> String {
    format!(
        "INVITE sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:{from}@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:{proxy}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{from}@127.0.0.1:{local}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// `msg` (ending in an empty body) with `body` as its SDP.
fn with_sdp(msg: &str, body: &str) -> String {
    msg.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// maskd's RTCP address in the SDP of `msg` (its `c=` address, the `m=audio` port + 1).
fn rtcp_addr(msg: &str) -> std::net::SocketAddr {
    let body = msg.split_once("\r\n\r\n").map_or("", |x| x.1);
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("m=audio line");
    format!("{ip}:{}", port + 1).parse().unwrap()
}

fn reply_to(inv: &str, code: u16, reason: &str) -> String {
    format!(
        "SIP/2.0 {code} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=tr1\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:x@127.0.0.1>\r\nContent-Length: 0\r\n\r\n",
        header(inv, "Via"),
        header(inv, "From"),
        header(inv, "To"),
        header(inv, "Call-ID"),
        header(inv, "CSeq")
    )
}

#[test]
fn masked_sms_and_calls_leave_no_real_number_in_logs_metrics_or_errors() {
    let (trunk, tport) = socket();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"{}sip:
  listen: "127.0.0.1:0"
  trunk: "127.0.0.1:{tport}"
services:
  - unique_name: "p"
    numbers: ["+14155550101", "+14155550102"]
"#,
        two_carriers("")
    );
    let mut d = Daemon::start_with(dir.path(), &cfg);
    let pa = two_party_session(&d, "p", "s", A, B).0;

    // SMS: A → B masked, and a stranger out of session.
    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    let r = a.request(Body::SubmitSm(sm(&A[1..], &pa[1..], b"hello B")));
    assert_eq!(r.status, status::ESME_ROK);
    assert!(b.wait_messages(1, Duration::from_secs(5)));
    let r = a.request(Body::SubmitSm(sm(&STRANGER[1..], &pa[1..], b"who is this")));
    assert_eq!(r.status, status::ESME_ROK);

    // A call A → B: 180, 200, ACK, BYE from A. Each side's SDP carries its number (o=, s=,
    // ssrc CNAME) as real user agents write it, and each sends RTCP SDES naming itself.
    let (ua, aport) = socket();
    let (a_rtcp, a_rtcp_port) = socket();
    let (b_rtcp, b_rtcp_port) = socket();
    let offer = sdp(A, a_rtcp_port - 1, a_rtcp_port, "0", "");
    ua.send_to(
        with_sdp(&invite(aport, A, &pa, "priv1"), &offer).as_bytes(),
        d.sip,
    )
    .unwrap();
    let inv = recv(&trunk, "SIP/2.0");
    assert!(inv.starts_with(&format!("INVITE sip:{B}@")), "{inv}");
    assert!(
        !inv.contains(&A[2..]),
        "A's number crossed in the INVITE:\n{inv}"
    );
    trunk
        .send_to(reply_to(&inv, 180, "Ringing").as_bytes(), d.sip)
        .unwrap();
    let answer = sdp(B, b_rtcp_port - 1, b_rtcp_port, "0", "");
    trunk
        .send_to(
            with_sdp(&reply_to(&inv, 200, "OK"), &answer).as_bytes(),
            d.sip,
        )
        .unwrap();
    let ok = recv(&ua, "SIP/2.0 1");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        !ok.contains(&B[2..]),
        "B's number crossed in the 200:\n{ok}"
    );
    // RTCP both ways through maskd's relay: what arrives names neither side.
    for (from, to, relay_sdp, who) in [(&a_rtcp, &b_rtcp, &ok, A), (&b_rtcp, &a_rtcp, &inv, B)] {
        let relay = rtcp_addr(relay_sdp);
        from.send_to(&rtcp_with_identity(0x5eed, who), relay)
            .unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = to.recv_from(&mut buf).expect("RTCP through the relay");
        let digits = &who.as_bytes()[2..];
        assert!(
            !buf[..n].windows(digits.len()).any(|w| w == digits),
            "{who}'s number crossed in RTCP"
        );
    }
    let to_tag = header(&ok, "To").to_string();
    ua.send_to(
        format!(
            "ACK sip:{pa}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{aport};branch=z9hG4bKack1\r\nFrom: <sip:{A}@127.0.0.1>;tag=tpriv1\r\nTo: {to_tag}\r\nCall-ID: priv1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
        d.sip,
    )
    .unwrap();
    ua.send_to(
        format!(
            "BYE sip:{pa}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{aport};branch=z9hG4bKbye1\r\nFrom: <sip:{A}@127.0.0.1>;tag=tpriv1\r\nTo: {to_tag}\r\nCall-ID: priv1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
        d.sip,
    )
    .unwrap();
    // Leg B's ACK, then its BYE reach the trunk; answer the BYE.
    let mut bye = String::new();
    for _ in 0..5 {
        let m = recv(&trunk, "SIP/2.0");
        if m.starts_with("BYE ") {
            bye = m;
            break;
        }
    }
    assert!(bye.starts_with("BYE "), "BYE on leg B");
    trunk
        .send_to(reply_to(&bye, 200, "OK").as_bytes(), d.sip)
        .unwrap();
    let r = recv(&ua, "SIP/2.0 1");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    // A stranger's call: 404, and its answer names no number of a participant.
    ua.send_to(invite(aport, STRANGER, &pa, "priv2").as_bytes(), d.sip)
        .unwrap();
    let r = recv(&ua, "SIP/2.0 1");
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    for real in [A, B] {
        assert!(!r.contains(&real[2..]), "404 names {real}: {r}");
    }

    // Everything maskd said about it: logs at debug level, metrics, an API error body.
    let err = d.post(
        "/v1/Services/p/Sessions/s/Participants",
        &[("Identifier", "+1415555100x")],
    );
    d.wait_for_log("sms out of session", Duration::from_secs(5));
    d.wait_for_log("call out of session", Duration::from_secs(5));
    // A call's log is written behind the call (within 100 ms): poll, bounded.
    let logged = (0..50).any(|_| {
        let n = d.get("/v1/Services/p/Sessions/s/Interactions").json()["interactions"]
            .as_array()
            .map_or(0, Vec::len);
        if n < 2 {
            std::thread::sleep(Duration::from_millis(20));
        }
        n >= 2
    });
    assert!(logged, "the SMS and the call were logged");
    let metrics = d.metrics_text();
    let log = d.lines.join("\n");
    assert!(
        log.contains("+*******1001"),
        "numbers appear masked:\n{log}"
    );
    for real in [A, B, STRANGER] {
        let digits = &real[2..];
        assert!(!log.contains(digits), "a log line shows {real}:\n{log}");
        assert!(!metrics.contains(digits), "a metric shows {real}");
        assert!(
            !err.body.contains(&digits[..6]),
            "an error body shows {real}"
        );
    }
}
