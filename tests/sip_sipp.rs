//! Interop with SIPp (Debian package `sip-tester`) on both sides of maskd: a SIPp UAC as the
//! caller's carrier, a SIPp UAS as the trunk towards the callee. Checks the call completes
//! and what each side received: the callee sees only proxy numbers and nothing of the
//! caller's leg. Without `sipp` on PATH this test fails (scripts/test installs it).

mod common;

use std::time::{Duration, Instant};

use common::sipp::*;
use common::*;
use serde_json::json;

struct Setup {
    tcp: bool,
    _dir: tempfile::TempDir,
    d: Daemon,
    uas_port: u16,
    pa: String,
    pb: String,
}

fn setup() -> Setup {
    setup_on(false)
}

/// With `tcp`, maskd reaches the trunk over TCP and both SIPp sides use TCP.
fn setup_on(tcp: bool) -> Setup {
    setup_with(tcp, "", |_| String::new())
}

/// `sip_extra`: more keys of the `sip:` section (each line indented two spaces);
/// `sections`: more top-level sections, given the UAS's port.
fn setup_with(tcp: bool, sip_extra: &str, sections: impl Fn(u16) -> String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let uas_port = if tcp { free_port() } else { udp_port() };
    let cfg = format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{uas_port}\"\n{sip_extra}  transport: \"{}\"\n{}services:\n  - unique_name: \"voice\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        if tcp { "tcp" } else { "udp" },
        sections(uas_port)
    );
    let d = Daemon::start_with(dir.path(), &cfg);
    let p1 = r#"{"Identifier":"+14155551001"}"#;
    let p2 = r#"{"Identifier":"+14155552002"}"#;
    assert_eq!(
        d.post(
            "/v1/Services/voice/Sessions",
            &[
                ("UniqueName", "call"),
                ("Participants", p1),
                ("Participants", p2)
            ]
        )
        .status,
        201
    );
    let parts = d
        .get("/v1/Services/voice/Sessions/call/Participants")
        .json();
    let pa = parts["participants"][0]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let pb = parts["participants"][1]["proxy_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    Setup {
        tcp,
        _dir: dir,
        d,
        uas_port,
        pa,
        pb,
    }
}

/// Runs one call: the UAS scenario (if any) on the trunk port, the UAC towards maskd
/// dialling `dialled`. Returns both message logs after both SIPp runs succeeded.
fn run_call(s: &Setup, uac: &str, uas: Option<&str>, dialled: &str) -> (String, String) {
    run_call_at(
        s._dir.path(),
        s.uas_port,
        s.d.sip,
        s.tcp,
        uac,
        uas,
        dialled,
        [&[], &[]],
    )
}

fn only_interaction(d: &Daemon) -> serde_json::Value {
    // The log is written by the group commit right after the final answer: poll (bounded).
    for _ in 0..100 {
        let list = d
            .get("/v1/Services/voice/Sessions/call/Interactions")
            .json();
        let items = list["interactions"].as_array().unwrap().clone();
        let done = items.len() == 1
            && !["initiated", "ringing", "in-progress"]
                .contains(&items[0]["outbound_resource_status"].as_str().unwrap_or(""));
        if done {
            return items[0].clone();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no finished voice interaction");
}

#[test]
fn sipp_cancel_during_ringing() {
    let s = setup();
    let (uac, uas) = run_call(&s, "uac_cancel.xml", Some("uas_cancel.xml"), &s.pa);
    assert!(uas.contains("CANCEL sip:"), "leg B got the CANCEL:\n{uas}");
    assert!(uac.contains("SIP/2.0 487"), "leg A got 487:\n{uac}");
    assert_eq!(
        only_interaction(&s.d)["outbound_resource_status"],
        "canceled"
    );
}

/// A carrier's trunk (SIPp) answers maskd's INVITE with a 401 and a nonce, and checks the
/// credentials of the next one itself (SIPp's verifyauth): the call is answered, then hung up.
#[test]
fn sipp_trunk_challenge_answered_with_the_carriers_credentials() {
    let s = setup_with(false, "", |trunk| {
        format!(
            "carriers:\n  - name: \"carrier-b\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n    sip:\n      trunks:\n        - address: \"127.0.0.1:{trunk}\"\n          username: \"maskd\"\n          password: \"s3cret\"\n"
        )
    });
    let (uac, uas) = run_call(&s, "uac.xml", Some("uas_digest.xml"), &s.pa);
    assert!(uac.contains("SIP/2.0 200"), "{uac}");
    assert!(
        uas.contains("Authorization: Digest username=\"maskd\""),
        "{uas}"
    );
    assert!(
        !uac.contains("SIP/2.0 401"),
        "the caller hears nothing of the challenge:\n{uac}"
    );
    assert_eq!(
        only_interaction(&s.d)["outbound_resource_status"],
        "completed"
    );
    assert!(s
        .d
        .metrics_text()
        .contains(r#"maskd_sip_auth_challenges_total{carrier="carrier-b",outcome="answered"} 1"#));
}

#[test]
fn sipp_busy_callee() {
    let s = setup();
    let (uac, _) = run_call(&s, "uac_486.xml", Some("uas_busy.xml"), &s.pa);
    assert!(uac.contains("SIP/2.0 486"));
    assert_eq!(only_interaction(&s.d)["outbound_resource_status"], "busy");
}

#[test]
fn sipp_bye_from_the_callee() {
    let s = setup();
    let (uac, uas) = run_call(&s, "uac_callee_bye.xml", Some("uas_callee_bye.xml"), &s.pa);
    assert!(uac.contains("BYE sip:"), "leg A got maskd's BYE:\n{uac}");
    assert!(
        !uac.contains(&s.pb[1..]) && !uac.contains("callee@"),
        "nothing of leg B on leg A:\n{uac}"
    );
    assert!(uas.contains("SIP/2.0 200"));
    assert_eq!(
        only_interaction(&s.d)["outbound_resource_status"],
        "completed"
    );
}

#[test]
fn sipp_out_of_session_caller_gets_404_and_no_leg_b() {
    let s = setup();
    // A dials a pool number that is not A's proxy in any session.
    let other = if s.pa == "+14155550101" {
        "+14155550102"
    } else {
        "+14155550101"
    };
    let other = if other == s.pb.as_str() && s.pa == s.pb {
        "+14155550199"
    } else {
        other
    };
    let (uac, _) = run_call(&s, "uac_404.xml", None, other);
    assert!(uac.contains("SIP/2.0 404"));
    let m = s.d.metrics_text();
    assert!(
        m.contains("maskd_sip_calls_started_total 0"),
        "no leg B:\n{m}"
    );
}

/// A callee that rings past 64×T1 (8 s with T1 = 100 ms, as 40 s with the default T1) and
/// then answers: the call is answered, not cut off with 408 by Timer B.
#[test]
fn sipp_callee_ringing_past_timer_b_is_answered() {
    let s = setup_with(false, "  t1: \"100ms\"\n  t2: \"400ms\"\n", |_| {
        String::new()
    });
    let (uac_text, _) = run_call(&s, "uac.xml", Some("uas_long_ring.xml"), &s.pa);
    assert!(
        !uac_text.contains("SIP/2.0 408"),
        "no 408 while ringing:\n{uac_text}"
    );
    let i = only_interaction(&s.d);
    assert_eq!(i["outbound_resource_status"], "completed", "{i}");
}

#[test]
fn sipp_masked_call_over_udp() {
    let s = setup();
    let (a, b) = ("+14155551001", "+14155552002");
    let (uac_text, uas_text) = run_call(&s, "uac.xml", Some("builtin"), &s.pa);

    // What the callee's side received: from B's proxy number to B's real number, nothing of A.
    let invite = uas_text
        .split("INVITE sip:")
        .nth(1)
        .expect("the UAS got an INVITE");
    assert!(
        invite.starts_with(&format!("{b}@")),
        "Request-URI is B's real number: {invite}"
    );
    assert!(
        uas_text.contains(&format!("From: <sip:{}@", s.pb)),
        "From is B's proxy number:\n{uas_text}"
    );
    assert!(
        uas_text.contains(&format!("To: <sip:{b}@")),
        "To is B's real number:\n{uas_text}"
    );
    for leak in [
        &a[1..],
        "secret-pbx-of-alice",
        "P-Preferred-Identity",
        "Alice",
        "SIPpTag00",
        "maskd interop",
    ] {
        assert!(
            !uas_text.contains(leak),
            "leg B received {leak:?}:\n{uas_text}"
        );
    }
    assert!(uas_text.contains("m=audio"), "SDP passed unchanged");
    // What the caller's side received back: nothing of B.
    for leak in [&b[1..], &s.pb[1..]] {
        assert!(
            !uac_text.contains(leak),
            "leg A received {leak:?}:\n{uac_text}"
        );
    }
    assert!(
        uac_text.contains("SIP/2.0 180") && uac_text.contains("SIP/2.0 200"),
        "180 and 200 relayed"
    );

    // One voice interaction, completed, with its duration.
    let i = only_interaction(&s.d);
    assert_eq!(i["type"], "voice");
    assert_eq!(i["outbound_resource_status"], "completed");
    assert_eq!(i["inbound_resource_type"], "Call");
    assert!(i["data"].as_str().unwrap().contains("duration"));

    // Each leg's resource URL is a Twilio Call: A to A's proxy number, then B's proxy
    // number to B, the dialled leg's parent the inbound one.
    let leg = |which: &str| {
        let url = i[format!("{which}_resource_url")].as_str().unwrap();
        assert!(url.starts_with(&s.d.base()), "{url}");
        let r = s.d.get(&url[s.d.base().len()..]);
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        let c = r.json();
        assert_eq!(c["sid"], i[format!("{which}_resource_sid")]);
        assert_eq!(c["status"], "completed", "{c}");
        assert!(c["end_time"].as_str().unwrap().ends_with("+0000"), "{c}");
        assert_eq!(
            c["subresource_uris"]["recordings"],
            format!(
                "/2010-04-01/Accounts/{ACCOUNT}/Calls/{}/Recordings.json",
                c["sid"].as_str().unwrap()
            )
        );
        c
    };
    let (ca, cb) = (leg("inbound"), leg("outbound"));
    assert_eq!(
        (&ca["direction"], &ca["from"], &ca["to"]),
        (&json!("inbound"), &json!(a), &json!(s.pa))
    );
    assert_eq!(
        (&cb["direction"], &cb["from"], &cb["to"]),
        (&json!("outbound-dial"), &json!(s.pb), &json!(b))
    );
    assert_eq!(cb["parent_call_sid"], ca["sid"]);
    let duration = serde_json::from_str::<serde_json::Value>(i["data"].as_str().unwrap()).unwrap()
        ["duration"]
        .clone();
    assert_eq!(cb["duration"], duration);
    s.d.get(&format!(
        "/2010-04-01/Accounts/{ACCOUNT}/Calls/CA{}.json",
        "0".repeat(32)
    ))
    .assert_error(404, 20404);

    let m = s.d.metrics_text();
    for want in [
        "maskd_sip_call_setup_seconds_count 1",
        "maskd_sip_calls_started_total 1",
        r#"maskd_sip_messages_total{direction="in",kind="INVITE"} 1"#,
        r#"maskd_sip_messages_total{direction="out",kind="INVITE"} 1"#,
        r#"maskd_sip_messages_total{direction="in",kind="BYE"} 1"#,
    ] {
        assert!(m.contains(want), "{want}:\n{m}");
    }
}

#[test]
fn sipp_calls_end_when_their_session_closes() {
    let s = setup();
    std::thread::scope(|scope| {
        let (dir, port, sip, pa) = (
            s._dir.path().to_path_buf(),
            s.uas_port,
            s.d.sip,
            s.pa.clone(),
        );
        let call = scope.spawn(move || {
            run_call_at(
                &dir,
                port,
                sip,
                false,
                "uac_callee_bye.xml",
                Some("builtin"),
                &pa,
                [&[], &[]],
            )
        });
        // Wait (bounded) until the call is answered, then close the session over the API.
        let mut answered = false;
        for _ in 0..200 {
            let list =
                s.d.get("/v1/Services/voice/Sessions/call/Interactions")
                    .json();
            if list["interactions"][0]["outbound_resource_status"] == "in-progress" {
                answered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(answered, "the call was never answered");
        assert_eq!(
            s.d.post("/v1/Services/voice/Sessions/call", &[("Status", "closed")])
                .status,
            200
        );
        let (uac, uas) = call.join().unwrap();
        assert!(uac.contains("BYE sip:"), "maskd hung up leg A:\n{uac}");
        assert!(uas.contains("BYE sip:"), "maskd hung up leg B:\n{uas}");
    });
    assert_eq!(
        only_interaction(&s.d)["outbound_resource_status"],
        "completed"
    );
}

#[test]
fn sipp_reinvite_and_info_are_bridged() {
    let s = setup();
    let (uac, uas) = run_call(&s, "uac_reinvite.xml", Some("uas_reinvite.xml"), &s.pa);
    // Leg B saw the re-INVITE with A's new offer (PCMA) and the INFO, in its own dialog.
    assert_eq!(uas.matches("INVITE sip:").count(), 2, "{uas}");
    assert!(uas.contains("INFO sip:"), "{uas}");
    assert!(
        uas.contains("RTP/AVP 8"),
        "the new SDP offer crossed:\n{uas}"
    );
    assert!(!uas.contains("4155551001"), "nothing of A on leg B:\n{uas}");
    // Leg A got both answers, the re-INVITE's with B's SDP.
    assert!(uac.matches("SIP/2.0 200").count() >= 4, "{uac}");
    assert!(
        !uac.contains("callee@") && !uac.contains(&s.pb[1..]),
        "nothing of B on leg A:\n{uac}"
    );
    assert_eq!(
        only_interaction(&s.d)["outbound_resource_status"],
        "completed"
    );
}

/// rsip, an independent parser, reads every message maskd put on either leg, and sees the
/// masked identities: leg B's INVITE from B's proxy number to B's real number.
#[test]
fn every_message_maskd_emits_parses_with_rsip() {
    use rsip::prelude::*;
    let s = setup();
    let (uac, uas) = run_call(&s, "uac.xml", Some("builtin"), &s.pa);
    let (to_a, to_b) = (received_messages(&uac), received_messages(&uas));
    assert!(
        to_a.len() >= 4 && to_b.len() >= 3,
        "A got {}, B got {}",
        to_a.len(),
        to_b.len()
    );
    for m in to_a.iter().chain(&to_b) {
        rsip::SipMessage::try_from(m.as_str())
            .unwrap_or_else(|e| panic!("rsip refuses what maskd sent ({e}):\n{m}"));
    }
    let invite = to_b
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("leg B INVITE");
    let rsip::SipMessage::Request(req) = rsip::SipMessage::try_from(invite.as_str()).unwrap()
    else {
        panic!("not a request")
    };
    assert_eq!(
        req.uri.auth.as_ref().map(|a| a.user.as_str()),
        Some("+14155552002"),
        "Request-URI user is B"
    );
    let from = req.from_header().unwrap().typed().unwrap();
    assert_eq!(
        from.uri.auth.map(|a| a.user),
        Some(s.pb.clone()),
        "From user is B's proxy"
    );
    let to = req.to_header().unwrap().typed().unwrap();
    assert_eq!(
        to.uri.auth.map(|a| a.user),
        Some("+14155552002".to_string())
    );
    assert!(
        req.call_id_header().unwrap().value().contains("@maskd"),
        "a Call-ID of maskd own"
    );
}

#[test]
fn sipp_masked_call_over_tcp() {
    let s = setup_on(true);
    let (uac, uas) = run_call(&s, "uac.xml", Some("builtin"), &s.pa);
    assert!(
        uas.contains("TCP message received"),
        "leg B over TCP:\n{uas}"
    );
    assert!(
        uas.contains("Via: SIP/2.0/TCP"),
        "maskd's Via says TCP on leg B:\n{uas}"
    );
    assert!(
        uac.contains("TCP message received") && uac.contains("SIP/2.0 200"),
        "leg A over TCP:\n{uac}"
    );
    assert!(!uas.contains("4155551001"), "nothing of A on leg B");
    assert_eq!(
        only_interaction(&s.d)["outbound_resource_status"],
        "completed"
    );
}

#[test]
fn sipp_cancel_and_busy_over_tcp() {
    let s = setup_on(true);
    let (uac, _) = run_call(&s, "uac_cancel.xml", Some("uas_cancel.xml"), &s.pa);
    assert!(uac.contains("SIP/2.0 487"));
    let s = setup_on(true);
    let (uac, _) = run_call(&s, "uac_486.xml", Some("uas_busy.xml"), &s.pa);
    assert!(uac.contains("SIP/2.0 486"));
}

/// SIPp with RTP through the relay: the caller plays a G.711 A-law capture (236 packets,
/// 7 s; Debian's sip-tester ships it), the callee echoes every packet back (`-rtp_echo`).
/// Every packet crosses maskd both ways, and the callee's SDP names maskd, not the caller.
#[test]
fn sipp_rtp_played_and_echoed_through_the_relay() {
    let s = setup();
    let (uac_mp, uas_mp) = (udp_port(), udp_port());
    let (uac_mp, uas_mp) = (uac_mp.to_string(), uas_mp.to_string());
    let (uac_text, uas_text) = run_call_at(
        s._dir.path(),
        s.uas_port,
        s.d.sip,
        false,
        "uac_pcap.xml",
        Some("builtin"),
        &s.pa,
        [&["-mp", &uac_mp], &["-mp", &uas_mp, "-rtp_echo"]],
    );
    // Each side's SDP names maskd's relay ports, not the other SIPp's media port.
    assert!(
        !uas_text.contains(&format!("m=audio {uac_mp} ")),
        "{uas_text}"
    );
    assert!(
        !uac_text.contains(&format!("m=audio {uas_mp} ")),
        "{uac_text}"
    );
    assert!(uas_text.contains("o=maskd "), "{uas_text}");
    let count = |direction: &str| -> f64 {
        let key = format!("maskd_media_packets_total{{direction=\"{direction}\",kind=\"rtp\"}} ");
        s.d.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str())?.parse().ok())
            .unwrap_or(0.0)
    };
    // The relay flushes its counters every half second: wait (bounded) for the last ones.
    let deadline = Instant::now() + Duration::from_secs(3);
    while count("b_to_a") < 236.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        count("a_to_b"),
        236.0,
        "every played packet reached the callee"
    );
    assert_eq!(count("b_to_a"), 236.0, "every echoed packet came back");
}
