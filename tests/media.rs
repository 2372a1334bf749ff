//! The media plane end to end (SPEC §2.4), over loopback with scripted peers: a caller and a
//! trunk that speak SIP over UDP and send RTP and RTCP from their own sockets, through
//! maskd's relay. Each test fails without anchoring: the SDP each side gets must name
//! maskd's ports and nothing of the other side, and packets must arrive from maskd.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::media::{rtcp_with_identity, sdp};
use common::media_call::*;
use common::sip::{header, recv_until, socket};
use common::Daemon;

#[test]
fn rtp_and_rtcp_cross_through_maskd_and_no_identity_crosses() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa) = start(dir.path(), trunk_port, "31000-31099", "");
    let p = Peers::new();
    let offer = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0 8 101", "");
    let ans = sdp(CALLEE, port(&p.b_rtp), port(&p.b_rtcp), "0 101", "");
    let c = call(&d, &p, &trunk, &pa, "m1", &offer, &ans);

    // The SDP each side got: maskd's address and ports, maskd's origin, no trace of the
    // other side (number, its own ports, ssrc, ICE), the codecs kept.
    for (got, other, other_ports) in [
        (&c.invite_b, CALLER, [port(&p.a_rtp), port(&p.a_rtcp)]),
        (&c.ok_a, CALLEE, [port(&p.b_rtp), port(&p.b_rtcp)]),
    ] {
        let b = body(got);
        assert!(
            !b.contains(&other[1..]),
            "the other side's number crossed:\n{b}"
        );
        for op in other_ports {
            assert!(
                !b.contains(&op.to_string()),
                "the other side's port {op} crossed:\n{b}"
            );
        }
        for bad in ["a=ssrc", "a=candidate", "a=ice-"] {
            assert!(!b.contains(bad), "{bad} crossed:\n{b}");
        }
        assert!(b.contains("o=maskd "), "{b}");
        assert!(b.contains("a=rtpmap:0 PCMU/8000"), "{b}");
        assert!(b.contains("s=-"), "{b}");
    }
    assert!((31000..=31099).contains(&c.relay_a.port()), "{}", c.ok_a);
    assert!(
        (31000..=31099).contains(&c.relay_b.port()),
        "{}",
        c.invite_b
    );
    assert_ne!(c.relay_a, c.relay_b);

    // RTP both ways, unchanged, from maskd's ports.
    for seq in 0..5u16 {
        let pkt = rtp(0, seq, 0xA1A1A1A1, 0x11);
        p.a_rtp.send_to(&pkt, c.relay_a).unwrap();
        let (got, from) = recv(&p.b_rtp).expect("A's RTP at B");
        assert_eq!(got, pkt);
        assert_eq!(
            from, c.relay_b,
            "B gets A's media from maskd's B-facing port"
        );
        let pkt = rtp(0, seq, 0xB2B2B2B2, 0x22);
        p.b_rtp.send_to(&pkt, c.relay_b).unwrap();
        let (got, from) = recv(&p.a_rtp).expect("B's RTP at A");
        assert_eq!(got, pkt);
        assert_eq!(from, c.relay_a);
    }

    // RTCP: A's SDES (CNAME, NAME, PHONE with its number) reaches B scrubbed; the SR
    // itself intact.
    let rtcp_a = SocketAddr::new(c.relay_a.ip(), c.relay_a.port() + 1);
    let pkt = rtcp_with_identity(0xA1A1A1A1, CALLER);
    p.a_rtcp.send_to(&pkt, rtcp_a).unwrap();
    let (got, from) = recv(&p.b_rtcp).expect("A's RTCP at B's RTCP port");
    assert_eq!(from.port(), c.relay_b.port() + 1);
    assert!(
        !contains(&got, &CALLER[1..]),
        "A's number crossed in RTCP: {got:?}"
    );
    assert_eq!(&got[..28], &pkt[..28], "the SR crosses unchanged");
    let pkt = rtcp_with_identity(0xB2B2B2B2, CALLEE);
    p.b_rtcp
        .send_to(&pkt, SocketAddr::new(c.relay_b.ip(), c.relay_b.port() + 1))
        .unwrap();
    let (got, _) = recv(&p.a_rtcp).expect("B's RTCP at A");
    assert!(
        !contains(&got, &CALLEE[1..]),
        "B's number crossed in RTCP: {got:?}"
    );

    // The relay counted what it did.
    wait_metric(
        &d,
        "maskd_media_rtcp_items_removed_total",
        |v| v >= 4.0,
        "RTCP scrubbing not counted",
    );
    assert!(metric(&d, "maskd_media_packets_total") >= 10.0);
}

#[test]
fn latching_follows_the_real_source_and_drops_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa) = start(dir.path(), trunk_port, "31100-31199", "");
    let p = Peers::new();
    // B's SDP names a port it never sends from (as behind NAT): `decoy`.
    let decoy = udp();
    decoy
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let offer = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0", "");
    let ans = sdp(CALLEE, port(&decoy), port(&p.b_rtcp), "0", "");
    let c = call(&d, &p, &trunk, &pa, "latch", &offer, &ans);

    // Before B sends, A's media goes where B's SDP said.
    p.a_rtp.send_to(&rtp(0, 1, 1, 1), c.relay_a).unwrap();
    assert_eq!(
        recv(&decoy).expect("A's RTP at B's SDP address").0,
        rtp(0, 1, 1, 1)
    );
    // B sends from its real socket: the relay latches onto it, and A's media follows.
    p.b_rtp.send_to(&rtp(0, 1, 2, 2), c.relay_b).unwrap();
    assert!(recv(&p.a_rtp).is_some());
    p.a_rtp.send_to(&rtp(0, 2, 1, 1), c.relay_a).unwrap();
    assert_eq!(
        recv(&p.b_rtp).expect("A's RTP at B's real source").0,
        rtp(0, 2, 1, 1)
    );
    assert!(
        recv(&decoy).is_none(),
        "media still went to the SDP address"
    );

    // A stranger sending to A's relay port after A latched is dropped and counted.
    let stranger = udp();
    p.b_rtp
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stranger.send_to(&rtp(0, 9, 9, 9), c.relay_a).unwrap();
    assert!(
        recv(&p.b_rtp).is_none(),
        "a stranger's packet was relayed to B"
    );
    wait_metric(
        &d,
        "maskd_media_drops_total{reason=\"wrong_source\"}",
        |v| v >= 1.0,
        "the stranger's packet was not counted",
    );
}

#[test]
fn hold_resume_and_codec_change_by_reinvite() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa) = start(dir.path(), trunk_port, "31200-31299", "");
    let p = Peers::new();
    let a_port = port(&p.a_sip);
    let offer = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0 8", "");
    let ans = sdp(CALLEE, port(&p.b_rtp), port(&p.b_rtcp), "0 8", "");
    let c = call(&d, &p, &trunk, &pa, "hold", &offer, &ans);
    assert_eq!(origin_version(&c.invite_b), 1);
    assert_eq!(origin_version(&c.ok_a), 1);

    // Hold (a=sendonly), then old-style hold (c=0.0.0.0), then resume with PCMA only: each
    // re-INVITE reaches B with maskd's same ports, the direction and codecs kept, the
    // version one up; B's answers reach A likewise.
    let hold = sdp(
        CALLER,
        port(&p.a_rtp),
        port(&p.a_rtcp),
        "0 8",
        "a=sendonly\r\n",
    );
    let old_hold = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0 8", "")
        .replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let resume = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "8", "");
    let steps: [(&str, &str, &str); 3] = [
        (&hold, "a=sendonly", "a=recvonly"),
        (&old_hold, "c=IN IP4 0.0.0.0", "a=sendrecv"),
        (&resume, "m=audio", "a=sendrecv"),
    ];
    for (i, (offer, expect_b, answer_dir)) in steps.iter().enumerate() {
        let cseq = 2 + i as u32;
        let id = format!("hold{cseq}");
        let re = in_dialog("INVITE", cseq, &id, a_port, &c.ok_a, &pa, Some(offer));
        p.a_sip.send_to(re.as_bytes(), d.sip).unwrap();
        let (re_b, from) = recv_until(&trunk, "INVITE ");
        let b = body(&re_b);
        assert!(b.contains(expect_b), "step {i}: B got\n{b}");
        assert_eq!(origin_version(&re_b), 2 + i as u64, "step {i}:\n{b}");
        if i < 1 {
            assert_eq!(
                media_addr(&re_b),
                c.relay_b,
                "step {i}: maskd's port changed"
            );
        }
        if i == 2 {
            assert!(
                b.contains("RTP/AVP 8\r\n") && b.contains("PCMA/8000"),
                "{b}"
            );
            assert!(!b.contains("PCMU"), "{b}");
            assert_eq!(media_addr(&re_b), c.relay_b);
        }
        let b_answer = sdp(
            CALLEE,
            port(&p.b_rtp),
            port(&p.b_rtcp),
            if i == 2 { "8" } else { "0 8" },
            &format!("{answer_dir}\r\n"),
        )
        .replace(
            "o=+14155552002 4242 1",
            &format!("o=+14155552002 4242 {}", 2 + i),
        );
        answer(&trunk, &re_b, from, 200, Some(&b_answer));
        recv_until(&trunk, "ACK ");
        let (ok, _) = recv_until(&p.a_sip, "SIP/2.0 200");
        assert!(header(&ok, "CSeq").starts_with(&cseq.to_string()));
        assert!(
            body(&ok).contains(answer_dir),
            "step {i}: A got\n{}",
            body(&ok)
        );
        assert_eq!(origin_version(&ok), 2 + i as u64);
        assert_eq!(
            media_addr(&ok),
            c.relay_a,
            "step {i}: maskd's A-facing port changed"
        );
        assert!(!body(&ok).contains(&CALLEE[1..]));
        let ack = in_dialog("ACK", cseq, &format!("{id}ack"), a_port, &ok, &pa, None);
        p.a_sip.send_to(ack.as_bytes(), d.sip).unwrap();
    }
    // Resumed: media flows again both ways, in the new codec.
    p.a_rtp.send_to(&rtp(8, 10, 1, 0xd5), c.relay_a).unwrap();
    assert_eq!(
        recv(&p.b_rtp).expect("A's PCMA at B").0,
        rtp(8, 10, 1, 0xd5)
    );
    p.b_rtp.send_to(&rtp(8, 10, 2, 0x55), c.relay_b).unwrap();
    assert_eq!(
        recv(&p.a_rtp).expect("B's PCMA at A").0,
        rtp(8, 10, 2, 0x55)
    );
}

#[test]
fn no_media_for_media_timeout_ends_the_call_but_not_while_on_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa) = start(dir.path(), trunk_port, "31300-31399", "  timeout: \"1s\"\n");
    let p = Peers::new();
    let a_port = port(&p.a_sip);

    // Held at once: no BYE however long the silence lasts (here 2.5 s, 2.5 timeouts).
    let offer = sdp(
        CALLER,
        port(&p.a_rtp),
        port(&p.a_rtcp),
        "0",
        "a=sendonly\r\n",
    );
    let ans = sdp(
        CALLEE,
        port(&p.b_rtp),
        port(&p.b_rtcp),
        "0",
        "a=recvonly\r\n",
    );
    let c = call(&d, &p, &trunk, &pa, "quiet", &offer, &ans);
    trunk
        .set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    if let Ok((n, _)) = trunk.recv_from(&mut buf) {
        let t = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(!t.starts_with("BYE "), "a held call was ended: {t}");
    }
    trunk
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    // Resumed, and silent: the call ends with BYE on both legs after the timeout.
    let resume = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0", "");
    let re = in_dialog("INVITE", 2, "quiet2", a_port, &c.ok_a, &pa, Some(&resume));
    p.a_sip.send_to(re.as_bytes(), d.sip).unwrap();
    let (re_b, from) = recv_until(&trunk, "INVITE ");
    answer(
        &trunk,
        &re_b,
        from,
        200,
        Some(&sdp(CALLEE, port(&p.b_rtp), port(&p.b_rtcp), "0", "")),
    );
    let (ok, _) = recv_until(&p.a_sip, "SIP/2.0 200");
    let ack = in_dialog("ACK", 2, "quiet2ack", a_port, &ok, &pa, None);
    p.a_sip.send_to(ack.as_bytes(), d.sip).unwrap();
    let resumed = Instant::now();
    let (bye_b, _) = recv_until(&trunk, "BYE ");
    let (bye_a, _) = recv_until(&p.a_sip, "BYE ");
    let waited = resumed.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "ended after {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "ended after {waited:?}");
    assert_eq!(header(&bye_b, "Call-ID"), header(&c.invite_b, "Call-ID"));
    assert_eq!(header(&bye_a, "Call-ID"), header(&c.ok_a, "Call-ID"));
    wait_metric(
        &d,
        "maskd_media_timeouts_total",
        |v| v >= 1.0,
        "the media timeout was not counted",
    );
}

#[test]
fn an_exhausted_port_range_answers_503_and_ports_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    // Two port pairs: one call (A-facing and B-facing) takes both.
    let (d, pa) = start(dir.path(), trunk_port, "31400-31403", "");
    let p = Peers::new();
    let a_port = port(&p.a_sip);
    let offer = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0", "");
    let ans = sdp(CALLEE, port(&p.b_rtp), port(&p.b_rtcp), "0", "");
    let c = call(&d, &p, &trunk, &pa, "full1", &offer, &ans);
    assert_eq!(metric(&d, "maskd_media_ports{state=\"in_use\"}"), 2.0);

    // A second call finds no port: 503, and no leg B.
    let inv = with_sdp(&common::sip::invite(a_port, CALLER, &pa, "full2"), &offer);
    p.a_sip.send_to(inv.as_bytes(), d.sip).unwrap();
    let (r, _) = recv_until(&p.a_sip, "SIP/2.0 503");
    assert_eq!(header(&r, "Call-ID"), "full2");
    assert!(!header(&r, "Retry-After").is_empty());

    // The first call ends: its ports return, and the next call gets them.
    hang_up(&d, &p, &trunk, &pa, &c, "full1bye");
    // Their sockets stay open, idle: a late packet of the ended call is dropped there.
    assert_eq!(metric(&d, "maskd_media_ports{state=\"open\"}"), 2.0);
    p.a_rtp.send_to(&rtp(0, 9, 9, 9), c.relay_a).unwrap();
    wait_metric(
        &d,
        "maskd_media_drops_total{reason=\"idle_port\"}",
        |v| v >= 1.0,
        "a packet to an idle port was not dropped",
    );
    // (Already dropped when counted: a short wait shows nothing else came through.)
    p.b_rtp
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(recv(&p.b_rtp).is_none(), "an idle port forwarded");
    p.b_rtp
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    // The next call reuses the same ports (and sockets), and media crosses both ways.
    let c3 = call(&d, &p, &trunk, &pa, "full3", &offer, &ans);
    let mut reused = [c3.relay_a.port(), c3.relay_b.port()];
    let mut before = [c.relay_a.port(), c.relay_b.port()];
    reused.sort();
    before.sort();
    assert_eq!(reused, before);
    p.a_rtp.send_to(&rtp(0, 1, 1, 1), c3.relay_a).unwrap();
    assert!(recv(&p.b_rtp).is_some());
    p.b_rtp.send_to(&rtp(0, 2, 2, 2), c3.relay_b).unwrap();
    assert!(recv(&p.a_rtp).is_some());
    assert_eq!(metric(&d, "maskd_media_ports{state=\"open\"}"), 2.0);
}

#[test]
fn an_sdp_maskd_cannot_read_gets_488_and_a_non_sdp_body_415() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa) = start(dir.path(), trunk_port, "31500-31599", "");
    let p = Peers::new();
    let a_port = port(&p.a_sip);
    let inv = with_sdp(
        &common::sip::invite(a_port, CALLER, &pa, "bad1"),
        "v=0\r\nm=audio x RTP/AVP\r\n",
    );
    p.a_sip.send_to(inv.as_bytes(), d.sip).unwrap();
    let (r, _) = recv_until(&p.a_sip, "SIP/2.0 488");
    assert!(
        r.lines().next().unwrap().len() > "SIP/2.0 488 ".len(),
        "{r}"
    );
    let inv = with_sdp(&common::sip::invite(a_port, CALLER, &pa, "bad2"), "hello")
        .replace("application/sdp", "text/plain");
    p.a_sip.send_to(inv.as_bytes(), d.sip).unwrap();
    let (r, _) = recv_until(&p.a_sip, "SIP/2.0 415");
    assert_eq!(header(&r, "Accept"), "application/sdp");
    // Neither reached the trunk, and no port stayed taken.
    trunk
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        trunk.recv_from(&mut buf).is_err(),
        "a refused INVITE reached the trunk"
    );
    assert_eq!(metric(&d, "maskd_media_ports{state=\"in_use\"}"), 0.0);
}

/// G.711 µ-law of one linear sample (ITU-T G.711, for the test's tones).
fn ulaw(sample: i16) -> u8 {
    let sign = if sample < 0 { 0x80 } else { 0 };
    let mag = (sample as i32).unsigned_abs().min(32_635) + 0x84;
    let exp = (31 - mag.leading_zeros()).saturating_sub(7).min(7);
    let mant = (mag >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) as u8 | mant as u8)
}

/// 20 ms of a `hz` tone as µ-law, starting at sample `n`.
fn tone(hz: f64, n: u32) -> Vec<u8> {
    (0..160)
        .map(|i| {
            let t = (n + i) as f64 / 8000.0;
            ulaw((8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16)
        })
        .collect()
}

fn rtp_audio(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The power of `hz` in `x` (8 kHz), by a Goertzel filter, per sample.
fn power(x: &[f64], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    for v in x {
        let s = v + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / x.len().max(1) as f64
}

/// Packet `i` of each side's tone (A 440 Hz, B 660 Hz), then a wait until 20 ms after it
/// is due (paced as a phone sends, from `talk`).
fn talk_20ms(p: &Peers, c: &Answered, i: u16, talk: Instant) {
    p.a_rtp
        .send_to(&rtp_audio(i, 0xA1, &tone(440.0, i as u32 * 160)), c.relay_a)
        .unwrap();
    p.b_rtp
        .send_to(&rtp_audio(i, 0xB2, &tone(660.0, i as u32 * 160)), c.relay_b)
        .unwrap();
    let due = talk + Duration::from_millis(20 * (i as u64 + 1));
    std::thread::sleep(due.saturating_duration_since(Instant::now()));
}

#[test]
fn a_recorded_call_is_a_stereo_wav_served_in_twilios_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa) = start_with_services(
        dir.path(),
        trunk_port,
        "31600-31699",
        "",
        "    record: true\n",
    );
    let p = Peers::new();
    let a_port = port(&p.a_sip);
    let offer = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0 101", "");
    let ans = sdp(CALLEE, port(&p.b_rtp), port(&p.b_rtcp), "0 101", "");
    let c = call(&d, &p, &trunk, &pa, "rec1", &offer, &ans);
    // 1.5 s of talk, paced as a phone does: A a 440-Hz tone, B a 660-Hz one.
    let talk = Instant::now();
    for i in 0..75u16 {
        talk_20ms(&p, &c, i, talk);
    }
    let bye = in_dialog("BYE", 2, "rec1bye", a_port, &c.ok_a, &pa, None);
    p.a_sip.send_to(bye.as_bytes(), d.sip).unwrap();
    let (bye_b, from) = recv_until(&trunk, "BYE ");
    answer(&trunk, &bye_b, from, 200, None);

    // The call's interaction names its call; the recording is found by that call.
    let list = d
        .get("/v1/Services/voice/Sessions/call/Interactions")
        .json();
    let call_sid = list["interactions"][0]["inbound_resource_sid"]
        .as_str()
        .expect("the interaction names its call")
        .to_string();
    assert!(call_sid.starts_with("CA"));
    let acc = format!("/2010-04-01/Accounts/{}", common::ACCOUNT);
    let deadline = Instant::now() + Duration::from_secs(10);
    let rec = loop {
        let r = d
            .get(&format!("{acc}/Calls/{call_sid}/Recordings.json"))
            .json();
        if let Some(rec) = r["recordings"].as_array().and_then(|a| a.first()) {
            if rec["status"] == "completed" {
                break rec.clone();
            }
        }
        assert!(Instant::now() < deadline, "no completed recording: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(rec["channels"], 2);
    assert_eq!(rec["call_sid"].as_str(), Some(call_sid.as_str()));
    let secs: u64 = rec["duration"].as_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&secs), "duration {secs}");

    // The audio: 16-bit stereo at 8 kHz, A's tone left and B's right, each alone there.
    let sid = rec["sid"].as_str().unwrap();
    let wav = d.get(&format!("{acc}/Recordings/{sid}.wav"));
    assert_eq!(wav.status, 200);
    let bytes = wav.bytes;
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 2, "channels");
    assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 8000);
    let samples: Vec<i16> = bytes[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let left: Vec<f64> = samples.iter().step_by(2).map(|&s| s as f64).collect();
    let right: Vec<f64> = samples
        .iter()
        .skip(1)
        .step_by(2)
        .map(|&s| s as f64)
        .collect();
    let ms = left.len() as u64 / 8;
    assert!((1400..=2600).contains(&ms), "file is {ms} ms");
    assert!(
        power(&left, 440.0) > 100.0 * power(&left, 660.0),
        "left is not A's tone"
    );
    assert!(
        power(&right, 660.0) > 100.0 * power(&right, 440.0),
        "right is not B's tone"
    );

    // Twilio's Python library lists, fetches, downloads and deletes it.
    let out = std::process::Command::new(common::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/recordings_flow.py"
        ))
        .args([&d.base(), common::ACCOUNT, common::TOKEN, &call_sid])
        .output()
        .expect("run recordings_flow.py");
    assert!(
        out.status.success(),
        "recordings_flow.py failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        metric(&d, "maskd_recordings_total{outcome=\"completed\"}"),
        1.0
    );
}

#[test]
fn a_recording_cut_by_sigkill_is_repaired_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let cfg = media_config(
        dir.path(),
        trunk_port,
        "31700-31799",
        "",
        "    record: true\n",
    );
    let mut d = Daemon::start_with(dir.path(), &cfg);
    let (pa, _) = common::two_party_session(&d, "voice", "call", CALLER, CALLEE);
    let p = Peers::new();
    let offer = sdp(CALLER, port(&p.a_rtp), port(&p.a_rtcp), "0", "");
    let ans = sdp(CALLEE, port(&p.b_rtp), port(&p.b_rtcp), "0", "");
    let c = call(&d, &p, &trunk, &pa, "kill1", &offer, &ans);
    // Talk until the recorder has handed audio to the file (it does so every second, for
    // what is past its 1-s jitter window), then kill maskd mid-call.
    let rec_dir = dir.path().join("recordings");
    let file_len = || -> u64 {
        std::fs::read_dir(&rec_dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let talk = Instant::now();
    let mut i = 0u16;
    while file_len() < 44 + 16_000 {
        assert!(i < 500, "nothing reached the file after 10 s of talk");
        talk_20ms(&p, &c, i, talk);
        i += 1;
    }
    d.kill9();
    let path = std::fs::read_dir(&rec_dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let raw = std::fs::read(&path).unwrap();
    assert_eq!(
        &raw[40..44],
        &[0, 0, 0, 0],
        "the header was final before the kill"
    );

    // The next start repairs the header and completes the recording.
    let d = Daemon::start_with(dir.path(), &cfg);
    let acc = format!("/2010-04-01/Accounts/{}", common::ACCOUNT);
    let list = d.get(&format!("{acc}/Recordings.json")).json();
    let rec = &list["recordings"][0];
    assert_eq!(rec["status"], "completed", "{list}");
    let secs: u64 = rec["duration"].as_str().unwrap().parse().unwrap();
    assert!(secs >= 1, "duration {secs}");
    assert_eq!(
        metric(&d, "maskd_recordings_total{outcome=\"completed\"}"),
        1.0,
        "the repaired recording was not counted"
    );
    let raw = std::fs::read(&path).unwrap();
    let len = raw.len() as u32;
    assert_eq!(
        u32::from_le_bytes(raw[4..8].try_into().unwrap()),
        len - 8,
        "RIFF size"
    );
    assert_eq!(
        u32::from_le_bytes(raw[40..44].try_into().unwrap()),
        len - 44,
        "data size"
    );
    let wav = d.get(&format!(
        "{acc}/Recordings/{}.wav",
        rec["sid"].as_str().unwrap()
    ));
    assert_eq!(wav.bytes, raw, "the API serves the repaired file");
}
