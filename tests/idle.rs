//! maskd does no work on a clock while it has nothing to do (issue 17, the idle cost of timer
//! ticks). The media relay's threads sleep until a call's streams are handed to them, relay
//! that call at once, and sleep again once it has ended; the recorder sleeps while no
//! recording is open; the voice plane's thread sleeps until its next SIP timer (at most a
//! second) instead of ticking every 50 ms; the session timer wheel's task sleeps while no
//! session has a deadline. Counted by those threads' context switches
//! (`/proc/PID/task/*/status`) over one or two seconds: each relay thread used to wake every
//! 20 ms (~50 times a second), the recorder every 200 ms, the voice plane and the runtime ~20
//! times a second.

mod common;

use std::time::Duration;

use common::media::sdp;
use common::media_call::*;
use common::sip::socket;
use common::Daemon;

/// The context switches (voluntary and not) of the daemon's threads whose names start with
/// one of `names`, summed.
fn switches(d: &Daemon, names: &[&str]) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", d.pid())).expect("the daemon's threads");
    let mut n = 0;
    let mut threads = 0;
    for t in tasks.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !names.iter().any(|n| comm.starts_with(n)) {
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
    assert!(
        threads >= names.len(),
        "not every thread of {names:?} found"
    );
    n
}

/// The relay's threads and the recorder.
const MEDIA: &[&str] = &["maskd-media-", "maskd-recorder"];
/// Those and the voice plane's thread.
const VOICE: &[&str] = &["maskd-media-", "maskd-recorder", "maskd-sip"];

/// Over one second the threads named woke at most a few times (the voice plane's timer at
/// its one-second longest and a stray wake-up are allowed; a clock's would be ~20 to ~50 per
/// thread).
fn quiet(d: &Daemon, names: &[&str], when: &str) {
    let before = switches(d, names);
    std::thread::sleep(Duration::from_secs(1));
    let woke = switches(d, names) - before;
    assert!(woke <= 4, "{when}: {names:?} woke {woke} times in 1 s");
}

#[test]
fn an_idle_daemon_sleeps_until_a_call_needs_it_and_its_relay_again_once_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa) = start(dir.path(), trunk_port, "31900-31999", "");
    quiet(&d, VOICE, "before any call");
    // The async runtime: with no session on the timer wheel (this one has no TTL) the wheel's
    // task sleeps; what is left are its tasks' own timers (a second or longer).
    let before = switches(&d, &["tokio-rt-worker"]);
    std::thread::sleep(Duration::from_secs(2));
    let woke = switches(&d, &["tokio-rt-worker"]) - before;
    assert!(woke <= 12, "the runtime woke {woke} times in 2 s");

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
    hang_up(&d, &p, &trunk, &pa, &c, "idle1bye");
    wait_metric(
        &d,
        "maskd_media_packets_total",
        |v| v >= 6.0,
        "the call's packets were not counted",
    );
    // (The voice plane still keeps the call's transactions for their timers, up to 32 s.)
    quiet(&d, MEDIA, "after the call");

    // A second call on the ports kept (their sockets idle on the same thread, so its first
    // packet would wake the thread even unwoken; the first call's were new sockets, which
    // only the wake-up registers).
    let c2 = call(&d, &p, &trunk, &pa, "idle2", &offer, &ans);
    let pkt = rtp(0, 7, 0xA1A1A1A1, 0x33);
    p.a_rtp.send_to(&pkt, c2.relay_a).unwrap();
    assert_eq!(recv(&p.b_rtp).expect("A's RTP at B, second call").0, pkt);
}
