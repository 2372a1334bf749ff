//! Graceful shutdown: on SIGTERM maskd stops taking new work, finishes what it accepted and
//! exits within `shutdown_grace`. The real daemon, driven over SMPP (two carrier binds) and
//! SIP (UDP sockets for the caller and the trunk) on loopback.

mod common;

use std::time::{Duration, Instant};

use common::sip::{answered_call, header, invite, recv_not, recv_until, respond, socket};
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};

const A: &str = "+14155551001";
const B: &str = "+14155552002";

fn config(trunk: u16) -> String {
    format!(
        r#"{}sip:
  listen: "127.0.0.1:0"
  trunk: "127.0.0.1:{trunk}"
services:
  - unique_name: "s"
    numbers: ["+14155550101", "+14155550102"]
"#,
        two_carriers("  response_timeout: \"2s\"\n")
    )
}

/// A daemon with `shutdown_grace` set to `grace`.
fn start(dir: &std::path::Path, trunk: u16, grace: &str) -> Daemon {
    Daemon::start_edited(dir, &config(trunk), |c| {
        c.replace(
            "shutdown_grace: \"5s\"",
            &format!("shutdown_grace: \"{grace}\""),
        )
    })
}

/// The A–B session; returns the proxy number A dials to reach B.
fn session(d: &Daemon) -> String {
    two_party_session(d, "s", "chat", A, B).0
}

#[test]
fn sigterm_finishes_accepted_work_refuses_new_calls_and_hangs_up_within_grace() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let mut d = start(dir.path(), trunk_port, "3s");
    let proxy = session(&d);
    let proxy_digits = proxy.trim_start_matches('+').to_string();

    // Two carriers: A's submits messages to B through the proxy number, B's receives them.
    let mut ca = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut cb = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    // B's carrier answers what it gets at once, until maskd closes the link (bounded).
    let receiver = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !cb.closed && Instant::now() < deadline {
            cb.recv(Duration::from_millis(100));
        }
        cb.messages.len()
    });

    // One answered call and one still ringing.
    let (a, _) = socket();
    answered_call(d.sip, &a, &trunk, A, &proxy, "up1");
    let (a2, a2_port) = socket();
    a2.send_to(invite(a2_port, A, &proxy, "ring1").as_bytes(), d.sip)
        .unwrap();
    let (ringing, from) = recv_until(&trunk, "INVITE ");
    respond(&trunk, &ringing, from, 180, "Ringing");
    recv_until(&a2, "SIP/2.0 180");

    // 40 messages pipelined, and SIGTERM while they are in flight.
    let seqs: Vec<u32> = (0..40)
        .map(|i| {
            let text = format!("m{i}");
            ca.send(Body::SubmitSm(sm(&A[1..], &proxy_digits, text.as_bytes())))
        })
        .collect();
    let t0 = Instant::now();
    d.sigterm();
    d.wait_for_log("shutdown requested", Duration::from_secs(5));

    // New calls are refused from now on, with Retry-After.
    let (n, n_port) = socket();
    n.send_to(invite(n_port, A, &proxy, "new1").as_bytes(), d.sip)
        .unwrap();
    let Some(refused) = recv_not(&n, "SIP/2.0 100") else {
        panic!(
            "no answer to a new INVITE; maskd's log:\n{}",
            d.drain_log().join("\n")
        );
    };
    assert!(refused.starts_with("SIP/2.0 503"), "{refused}");
    assert!(!header(&refused, "Retry-After").is_empty(), "{refused}");

    // Every message in flight is answered; maskd unbinds.
    let mut acked = 0;
    for s in &seqs {
        let r = ca.wait_resp(*s);
        if r.status == status::ESME_ROK {
            acked += 1;
        }
    }
    assert!(
        acked > 0,
        "some of the messages were accepted before the stop"
    );
    // The unbind may come before the last answer (then it is among `other`) or after it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut unbind = ca.other.iter().any(|p| p.body == Body::Unbind);
    while !unbind && Instant::now() < deadline {
        unbind = ca
            .recv(Duration::from_millis(200))
            .is_some_and(|p| p.body == Body::Unbind);
    }
    assert!(unbind, "unbind from maskd");

    // Shortly before the grace runs out: BYE on both legs of the answered call, CANCEL
    // towards the trunk for the ringing one (and 487 to its caller).
    let mut trunk_bye = false;
    let mut trunk_cancel = false;
    let mut buf = [0u8; 8192];
    for _ in 0..40 {
        if trunk_bye && trunk_cancel {
            break;
        }
        let Ok((len, from)) = trunk.recv_from(&mut buf) else {
            break;
        };
        let m = String::from_utf8_lossy(&buf[..len]).to_string();
        if m.starts_with("BYE ") {
            trunk_bye = true;
            respond(&trunk, &m, from, 200, "OK");
        } else if m.starts_with("CANCEL ") {
            trunk_cancel = true;
            respond(&trunk, &m, from, 200, "OK");
            respond(&trunk, &ringing, from, 487, "Request Terminated");
        }
    }
    assert!(
        trunk_bye && trunk_cancel,
        "bye {trunk_bye} cancel {trunk_cancel}"
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "calls got time to end by themselves: {waited:?}"
    );
    let (bye, from) = recv_until(&a, "BYE ");
    respond(&a, &bye, from, 200, "OK");
    recv_until(&a2, "SIP/2.0 487");

    let st = d.wait_exit(Duration::from_secs(3)).expect("exited");
    assert!(st.success(), "{st:?}");
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(3_500),
        "exit within the 3 s grace: {took:?}"
    );

    // What was accepted is delivered: now, or from the queue after a restart, once.
    let before = receiver.join().unwrap();
    let d = start(dir.path(), trunk_port, "3s");
    let mut cb = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    cb.wait_messages(acked - before, Duration::from_secs(10));
    assert_eq!(
        before + cb.messages.len(),
        acked,
        "{before} before the stop"
    );
    // And the session is intact: a new call goes through.
    let (a3, _) = socket();
    let inv = answered_call(d.sip, &a3, &trunk, A, &proxy, "after1");
    assert!(inv.starts_with(&format!("INVITE sip:{B}@")), "{inv}");
}

#[test]
fn sigterm_exits_as_soon_as_the_last_call_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let mut d = start(dir.path(), trunk_port, "30s");
    let proxy = session(&d);
    let (a, a_port) = socket();
    answered_call(d.sip, &a, &trunk, A, &proxy, "c1");
    d.sigterm();
    // The call goes on while maskd drains: A hangs up, maskd relays the BYE.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        d.wait_exit(Duration::ZERO).is_none(),
        "still serving the call"
    );
    let bye = format!(
        "BYE sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{a_port};branch=z9hG4bKbye1\r\n\
         From: <sip:{A}@127.0.0.1>;tag=tc1\r\nTo: <sip:{proxy}@127.0.0.1>;tag=x\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let t0 = Instant::now();
    a.send_to(bye.as_bytes(), d.sip).unwrap();
    let (b, from) = recv_until(&trunk, "BYE ");
    respond(&trunk, &b, from, 200, "OK");
    let st = d
        .wait_exit(Duration::from_secs(5))
        .expect("exited once the call ended");
    assert!(st.success(), "{st:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "{:?}, not the 30 s grace",
        t0.elapsed()
    );
}
