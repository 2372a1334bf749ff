//! Carriers (SPEC §2.7): traffic from a proxy number leaves through the carrier that owns it.
//! A message by that carrier's SMPP link even when the prefix routes say otherwise; a call by
//! that carrier's trunks, the next one taking over when one answers 503. `check-config`
//! names every bad `carriers` key. Real daemon, real sockets on loopback.

mod common;

use std::time::Duration;

use common::sip::{header, recv_until, respond, socket};
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};

const A: &str = "+14155551001";
const B: &str = "+14155552002";

/// Two SMPP carriers with prefix routes (B's number routes to carrier-b), a default trunk
/// `sip_trunk`, and carrier "alpha" owning both pool numbers: its messages go by
/// carrier-a's bind, its calls by `trunks`.
fn config(sip_trunk: u16, trunks: &[u16]) -> String {
    let trunks: String = trunks
        .iter()
        .map(|p| format!("        - address: \"127.0.0.1:{p}\"\n"))
        .collect();
    format!(
        "{}sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{sip_trunk}\"\n\
         carriers:\n  - name: \"alpha\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n    smpp: \"carrier-a\"\n    sip:\n      trunks:\n{trunks}\
         services:\n  - unique_name: \"s\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        two_carriers("")
    )
}

#[test]
fn a_message_leaves_by_the_smpp_link_of_the_carrier_owning_its_sender() {
    let dir = tempfile::tempdir().unwrap();
    let (_unused, port) = socket();
    let d = Daemon::start_with(dir.path(), &config(port, &[port]));
    let (pa, pb) = two_party_session(&d, "s", "chat", A, B);
    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    let r = a.request(Body::SubmitSm(sm(&A[1..], &pa[1..], b"by the owner")));
    assert_eq!(r.status, status::ESME_ROK);
    // B's number routes to carrier-b by prefix, but the sender (B's proxy number) belongs to
    // alpha, whose link is carrier-a: the message goes there.
    assert!(a.wait_messages(1, Duration::from_secs(5)), "by carrier-a");
    let m = &a.messages[0];
    assert_eq!(
        (m.source.addr.as_str(), m.dest.addr.as_str()),
        (&pb[1..], &B[1..])
    );
    assert_eq!(m.short_message, b"by the owner");
    assert!(
        !b.wait_messages(1, Duration::from_millis(500)),
        "not by the prefix route"
    );
}

#[test]
fn a_call_leaves_by_the_owning_carriers_trunks_and_fails_over_on_503() {
    let dir = tempfile::tempdir().unwrap();
    let (default_trunk, default_port) = socket();
    let (first, first_port) = socket();
    let (second, second_port) = socket();
    let d = Daemon::start_with(
        dir.path(),
        &config(default_port, &[first_port, second_port]),
    );
    let (pa, pb) = two_party_session(&d, "s", "chat", A, B);
    let (caller, caller_port) = socket();
    caller
        .send_to(
            common::sip::invite(caller_port, A, &pa, "owned1").as_bytes(),
            d.sip,
        )
        .unwrap();
    // The carrier's first trunk is out of service.
    let (inv1, from) = recv_until(&first, "INVITE ");
    assert!(
        inv1.starts_with(&format!("INVITE sip:{B}@127.0.0.1:{first_port}")),
        "{inv1}"
    );
    assert!(header(&inv1, "From").contains(&pb), "{inv1}");
    respond(&first, &inv1, from, 503, "Service Unavailable");
    // The next one answers.
    let (inv2, from) = recv_until(&second, "INVITE ");
    assert!(
        inv2.starts_with(&format!("INVITE sip:{B}@127.0.0.1:{second_port}")),
        "{inv2}"
    );
    assert_eq!(header(&inv2, "Call-ID"), header(&inv1, "Call-ID"));
    respond(&second, &inv2, from, 200, "OK");
    let (ok, _) = recv_until(&caller, "SIP/2.0 200");
    assert_eq!(header(&ok, "Call-ID"), "owned1");
    let m = d.metrics_text();
    assert!(
        m.contains(r#"maskd_sip_trunk_failovers_total{carrier="alpha"} 1"#),
        "{m}"
    );
    // Nothing went to sip.trunk, which is for numbers no carrier owns.
    default_trunk
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(default_trunk.recv_from(&mut buf).is_err());
}

#[test]
fn check_config_names_every_bad_carriers_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = format!(
        "{}carriers:\n\
         \x20 - name: \"alpha\"\n    numbers: [\"+1555\", \"555\"]\n    smpp: \"nobody\"\n    mps: 0\n    sip:\n      options_interval: \"soon\"\n      trunks:\n        - address: \"trunk example!\"\n          transport: \"sctp\"\n          username: \"maskd\"\n\
         \x20 - name: \"alpha\"\n    numbers: [\"+1555\"]\n    sip:\n      trunks: []\n\
         \x20 - name: \"gamma\"\n    sip:\n      register: \"10s\"\n      trunks:\n        - address: \"192.0.2.10:5060\"\n",
        two_carriers("")
    );
    let (code, err) = check_config(dir.path(), &bad);
    assert_eq!(code, Some(64), "{err}");
    for key in [
        "carriers[0].numbers[1]",
        "carriers[0].smpp",
        "carriers[0].mps",
        "carriers[0].sip.options_interval",
        "carriers[0].sip.trunks[0].address",
        "carriers[0].sip.trunks[0].transport",
        "carriers[0].sip.trunks[0].username",
        "carriers[1].name",
        "carriers[1].numbers[0]",
        "carriers[1].sip.trunks",
        "carriers[2].sip.trunks[0].address",
        "carriers[2].sip.register",
        "carriers[2].sip.trunks[0].username",
    ] {
        assert!(err.contains(&format!("{key}:")), "{key} not named: {err}");
    }
    assert!(err.contains("owned by carriers[0] too"), "{err}");
    assert!(err.contains("outside sip.trusted_cidrs"), "{err}");
}

/// Each carrier trunk is probed with OPTIONS at start (then every `options_interval`): one
/// answering is up, one silent for four T1 is down, and `/metrics` says which.
#[test]
fn trunks_are_probed_with_options_and_their_health_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let (_default, default_port) = socket();
    let (answering, answering_port) = socket();
    let (silent, silent_port) = socket();
    let d = Daemon::start_with(
        dir.path(),
        &config(default_port, &[silent_port, answering_port]),
    );
    let (probe, from) = recv_until(&answering, "OPTIONS ");
    assert!(
        probe.starts_with(&format!("OPTIONS sip:127.0.0.1:{answering_port} ")),
        "{probe}"
    );
    respond(&answering, &probe, from, 200, "OK");
    let (probe, _) = recv_until(&silent, "OPTIONS ");
    assert!(!probe.contains("+1"), "no number in a probe: {probe}");
    let metric = |port: u16, v: u8| {
        format!("maskd_sip_trunk_up{{carrier=\"alpha\",trunk=\"127.0.0.1:{port}\"}} {v}")
    };
    let t = std::time::Instant::now();
    loop {
        let m = d.metrics_text();
        if m.contains(&metric(answering_port, 1)) && m.contains(&metric(silent_port, 0)) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A carrier's per-number message rate (`mps`): five messages from one proxy number at 2 a
/// second leave over two seconds, in order, none refused; a message from another number of
/// the same carrier meanwhile is not held behind them; and a participant added meanwhile
/// is given a number with spare rate.
#[test]
fn each_number_is_held_to_its_carriers_message_rate_without_delaying_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (_trunk, port) = socket();
    let cfg = format!(
        "{}sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{port}\"\n\
         carriers:\n  - name: \"alpha\"\n    numbers: [\"+141555501\"]\n    smpp: \"carrier-a\"\n    mps: 2\n\
         services:\n  - unique_name: \"s\"\n    numbers: [\"+14155550101\", \"+14155550102\", \"+14155550103\"]\n",
        two_carriers("")
    );
    let d = Daemon::start_with(dir.path(), &cfg);
    let session = |name: &str, x: (&str, &str), y: (&str, &str)| {
        let p = |(id, proxy): (&str, &str)| {
            format!(r#"{{"Identifier":"{id}","ProxyIdentifier":"{proxy}"}}"#)
        };
        let r = d.post(
            "/v1/Services/s/Sessions",
            &[
                ("UniqueName", name),
                ("Participants", &p(x)),
                ("Participants", &p(y)),
            ],
        );
        assert_eq!(r.status, 201, "{}", r.body);
    };
    // A and B talk through 0101 and 0102; C and D through 0101 and 0103.
    let (c, dd) = ("+14155551003", "+14155552004");
    session("ab", (A, "+14155550101"), (B, "+14155550102"));
    session("cd", (c, "+14155550101"), (dd, "+14155550103"));
    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let t0 = std::time::Instant::now();
    for k in 0..5 {
        let text = format!("to B {k}");
        let r = a.request(Body::SubmitSm(sm(&A[1..], "14155550101", text.as_bytes())));
        assert_eq!(r.status, status::ESME_ROK, "queued, not refused");
    }
    let r = a.request(Body::SubmitSm(sm(&c[1..], "14155550101", b"to D")));
    assert_eq!(r.status, status::ESME_ROK);
    // While B's number (0102) has messages waiting, a new participant is given 0103, which
    // is as loaded (one participant each) but has spare rate (by pool order it would get
    // 0102).
    let r = d.post(
        "/v1/Services/s/Sessions",
        &[("Participants", r#"{"Identifier":"+14155553000"}"#)],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let sid = r.json()["sid"].as_str().unwrap().to_string();
    let parts = d
        .get(&format!("/v1/Services/s/Sessions/{sid}/Participants"))
        .json();
    assert_eq!(
        parts["participants"][0]["proxy_identifier"], "+14155550103",
        "the number with spare rate"
    );
    // Each message as it arrives (all by carrier-a, alpha's link), with when.
    let mut arrived: Vec<(String, String, Duration)> = Vec::new();
    let mut seen = 0;
    while arrived.len() < 6 && t0.elapsed() < Duration::from_secs(10) {
        a.recv(Duration::from_millis(20));
        for m in &a.messages[seen..] {
            arrived.push((
                m.source.addr.clone(),
                String::from_utf8_lossy(&m.short_message).into_owned(),
                t0.elapsed(),
            ));
        }
        seen = a.messages.len();
        if arrived.len() == 1 {
            let m = d.metrics_text();
            assert!(
                m.lines().any(
                    |l| l.starts_with("maskd_smpp_throttled_backlog{service=\"KS")
                        && !l.ends_with(" 0")
                ),
                "the backlog shows: {m}"
            );
        }
    }
    let to_b: Vec<&(String, String, Duration)> = arrived
        .iter()
        .filter(|(src, ..)| src == "14155550102")
        .collect();
    let texts: Vec<&str> = to_b.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        ["to B 0", "to B 1", "to B 2", "to B 3", "to B 4"],
        "{arrived:?}"
    );
    let span = to_b[4].2 - to_b[0].2;
    assert!(
        span >= Duration::from_millis(1_900) && span < Duration::from_secs(4),
        "five at 2 a second: {span:?}"
    );
    let to_d = arrived
        .iter()
        .find(|(src, ..)| src == "14155550103")
        .expect("D's message");
    assert!(
        to_d.2 < to_b[2].2,
        "D's message is not held behind B's: {arrived:?}"
    );
}

/// A pool number tagged with a carrier over the API (the PhoneNumber resource's `Carrier`, a
/// maskd extension) leaves by that carrier, whatever `carriers[].numbers` says; the tag is in
/// the resource, survives a restart, and an empty `Carrier` takes it off. A carrier that is
/// not configured is refused with Twilio's error shape.
#[test]
fn a_number_tagged_with_a_carrier_over_the_api_leaves_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_unused, port) = socket();
    let cfg = format!(
        "{}sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{port}\"\n\
         carriers:\n  - name: \"alpha\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n    smpp: \"carrier-a\"\n\
         \x20 - name: \"beta\"\n    smpp: \"carrier-b\"\n\
         services:\n  - unique_name: \"s\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        two_carriers("")
    );
    let d = Daemon::start_with(dir.path(), &cfg);
    let (pa, pb) = two_party_session(&d, "s", "chat", A, B);
    let path = format!("/v1/Services/s/PhoneNumbers/{pb}");
    assert_eq!(d.get(&path).json()["carrier"], serde_json::Value::Null);
    let r = d.post(&path, &[("Carrier", "nobody")]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], 80701, "{}", r.body);
    assert!(r.body.contains("Carrier"), "{}", r.body);
    let r = d.post(&path, &[("Carrier", "beta")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["carrier"], "beta");
    // B's proxy number now belongs to beta, whose link is carrier-b.
    let send = |d: &Daemon, text: &[u8]| -> (bool, bool) {
        let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
        let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
        let r = a.request(Body::SubmitSm(sm(&A[1..], &pa[1..], text)));
        assert_eq!(r.status, status::ESME_ROK);
        let by_b = b.wait_messages(1, Duration::from_secs(5));
        let by_a = a.wait_messages(1, Duration::from_millis(if by_b { 300 } else { 5000 }));
        if by_b {
            assert_eq!(b.messages[0].source.addr, pb[1..]);
        }
        (by_a, by_b)
    };
    assert_eq!(send(&d, b"tagged"), (false, true), "by beta's link");
    drop(d);
    let d = Daemon::restart(dir.path(), &cfg);
    assert_eq!(
        d.get(&path).json()["carrier"],
        "beta",
        "kept across a restart"
    );
    assert_eq!(send(&d, b"after restart"), (false, true));
    let r = d.post(&path, &[("Carrier", "")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["carrier"], serde_json::Value::Null);
    assert_eq!(send(&d, b"untagged"), (true, false), "alpha's again");
}
