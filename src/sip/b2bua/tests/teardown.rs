//! How answered calls end: BYEs that cross, and what is kept once a call is over.

use super::*;

/// The 200 that set up leg A's dialog (`Harness::answered` takes it), as A knows it.
fn ok_to_a(h: &Harness) -> Sent {
    let to = h.b2bua.calls.values().next().map(|c| c.a.local_header());
    Sent {
        to: h.a,
        text: format!(
            "SIP/2.0 200 OK\r\nFrom: <sip:{CALLER}@127.0.0.1>;tag=fa\r\nTo: {}\r\n\
             Call-ID: call-a\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            to.unwrap_or_default()
        ),
    }
}

#[test]
fn a_bye_crossing_ours_is_answered_and_nothing_more() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.answered();
    h.take_a();
    let writes = h.core.interaction_writes();
    // B hangs up: 200 to B, BYE to A.
    let bye_b = in_dialog_from_b(&inv, "BYE", 1, "z9hG4bKbye-b");
    let trunk = h.trunk;
    h.deliver(trunk, &bye_b);
    assert_eq!(codes(&h.take_b()), vec![200]);
    assert_eq!(methods(&h.take_a()), vec!["BYE"]);
    assert_eq!(h.core.interaction_writes(), writes + 1);
    // A hung up at the same moment: its BYE crosses ours.
    let ok = ok_to_a(&h);
    let bye_a = in_dialog_from_a(&ok, "BYE", 2, "z9hG4bKbye-a", h.a);
    let a = h.a;
    h.deliver(a, &bye_a);
    assert_eq!(codes(&h.take_a()), vec![200], "A's BYE is answered");
    assert!(h.take_b().is_empty(), "no second BYE to B");
    assert_eq!(
        h.core.interaction_writes(),
        writes + 1,
        "the log is not rewritten"
    );
}

#[test]
fn an_ended_call_is_forgotten_while_its_bye_waits_out_timer_k() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.answered();
    h.take_a();
    h.take_b();
    let ok = ok_to_a(&h);
    let a = h.a;
    h.deliver(a, &in_dialog_from_a(&ok, "BYE", 2, "z9hG4bKbye-a", a));
    assert_eq!(codes(&h.take_a()), vec![200]);
    let bye = h.take_b();
    assert_eq!(methods(&bye), vec!["BYE"]);
    // B answers: our BYE's client transaction waits out timer K (T4, 5 s over UDP).
    h.answer_b(&bye[0], 200, "");
    h.advance(1_100);
    assert!(
        h.b2bua.transactions() > 0,
        "the BYE's transaction still absorbs copies of its answer"
    );
    assert_eq!(
        h.b2bua.active_calls(),
        0,
        "the call is swept within a second, not held for timer K"
    );
    // A copy of B's answer is absorbed by the transaction alone, without the call.
    h.answer_b(&bye[0], 200, "");
    assert!(h.take_a().is_empty() && h.take_b().is_empty());
    // B never had our ACK and sends its 200 to the INVITE again: ACKed from the answer
    // itself, in leg B's dialog, though the call is gone.
    h.answer_b(&inv, 200, "");
    let ack = h.take_b();
    assert_eq!(methods(&ack), vec!["ACK"]);
    assert_eq!(ack[0].uri(), format!("sip:{CALLEE}@127.0.0.1:5070"));
    assert_eq!(ack[0].header(HeaderName::CSeq), "1 ACK");
    assert_eq!(
        ack[0].header(HeaderName::CallId),
        inv.header(HeaderName::CallId)
    );
    assert!(ack[0].header(HeaderName::To).ends_with(";tag=tb"));
    assert!(h.take_a().is_empty(), "nothing reaches A");
    // A stray 2xx of a dialog that is not maskd's own is not ACKed.
    let contact = format!("Contact: <sip:{CALLEE}@127.0.0.1:5070>\r\n");
    let stray = response(&inv, 200, ";tag=tb", &contact).replace("@maskd", "@elsewhere");
    let trunk = h.trunk;
    h.deliver(trunk, &stray);
    assert!(h.take_b().is_empty());
}

#[test]
fn once_a_call_is_over_only_its_transactions_deadlines_are_on_a_clock() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    assert_eq!(
        h.b2bua.next_timer(h.now),
        u64::MAX,
        "nothing alive: nothing on a clock"
    );
    h.answered();
    h.take_a();
    h.take_b();
    assert_eq!(h.b2bua.next_timer(h.now), h.now, "a live call: every tick");
    let ok = ok_to_a(&h);
    let a = h.a;
    h.deliver(a, &in_dialog_from_a(&ok, "BYE", 2, "z9hG4bKbye-a", a));
    let bye = h.take_b();
    h.answer_b(&bye[0], 200, "");
    h.advance(1_100);
    assert_eq!(h.b2bua.active_calls(), 0, "swept");
    // What is left absorbs retransmissions: the first deadline is timer K of our BYE (T4,
    // 5 s after its answer), then the others' up to 32 s; never sooner than now.
    let next = h.b2bua.next_timer(h.now);
    assert!(
        next > h.now && next <= h.now + 5_000,
        "{} ms from now",
        next.saturating_sub(h.now)
    );
    h.advance(40_000);
    assert_eq!(h.b2bua.transactions(), 0);
    assert_eq!(h.b2bua.next_timer(h.now), u64::MAX, "all over");
}
