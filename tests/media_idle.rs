//! The media relay does no work on a clock while it relays no call (issue 17, the idle cost
//! of timer ticks): its threads sleep until a call's streams are handed to them, relay that
//! call at once, and sleep again once it has ended; the recorder sleeps while no recording is
//! open. Counted by those threads' context switches (`/proc/PID/task/*/status`) over one
//! second: each relay thread used to wake every 20 ms (~50 times a second) with nothing to
//! do, the recorder every 200 ms.

mod common;

use std::time::Duration;

use common::media::sdp;
use common::media_call::*;
use common::sip::{recv_until, socket};
use common::Daemon;

/// The context switches (voluntary and not) of the daemon's relay threads and its recorder
/// thread, summed.
fn relay_switches(d: &Daemon) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", d.pid())).expect("the daemon's threads");
    let mut n = 0;
    let mut threads = 0;
    for t in tasks.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.starts_with("maskd-media-") && !comm.starts_with("maskd-recorder") {
            continue;
        }
        threads += 1;
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        n += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    assert!(threads > 0, "no relay thread found");
    n
}

/// Over one second the relay threads woke at most a few times (a stray wake-up of the
/// runtime's making is allowed; a clock's would be ~50 per thread).
fn quiet(d: &Daemon, when: &str) {
    let before = relay_switches(d);
    std::thread::sleep(Duration::from_secs(1));
    let woke = relay_switches(d) - before;
    assert!(
        woke <= 4,
        "{when}: the relay threads woke {woke} times in 1 s"
    );
}

#[test]
fn an_idle_relay_sleeps_until_a_call_needs_it_and_again_once_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa) = start(dir.path(), trunk_port, "31500-31599", "");
    quiet(&d, "before any call");

    // The first call's streams go to a sleeping thread: it is woken, and media crosses at
    // once both ways.
    let p = Peers::new();
    let offer = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0 101", "");
    let ans = sdp(CALLEE, port(&p.b_rtp), port(&p.b_rtcp), "0 101", "");
    let c = call(&d, &p, &trunk, &pa, "idle1", &offer, &ans);
    for seq in 0..3u16 {
        let pkt = rtp(0, seq, 0xA1A1A1A1, 0x11);
        p.a_rtp.send_to(&pkt, c.relay_a).unwrap();
        assert_eq!(recv(&p.b_rtp).expect("A's RTP at B").0, pkt);
        let pkt = rtp(0, seq, 0xB2B2B2B2, 0x22);
        p.b_rtp.send_to(&pkt, c.relay_b).unwrap();
        assert_eq!(recv(&p.a_rtp).expect("B's RTP at A").0, pkt);
    }

    // The call ends; what the relay counted is exported before it sleeps again.
    let bye = in_dialog("BYE", 2, "idle1bye", port(&p.a_sip), &c.ok_a, &pa, None);
    p.a_sip.send_to(bye.as_bytes(), d.sip).unwrap();
    let (bye_b, from) = recv_until(&trunk, "BYE ");
    answer(&trunk, &bye_b, from, 200, None);
    recv_until(&p.a_sip, "SIP/2.0 200");
    wait_metric(
        &d,
        "maskd_media_ports{state=\"in_use\"}",
        |v| v == 0.0,
        "the call's ports never came back",
    );
    wait_metric(
        &d,
        "maskd_media_packets_total",
        |v| v >= 6.0,
        "the call's packets were not counted",
    );
    quiet(&d, "after the call");

    // A second call wakes it again (the ports' sockets kept, idle, on the same thread).
    let c2 = call(&d, &p, &trunk, &pa, "idle2", &offer, &ans);
    let pkt = rtp(0, 7, 0xA1A1A1A1, 0x33);
    p.a_rtp.send_to(&pkt, c2.relay_a).unwrap();
    assert_eq!(recv(&p.b_rtp).expect("A's RTP at B, second call").0, pkt);
}
