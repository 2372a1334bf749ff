//! Anchored media in simulated time: the SDP each leg gets names maskd, the relay is told
//! where each side receives, ports return when a call ends however it ends, a late offer's
//! answer rides A's ACK to B, and a call the relay finds silent is hung up.

use std::sync::Arc;

use super::*;
use crate::fuzzing::FakeMedia;
use crate::media::Side;

fn sdp(user: &str, port: u16, extra: &str) -> String {
    format!(
        "v=0\r\no={user} 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ssrc:1 cname:{user}\r\n{extra}"
    )
}

/// `msg` (ending in an empty body) with `body` as its SDP.
fn with_body(msg: &str, body: &str) -> String {
    msg.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn media_harness() -> (Harness, Arc<FakeMedia>) {
    let media = Arc::new(FakeMedia::default());
    let h = Harness::new(Remote::udp(addr(5080)), false).with_media(media.clone());
    (h, media)
}

fn body(s: &Sent) -> String {
    s.text
        .split_once("\r\n\r\n")
        .map_or("", |x| x.1)
        .to_string()
}

/// The first m=audio port of a message's SDP.
fn port_of(s: &Sent) -> u16 {
    body(s)
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("an m=audio line")
}

#[test]
fn offer_and_answer_name_maskd_and_the_relay_learns_each_side() {
    let (mut h, media) = media_harness();
    h.invite_from_a_with("", Some(&sdp(CALLER, 7000, "")));
    h.take_a();
    let inv = h.take_b().remove(0);
    let b = body(&inv);
    assert!(
        b.contains("o=maskd ") && b.contains("c=IN IP4 127.0.0.1"),
        "{b}"
    );
    assert!(
        !b.contains(CALLER) && !b.contains("7000") && !b.contains("ssrc"),
        "{b}"
    );
    assert_eq!(port_of(&inv), 40_002, "B is given maskd's B-facing port");
    let text = with_body(&response(&inv, 200, ";tag=tb", ""), &sdp(CALLEE, 8000, ""));
    h.deliver(h.trunk, &text);
    let ok = h.take_a().remove(0);
    assert_eq!(port_of(&ok), 40_000, "A is given maskd's A-facing port");
    assert!(!body(&ok).contains(CALLEE), "{}", body(&ok));
    let updates = media.updates.lock().clone();
    let rtp = |side| {
        updates
            .iter()
            .find(|u| u.2 == side)
            .and_then(|u| u.3.rtp)
            .expect("the relay was told")
    };
    assert_eq!(rtp(Side::A), "127.0.0.9:7000".parse().unwrap());
    assert_eq!(rtp(Side::B), "127.0.0.9:8000".parse().unwrap());
    assert_eq!(media.answered.lock().len(), 1);
    // A hangs up: the ports go back once.
    let bye = in_dialog_from_a(&ok, "BYE", 2, "z9hG4bKbye", h.a);
    h.deliver(h.a, &bye);
    assert_eq!(media.released.lock().len(), 1);
    h.advance(40_000);
    assert_eq!(media.released.lock().len(), 1, "released twice");
}

#[test]
fn a_late_offer_is_answered_in_the_ack_to_b() {
    let (mut h, media) = media_harness();
    h.invite_from_a_with("", None);
    h.take_a();
    let inv = h.take_b().remove(0);
    assert!(body(&inv).is_empty());
    // B offers in its 200: A gets it rewritten; B's ACK waits for A's answer.
    let text = with_body(
        &response(&inv, 200, ";tag=tb", "Contact: <sip:x@127.0.0.1:5070>\r\n"),
        &sdp(CALLEE, 8000, ""),
    );
    h.deliver(h.trunk, &text);
    let ok = h.take_a().remove(0);
    assert_eq!(port_of(&ok), 40_000);
    assert!(h.take_b().is_empty(), "B was ACKed before A answered");
    h.deliver(h.trunk, &text); // B retransmits its 200: still no ACK without an answer
    assert!(h.take_b().is_empty());
    let ack = with_body(
        &in_dialog_from_a(&ok, "ACK", 1, "z9hG4bKack1", h.a),
        &sdp(CALLER, 7000, ""),
    );
    h.deliver(h.a, &ack);
    let acks = h.take_b();
    assert_eq!(methods(&acks), vec!["ACK"]);
    assert_eq!(
        port_of(&acks[0]),
        40_002,
        "the answer names maskd's B-facing port"
    );
    assert!(!body(&acks[0]).contains(CALLER));
    assert!(media.updates.lock().iter().any(|u| u.2 == Side::A));
    // A retransmitted 200 from B is answered with the same ACK.
    h.deliver(h.trunk, &text);
    assert_eq!(body(&h.take_b()[0]), body(&acks[0]));
}

/// A's offer through maskd, B's 200 with `answer` back: what A was sent, and leg B's INVITE.
fn offer_and_answer(h: &mut Harness, answer: &str) -> (Vec<Sent>, Sent) {
    h.invite_from_a_with("", Some(&sdp(CALLER, 7000, "")));
    h.take_a();
    let inv = h.take_b().remove(0);
    let text = with_body(
        &response(&inv, 200, ";tag=tb", "Contact: <sip:x@127.0.0.1:5070>\r\n"),
        answer,
    );
    h.deliver(h.trunk, &text);
    (h.take_a(), inv)
}

#[test]
fn an_answer_maskd_cannot_read_hangs_up_b_and_fails_a_with_502() {
    let (mut h, media) = media_harness();
    let (to_a, _) = offer_and_answer(&mut h, "v=0\r\nm=audio nope\r\n");
    assert_eq!(codes(&to_a), vec![502]);
    assert_eq!(methods(&h.take_b()), vec!["ACK", "BYE"]);
    assert_eq!(media.released.lock().len(), 1);
    assert_eq!(h.core.outbound(), Some(ResourceStatus::Failed));
}

#[test]
fn a_silent_call_is_hung_up_on_both_legs() {
    let (mut h, media) = media_harness();
    offer_and_answer(&mut h, &sdp(CALLEE, 8000, ""));
    h.take_b();
    let call = media.answered.lock()[0].0;
    let mut out = Vec::new();
    h.b2bua.media_timeout(call, h.now, &h.core, &mut out);
    h.collect(out);
    assert_eq!(methods(&h.take_a()), vec!["BYE"]);
    assert_eq!(methods(&h.take_b()), vec!["BYE"]);
    assert_eq!(media.released.lock().as_slice(), &[call]);
    // A second report for the same call does nothing.
    let mut out = Vec::new();
    h.b2bua.media_timeout(call, h.now, &h.core, &mut out);
    assert!(out.is_empty());
}

#[test]
fn no_ports_left_is_503_and_a_refused_call_keeps_none() {
    let (mut h, media) = media_harness();
    *media.limit.lock() = Some(0);
    h.invite_from_a_with("", Some(&sdp(CALLER, 7000, "")));
    let a = h.take_a();
    assert_eq!(codes(&a), vec![503]);
    assert!(a[0].text.contains("Retry-After"));
    assert!(h.take_b().is_empty());
    // Ports for one stream but not for a second m= line: 503 (allocation is all or none).
    *media.limit.lock() = Some(2);
    let two = sdp(CALLER, 7000, "m=audio 7002 RTP/AVP 0\r\n");
    let one = sdp(CALLER, 7000, "");
    let text = |branch: &str, call: &str, body: &str| {
        with_body(
            &format!(
                "INVITE sip:{PROXY_A}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch={branch}\r\n\
                 From: <sip:{CALLER}@127.0.0.1>;tag=f2\r\nTo: <sip:{PROXY_A}@127.0.0.1>\r\nCall-ID: {call}\r\n\
                 CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ),
            body,
        )
    };
    h.deliver(h.a, &text("z9hG4bKtwo", "two", &two));
    assert_eq!(codes(&h.take_a()), vec![503]);
    assert!(h.take_b().is_empty());
    // A failed call gives its ports back too.
    *media.limit.lock() = None;
    h.deliver(h.a, &text("z9hG4bKthree", "three", &one));
    h.take_a();
    let inv = h.take_b().remove(0);
    h.answer_b(&inv, 486, "");
    assert_eq!(codes(&h.take_a()), vec![486]);
    assert_eq!(media.released.lock().len(), 1);
}

#[test]
fn what_a_recording_can_decode_is_read_from_the_answer() {
    let parsed = |body: &str| crate::media::sdp::parse(body.as_bytes()).expect("sdp");
    let (map, absent) = super::super::media::payloads(&parsed(&sdp("b", 4000, "")));
    assert_eq!(absent, None);
    assert_eq!(map.len(), 1);
    // SRTP: its payload is encrypted, so the recording is absent, not noise.
    let srtp = sdp(
        "b",
        4000,
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abcd\r\n",
    )
    .replace("RTP/AVP", "RTP/SAVP");
    let (map, absent) = super::super::media::payloads(&parsed(&srtp));
    assert!(map.is_empty());
    assert!(absent.unwrap().contains("SRTP"));
    let g722 = sdp("b", 4000, "a=rtpmap:9 G722/8000\r\n").replace("RTP/AVP 0", "RTP/AVP 9");
    let (_, absent) = super::super::media::payloads(&parsed(&g722));
    assert!(absent.unwrap().contains("G722"));
}

#[test]
fn a_reinvite_answer_maskd_cannot_read_ends_the_call() {
    let (mut h, media) = media_harness();
    let (to_a, _) = offer_and_answer(&mut h, &sdp(CALLEE, 8000, ""));
    let ok = to_a
        .into_iter()
        .find(|s| s.text.starts_with("SIP/2.0 200"))
        .expect("A got the 200");
    let a = h.a;
    h.deliver(a, &in_dialog_from_a(&ok, "ACK", 1, "z9hG4bKack1", a));
    h.take_b();
    // A offers anew (a codec change); B accepts with an SDP maskd cannot read.
    let reinvite = with_body(
        &in_dialog_from_a(&ok, "INVITE", 2, "z9hG4bKre1", a),
        &sdp(CALLER, 7002, ""),
    );
    h.deliver(a, &reinvite);
    let re_b = h.take_b().remove(0);
    assert!(re_b.text.starts_with("INVITE "));
    let bad = with_body(
        &response(&re_b, 200, "", "Contact: <sip:x@127.0.0.1:5070>\r\n"),
        "v=0\r\nm=audio nope\r\n",
    );
    h.deliver(h.trunk, &bad);
    // A's offer is refused, B's 2xx acknowledged, and the call ends on both legs.
    let to_a = h.take_a();
    assert_eq!(codes(&to_a), vec![488]);
    assert_eq!(methods(&to_a), vec!["BYE"]);
    assert_eq!(methods(&h.take_b()), vec!["ACK", "BYE"]);
    assert_eq!(media.released.lock().len(), 1);
}
