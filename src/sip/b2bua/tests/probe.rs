//! OPTIONS probes of a carrier's trunks: a trunk silent to its probe is down, and leg B tries
//! the trunks up first; answered again, it is up and first again.

use super::failover::{harness, invites};
use super::*;

/// The OPTIONS probes sent to `port` since the last take.
fn probes(h: &mut Harness, port: u16) -> Vec<Sent> {
    h.take(Remote::udp(addr(port)))
        .into_iter()
        .filter(|s| s.method().as_deref() == Some("OPTIONS"))
        .collect()
}

#[test]
fn a_trunk_silent_to_its_probe_is_tried_last_until_it_answers_again() {
    let mut h = harness();
    // Both trunks probed at the first tick; :5081 answers, :5080 stays silent.
    h.advance(50);
    let first = probes(&mut h, 5080);
    assert_eq!(first.len(), 1);
    assert!(
        first[0].uri().starts_with("sip:127.0.0.1:5080"),
        "{}",
        first[0].uri()
    );
    let p2 = probes(&mut h, 5081);
    assert_eq!(p2.len(), 1);
    h.deliver(
        Remote::udp(addr(5081)),
        &response(&p2[0], 200, ";tag=p", ""),
    );
    h.advance(2_100);
    let _ = h.take(Remote::udp(addr(5080)));
    // :5080 is down: a new call's INVITE goes to :5081 first.
    h.invite_from_a("");
    assert_eq!(invites(&mut h, 5081).len(), 1, "the trunk up first");
    assert!(invites(&mut h, 5080).is_empty());
    let _ = h.take_a();

    // The next round of probes (every 30 s): :5080 answers (even a 405 means it is there).
    h.advance(30_000);
    let again = probes(&mut h, 5080);
    assert!(!again.is_empty());
    h.deliver(
        Remote::udp(addr(5080)),
        &response(again.last().unwrap(), 405, ";tag=p", ""),
    );
    // Another call (its own Call-ID and branch).
    let text = format!(
        "INVITE sip:{PROXY_A}@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa2;rport\r\n\
         From: <sip:{CALLER}@127.0.0.1>;tag=fa2\r\nTo: <sip:{PROXY_A}@127.0.0.1>\r\n\
         Call-ID: call-a2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Contact: <sip:{CALLER}@127.0.0.1:5062>\r\nContent-Length: 0\r\n\r\n"
    );
    h.deliver(Remote::udp(addr(5062)), &text);
    assert_eq!(invites(&mut h, 5080).len(), 1, "up again: first again");
}

/// Runs the timers at `h.now`; what went out: (when, the first line's first word, to).
fn fire(h: &mut Harness) -> Vec<(u64, String, Remote)> {
    let mut out = Vec::new();
    h.b2bua.on_timer(h.now, &h.core, &mut out);
    h.collect(out);
    std::mem::take(&mut h.sent)
        .into_iter()
        .map(|s| {
            let first = s.text.split_whitespace().next().unwrap_or("").to_string();
            (h.now, first, s.to)
        })
        .collect()
}

#[test]
fn sleeping_from_one_timer_to_the_next_sends_what_ticking_sends_when_it_does() {
    // Two silent trunks, probed every 30 s: each probe is retransmitted (timer E) until
    // timer F, 32 s. Over 100 s, ticking every 50 ms as the voice plane did whatever the
    // load...
    let mut ticking = harness();
    let (start, end) = (ticking.now, ticking.now + 100_000);
    let mut ticked = Vec::new();
    while ticking.now < end {
        ticking.now += 50;
        ticked.extend(fire(&mut ticking));
    }
    let probes = ticked.iter().filter(|(_, m, _)| m == "OPTIONS").count();
    assert!(probes >= 20, "probes and their retransmissions: {ticked:?}");
    // ...against sleeping from one timer to the next (at least a tick later), as its thread
    // does when nothing arrives: the same datagrams at the same times, far fewer wake-ups.
    let mut sleeping = harness();
    assert_eq!(sleeping.now, start);
    let mut slept = Vec::new();
    let mut wakes = 0u64;
    while sleeping.now < end {
        let next = sleeping.b2bua.next_timer(sleeping.now);
        sleeping.now = next.max(sleeping.now + 50).min(end);
        wakes += 1;
        slept.extend(fire(&mut sleeping));
    }
    assert_eq!(slept, ticked);
    let ticks = (end - start) / 50;
    assert!(wakes * 10 < ticks, "{wakes} wake-ups against {ticks} ticks");
}
