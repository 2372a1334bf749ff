//! The SMS plane end to end against the real daemon, with SMPP peers of the project's own
//! (tests/common/smpp.rs): bind rules, throttling, windows, link keep-alive, API messages
//! actually sent, an upstream SMSC bind with receipts and reconnection, and kill -9 with
//! acknowledged messages still queued.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body, Pdu, Tlv};

const A: &str = "+14155551001";
const B: &str = "+14155552002";

fn config(extra_accounts: &str, upstreams: &str, routes_b_via: &str) -> String {
    format!(
        r#"smpp:
  listen: "127.0.0.1:0"
  enquire_link_interval: "300ms"
  inactivity_timeout: "2s"
  response_timeout: "2s"
  accounts:
    - system_id: "carrier-a"
      password: "secret-a"
    - system_id: "carrier-b"
      password: "secret-b"
{extra_accounts}
  upstreams: [{upstreams}]
  routes:
    - prefix: "+1415555100"
      via: "carrier-a"
    - prefix: "+1415555200"
      via: "{routes_b_via}"
services:
  - unique_name: "sms"
    numbers: ["+14155550101", "+14155550102"]
"#
    )
}

/// Creates the A–B session; returns (A's proxy, B's proxy) as digits.
fn session(d: &Daemon) -> (String, String) {
    let (pa, pb) = two_party_session(d, "sms", "chat", A, B);
    (pa[1..].to_string(), pb[1..].to_string())
}

fn bound(d: &Daemon, who: &str, pass: &str, kind: BindKind) -> Peer {
    Peer::bound(d.smpp, kind, who, pass)
}

#[test]
fn bind_rules_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"    - system_id: "single"
      password: "pw"
      max_binds: 1
    - system_id: "fenced"
      password: "pw"
      allowed_cidrs: ["10.0.0.0/8"]"#;
    let d = Daemon::start_with(dir.path(), &config(extra, "", "carrier-b"));
    // Not bound yet: messages are refused with ESME_RINVBNDSTS.
    let mut p = Peer::connect(d.smpp);
    let r = p.request(Body::SubmitSm(sm("14155551001", "14155550101", b"hi")));
    assert_eq!(
        (r.body.name(), r.status),
        ("submit_sm_resp", status::ESME_RINVBNDSTS)
    );
    // Each refused bind closes the connection: one try per connection.
    for (who, pw, want) in [
        ("carrier-a", "nope", status::ESME_RINVPASWD),
        ("ghost", "x", status::ESME_RINVSYSID),
        ("fenced", "pw", status::ESME_RBINDFAIL),
    ] {
        assert_eq!(p.bind(BindKind::Transceiver, who, pw), want, "{who}");
        assert!(
            p.recv(Duration::from_secs(2)).is_none() && p.closed,
            "closed after a refused bind"
        );
        p = Peer::connect(d.smpp);
    }
    assert_eq!(
        p.bind(BindKind::Transceiver, "carrier-a", "secret-a"),
        status::ESME_ROK
    );
    assert_eq!(
        p.bind(BindKind::Transceiver, "carrier-a", "secret-a"),
        status::ESME_RALYBND
    );
    // enquire_link is answered; unbind is answered and the link closes.
    assert_eq!(p.request(Body::EnquireLink).body, Body::EnquireLinkResp);
    assert_eq!(p.request(Body::Unbind).body, Body::UnbindResp);
    assert!(
        p.recv(Duration::from_secs(2)).is_none() && p.closed,
        "closed after unbind"
    );

    // Addresses with control characters are refused, never stored.
    let mut ctl = Peer::connect(d.smpp);
    assert_eq!(
        ctl.bind(BindKind::Transmitter, "carrier-a", "secret-a"),
        status::ESME_ROK
    );
    let r = ctl.request(Body::SubmitSm(sm(
        "tel:+14155551001;\u{1f}",
        "14155550101",
        b"x",
    )));
    assert_eq!(r.status, status::ESME_RINVSRCADR);

    // max_binds.
    let _one = bound(&d, "single", "pw", BindKind::Transmitter);
    let mut two = Peer::connect(d.smpp);
    assert_eq!(
        two.bind(BindKind::Transmitter, "single", "pw"),
        status::ESME_RBINDFAIL
    );
    // A receiver bind may not submit.
    let mut rx = bound(&d, "carrier-b", "secret-b", BindKind::Receiver);
    let r = rx.request(Body::SubmitSm(sm("14155552002", "14155550102", b"hi")));
    assert_eq!(r.status, status::ESME_RINVBNDSTS);
    // A framing error: generic_nack with ESME_RINVCMDLEN, then the link closes.
    let mut bad = Peer::connect(d.smpp);
    use std::io::Write;
    bad.s
        .write_all(&[0, 0, 0, 5, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1])
        .unwrap();
    let nack = bad.recv(Duration::from_secs(2)).expect("an answer");
    assert_eq!(
        (nack.body, nack.status),
        (Body::GenericNack, status::ESME_RINVCMDLEN)
    );
    assert!(bad.recv(Duration::from_secs(2)).is_none() && bad.closed);
}

#[test]
fn throttling_keepalive_and_inactivity() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"    - system_id: "slow"
      password: "pw"
      max_rate: 5"#;
    let d = Daemon::start_with(dir.path(), &config(extra, "", "carrier-b"));
    let mut slow = bound(&d, "slow", "pw", BindKind::Transmitter);
    let seqs: Vec<u32> = (0..20)
        .map(|_| slow.send(Body::SubmitSm(sm("14155559999", "14155550101", b"x"))))
        .collect();
    let statuses: Vec<u32> = seqs.iter().map(|s| slow.wait_resp(*s).status).collect();
    let throttled = statuses
        .iter()
        .filter(|s| **s == status::ESME_RTHROTTLED)
        .count();
    assert!(
        (10..=15).contains(&throttled),
        "burst of 5 allowed, the rest throttled: {statuses:?}"
    );

    // maskd sends enquire_link on an idle link, and closes a link that stays silent.
    let mut idle = bound(&d, "carrier-a", "secret-a", BindKind::Transceiver);
    let mut saw_enquire = false;
    for _ in 0..20 {
        match idle.recv(Duration::from_millis(500)) {
            Some(p) if p.body == Body::EnquireLink => saw_enquire = true,
            _ if idle.closed => break,
            _ => {}
        }
    }
    assert!(saw_enquire, "maskd probes an idle link");
    // A bound peer that stops answering is closed after inactivity_timeout (2 s here).
    let mut mute = bound(&d, "carrier-a", "secret-a", BindKind::Transceiver);
    std::thread::sleep(Duration::from_millis(2600)); // the peer is deliberately silent
    let mut closed = false;
    for _ in 0..20 {
        // Drain what maskd sent (enquire_links) without answering, until EOF.
        use std::io::Read;
        let mut buf = [0u8; 1024];
        mute.s
            .set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();
        match mute.s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(_) => {}
        }
    }
    assert!(closed, "a silent bound peer is disconnected");
    // An unbound connection that never binds is closed too.
    let silent = std::net::TcpStream::connect(d.smpp).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    use std::io::Read;
    let n = (&silent).read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "an unbound silent connection is closed");
}

#[test]
fn api_message_interactions_are_sent_from_the_proxy_number() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config("", "", "carrier-b"));
    let (_pa, pb) = session(&d);
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Receiver);
    let parts = d.get("/v1/Services/sms/Sessions/chat/Participants").json();
    let kp_b = parts["participants"][1]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let r = d.post(
        &format!("/v1/Services/sms/Sessions/chat/Participants/{kp_b}/MessageInteractions"),
        &[("Body", "Your driver is here €")],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ki = r.json()["sid"].as_str().unwrap().to_string();
    assert!(
        b.wait_messages(1, Duration::from_secs(10)),
        "message reached carrier B"
    );
    let m = &b.messages[0];
    assert_eq!(m.source.addr, pb, "from B's proxy number");
    assert_eq!(m.dest.addr, &B[1..], "to B's real number");
    assert_eq!(
        maskd::smpp::text::decode(m.data_coding, &m.short_message),
        "Your driver is here €"
    );
    // Carrier B's bind took it (deliver_sm_resp, ESME_ROK, no message_id as SMPP 3.4
    // §4.6.2 says): the leg is delivered (poll, bounded).
    let path = format!("/v1/Services/sms/Sessions/chat/Interactions/{ki}");
    let delivered = (0..100).find_map(|_| {
        let i = d.get(&path).json();
        if i["outbound_resource_status"] == "delivered" {
            return Some(i);
        }
        std::thread::sleep(Duration::from_millis(20));
        None
    });
    let delivered = delivered.expect("status delivered");
    assert_eq!(delivered["outbound_resource_sid"], serde_json::Value::Null);
}

/// An upstream SMSC of the project's own: accepts maskd's bind, takes submit_sm, answers
/// with ids, sends receipts; drops the link once to prove maskd reconnects and resends.
#[test]
fn upstream_smsc_bind_receipts_and_reconnect() {
    let smsc = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = format!(
        r#"{{ name: "smsc", address: "{}", system_id: "maskd", password: "up-pw", bind: "transceiver", window: 8 }}"#,
        smsc.local_addr().unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config("", &up, "smsc"));
    let (pa, pb) = session(&d);
    smsc.set_nonblocking(false).unwrap();
    let accept = |l: &TcpListener| -> Peer {
        let (s, _) = l.accept().unwrap();
        let mut p = Peer::from_stream(s);
        let bind = p.recv(Duration::from_secs(10)).expect("maskd binds");
        match &bind.body {
            Body::Bind(b) => {
                assert_eq!(
                    (b.kind, b.system_id.as_str(), b.password.as_str()),
                    (BindKind::Transceiver, "maskd", "up-pw")
                );
            }
            other => panic!("expected a bind, got {other:?}"),
        }
        p.send_pdu(&Pdu {
            seq: bind.seq,
            status: 0,
            body: Body::BindResp {
                kind: BindKind::Transceiver,
                system_id: "smsc".into(),
                tlvs: vec![],
            },
        });
        p
    };
    let mut link = accept(&smsc);
    link.answer_id = "X".into();
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transceiver);
    let mut m1 = sm(&A[1..], &pa, b"via upstream");
    m1.registered_delivery = 1;
    let r = a.request(Body::SubmitSm(m1));
    assert_eq!(r.status, status::ESME_ROK);
    let maskd_id = match r.body {
        Body::SubmitSmResp { message_id } => message_id,
        other => panic!("{other:?}"),
    };
    assert!(
        link.wait_messages(1, Duration::from_secs(10)),
        "submit_sm reached the SMSC"
    );
    assert_eq!(
        (
            link.messages[0].source.addr.as_str(),
            link.messages[0].dest.addr.as_str()
        ),
        (pb.as_str(), &B[1..])
    );
    assert_eq!(
        link.messages[0].registered_delivery, 1,
        "maskd asks for receipts"
    );
    // The SMSC's receipt for X1 becomes maskd's receipt for its own id at carrier A.
    let mut rc = sm(&B[1..], &pb, b"id:X1 sub:001 dlvrd:001 submit date:2611240000 done date:2611240001 stat:DELIVRD err:000 text:");
    rc.esm_class = 0x04;
    rc.tlvs = vec![
        Tlv {
            tag: 0x001E,
            value: b"X1\0".to_vec(),
        },
        Tlv {
            tag: 0x0427,
            value: vec![2],
        },
    ];
    let resp = link.request(Body::DeliverSm(rc));
    assert_eq!(resp.status, status::ESME_ROK);
    assert!(
        a.wait_messages(1, Duration::from_secs(10)),
        "receipt at carrier A: {}",
        d.metrics_text()
            .lines()
            .filter(|l| l.contains("smpp"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let receipt = maskd::smpp::receipt::parse(&a.messages[0]).expect("a receipt");
    assert_eq!(
        (receipt.message_id.as_str(), receipt.stat.as_str()),
        (maskd_id.as_str(), "DELIVRD")
    );

    // A mobile-originated message from the SMSC (deliver_sm on maskd's own bind) is routed
    // like any other: B texts B's proxy, A gets it from A's proxy.
    let resp = link.request(Body::DeliverSm(sm(&B[1..], &pb, b"reply via SMSC")));
    assert_eq!(resp.status, status::ESME_ROK);
    assert!(
        a.wait_messages(2, Duration::from_secs(10)),
        "MO from the upstream reached carrier A"
    );
    assert_eq!(
        (
            a.messages[1].source.addr.as_str(),
            a.messages[1].dest.addr.as_str()
        ),
        (pa.as_str(), &A[1..])
    );
    assert_eq!(a.messages[1].short_message, b"reply via SMSC");

    // The SMSC goes away; a message accepted meanwhile is sent once maskd has re-bound.
    drop(link);
    let r = a.request(Body::SubmitSm(sm(&A[1..], &pa, b"during the outage")));
    assert_eq!(
        r.status,
        status::ESME_ROK,
        "accepted durably while the upstream is down"
    );
    let mut link = accept(&smsc);
    assert!(
        link.wait_messages(1, Duration::from_secs(15)),
        "resent after reconnect"
    );
    assert_eq!(link.messages[0].short_message, b"during the outage");
    let m = d.metrics_text();
    assert!(
        m.contains(r#"maskd_smpp_binds_active{peer="smsc"} 1"#),
        "{m}"
    );
}

#[test]
fn kill_9_with_acknowledged_messages_queued_delivers_them_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("", "", "carrier-b");
    let mut d = Daemon::start_with(dir.path(), &cfg);
    let (pa, pb) = session(&d);
    // Carrier B is not bound: every acknowledged message waits in the durable queue.
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transmitter);
    let mut sent = Vec::new();
    let seqs: Vec<(u32, String)> = (0..50)
        .map(|i| {
            let text = format!("queued message {i}");
            (
                a.send(Body::SubmitSm(sm(&A[1..], &pa, text.as_bytes()))),
                text,
            )
        })
        .collect();
    for (seq, text) in seqs {
        if a.wait_resp(seq).status == status::ESME_ROK {
            sent.push(text);
        }
    }
    assert_eq!(sent.len(), 50);
    d.kill9();
    let d2 = Daemon::restart(dir.path(), &cfg);
    let mut b = bound(&d2, "carrier-b", "secret-b", BindKind::Receiver);
    assert!(
        b.wait_messages(50, Duration::from_secs(20)),
        "only {} of 50 delivered after restart",
        b.messages.len()
    );
    // Nothing more arrives: each exactly once.
    assert!(!b.wait_messages(51, Duration::from_millis(500)));
    let mut got: Vec<String> = b
        .messages
        .iter()
        .map(|m| String::from_utf8(m.short_message.clone()).unwrap())
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    for m in &b.messages {
        assert_eq!(
            (m.source.addr.as_str(), m.dest.addr.as_str()),
            (pb.as_str(), &B[1..])
        );
    }
}

#[test]
fn sar_concatenation_and_data_sm_are_forwarded_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config("", "", "carrier-b"));
    let (pa, pb) = session(&d);
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transmitter);
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Receiver);
    // Two parts with sar_* TLVs (reference 0x0102), sent last part first.
    for (seq, text) in [(2u8, &b"second half"[..]), (1, &b"first half, "[..])] {
        let mut m = sm(&A[1..], &pa, text);
        m.tlvs = vec![
            Tlv {
                tag: 0x020C,
                value: vec![0x01, 0x02],
            },
            Tlv {
                tag: 0x020E,
                value: vec![2],
            },
            Tlv {
                tag: 0x020F,
                value: vec![seq],
            },
        ];
        assert_eq!(a.request(Body::SubmitSm(m)).status, status::ESME_ROK);
    }
    // data_sm with the text in message_payload (GSM 03.38 septets: '_' is 0x11 there).
    let gsm = maskd::smpp::text::encode_gsm("sent as data_sm").unwrap();
    let data = maskd::smpp::pdu::DataSm {
        source: maskd::smpp::pdu::Address {
            ton: 1,
            npi: 1,
            addr: A[1..].into(),
        },
        dest: maskd::smpp::pdu::Address {
            ton: 1,
            npi: 1,
            addr: pa.clone(),
        },
        tlvs: vec![Tlv {
            tag: 0x0424,
            value: gsm.clone(),
        }],
        ..Default::default()
    };
    let r = a.request(Body::DataSm(data));
    assert_eq!(
        (r.body.name(), r.status),
        ("data_sm_resp", status::ESME_ROK)
    );
    assert!(b.wait_messages(3, Duration::from_secs(10)));
    for m in &b.messages {
        assert_eq!(
            (m.source.addr.as_str(), m.dest.addr.as_str()),
            (pb.as_str(), &B[1..])
        );
    }
    let sar_parts: Vec<u8> = b
        .messages
        .iter()
        .filter_map(|m| m.tlv(0x020F).map(|v| v[0]))
        .collect();
    assert_eq!(sar_parts.len(), 2, "sar TLVs carried over on both parts");
    let payload = b
        .messages
        .iter()
        .find_map(|m| m.tlv(0x0424))
        .expect("message_payload carried over");
    assert_eq!(payload, gsm.as_slice(), "forwarded octet for octet");
    let list = d.get("/v1/Services/sms/Sessions/chat/Interactions").json();
    let bodies: Vec<String> = list["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            serde_json::from_str::<serde_json::Value>(i["data"].as_str().unwrap()).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(bodies, vec!["first half, second half", "sent as data_sm"]);
}

/// One account flooding (far over its `max_rate`, window full) does not starve another:
/// the flooder gets ESME_RTHROTTLED / ESME_RMSGQFUL, the other carrier's messages are
/// acknowledged and forwarded, each within a second.
#[test]
fn a_flooding_bind_does_not_starve_another_carrier() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"    - system_id: "flooder"
      password: "pw"
      max_rate: 50"#;
    let d = Daemon::start_with(dir.path(), &config(extra, "", "carrier-b"));
    let (pa, _) = session(&d);
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Transceiver);
    let mut flooder = bound(&d, "flooder", "pw", BindKind::Transmitter);
    // As fast as it can, 200 outstanding at a time (over the window), until the other
    // carrier is done (bounded).
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (done, rounds) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (done2, rounds2) = (done.clone(), rounds.clone());
    let flood = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        for _ in 0..2000 {
            if done2.load(Ordering::SeqCst) {
                break;
            }
            let seqs: Vec<u32> = (0..200)
                .map(|_| flooder.send(Body::SubmitSm(sm("14155559999", "14155550101", b"spam"))))
                .collect();
            statuses.extend(seqs.iter().map(|s| flooder.wait_resp(*s).status));
            rounds2.fetch_add(1, Ordering::SeqCst);
        }
        statuses
    });
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transceiver);
    let rounds_before = rounds.load(Ordering::SeqCst);
    for i in 0..10 {
        let started = std::time::Instant::now();
        let r = a.request(Body::SubmitSm(sm(&A[1..], &pa, format!("m{i}").as_bytes())));
        assert_eq!(r.status, status::ESME_ROK, "message {i}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "message {i} acknowledged in {:?} during the flood",
            started.elapsed()
        );
    }
    let rounds_during = rounds.load(Ordering::SeqCst) - rounds_before;
    done.store(true, Ordering::SeqCst);
    assert!(
        b.wait_messages(10, Duration::from_secs(10)),
        "all ten forwarded"
    );
    let statuses = flood.join().unwrap();
    assert!(
        rounds_during >= 1,
        "the flood ran while the other carrier sent"
    );
    let refused = statuses
        .iter()
        .filter(|s| matches!(**s, status::ESME_RTHROTTLED | status::ESME_RMSGQFUL))
        .count();
    assert!(
        refused * 10 >= statuses.len() * 9,
        "the flood was refused, not queued: {refused} of {}",
        statuses.len()
    );
}

/// A gauge's value from the metrics page.
fn gauge(d: &Daemon, name: &str) -> i64 {
    let text = d.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not on the metrics page:\n{text}"))
}

/// Sends `n` numbered messages from A pipelined; returns their texts (all acknowledged).
fn send_batch(a: &mut Peer, pa: &str, tag: &str, n: usize) -> Vec<String> {
    let seqs: Vec<(u32, String)> = (0..n)
        .map(|i| {
            let text = format!("{tag} {i}");
            (
                a.send(Body::SubmitSm(sm(&A[1..], pa, text.as_bytes()))),
                text,
            )
        })
        .collect();
    seqs.into_iter()
        .map(|(seq, text)| {
            assert_eq!(a.wait_resp(seq).status, status::ESME_ROK, "{text}");
            text
        })
        .collect()
}

/// Waits (bounded) for B to get `want` and nothing more; checks each arrived once.
fn received_exactly(b: &mut Peer, want: &[String]) {
    assert!(
        b.wait_messages(want.len(), Duration::from_secs(20)),
        "only {} of {} delivered",
        b.messages.len(),
        want.len()
    );
    assert!(
        !b.wait_messages(want.len() + 1, Duration::from_millis(500)),
        "more than sent"
    );
    let mut got: Vec<String> = b
        .messages
        .drain(..)
        .map(|m| String::from_utf8(m.short_message).unwrap())
        .collect();
    got.sort();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn outbound_messages_beyond_the_memory_bound_wait_in_the_store_and_each_goes_out_once() {
    // Four outbound messages in memory at most: the rest wait in the store and are read back
    // as memory drains, also after a restart. Nothing is lost and nothing goes out twice.
    let dir = tempfile::tempdir().unwrap();
    // B is not read while A's batches are answered: a long response_timeout keeps a slow
    // test machine from turning that into resends.
    let cfg = config("", "", "carrier-b").replace(
        "  response_timeout: \"2s\"\n",
        "  response_timeout: \"20s\"\n  max_queued_in_memory: 4\n",
    );
    let mut d = Daemon::start_with(dir.path(), &cfg);
    let (pa, _) = session(&d);
    let mut a = bound(&d, "carrier-a", "secret-a", BindKind::Transmitter);

    // Carrier B is down: 40 acknowledged messages, at most 4 of them in memory.
    let first = send_batch(&mut a, &pa, "while down", 40);
    assert_eq!(gauge(&d, "maskd_smpp_queue_depth"), 40);
    let in_memory = gauge(&d, "maskd_smpp_queue_in_memory");
    assert!((1..=4).contains(&in_memory), "{in_memory} in memory");
    assert!(
        d.try_wait_for_log("the rest wait in the store", Duration::from_secs(1))
            .is_some(),
        "the memory bound was reached"
    );
    let mut b = bound(&d, "carrier-b", "secret-b", BindKind::Receiver);
    received_exactly(&mut b, &first);

    // B is up: messages sent faster than B answers still go out once each.
    let second = send_batch(&mut a, &pa, "while up", 60);
    received_exactly(&mut b, &second);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gauge(&d, "maskd_smpp_queue_depth") != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gauge(&d, "maskd_smpp_queue_depth"), 0);
    assert_eq!(gauge(&d, "maskd_smpp_queue_in_memory"), 0);

    // B goes away again; after a crash the store's 30 are read back 4 at a time.
    drop(b);
    let third = send_batch(&mut a, &pa, "before crash", 30);
    d.kill9();
    let d2 = Daemon::restart(dir.path(), &cfg);
    assert_eq!(gauge(&d2, "maskd_smpp_queue_depth"), 30);
    // The start-up sweep fills memory (4) and leaves the rest in the store (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gauge(&d2, "maskd_smpp_queue_in_memory") != 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(gauge(&d2, "maskd_smpp_queue_in_memory"), 4);
    assert_eq!(gauge(&d2, "maskd_smpp_queue_depth"), 30);
    let mut b = bound(&d2, "carrier-b", "secret-b", BindKind::Receiver);
    received_exactly(&mut b, &third);
}
