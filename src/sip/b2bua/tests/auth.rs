//! A carrier's trunk challenging leg B (RFC 3261 §22.2): maskd answers a 401 or 407 to its
//! INVITE or BYE once, with the trunk's credentials; wrong credentials end the call.

use std::time::Duration;

use super::*;
use crate::core::carriers::{Credentials, Trunk};
use crate::sip::digest;

/// `PROXY_B` belongs to a carrier whose one trunk (:5070) has credentials.
fn harness() -> Harness {
    carrier_harness(
        vec![Trunk {
            addr: addr(5070),
            tcp: false,
            tls: false,
            host: None,
            credentials: Some(Credentials {
                username: "maskd".into(),
                password: "s3cret".into(),
                realm: None,
            }),
        }],
        Duration::from_secs(30),
        None,
    )
}

/// The `name=value` parameters of a `Digest` credentials header, unquoted.
fn param(header: &str, name: &str) -> String {
    let rest = header.strip_prefix("Digest ").expect("Digest credentials");
    rest.split(", ")
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {header}"))
        .trim_matches('"')
        .to_string()
}

/// Checks `header` answers `challenge` for `method` to `uri` with the trunk's credentials.
fn check(header: &str, challenge: &str, method: &str, uri: &str) {
    let ch = digest::parse_challenge(challenge).unwrap();
    assert_eq!(param(header, "username"), "maskd");
    assert_eq!(param(header, "uri"), uri);
    assert_eq!(param(header, "nonce"), ch.nonce);
    let cnonce = if ch.qop_auth {
        param(header, "cnonce")
    } else {
        String::new()
    };
    let want = digest::response(&ch, "maskd", "s3cret", method, uri, &cnonce, 1);
    assert_eq!(param(header, "response"), want, "{header}");
}

const MD5: &str = r#"Digest realm="carrier.example", nonce="n0nce1", qop="auth", opaque="op1""#;
const SHA: &str = r#"Digest realm="carrier.example", nonce="n0nce2", algorithm=SHA-256"#;

#[test]
fn a_401_to_leg_bs_invite_is_answered_with_the_trunks_credentials() {
    let mut h = harness();
    let first = h.call();
    h.answer_b(&first, 401, &format!("WWW-Authenticate: {MD5}\r\n"));
    let mut sent = h.take_b();
    assert_eq!(
        methods(&sent),
        ["ACK", "INVITE"],
        "the 401 ACKed, the INVITE again"
    );
    let second = sent.remove(1);
    assert!(codes(&h.take_a()).is_empty(), "A hears nothing of it");
    assert_eq!(second.header(HeaderName::CSeq), "2 INVITE");
    assert_eq!(
        second.header(HeaderName::CallId),
        first.header(HeaderName::CallId)
    );
    assert_eq!(second.uri(), first.uri());
    let auth = second
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Authorization: "))
        .unwrap_or_else(|| panic!("no Authorization: {}", second.text));
    check(auth, MD5, "INVITE", &first.uri());
    assert_eq!(param(auth, "qop"), "auth");
    assert_eq!(param(auth, "nc"), "00000001");
    assert_eq!(param(auth, "opaque"), "op1");
    h.answer_b(&second, 200, "");
    assert_eq!(codes(&h.take_a()), vec![200]);
}

#[test]
fn a_407_gets_proxy_authorization_and_a_second_challenge_ends_the_call() {
    let mut h = harness();
    let first = h.call();
    h.answer_b(&first, 407, &format!("Proxy-Authenticate: {SHA}\r\n"));
    let mut sent = h.take_b();
    let second = sent.pop().unwrap();
    let auth = second
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
        .expect("Proxy-Authorization")
        .to_string();
    check(&auth, SHA, "INVITE", &first.uri());
    assert_eq!(param(&auth, "algorithm"), "SHA-256");
    // Challenged again (not stale): the credentials are wrong, the caller gets 503.
    h.answer_b(&second, 407, &format!("Proxy-Authenticate: {SHA}\r\n"));
    assert_eq!(methods(&h.take_b()), ["ACK"], "not a third INVITE");
    assert_eq!(codes(&h.take_a()), vec![503]);
}

#[test]
fn a_challenged_bye_to_leg_b_goes_again_with_credentials_once() {
    let mut h = harness();
    h.invite_from_a("");
    let _ = h.take_a();
    let inv = h.take_b().remove(0);
    h.answer_b(&inv, 200, "");
    let ok = h.take_a().remove(0);
    let _ = h.take_b();
    let a = h.a;
    h.deliver(a, &in_dialog_from_a(&ok, "ACK", 1, "z9hG4bKack1", a));
    h.deliver(a, &in_dialog_from_a(&ok, "BYE", 2, "z9hG4bKbye1", a));
    assert_eq!(codes(&h.take_a()), vec![200]);
    let bye = h.take_b().remove(0);
    assert_eq!(bye.method().as_deref(), Some("BYE"));
    h.answer_b(&bye, 401, &format!("WWW-Authenticate: {MD5}\r\n"));
    let again = h.take_b().remove(0);
    assert_eq!(again.method().as_deref(), Some("BYE"));
    assert_ne!(again.header(HeaderName::CSeq), bye.header(HeaderName::CSeq));
    let auth = again
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Authorization: "))
        .expect("Authorization")
        .to_string();
    check(&auth, MD5, "BYE", &bye.uri());
    // Challenged again: not answered a third time.
    h.answer_b(&again, 401, &format!("WWW-Authenticate: {MD5}\r\n"));
    assert!(h.take_b().is_empty());
}

#[test]
fn a_challenged_re_invite_to_leg_b_goes_again_with_credentials_and_a_hears_the_answer() {
    let mut h = harness();
    h.invite_from_a("");
    let _ = h.take_a();
    let inv = h.take_b().remove(0);
    h.answer_b(&inv, 200, "");
    let ok = h.take_a().remove(0);
    let _ = h.take_b();
    let a = h.a;
    h.deliver(a, &in_dialog_from_a(&ok, "ACK", 1, "z9hG4bKack1", a));
    h.deliver(a, &in_dialog_from_a(&ok, "INVITE", 2, "z9hG4bKre1", a));
    let re = h.take_b().remove(0);
    assert_eq!(re.method().as_deref(), Some("INVITE"));
    h.answer_b(&re, 407, &format!("Proxy-Authenticate: {SHA}\r\n"));
    let sent = h.take_b();
    assert_eq!(
        methods(&sent),
        ["ACK", "INVITE"],
        "the 407 ACKed, the re-INVITE again"
    );
    let again = &sent[1];
    assert_ne!(again.header(HeaderName::CSeq), re.header(HeaderName::CSeq));
    let auth = again
        .text
        .lines()
        .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
        .expect("Proxy-Authorization")
        .to_string();
    check(&auth, SHA, "INVITE", &re.uri());
    assert!(
        codes(&h.take_a()).iter().all(|c| *c < 200),
        "A hears nothing of the challenge"
    );
    h.answer_b(again, 200, "");
    assert_eq!(codes(&h.take_a()), vec![200]);
}
