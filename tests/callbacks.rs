//! Twilio Proxy's callbacks end to end: the real daemon, SMPP carriers of the project's own
//! (tests/common/smpp.rs) and SIP over UDP sockets, and a real HTTP receiver on loopback
//! (tests/common/hook.rs) answering 2xx, 403, 500, JSON, nothing (timeout), or not listening
//! at all (connection refused). Signatures are checked here and, with Twilio's own
//! RequestValidator, in tests/interop/callbacks_check.py.

mod common;

use std::process::Command;
use std::time::Duration;

use common::hook::{Hook, Reply};
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};

const A: &str = "+14155551001";
const B: &str = "+14155552002";

fn config(extra: &str) -> String {
    format!(
        r#"{}webhooks:
  timeout: "1s"
{extra}services:
  - unique_name: "sms"
    numbers: ["+14155550101", "+14155550102"]
"#,
        two_carriers("")
    )
}

fn set_urls(d: &Daemon, urls: &[(&str, &str)]) {
    let r = d.post("/v1/Services/sms", urls);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Creates the A–B session; returns (A's proxy, B's proxy) as digits.
fn session(d: &Daemon) -> (String, String) {
    let (pa, pb) = two_party_session(d, "sms", "chat", A, B);
    (pa[1..].to_string(), pb[1..].to_string())
}

fn bound(d: &Daemon, who: &str, pass: &str) -> Peer {
    Peer::bound(d.smpp, BindKind::Transceiver, who, pass)
}

/// A sends `text` to its proxy number; returns the submit_sm_resp status.
fn send_from_a(a: &mut Peer, pa: &str, text: &str) -> u32 {
    a.request(Body::SubmitSm(sm(&A[1..], pa, text.as_bytes())))
        .status
}

fn check_signature(req: &common::hook::Request, url: &str) {
    let sig = req.headers.get("x-twilio-signature").expect("signed");
    assert_eq!(
        sig,
        &maskd::net::webhook::signature(TOKEN, url, &req.params),
        "signature over the full URL and sorted parameters"
    );
}

#[test]
fn status_callbacks_follow_a_message_in_order_and_500_is_retried() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(""));
    let url = hook.url("/status");
    set_urls(&d, &[("CallbackUrl", &url)]);
    let (pa, _) = session(&d);
    // The first answer is a 500: the callback is sent again (backoff), in order.
    hook.reply("/status", Reply::Status(500));
    let mut a = bound(&d, "carrier-a", "secret-a");
    let mut b = bound(&d, "carrier-b", "secret-b");
    assert_eq!(send_from_a(&mut a, &pa, "hello"), status::ESME_ROK);
    assert!(b.wait_messages(1, Duration::from_secs(5)), "forwarded");
    let first = hook.wait("/status", 1, Duration::from_secs(5));
    assert!(!first.is_empty(), "a status callback arrived");
    hook.reply("/status", Reply::Status(200));
    // queued (created) then delivered (carrier B's bind took it): at least two distinct
    // callbacks, retried ones repeated, in order.
    let got = hook.wait("/status", 3, Duration::from_secs(10));
    assert!(got.len() >= 3, "the 500 was retried: {}", got.len());
    let statuses: Vec<&str> = got
        .iter()
        .map(|r| r.param("outboundResourceStatus").unwrap())
        .collect();
    let mut distinct = statuses.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        ["queued", "delivered"],
        "in order, each until accepted: {statuses:?}"
    );
    let r = &got[0];
    assert_eq!(r.param("interactionType"), Some("Message"));
    assert_eq!(r.param("inboundResourceStatus"), Some("received"));
    assert_eq!(r.param("inboundResourceType"), Some("Message"));
    assert_eq!(r.param("interactionAccountSid"), Some(ACCOUNT));
    assert!(r.param("interactionSid").unwrap().starts_with("KI"));
    assert!(r.param("outboundParticipantSid").unwrap().starts_with("KP"));
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/x-www-form-urlencoded")
    );
    for r in &got {
        check_signature(r, &url);
        assert_eq!(r.param("interactionSid"), got[0].param("interactionSid"));
    }
    let m = d.metrics_text();
    assert!(
        m.contains(r#"maskd_callbacks_total{kind="status",outcome="5xx"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"maskd_callbacks_total{kind="status",outcome="2xx"}"#),
        "{m}"
    );
}

#[test]
fn intercept_403_blocks_a_message_and_other_answers_let_it_through() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(""));
    let url = hook.url("/intercept");
    set_urls(&d, &[("InterceptCallbackUrl", &url)]);
    let (pa, _) = session(&d);
    let mut a = bound(&d, "carrier-a", "secret-a");
    let mut b = bound(&d, "carrier-b", "secret-b");

    hook.reply("/intercept", Reply::Status(403));
    assert_eq!(send_from_a(&mut a, &pa, "blocked one"), status::ESME_ROK);
    let asked = hook.wait("/intercept", 1, Duration::from_secs(5));
    assert_eq!(asked.len(), 1);
    let q = &asked[0];
    check_signature(q, &url);
    assert_eq!(q.param("inboundParticipantIdentifier"), Some(A));
    assert_eq!(q.param("outboundParticipantIdentifier"), Some(B));
    assert_eq!(
        q.param("interactionData")
            .map(|d| d.contains("blocked one")),
        Some(true)
    );
    assert!(
        q.param("outboundResourceStatus").is_none(),
        "no outbound leg yet"
    );
    assert!(
        !b.wait_messages(1, Duration::from_millis(700)),
        "403: not forwarded"
    );

    // 500, and a receiver that does not answer (timeout, intercept_on_error: allow): through.
    for (reply, text) in [
        (Reply::Status(500), "after 500"),
        (Reply::Silent, "after timeout"),
    ] {
        hook.reply("/intercept", reply);
        assert_eq!(send_from_a(&mut a, &pa, text), status::ESME_ROK);
        assert!(
            b.wait_messages(1, Duration::from_secs(5)),
            "{text}: forwarded"
        );
    }
    // The blocked one is logged, its outbound leg canceled.
    let ints = d.get("/v1/Services/sms/Sessions/chat/Interactions").json();
    let list = ints["interactions"].as_array().unwrap();
    let blocked: Vec<_> = list
        .iter()
        .filter(|i| i["data"].as_str().unwrap().contains("blocked one"))
        .collect();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["outbound_resource_status"], "canceled");
    assert_eq!(blocked[0]["inbound_resource_status"], "received");
}

#[test]
fn intercept_errors_follow_intercept_on_error_block() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        dir.path(),
        &config("").replace(
            "  timeout: \"1s\"\n",
            "  timeout: \"1s\"\n  intercept_on_error: \"block\"\n",
        ),
    );
    // Nothing listens there: connection refused.
    let refused = format!("http://127.0.0.1:{}/intercept", free_port());
    set_urls(&d, &[("InterceptCallbackUrl", &refused)]);
    let (pa, _) = session(&d);
    let mut a = bound(&d, "carrier-a", "secret-a");
    let mut b = bound(&d, "carrier-b", "secret-b");
    assert_eq!(send_from_a(&mut a, &pa, "nobody home"), status::ESME_ROK);
    assert!(
        !b.wait_messages(1, Duration::from_millis(700)),
        "blocked on error"
    );
    let m = d.metrics_text();
    assert!(
        m.contains(r#"maskd_callbacks_total{kind="intercept",outcome="error"} 1"#),
        "{m}"
    );
}

#[test]
fn out_of_session_json_creates_the_session_and_the_message_goes_through() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(""));
    let url = hook.url("/oos");
    set_urls(&d, &[("OutOfSessionCallbackUrl", &url)]);
    let mut a = bound(&d, "carrier-a", "secret-a");
    let mut b = bound(&d, "carrier-b", "secret-b");
    // No answer worth a session (500): out of session, not forwarded.
    hook.reply("/oos", Reply::Status(500));
    assert_eq!(
        send_from_a(&mut a, "14155550101", "first try"),
        status::ESME_ROK
    );
    assert!(!b.wait_messages(1, Duration::from_millis(500)));
    // A JSON answer creates the session; the message reaches B from a proxy number.
    hook.reply(
        "/oos",
        Reply::Json(format!(
            r#"{{"uniqueName":"auto1","ttl":3600,"mode":"message-only","participantIdentifier":"{B}"}}"#
        )),
    );
    assert_eq!(
        send_from_a(&mut a, "14155550101", "second try"),
        status::ESME_ROK
    );
    assert!(
        b.wait_messages(1, Duration::from_secs(5)),
        "forwarded through the new session"
    );
    let asked = hook.wait("/oos", 2, Duration::from_secs(2));
    let q = &asked[1];
    check_signature(q, &url);
    assert_eq!(q.param("From"), Some(A));
    assert_eq!(q.param("To"), Some("+14155550101"));
    assert_eq!(q.param("Body"), Some("second try"));
    assert!(q.param("MessageSid").unwrap().starts_with("SM"));
    assert_eq!(q.param("AccountSid"), Some(ACCOUNT));
    let s = d.get("/v1/Services/sms/Sessions/auto1").json();
    assert_eq!(s["mode"], "message-only");
    assert_eq!(s["ttl"], 3600);
    let parts = d.get("/v1/Services/sms/Sessions/auto1/Participants").json();
    let caller = parts["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identifier"] == A)
        .expect("the sender is a participant");
    assert_eq!(
        caller["proxy_identifier"], "+14155550101",
        "keeps the number it dialled"
    );
    // The next out-of-session message carries the most recent session of the pair.
    d.post("/v1/Services/sms/Sessions/auto1", &[("Status", "closed")]);
    hook.reply("/oos", Reply::Status(200));
    send_from_a(&mut a, "14155550101", "after close");
    let asked = hook.wait("/oos", 3, Duration::from_secs(5));
    let q = &asked[2];
    assert_eq!(q.param("sessionUniqueName"), Some("auto1"));
    assert_eq!(q.param("sessionStatus"), Some("closed"));
    assert_eq!(q.param("inboundParticipantIdentifier"), Some(A));
    assert_eq!(q.param("outboundParticipantIdentifier"), Some(B));
}

#[test]
fn status_callbacks_pending_at_kill_9_are_sent_after_restart() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_with(dir.path(), &config(""));
    let url = hook.url("/status");
    set_urls(&d, &[("CallbackUrl", &url)]);
    let (pa, _) = session(&d);
    hook.reply("/status", Reply::Status(503));
    let mut a = bound(&d, "carrier-a", "secret-a");
    for i in 0..5 {
        assert_eq!(send_from_a(&mut a, &pa, &format!("m{i}")), status::ESME_ROK);
    }
    // Every message's first callback was tried (and refused) before the kill.
    let tried = hook.wait("/status", 5, Duration::from_secs(5));
    assert!(tried.len() >= 5);
    let before: std::collections::HashSet<String> = tried
        .iter()
        .map(|r| r.param("interactionSid").unwrap().to_string())
        .collect();
    assert_eq!(before.len(), 5);
    d.kill9();
    drop(d);
    hook.reply("/status", Reply::Status(204));
    let n_before = hook.requests("/status").len();
    let d = Daemon::restart(dir.path(), &config(""));
    // After the restart the queue is sent: each of the five interactions' callbacks
    // arrives and is accepted.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let delivered = loop {
        let after: std::collections::HashSet<String> = hook.requests("/status")[n_before..]
            .iter()
            .map(|r| r.param("interactionSid").unwrap().to_string())
            .collect();
        if after.is_superset(&before) || std::time::Instant::now() > deadline {
            break after;
        }
        hook.wait(
            "/status",
            hook.requests("/status").len() + 1,
            Duration::from_millis(500),
        );
    };
    assert!(delivered.is_superset(&before), "{delivered:?} ⊉ {before:?}");
    assert!(d.metrics_text().contains("maskd_callback_queue_depth"));
}

/// Twilio's own RequestValidator (PyPI `twilio`) accepts maskd's signatures.
#[test]
fn twilio_request_validator_accepts_the_signatures() {
    let py = common::python();
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(""));
    let url = hook.url("/status?tenant=a&x=1");
    set_urls(&d, &[("CallbackUrl", &url)]);
    let (pa, _) = session(&d);
    let mut a = bound(&d, "carrier-a", "secret-a");
    assert_eq!(
        send_from_a(&mut a, &pa, "héllo & welcome = 100%"),
        status::ESME_ROK
    );
    let got = hook.wait("/status?tenant=a&x=1", 1, Duration::from_secs(5));
    assert!(!got.is_empty());
    let cases: Vec<serde_json::Value> = got
        .iter()
        .map(|r| {
            serde_json::json!({
                "url": url,
                "params": r.params,
                "signature": r.headers["x-twilio-signature"],
            })
        })
        .collect();
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_string(&cases).unwrap()).unwrap();
    let out = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/callbacks_check.py"
        ))
        .arg(&file)
        .arg(TOKEN)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn status_callbacks_are_retried_after_a_timeout_and_a_refused_connection() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(""));
    // Nothing listens at the first URL (connection refused): retried with backoff.
    let refused = format!("http://127.0.0.1:{}/status", free_port());
    set_urls(&d, &[("CallbackUrl", &refused)]);
    let (pa, _) = session(&d);
    let mut a = bound(&d, "carrier-a", "secret-a");
    assert_eq!(send_from_a(&mut a, &pa, "to nobody"), status::ESME_ROK);
    let errors = |d: &Daemon| {
        let m = d.metrics_text();
        m.lines()
            .find(|l| l.starts_with(r#"maskd_callbacks_total{kind="status",outcome="error"}"#))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while errors(&d) < 2 && std::time::Instant::now() < deadline {
        hook.wait("/never", 1, Duration::from_millis(200));
    }
    assert!(errors(&d) >= 2, "a refused connection is retried");
    // A receiver that never answers: timeout, then the same callback again.
    let url = hook.url("/slow");
    set_urls(&d, &[("CallbackUrl", &url)]);
    hook.reply("/slow", Reply::Silent);
    assert_eq!(send_from_a(&mut a, &pa, "to a slow one"), status::ESME_ROK);
    let got = hook.wait("/slow", 2, Duration::from_secs(8));
    assert!(got.len() >= 2, "retried after the timeout");
    assert_eq!(
        got[0].param("interactionSid"),
        got[1].param("interactionSid")
    );
    assert_eq!(got[0].params, got[1].params, "the same callback, in order");
    assert!(d
        .metrics_text()
        .contains(r#"maskd_callbacks_total{kind="status",outcome="timeout"}"#));
}

#[test]
fn out_of_session_timeout_refused_and_plain_2xx_mean_no_session_and_status_403_is_final() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(""));
    let mut a = bound(&d, "carrier-a", "secret-a");
    let mut b = bound(&d, "carrier-b", "secret-b");
    // Timeout, connection refused, and a 200 that is not JSON: no session is created.
    let refused = format!("http://127.0.0.1:{}/oos", free_port());
    hook.reply("/slow", Reply::Silent);
    hook.reply("/plain", Reply::Status(200));
    for url in [hook.url("/slow"), refused, hook.url("/plain")] {
        set_urls(&d, &[("OutOfSessionCallbackUrl", &url)]);
        assert_eq!(
            send_from_a(&mut a, "14155550101", "anyone?"),
            status::ESME_ROK
        );
        assert!(
            !b.wait_messages(1, Duration::from_millis(300)),
            "{url}: not forwarded"
        );
    }
    let sessions = d.get("/v1/Services/sms/Sessions").json();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 0);
    let m = d.metrics_text();
    for outcome in ["timeout", "error", "2xx"] {
        assert!(
            m.contains(&format!(
                r#"maskd_callbacks_total{{kind="out_of_session",outcome="{outcome}"}} 1"#
            )),
            "{outcome}: {m}"
        );
    }
    // A status callback answered 403 is delivered (Twilio ignores the answer): not retried.
    let url = hook.url("/status403");
    hook.reply("/status403", Reply::Status(403));
    set_urls(
        &d,
        &[("CallbackUrl", &url), ("OutOfSessionCallbackUrl", "")],
    );
    let (pa, _) = session(&d);
    assert_eq!(send_from_a(&mut a, &pa, "hi"), status::ESME_ROK);
    assert!(b.wait_messages(1, Duration::from_secs(5)));
    let got = hook.wait("/status403", 2, Duration::from_secs(5));
    let statuses: Vec<&str> = got
        .iter()
        .map(|r| r.param("outboundResourceStatus").unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["queued", "delivered"],
        "each once, no retry after 403"
    );
    // Nothing more arrives within the first retry's backoff.
    assert_eq!(
        hook.wait("/status403", 3, Duration::from_millis(1500))
            .len(),
        2
    );
}

#[test]
fn status_callbacks_beyond_the_memory_bound_wait_in_the_store_and_all_go_out_in_order() {
    // Two callbacks in memory at most: the other ones wait in the store and are read back
    // in order as memory drains. Every message's callbacks still arrive, once each, in order.
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_with(dir.path(), &config("  max_queued_in_memory: 2\n"));
    let url = hook.url("/status");
    set_urls(&d, &[("CallbackUrl", &url)]);
    let (pa, _) = session(&d);
    hook.reply("/status", Reply::Status(200));
    let mut a = bound(&d, "carrier-a", "secret-a");
    let mut b = bound(&d, "carrier-b", "secret-b");
    for i in 0..10 {
        assert_eq!(send_from_a(&mut a, &pa, &format!("m{i}")), status::ESME_ROK);
    }
    assert!(b.wait_messages(10, Duration::from_secs(10)), "forwarded");
    // queued and delivered for each of the ten messages.
    let got = hook.wait("/status", 20, Duration::from_secs(20));
    let mut by_interaction: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for r in &got {
        by_interaction
            .entry(r.param("interactionSid").unwrap())
            .or_default()
            .push(r.param("outboundResourceStatus").unwrap());
    }
    assert_eq!(by_interaction.len(), 10, "{by_interaction:?}");
    for (sid, statuses) in &by_interaction {
        assert_eq!(statuses, &["queued", "delivered"], "{sid}");
    }
    assert!(
        d.try_wait_for_log("wait in the store", Duration::from_secs(1))
            .is_some(),
        "the memory bound was reached"
    );
    // The last answer's bookkeeping follows the receiver's reply by a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !d.metrics_text().contains("maskd_callback_queue_depth 0")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = d.metrics_text();
    assert!(m.contains("maskd_callback_queue_depth 0"), "{m}");
}
