//! What the SMS plane does with a message between acceptance and the next hop, end to end
//! against the real daemon with SMPP peers of the project's own (tests/common/smpp.rs, which
//! answer deliver_sm with an empty message_id as SMPP 3.4 §4.6.2 prescribes): the final
//! receipt when the next hop is a bound account, opt-out in every data coding, addresses read
//! with their TON/NPI, and concatenated parts kept in the order one bind sent them.

mod common;

use std::time::{Duration, Instant};

use common::hook::Hook;
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, Address, BindKind, Body, ShortMessage};
use maskd::smpp::{receipt, text};

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
const NATIONAL: &str = r#"    - system_id: "carrier-n"
      password: "secret-n"
      default_country: "US""#;

fn bound(d: &Daemon, who: &str, pass: &str, kind: BindKind) -> Peer {
    Peer::bound(d.smpp, kind, who, pass)
}

/// Polls `f` every 20 ms until it gives a value or `limit` passes.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// The interaction whose inbound message is `message_id`, once its outbound leg is `want`.
fn leg_reaches(d: &Daemon, session: &str, message_id: &str, want: &str) -> serde_json::Value {
    poll(Duration::from_secs(10), || {
        interactions(d, session)
            .into_iter()
            .find(|i| i["inbound_resource_sid"] == message_id)
            .filter(|i| i["outbound_resource_status"] == want)
    })
    .unwrap_or_else(|| {
        panic!(
            "the leg of {message_id} never became {want}: {:?}",
            interactions(d, session)
        )
    })
}

fn message_id(resp: &maskd::smpp::pdu::Pdu) -> String {
    match &resp.body {
        Body::SubmitSmResp { message_id } | Body::DeliverSmResp { message_id } => {
            message_id.clone()
        }
        other => panic!("not a message answer: {other:?}"),
    }
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

/// The next hop is carrier B's own bind: its deliver_sm_resp (ESME_ROK, empty message_id) is
/// final delivery. The leg becomes `delivered` (with its status callback) and A, which asked
/// for a receipt, gets maskd's DELIVRD receipt for its own message id; without
/// registered_delivery the leg is delivered all the same and no receipt is sent.
#[test]
fn a_bound_accounts_deliver_sm_resp_is_final_delivery_with_a_receipt_for_the_sender() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(CARRIER_N));
    let r = d.post("/v1/Services/sms", &[("CallbackUrl", &hook.url("/status"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (pa, pb) = two_party_session(&d, "sms", "chat", A, B);
    let (pa, pb) = (&pa[1..], &pb[1..]);
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transceiver);
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Transceiver);

    let mut m = sm(&A[1..], pa, b"Hello B");
    m.registered_delivery = 1;
    let r = a.request(Body::SubmitSm(m));
    assert_eq!(r.status, status::ESME_ROK);
    let maskd_id = message_id(&r);
    assert!(
        b.wait_messages(1, Duration::from_secs(10)),
        "forwarded to B"
    );
    assert_eq!(
        (
            b.messages[0].source.addr.as_str(),
            b.messages[0].dest.addr.as_str()
        ),
        (pb, &B[1..])
    );
    let i = leg_reaches(&d, "chat", &maskd_id, "delivered");
    let sid = i["sid"].as_str().unwrap().to_string();

    assert!(
        a.wait_messages(1, Duration::from_secs(10)),
        "A gets a receipt"
    );
    let rc = &a.messages[0];
    assert_eq!(rc.esm_class & 0x3C, 0x04, "receipt esm_class: {rc:?}");
    assert_eq!(
        (rc.source.addr.as_str(), rc.dest.addr.as_str()),
        (pa, &A[1..]),
        "from A's proxy number to A"
    );
    let parsed = receipt::parse(rc).expect("a readable receipt");
    assert_eq!(
        (parsed.message_id.as_str(), parsed.stat.as_str()),
        (maskd_id.as_str(), "DELIVRD")
    );
    assert_eq!(rc.tlv(0x0427), Some(&[2u8][..]), "message_state DELIVERED");
    let body = String::from_utf8(rc.short_message.clone()).unwrap();
    let date = |key: &str| -> String {
        let at = body.find(key).unwrap_or_else(|| panic!("{key} in {body}")) + key.len();
        body[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect()
    };
    let (submit, done) = (date("submit date:"), date("done date:"));
    assert_eq!((submit.len(), done.len()), (10, 10), "YYMMDDhhmm: {body}");
    assert!(submit <= done, "{body}");
    assert!(body.contains(&format!("id:{maskd_id} ")), "{body}");

    // The status callbacks: queued, then delivered.
    let got = hook.wait("/status", 2, Duration::from_secs(10));
    let statuses: Vec<&str> = got
        .iter()
        .filter(|r| r.param("interactionSid") == Some(sid.as_str()))
        .map(|r| r.param("outboundResourceStatus").unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "delivered"]);

    // No receipt asked for: delivered, and A gets nothing.
    let r = a.request(Body::SubmitSm(sm(&A[1..], pa, b"no receipt please")));
    let quiet_id = message_id(&r);
    assert!(b.wait_messages(2, Duration::from_secs(10)));
    leg_reaches(&d, "chat", &quiet_id, "delivered");
    assert!(
        !a.wait_messages(2, Duration::from_millis(500)),
        "no receipt"
    );
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

fn addr(ton: u8, npi: u8, digits: &str) -> Address {
    Address {
        ton,
        npi,
        addr: digits.into(),
    }
}

/// Addresses are read with their TON/NPI: a national number (TON 2, or TON 0 without '+')
/// through the account's `default_country`; one that cannot be normalised (national without
/// a default country, alphanumeric, garbage) is refused with ESME_RINVSRCADR /
/// ESME_RINVDSTADR and counted, never acknowledged and dropped. What maskd sends is
/// international (TON 1, NPI 1), the sender's receipt included.
#[test]
fn addresses_are_read_with_their_ton_and_npi() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(NATIONAL));
    let n_real = "+15551230001";
    let (pn, pb) = two_party_session(&d, "sms", "chat", n_real, B);
    let mut n = bound(&d, "carrier-n", "secret-n", BindKind::Transceiver);
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transmitter);
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Transceiver);
    // National numbers: "5551230001" to the proxy's national form, TON 2 and TON 0.
    let national_proxy = &pn[2..];
    for (i, ton) in [2u8, 0].into_iter().enumerate() {
        let mut m = sm("", "", format!("national {i}").as_bytes());
        m.source = addr(ton, 1, "5551230001");
        m.dest = addr(ton, 1, national_proxy);
        m.registered_delivery = 1;
        let r = n.request(Body::SubmitSm(m));
        assert_eq!(r.status, status::ESME_ROK, "TON {ton}");
    }
    assert!(b.wait_messages(2, Duration::from_secs(10)), "forwarded");
    for m in &b.messages {
        assert_eq!(
            m.source,
            addr(1, 1, &pb[1..]),
            "from B's proxy, international"
        );
        assert_eq!(m.dest, addr(1, 1, &B[1..]));
    }
    // The receipts go back to the sender in international form.
    assert!(n.wait_messages(2, Duration::from_secs(10)), "receipts");
    for rc in &n.messages {
        assert_eq!(rc.esm_class & 0x3C, 0x04);
        assert_eq!(rc.source, addr(1, 1, &pn[1..]));
        assert_eq!(rc.dest, addr(1, 1, &n_real[1..]));
    }

    // carrier-a has no default_country: national, alphanumeric or unreadable addresses are
    // refused; TON 0 digits are international there, as before.
    let cases = [
        (
            addr(2, 1, "5551230001"),
            addr(1, 1, &pn[1..]),
            status::ESME_RINVSRCADR,
        ),
        (
            addr(1, 1, &n_real[1..]),
            addr(2, 1, national_proxy),
            status::ESME_RINVDSTADR,
        ),
        (
            addr(5, 0, "Shop"),
            addr(1, 1, &pn[1..]),
            status::ESME_RINVSRCADR,
        ),
        (
            addr(1, 1, "+1x"),
            addr(1, 1, &pn[1..]),
            status::ESME_RINVSRCADR,
        ),
        (
            addr(1, 9, &n_real[1..]),
            addr(1, 1, &pn[1..]),
            status::ESME_RINVSRCADR,
        ),
        (
            addr(0, 0, &n_real[1..]),
            addr(0, 0, &pn[1..]),
            status::ESME_ROK,
        ),
    ];
    for (src, dst, want) in cases {
        let mut m = sm("", "", b"from carrier-a");
        m.source = src.clone();
        m.dest = dst.clone();
        let r = a.request(Body::SubmitSm(m));
        assert_eq!(r.status, want, "{src:?} -> {dst:?}");
    }
    assert!(
        b.wait_messages(3, Duration::from_secs(10)),
        "TON 0 forwarded"
    );
    assert!(!b.wait_messages(4, Duration::from_millis(300)));
    let m = d.metrics_text();
    assert!(
        m.contains(r#"maskd_smpp_invalid_address_total{field="source_addr"} 4"#),
        "{m}"
    );
    assert!(
        m.contains(r#"maskd_smpp_invalid_address_total{field="destination_addr"} 1"#),
        "{m}"
    );
    assert!(m.contains("maskd_smpp_out_of_session_total 0"), "{m}");
}

fn part(from: &str, to: &str, reference: u8, total: u8, seq: u8) -> ShortMessage {
    let mut octets = vec![5, 0, 3, reference, total, seq];
    octets.extend_from_slice(format!("part {seq} of message {reference}. ").as_bytes());
    let mut m = sm(from, to, &octets);
    m.esm_class = 0x40;
    m
}

/// The parts of one concatenated message, sent back to back on one bind without waiting for
/// answers, reach the next hop in the order they were sent: 25 messages of 8 parts while the
/// next hop is bound, then 5 more queued while it is not.
#[test]
fn concatenated_parts_keep_the_order_one_bind_sent_them_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(CARRIER_N));
    let (pa, _) = two_party_session(&d, "sms", "chat", A, B);
    let pa = &pa[1..];
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transmitter);
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Receiver);
    const PARTS: u8 = 8;
    let send_round = |a: &mut Peer, reference: u8| {
        let seqs: Vec<u32> = (1..=PARTS)
            .map(|s| a.send(Body::SubmitSm(part(&A[1..], pa, reference, PARTS, s))))
            .collect();
        for s in seqs {
            assert_eq!(a.wait_resp(s).status, status::ESME_ROK);
        }
    };
    let check = |b: &Peer, rounds: std::ops::Range<u8>| {
        for r in rounds {
            let order: Vec<u8> = b
                .messages
                .iter()
                .filter(|m| m.short_message[3] == r)
                .map(|m| m.short_message[5])
                .collect();
            assert_eq!(order, (1..=PARTS).collect::<Vec<_>>(), "message {r}");
        }
    };
    for r in 0..25u8 {
        send_round(&mut a, r);
    }
    let total = 25 * PARTS as usize;
    assert!(b.wait_messages(total, Duration::from_secs(20)), "all parts");
    check(&b, 0..25);

    // The next hop is away while 5 more are sent: queued, then delivered in order. (Parts
    // already handed to a link that dies are resent after a backoff, out of order as on any
    // SMPP reconnect; so the rounds start once maskd has seen the link go.)
    drop(b);
    let gone = poll(Duration::from_secs(10), || {
        d.metrics_text()
            .contains(r#"maskd_smpp_binds_active{peer="carrier-b"} 0"#)
            .then_some(())
    });
    assert!(gone.is_some(), "maskd noticed carrier B left");
    for r in 25..30u8 {
        send_round(&mut a, r);
    }
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Receiver);
    assert!(b.wait_messages(5 * PARTS as usize, Duration::from_secs(20)));
    check(&b, 25..30);
    assert_eq!(interactions(&d, "chat").len(), 30, "each logged once");
}
