//! The SMPP codec against fixtures: valid PDUs written by an independent encoder
//! (python-smpplib) decode to what their readable twins say and re-encode to the same bytes;
//! hostile inputs get the command_status their twins name. Plus no-panic and round-trip
//! properties on generated input.

use std::collections::HashMap;
use std::path::Path;

use maskd::smpp::codec::{decode, encode, error_response};
use maskd::smpp::pdu::*;
use maskd::smpp::{receipt, text};
use proptest::prelude::*;

fn read_hex(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn twin(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path.with_extension("txt"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn fixtures(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/smpp")
        .join(dir);
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    v.sort();
    v
}

#[test]
fn valid_fixtures_decode_as_their_twins_say_and_round_trip() {
    let files = fixtures("");
    assert!(files.len() >= 16);
    for path in files {
        let bytes = read_hex(&path);
        let want = twin(&path);
        let name = path.file_name().unwrap().to_string_lossy();
        let (pdu, used) = decode(&bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .expect("complete");
        assert_eq!(used, bytes.len(), "{name}");
        assert_eq!(pdu.body.name(), want["command"], "{name}");
        assert_eq!(pdu.seq.to_string(), want["seq"], "{name}");
        assert_eq!(pdu.status.to_string(), want["status"], "{name}");
        // Every prefix is "need more bytes", never an error.
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Ok(None), "{name} cut at {cut}");
        }
        let mut again = Vec::new();
        encode(&pdu, &mut again);
        assert_eq!(again, bytes, "{name}: re-encoding differs");
        match &pdu.body {
            Body::Bind(b) => {
                assert_eq!(b.system_id, want["system_id"], "{name}");
                if let Some(p) = want.get("password") {
                    assert_eq!(&b.password, p);
                }
            }
            Body::BindResp { system_id, .. } => assert_eq!(system_id, &want["system_id"]),
            Body::SubmitSm(m) | Body::DeliverSm(m) => {
                if let Some(s) = want.get("source") {
                    assert_eq!(&m.source.addr, s, "{name}");
                    assert_eq!(&m.dest.addr, &want["dest"], "{name}");
                }
                if let Some(dc) = want.get("data_coding") {
                    assert_eq!(m.data_coding.to_string(), *dc);
                }
                if let Some(e) = want.get("esm_class") {
                    assert_eq!(m.esm_class.to_string(), *e);
                }
                if let Some(r) = want.get("registered_delivery") {
                    assert_eq!(m.registered_delivery.to_string(), *r);
                }
                let mut octets = m.payload();
                if let Some(c) = want.get("concat") {
                    let (concat, rest) = text::split_udh(octets).expect("udh");
                    let concat = concat.expect("concat IE");
                    assert_eq!(
                        format!("{}/{}/{}", concat.reference, concat.total, concat.seq),
                        *c
                    );
                    octets = rest;
                }
                if let Some(t) = want.get("text") {
                    assert_eq!(&text::decode(m.data_coding, octets), t, "{name}");
                }
                if let Some(r) = want.get("receipt") {
                    assert!(m.is_receipt());
                    let rc = receipt::parse(m).expect("receipt");
                    assert_eq!(format!("{} {}", rc.message_id, rc.stat), *r);
                }
            }
            Body::DataSm(d) => {
                assert_eq!(d.source.addr, want["source"]);
                let payload = d
                    .tlvs
                    .iter()
                    .find(|t| t.tag == tag::MESSAGE_PAYLOAD)
                    .unwrap();
                assert_eq!(text::decode(d.data_coding, &payload.value), want["text"]);
            }
            Body::SubmitSmResp { message_id } | Body::DeliverSmResp { message_id } => {
                assert_eq!(message_id, &want["message_id"])
            }
            Body::QuerySm { message_id, .. } => assert_eq!(message_id, &want["message_id"]),
            _ => {}
        }
    }
}

#[test]
fn hostile_fixtures_get_the_right_answer() {
    let files = fixtures("hostile");
    assert!(files.len() >= 10);
    for path in files {
        let bytes = read_hex(&path);
        let want = twin(&path);
        let name = path.file_name().unwrap().to_string_lossy();
        let err = match decode(&bytes) {
            Err(e) => e,
            other => panic!("{name}: expected an error, got {other:?}"),
        };
        let status = u32::from_str_radix(want["status"].trim_start_matches("0x"), 16).unwrap();
        assert_eq!(err.status, status, "{name}: {err}");
        match want["skip"].as_str() {
            "none" => assert_eq!(err.skip, None, "{name}"),
            "pdu" => assert_eq!(err.skip, Some(bytes.len()), "{name}"),
            n => assert_eq!(err.skip, Some(n.parse().unwrap()), "{name}"),
        }
        let answer = error_response(&err);
        assert_eq!(answer.body.name(), want["answer"], "{name}");
        assert_eq!(answer.status, status);
    }
}

fn arb_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::char::range('0', 'z'), 0..max)
        .prop_map(|v| v.into_iter().collect())
}

fn arb_sm() -> impl Strategy<Value = ShortMessage> {
    (
        arb_text(20),
        arb_text(20),
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..254),
        proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)),
            0..3,
        ),
    )
        .prop_map(
            |(src, dst, esm_class, data_coding, short_message, tlvs)| ShortMessage {
                source: Address {
                    ton: 1,
                    npi: 1,
                    addr: src,
                },
                dest: Address {
                    ton: 1,
                    npi: 1,
                    addr: dst,
                },
                esm_class,
                data_coding,
                short_message,
                tlvs: tlvs
                    .into_iter()
                    .map(|(tag, value)| Tlv { tag, value })
                    .collect(),
                ..ShortMessage::default()
            },
        )
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_framed_garbage(cid in prop_oneof![Just(4u32), Just(5), Just(9), Just(0x103), Just(3), Just(0x80000009), any::<u32>()], body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = ((16 + body.len()) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(&cid.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&body);
        if let Err(e) = decode(&b) {
            prop_assert_eq!(e.skip, Some(b.len()));
        }
    }

    #[test]
    fn submit_and_deliver_round_trip(sm in arb_sm(), seq in any::<u32>(), deliver in any::<bool>()) {
        let body = if deliver { Body::DeliverSm(sm) } else { Body::SubmitSm(sm) };
        let pdu = Pdu { seq, status: 0, body };
        let mut b = Vec::new();
        encode(&pdu, &mut b);
        let (back, used) = decode(&b).unwrap().unwrap();
        prop_assert_eq!(used, b.len());
        prop_assert_eq!(back, pdu);
    }
}
