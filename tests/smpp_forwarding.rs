//! What the SMS plane does with a message between acceptance and the next hop, end to end
//! against the real daemon with SMPP peers of the project's own (tests/common/smpp.rs, which
//! answer deliver_sm with an empty message_id as SMPP 3.4 §4.6.2 prescribes): the final
//! receipt when the next hop is a bound account, opt-out in every data coding, addresses read
//! with their TON/NPI, and concatenated parts kept in the order one bind sent them.

mod common;

use std::time::Duration;

use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body, ShortMessage};
use maskd::smpp::text;

const A: &str = "+14155551001";
const B: &str = "+14155552002";

fn config(extra_accounts: &str) -> String {
    format!(
        r#"smpp:
  listen: "127.0.0.1:0"
  accounts:
    - system_id: "carrier-a"
      password: "secret-a"
    - system_id: "carrier-b"
      password: "secret-b"
{extra_accounts}
  routes:
    - prefix: "+1415555100"
      via: "carrier-a"
    - prefix: "+1415555200"
      via: "carrier-b"
    - prefix: "+1555123"
      via: "carrier-n"
services:
  - unique_name: "sms"
    numbers: ["+14155550101", "+14155550102"]
"#
    )
}

/// The "carrier-n" account every config here has (`+1555123…` is routed to it); with
/// `default_country` it sends national numbers (US).
const CARRIER_N: &str = r#"    - system_id: "carrier-n"
      password: "secret-n""#;
fn bound(d: &Daemon, who: &str, pass: &str, kind: BindKind) -> Peer {
    Peer::bound(d.smpp, kind, who, pass)
}

fn interactions(d: &Daemon, session: &str) -> Vec<serde_json::Value> {
    d.get(&format!("/v1/Services/sms/Sessions/{session}/Interactions"))
        .json()["interactions"]
        .as_array()
        .unwrap()
        .clone()
}

fn body_of(i: &serde_json::Value) -> String {
    serde_json::from_str::<serde_json::Value>(i["data"].as_str().unwrap()).unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string()
}

fn counter(d: &Daemon, series: &str) -> i64 {
    d.metrics_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn gsm_sm(from: &str, to: &str, dc: u8, text_: &str) -> ShortMessage {
    let octets = if dc & 0x0C == 0x08 {
        text::encode_ucs2(text_)
    } else {
        text::encode_gsm(text_).unwrap()
    };
    let mut m = sm(from, to, &octets);
    m.data_coding = dc;
    m
}

/// Message-class and general-group codings are text too: STOP sent as a flash message
/// (0xF1 GSM class 1, 0x19 UCS-2 class 1, 0x10 GSM class 0) is acknowledged and not
/// forwarded; other texts in those codings are forwarded octet for octet and logged decoded;
/// 8-bit data (0xF5) has no text form: forwarded untouched, logged as hex.
#[test]
fn opt_out_applies_in_message_class_codings() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(CARRIER_N));
    let (pa, _) = two_party_session(&d, "sms", "chat", A, B);
    let pa = &pa[1..];
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transmitter);
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Receiver);
    for (dc, word) in [
        (0xF1, "STOP"),
        (0x19, "Stop"),
        (0x10, " stop "),
        (0x19, "QUIT"),
    ] {
        let r = a.request(Body::SubmitSm(gsm_sm(&A[1..], pa, dc, word)));
        assert_eq!(r.status, status::ESME_ROK, "{dc:#x} {word}");
    }
    let flash = [
        (0xF1, "flash in GSM"),
        (0x19, "Флеш UCS-2"),
        (0x18, "класс 0"),
    ];
    for (dc, t) in flash {
        let r = a.request(Body::SubmitSm(gsm_sm(&A[1..], pa, dc, t)));
        assert_eq!(r.status, status::ESME_ROK);
    }
    let mut binary = sm(&A[1..], pa, &[0xCA, 0xFE, 0x00]);
    binary.data_coding = 0xF5;
    assert_eq!(a.request(Body::SubmitSm(binary)).status, status::ESME_ROK);
    assert!(b.wait_messages(4, Duration::from_secs(10)));
    assert!(
        !b.wait_messages(5, Duration::from_millis(500)),
        "no opt-out forwarded"
    );
    let got: Vec<(u8, String)> = b
        .messages
        .iter()
        .map(|m| (m.data_coding, text::decode(m.data_coding, &m.short_message)))
        .collect();
    let mut want: Vec<(u8, String)> = flash.iter().map(|(c, t)| (*c, t.to_string())).collect();
    want.push((0xF5, "cafe00".into()));
    assert_eq!(got, want, "same data_coding, same octets");
    assert_eq!(counter(&d, "maskd_smpp_opt_out_total"), 4);
    let mut bodies: Vec<String> = interactions(&d, "chat").iter().map(body_of).collect();
    bodies.sort();
    let mut logged: Vec<String> = want.into_iter().map(|(_, t)| t).collect();
    logged.sort();
    assert_eq!(bodies, logged);
}
