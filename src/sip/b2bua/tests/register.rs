//! Registration with a carrier's trunk: REGISTER at start, the digest challenge answered,
//! refreshed at half of what the registrar granted, tried again 30 s after a failure.

use std::time::Duration;

use super::*;
use crate::core::carriers::{Credentials, Trunk};
use crate::sip::digest;

fn harness() -> Harness {
    carrier_harness(
        vec![Trunk {
            addr: addr(5070),
            tcp: false,
            tls: false,
            host: None,
            credentials: Some(Credentials {
                username: "maskd-1".into(),
                password: "s3cret".into(),
                realm: None,
            }),
        }],
        Duration::from_secs(3600),
        Some(Duration::from_secs(600)),
    )
}

/// The REGISTER requests sent since the last take (retransmissions folded).
fn registers(h: &mut Harness) -> Vec<Sent> {
    let mut out: Vec<Sent> = Vec::new();
    for s in h.take_b() {
        let fresh = s.method().as_deref() == Some("REGISTER")
            && out
                .iter()
                .all(|o| o.headers(HeaderName::Via) != s.headers(HeaderName::Via));
        if fresh {
            out.push(s);
        }
    }
    out
}

const CHALLENGE: &str = r#"Digest realm="carrier.example", nonce="r3g", qop="auth""#;

#[test]
fn maskd_registers_answers_the_challenge_and_refreshes_at_half_the_granted_time() {
    let mut h = harness();
    h.advance(50);
    let mut first = registers(&mut h);
    assert_eq!(first.len(), 1, "REGISTER at start");
    let first = first.remove(0);
    assert_eq!(first.uri(), "sip:127.0.0.1:5070");
    assert_eq!(first.header(HeaderName::To), "<sip:maskd-1@127.0.0.1:5070>");
    assert!(first
        .header(HeaderName::Contact)
        .starts_with("<sip:maskd-1@127.0.0.1:5060"));
    assert_eq!(first.header(HeaderName::Expires), "600");
    assert_eq!(first.header(HeaderName::CSeq), "1 REGISTER");
    h.answer_b(&first, 401, &format!("WWW-Authenticate: {CHALLENGE}\r\n"));
    h.advance(50);
    let second = registers(&mut h).remove(0);
    assert_eq!(
        second.header(HeaderName::CallId),
        first.header(HeaderName::CallId)
    );
    assert_eq!(second.header(HeaderName::CSeq), "2 REGISTER");
    let auth = second
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Authorization: "))
        .expect("Authorization")
        .to_string();
    let field = |n: &str| {
        auth.split(", ")
            .find_map(|kv| kv.strip_prefix(&format!("{n}=")))
            .unwrap()
            .trim_matches('"')
            .to_string()
    };
    let ch = digest::parse_challenge(CHALLENGE).unwrap();
    let want = digest::response(
        &ch,
        "maskd-1",
        "s3cret",
        "REGISTER",
        "sip:127.0.0.1:5070",
        &field("cnonce"),
        1,
    );
    assert_eq!(field("response"), want);
    // Granted 120 s: refreshed after 60.
    h.answer_b(&second, 200, "Expires: 120\r\n");
    let answered_at = h.now;
    h.advance(40_000);
    // Its transaction and the trunk probe's over: the refresh is what the plane sleeps to.
    assert_eq!(h.b2bua.next_timer(h.now), answered_at + 60_000);
    h.advance(19_000);
    assert!(
        registers(&mut h).is_empty(),
        "not before half the granted time"
    );
    h.advance(2_000);
    let third = registers(&mut h);
    assert_eq!(third.len(), 1, "refreshed");
    assert_eq!(third[0].header(HeaderName::CSeq), "3 REGISTER");
    // Refused: tried again after 30 s.
    h.answer_b(&third[0], 403, "");
    h.advance(29_000);
    assert!(registers(&mut h).is_empty());
    h.advance(2_000);
    assert_eq!(registers(&mut h).len(), 1, "tried again");
}
