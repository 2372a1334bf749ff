//! SIP refusals that create no leg B (SPEC §2.2.7), over a raw UDP socket: untrusted source
//! 403, message-only session 403, over `sip.max_calls` 503 with Retry-After, malformed 400
//! with a reason naming the fault, OPTIONS 200.

mod common;

use std::net::UdpSocket;

use common::sip::socket;
use common::*;

fn invite(local: u16, proxy: &str, caller: &str, call_id: &str) -> String {
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:{caller}@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:{proxy}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{caller}@127.0.0.1:{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `msg` and returns the first final (or any non-100) response line.
fn ask(sock: &UdpSocket, to: std::net::SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..20 {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with("SIP/2.0 100") {
            return text;
        }
    }
    panic!("only 100 Trying");
}

fn daemon(dir: &std::path::Path, sip_extra: &str, mode: &str) -> (Daemon, String) {
    let trunk = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{trunk}\"\n{sip_extra}services:\n  - unique_name: \"v\"\n    numbers: [\"+14155550101\"]\n"
    );
    let d = Daemon::start_with(dir, &cfg);
    let p1 = r#"{"Identifier":"+14155551001"}"#;
    let p2 = r#"{"Identifier":"+14155552002"}"#;
    let r = d.post(
        "/v1/Services/v/Sessions",
        &[
            ("UniqueName", "s"),
            ("Mode", mode),
            ("Participants", p1),
            ("Participants", p2),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let pa = d.get("/v1/Services/v/Sessions/s/Participants").json()["participants"][0]
        ["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    (d, pa)
}

#[test]
fn untrusted_sources_get_403_and_no_leg_b() {
    let dir = tempfile::tempdir().unwrap();
    let (d, pa) = daemon(
        dir.path(),
        "  trusted_cidrs: [\"10.0.0.0/8\"]\n",
        "voice-and-message",
    );
    let (s, port) = socket();
    let r = ask(&s, d.sip, &invite(port, &pa, "+14155551001", "untrusted1"));
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    assert!(d.metrics_text().contains("maskd_sip_calls_started_total 0"));
}

#[test]
fn message_only_sessions_refuse_calls_with_403() {
    let dir = tempfile::tempdir().unwrap();
    let (d, pa) = daemon(dir.path(), "", "message-only");
    let (s, port) = socket();
    let r = ask(&s, d.sip, &invite(port, &pa, "+14155551001", "msgonly1"));
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    assert!(d.metrics_text().contains("maskd_sip_calls_started_total 0"));
}

#[test]
fn over_max_calls_is_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (d, pa) = daemon(dir.path(), "  max_calls: 1\n", "voice-and-message");
    let (s, port) = socket();
    // The first call is set up (leg B goes to a trunk that never answers) ...
    s.send_to(
        invite(port, &pa, "+14155551001", "first1").as_bytes(),
        d.sip,
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 100"));
    // ... so a second one is over the limit.
    let r = ask(&s, d.sip, &invite(port, &pa, "+14155551001", "second1"));
    assert!(r.starts_with("SIP/2.0 503"), "{r}");
    assert!(r.contains("Retry-After: "), "{r}");
}

#[test]
fn over_max_transactions_is_503_with_retry_after_and_bye_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let (d, pa) = daemon(dir.path(), "  max_transactions: 2\n", "voice-and-message");
    let (s, port) = socket();
    // The first call holds two transactions (leg A's INVITE server, leg B's INVITE client)...
    s.send_to(invite(port, &pa, "+14155551001", "tx1").as_bytes(), d.sip)
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 100"));
    // ... so a new INVITE or OPTIONS is over the bound, though max_calls is not reached.
    let r = ask(&s, d.sip, &invite(port, &pa, "+14155551001", "tx2"));
    assert!(r.starts_with("SIP/2.0 503 Service Unavailable"), "{r}");
    assert!(r.contains("Retry-After: "), "{r}");
    let opts = format!(
        "OPTIONS sip:{pa}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKo2\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:{pa}@127.0.0.1>\r\nCall-ID: o2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(ask(&s, d.sip, &opts).starts_with("SIP/2.0 503"));
    // A CANCEL, which ends a call, is still served: 200 for it, then 487 for the INVITE.
    let inv = invite(port, &pa, "+14155551001", "tx1");
    let via = inv.lines().find(|l| l.starts_with("Via:")).unwrap();
    let from = inv.lines().find(|l| l.starts_with("From:")).unwrap();
    let to = inv.lines().find(|l| l.starts_with("To:")).unwrap();
    let cancel = format!(
        "CANCEL sip:{pa}@127.0.0.1 SIP/2.0\r\n{via}\r\n{from}\r\n{to}\r\nCall-ID: tx1\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let r = ask(&s, d.sip, &cancel);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    // The counter is exported after the answers go out: poll it, bounded.
    let counted = (0..50).any(|_| {
        let ok = d
            .metrics_text()
            .contains("maskd_sip_requests_refused_total 2");
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ok
    });
    assert!(counted, "both refusals counted: {}", d.metrics_text());
}

#[test]
fn malformed_requests_get_400_naming_the_fault_and_options_200() {
    let dir = tempfile::tempdir().unwrap();
    let (d, pa) = daemon(dir.path(), "", "voice-and-message");
    let (s, port) = socket();
    let bad = invite(port, &pa, "+14155551001", "bad1").replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    let r = ask(&s, d.sip, &bad);
    assert!(
        r.starts_with("SIP/2.0 400 CSeq Method Does Not Match The Request"),
        "{r}"
    );
    let bad =
        invite(port, &pa, "+14155551001", "bad2").replace("Content-Length: ", "Content-Length: 9");
    let r = ask(&s, d.sip, &bad);
    assert!(r.starts_with("SIP/2.0 400 Content-Length"), "{r}");
    let opts = format!(
        "OPTIONS sip:{pa}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKo1\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:{pa}@127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let r = ask(&s, d.sip, &opts);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(d.metrics_text().contains("maskd_sip_calls_started_total 0"));
}

#[test]
fn server_header_is_configurable_and_can_be_left_out() {
    // Default: maskd names itself; `sip.server_header: ""` sends no Server header on any of
    // its own answers (OPTIONS 200, 404 with no session, 400 for a malformed request), so a
    // scanner has nothing to fingerprint.
    for (extra, want) in [("", Some("maskd")), ("  server_header: \"\"\n", None)] {
        let dir = tempfile::tempdir().unwrap();
        let (d, pa) = daemon(dir.path(), extra, "voice-and-message");
        let (s, port) = socket();
        let opts = format!(
            "OPTIONS sip:{pa}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKo2\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:{pa}@127.0.0.1>\r\nCall-ID: o2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let answers = [
            ask(&s, d.sip, &opts),
            ask(&s, d.sip, &invite(port, &pa, "+14155559999", "nosess")),
            ask(
                &s,
                d.sip,
                &invite(port, &pa, "+14155551001", "bad3").replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
            ),
        ];
        for (r, code) in answers.iter().zip(["200", "404", "400"]) {
            assert!(r.starts_with(&format!("SIP/2.0 {code}")), "{r}");
            let server = common::sip::header(r, "Server");
            match want {
                Some(w) => assert_eq!(server, w, "{r}"),
                None => assert!(!r.contains("\r\nServer:"), "{r}"),
            }
        }
    }
}
