//! Leg B by the carrier owning the callee's proxy number, across its trunks: 503, 408 and
//! silence before ringing move the INVITE on to the next trunk; A sees only the outcome.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::core::carriers::{Carriers, Trunk};

/// A harness whose callee's proxy number (`PROXY_B`) belongs to a carrier with trunks on
/// 127.0.0.1:5080 and :5081; `sip.trunk` (:5070) is for numbers no carrier owns.
pub(super) fn harness() -> Harness {
    let trunk = |port| Trunk {
        addr: addr(port),
        tcp: false,
        tls: false,
        host: None,
        credentials: None,
    };
    let mut h = carrier_harness(
        vec![trunk(5080), trunk(5081)],
        Duration::from_secs(30),
        None,
    );
    h.trunk = Remote::udp(addr(5080));
    h
}

/// The INVITEs sent to `port` since the last take (OPTIONS probes dropped).
pub(super) fn invites(h: &mut Harness, port: u16) -> Vec<Sent> {
    h.take(Remote::udp(addr(port)))
        .into_iter()
        .filter(|s| s.method().as_deref() == Some("INVITE"))
        .collect()
}

#[test]
fn a_503_from_the_first_trunk_sends_leg_b_to_the_next_and_a_sees_only_the_answer() {
    let mut h = harness();
    let first = h.call();
    assert!(first.uri().contains("@127.0.0.1:5080"), "{}", first.uri());
    assert!(h.take(Remote::udp(addr(5070))).is_empty(), "not sip.trunk");
    h.answer_b(&first, 503, "");
    let acks = h.take_b();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].method().as_deref(), Some("ACK"));
    assert!(codes(&h.take_a()).is_empty(), "A is not told of the 503");

    h.trunk = Remote::udp(addr(5081));
    let mut next = h.take_b();
    assert_eq!(next.len(), 1, "the INVITE goes to the next trunk");
    let second = next.remove(0);
    assert_eq!(second.method().as_deref(), Some("INVITE"));
    assert!(second.uri().contains("@127.0.0.1:5081"), "{}", second.uri());
    // The same caller ID, the same leg B dialog, a new transaction.
    assert_eq!(
        second.header(HeaderName::From),
        first.header(HeaderName::From)
    );
    assert_eq!(
        second.header(HeaderName::CallId),
        first.header(HeaderName::CallId)
    );
    assert_eq!(second.header(HeaderName::CSeq), "2 INVITE");
    assert_ne!(
        second.headers(HeaderName::Via),
        first.headers(HeaderName::Via)
    );
    h.answer_b(&second, 200, "");
    assert_eq!(codes(&h.take_a()), vec![200]);
    assert_eq!(h.core.outbound(), Some(ResourceStatus::InProgress));
    // The ACK repeats the INVITE's CSeq (RFC 3261 §13.2.2.4).
    let ack = invites_and_acks(&mut h, 5081);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].header(HeaderName::CSeq), "2 ACK");
}

/// What went to `port` but OPTIONS probes.
fn invites_and_acks(h: &mut Harness, port: u16) -> Vec<Sent> {
    h.take(Remote::udp(addr(port)))
        .into_iter()
        .filter(|s| s.method().as_deref() != Some("OPTIONS"))
        .collect()
}

#[test]
fn a_cancel_after_failover_goes_to_the_trunk_ringing_with_its_invites_cseq() {
    let mut h = harness();
    let first = h.call();
    h.answer_b(&first, 503, "");
    let _ = h.take_b();
    h.trunk = Remote::udp(addr(5081));
    let second = invites(&mut h, 5081).remove(0);
    h.answer_b(&second, 180, "");
    assert_eq!(codes(&h.take_a()), vec![180]);
    let a = h.a;
    h.deliver(a, &cancel_from_a());
    let cancel = invites_and_acks(&mut h, 5081);
    let cancel: Vec<&Sent> = cancel
        .iter()
        .filter(|s| s.method().as_deref() == Some("CANCEL"))
        .collect();
    assert_eq!(cancel.len(), 1, "the CANCEL goes to the trunk now ringing");
    assert_eq!(cancel[0].header(HeaderName::CSeq), "2 CANCEL");
    assert_eq!(
        cancel[0].headers(HeaderName::Via),
        second.headers(HeaderName::Via),
        "the INVITE's branch"
    );
    assert!(h
        .take(Remote::udp(addr(5080)))
        .iter()
        .all(|s| s.method().as_deref() != Some("CANCEL")));
}

#[test]
fn a_silent_trunk_gives_way_after_four_t1_and_the_last_ones_503_reaches_a() {
    let mut h = harness();
    let first = h.call();
    assert!(first.uri().contains("@127.0.0.1:5080"));
    h.advance(1_900);
    assert!(invites(&mut h, 5081).is_empty(), "not before four T1");
    h.advance(200);
    h.trunk = Remote::udp(addr(5081));
    let mut next = invites(&mut h, 5081);
    assert_eq!(next.len(), 1, "the next trunk after 2 s of silence");
    let second = next.remove(0);
    // The last trunk: its 503 is A's answer.
    h.answer_b(&second, 503, "");
    assert_eq!(codes(&h.take_a()), vec![503]);
}

#[test]
fn once_leg_b_rang_a_failure_is_not_failed_over() {
    let mut h = harness();
    let first = h.call();
    h.answer_b(&first, 180, "");
    assert_eq!(codes(&h.take_a()), vec![180]);
    // Answered: silence no longer moves it on.
    h.advance(3_000);
    assert!(invites(&mut h, 5081).is_empty());
    h.answer_b(&first, 408, "");
    assert_eq!(codes(&h.take_a()), vec![408]);
    assert!(invites(&mut h, 5081).is_empty());
}

#[test]
fn a_callee_proxy_no_carrier_owns_goes_to_sip_trunk() {
    let mut h = harness();
    h.core.target.counterpart_proxy = E164::parse("+14155550199").unwrap();
    h.trunk = Remote::udp(addr(5070));
    let inv = h.call();
    assert!(inv.uri().contains("@127.0.0.1:5070"), "{}", inv.uri());
}

#[test]
fn a_trunk_answering_after_leg_b_moved_on_is_cancelled_or_hung_up() {
    let mut h = harness();
    let first = h.call();
    h.advance(2_100);
    assert_eq!(invites(&mut h, 5081).len(), 1, "moved on for silence");
    let _ = h.take(Remote::udp(addr(5080)));
    // The first trunk wakes up: it rings, then answers. Leg B is elsewhere by now.
    h.answer_b(&first, 180, "");
    let sent = invites_and_acks(&mut h, 5080);
    assert_eq!(methods(&sent), ["CANCEL"], "its ringing is cancelled");
    assert_eq!(
        sent[0].headers(HeaderName::Via),
        first.headers(HeaderName::Via)
    );
    assert_eq!(sent[0].header(HeaderName::CSeq), "1 CANCEL");
    assert_eq!(sent[0].uri(), first.uri());
    h.answer_b(&first, 200, "");
    let sent = invites_and_acks(&mut h, 5080);
    assert_eq!(methods(&sent), ["ACK", "BYE"], "its answer is hung up");
    assert_eq!(sent[0].header(HeaderName::CSeq), "1 ACK");
    assert_eq!(sent[1].header(HeaderName::CSeq), "2 BYE");
    assert!(sent[1].header(HeaderName::To).contains("tag=tb"));
    assert!(codes(&h.take_a()).is_empty(), "A hears nothing of it");
}

#[test]
fn a_carrier_whose_trunk_hostnames_are_unresolved_gets_503_not_sip_trunk() {
    use crate::core::carriers::{TrunkName, TrunkSpec};
    let mut named = harness();
    let mut c = named.b2bua.cfg.carriers.list()[0].clone();
    c.trunks.clear();
    c.specs = vec![TrunkSpec::Name(TrunkName {
        host: "sbc.carrier.test".into(),
        port: None,
        tcp: false,
        tls: false,
        credentials: None,
    })];
    named.b2bua = B2bua::new(Settings {
        carriers: Arc::new(Carriers::new(vec![c], vec![(PROXY_B.into(), 0)])),
        ..settings(false)
    });
    named.invite_from_a("");
    assert_eq!(codes(&named.take_a()), vec![503]);
    assert!(
        named.take(Remote::udp(addr(5070))).is_empty(),
        "not sip.trunk"
    );
}
