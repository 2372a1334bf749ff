//! The callbacks for calls: the real daemon's SIP listener driven over UDP sockets on
//! loopback (caller and trunk), and a real HTTP receiver (tests/common/hook.rs). Status
//! callbacks follow a call's legs; the intercept callback's 403 refuses the call on leg A
//! and no leg B is placed; the out-of-session callback's JSON creates the session and the
//! call goes through it.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::hook::{Hook, Reply};
use common::sip::{header, recv_not, recv_until, socket};
use common::*;

const A: &str = "+14155551001";
const B: &str = "+14155552002";

/// A daemon whose trunk is `trunk`, with service "v" and its URLs set.
fn daemon(dir: &std::path::Path, trunk: u16, urls: &[(&str, &str)]) -> Daemon {
    let cfg = format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{trunk}\"\nwebhooks:\n  timeout: \"1s\"\nservices:\n  - unique_name: \"v\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n"
    );
    let d = Daemon::start_with(dir, &cfg);
    let r = d.post("/v1/Services/v", urls);
    assert_eq!(r.status, 200, "{}", r.body);
    d
}

fn session(d: &Daemon) -> String {
    two_party_session(d, "v", "s", A, B).0
}

fn invite(local: u16, proxy: &str, call_id: &str) -> String {
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:{A}@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:{proxy}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{A}@127.0.0.1:{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The trunk answers leg B's INVITE with `code`.
fn answer(trunk: &UdpSocket, inv: &str, to: std::net::SocketAddr, code: u16, reason: &str) {
    let r = format!(
        "SIP/2.0 {code} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=trunk1\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(inv, "Via"),
        header(inv, "From"),
        header(inv, "To"),
        header(inv, "Call-ID"),
        header(inv, "CSeq"),
    );
    trunk.send_to(r.as_bytes(), to).unwrap();
}

#[test]
fn status_callbacks_follow_a_busy_call() {
    let hook = Hook::start();
    let (trunk, tport) = socket();
    let dir = tempfile::tempdir().unwrap();
    let url = hook.url("/status");
    let d = daemon(dir.path(), tport, &[("CallbackUrl", &url)]);
    let pa = session(&d);
    let (a, aport) = socket();
    a.send_to(invite(aport, &pa, "busy1").as_bytes(), d.sip)
        .unwrap();
    let inv = recv_not(&trunk, "SIP/2.0").expect("leg B INVITE at the trunk");
    assert!(inv.starts_with("INVITE "), "{inv}");
    answer(&trunk, &inv, d.sip, 180, "Ringing");
    answer(&trunk, &inv, d.sip, 486, "Busy Here");
    let r = recv_not(&a, "SIP/2.0 1").expect("final answer on leg A");
    assert!(r.starts_with("SIP/2.0 486"), "{r}");
    let got = hook.wait("/status", 3, Duration::from_secs(5));
    let statuses: Vec<&str> = got
        .iter()
        .map(|r| r.param("outboundResourceStatus").unwrap())
        .collect();
    assert_eq!(statuses, ["initiated", "ringing", "busy"]);
    for r in &got {
        assert_eq!(r.param("interactionType"), Some("Voice"));
        assert_eq!(r.param("outboundResourceType"), Some("Call"));
        assert!(r.param("outboundResourceSid").unwrap().starts_with("CA"));
        assert_eq!(
            r.headers["x-twilio-signature"],
            maskd::net::webhook::signature(TOKEN, &url, &r.params)
        );
    }
}

#[test]
fn intercept_403_refuses_the_call_and_places_no_leg_b() {
    let hook = Hook::start();
    let (trunk, tport) = socket();
    trunk
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = hook.url("/intercept");
    let d = daemon(dir.path(), tport, &[("InterceptCallbackUrl", &url)]);
    let pa = session(&d);
    let (a, aport) = socket();
    hook.reply("/intercept", Reply::Status(403));
    a.send_to(invite(aport, &pa, "icpt1").as_bytes(), d.sip)
        .unwrap();
    let r = recv_not(&a, "SIP/2.0 100").expect("an answer");
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    assert!(recv_not(&trunk, "SIP/2.0").is_none(), "no leg B");
    let q = &hook.wait("/intercept", 1, Duration::from_secs(2))[0];
    assert_eq!(q.param("interactionType"), Some("Voice"));
    assert_eq!(q.param("inboundParticipantIdentifier"), Some(A));
    assert_eq!(q.param("outboundParticipantIdentifier"), Some(B));
    assert!(q.param("outboundResourceStatus").is_none());
    let ints = d.get("/v1/Services/v/Sessions/s/Interactions").json();
    assert_eq!(
        ints["interactions"][0]["outbound_resource_status"],
        "canceled"
    );
    assert_eq!(
        ints["interactions"][0]["sid"].as_str(),
        q.param("interactionSid"),
        "the logged interaction is the one the callback saw"
    );

    // 500, and no answer within webhooks.timeout (intercept_on_error: allow): the call
    // goes on to leg B. (Leg B INVITEs are retransmitted, the trunk never answers: a new
    // leg B is one with a Call-ID not seen before.)
    let mut seen = std::collections::HashSet::new();
    trunk
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    for (reply, id) in [(Reply::Status(500), "icpt2"), (Reply::Silent, "icpt3")] {
        hook.reply("/intercept", reply);
        let sent = std::time::Instant::now();
        a.send_to(invite(aport, &pa, id).as_bytes(), d.sip).unwrap();
        let inv = (0..20)
            .filter_map(|_| recv_not(&trunk, "SIP/2.0"))
            .find(|m| seen.insert(header(m, "Call-ID").to_string()))
            .expect("a new leg B placed");
        assert!(inv.starts_with("INVITE "), "{inv}");
        if id == "icpt3" {
            assert!(
                sent.elapsed() >= Duration::from_millis(900),
                "after the 1 s timeout"
            );
        }
    }
}

#[test]
fn a_call_cancelled_while_its_intercept_callback_is_pending_gets_487_and_no_leg_b() {
    let hook = Hook::start();
    let (trunk, tport) = socket();
    let dir = tempfile::tempdir().unwrap();
    let url = hook.url("/intercept");
    let d = daemon(dir.path(), tport, &[("InterceptCallbackUrl", &url)]);
    let pa = session(&d);
    let (a, aport) = socket();
    // The receiver never answers: the INVITE is held for up to webhooks.timeout (1 s).
    hook.reply("/intercept", Reply::Silent);
    let inv = invite(aport, &pa, "held1");
    a.send_to(inv.as_bytes(), d.sip).unwrap();
    recv_until(&a, "SIP/2.0 100");
    hook.wait("/intercept", 1, Duration::from_secs(2));
    let cancel = format!(
        "CANCEL sip:{pa}@127.0.0.1 SIP/2.0\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: held1\r\n\
         CSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(&inv, "Via"),
        header(&inv, "From"),
        header(&inv, "To"),
    );
    a.send_to(cancel.as_bytes(), d.sip).unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = recv_not(&a, "SIP/2.0 100").expect("answers to the CANCEL and the INVITE");
        answers.push((
            r.lines().next().unwrap().to_string(),
            header(&r, "CSeq").to_string(),
        ));
    }
    answers.sort();
    assert_eq!(
        answers,
        [
            ("SIP/2.0 200 OK".to_string(), "1 CANCEL".to_string()),
            (
                "SIP/2.0 487 Request Terminated".to_string(),
                "1 INVITE".to_string()
            ),
        ]
    );
    // The callback's timeout (intercept_on_error: allow) finds nothing left to resume.
    trunk
        .set_read_timeout(Some(Duration::from_millis(2_000)))
        .unwrap();
    assert!(recv_not(&trunk, "SIP/2.0").is_none(), "no leg B");
}

#[test]
fn intercept_connection_refused_follows_intercept_on_error_allow() {
    let (trunk, tport) = socket();
    let dir = tempfile::tempdir().unwrap();
    let refused = format!("http://127.0.0.1:{}/intercept", free_port());
    let d = daemon(dir.path(), tport, &[("InterceptCallbackUrl", &refused)]);
    let pa = session(&d);
    let (a, aport) = socket();
    a.send_to(invite(aport, &pa, "refused1").as_bytes(), d.sip)
        .unwrap();
    let inv = recv_not(&trunk, "SIP/2.0").expect("leg B placed");
    assert!(inv.starts_with("INVITE "), "{inv}");
    assert!(d
        .metrics_text()
        .contains(r#"maskd_callbacks_total{kind="intercept",outcome="error"} 1"#));
}

#[test]
fn out_of_session_json_creates_the_session_and_the_call_goes_through() {
    let hook = Hook::start();
    let (trunk, tport) = socket();
    let dir = tempfile::tempdir().unwrap();
    let url = hook.url("/oos");
    let d = daemon(dir.path(), tport, &[("OutOfSessionCallbackUrl", &url)]);
    let (a, aport) = socket();
    // 500 (or any non-JSON answer): no session, 404.
    hook.reply("/oos", Reply::Status(500));
    a.send_to(invite(aport, "+14155550101", "oos1").as_bytes(), d.sip)
        .unwrap();
    let r = recv_not(&a, "SIP/2.0 100").expect("an answer");
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    hook.reply(
        "/oos",
        Reply::Json(format!(
            r#"{{"uniqueName":"auto","participantIdentifier":"{B}"}}"#
        )),
    );
    a.send_to(invite(aport, "+14155550101", "oos2").as_bytes(), d.sip)
        .unwrap();
    let inv = recv_not(&trunk, "SIP/2.0").expect("leg B placed through the new session");
    assert!(inv.starts_with(&format!("INVITE sip:{B}@")), "{inv}");
    let q = &hook.wait("/oos", 2, Duration::from_secs(2))[1];
    assert_eq!(q.param("From"), Some(A));
    assert_eq!(q.param("To"), Some("+14155550101"));
    assert_eq!(q.param("CallStatus"), Some("ringing"));
    assert!(q.param("CallSid").unwrap().starts_with("CA"));
    let parts = d.get("/v1/Services/v/Sessions/auto/Participants").json();
    let caller = parts["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identifier"] == A)
        .expect("the caller is a participant");
    assert_eq!(caller["proxy_identifier"], "+14155550101");
}

#[test]
fn an_invite_held_on_its_intercept_callback_at_sigterm_gets_503_within_the_grace() {
    let hook = Hook::start();
    // The trunk's socket stays bound (nothing reaches it: the INVITE is held).
    let (_trunk, tport) = socket();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{tport}\"\nwebhooks:\n  timeout: \"20s\"\nservices:\n  - unique_name: \"v\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n"
    );
    // The callback would hold the INVITE for 20 s; the grace is 4 s (calls left are ended
    // 1 s before it runs out).
    let mut d = Daemon::start_edited(dir.path(), &cfg, |c| {
        c.replace("shutdown_grace: \"5s\"", "shutdown_grace: \"4s\"")
    });
    let url = hook.url("/intercept");
    let r = d.post("/v1/Services/v", &[("InterceptCallbackUrl", &url)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let pa = session(&d);
    let (a, aport) = socket();
    hook.reply("/intercept", Reply::Silent);
    a.send_to(invite(aport, &pa, "held2").as_bytes(), d.sip)
        .unwrap();
    recv_until(&a, "SIP/2.0 100");
    hook.wait("/intercept", 1, Duration::from_secs(2));
    let t = std::time::Instant::now();
    d.sigterm();
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = recv_not(&a, "SIP/2.0 100").expect("a final answer for the held INVITE");
    assert!(r.starts_with("SIP/2.0 503"), "{r}");
    assert_eq!(header(&r, "Call-ID"), "held2");
    assert!(t.elapsed() < Duration::from_secs(4), "within the grace");
    let st = d
        .wait_exit(Duration::from_secs(5))
        .expect("maskd exits within the grace");
    assert!(st.success(), "{st:?}");
}
