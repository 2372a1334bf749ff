//! Recorder tests: synthetic calls written to temp files and read back sample by sample.

use super::g711::{self, encode};
use super::rtp::build;
use super::wav::testing::{read, temp_path, TempFile};
use super::*;

const START: u64 = 1_000_000; // answer time on the caller's clock

fn kind(pt: u8) -> Payload {
    match pt {
        0 => Payload::Pcmu,
        8 => Payload::Pcma,
        13 => Payload::ComfortNoise,
        101 => Payload::Event,
        _ => Payload::Other,
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sine(freq: f64, n: u64) -> i16 {
    (12_000.0 * (2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0).sin()) as i16
}

/// A stream of 20 ms G.711 packets of one tone: `packet(k)` is packet k's datagram.
#[derive(Clone, Copy)]
struct Stream {
    pt: u8,
    freq: f64,
    ssrc: u32,
    ts0: u32,
}
impl Stream {
    fn code(&self, n: u64) -> u8 {
        let s = sine(self.freq, n);
        if self.pt == 0 {
            encode::ulaw(s)
        } else {
            encode::alaw(s)
        }
    }
    /// The sample the recording should hold for this stream's sample n.
    fn expect(&self, n: u64) -> i16 {
        let c = self.code(n);
        if self.pt == 0 {
            g711::ULAW[c as usize]
        } else {
            g711::ALAW[c as usize]
        }
    }
    fn packet(&self, k: u64) -> Vec<u8> {
        let payload: Vec<u8> = (k * 160..k * 160 + 160).map(|n| self.code(n)).collect();
        let ts = self.ts0.wrapping_add((k * 160) as u32);
        build(self.pt, k as u16, ts, self.ssrc, &payload)
    }
}

/// Feeds `(arrival_ms, channel, datagram)` in arrival order with a tick every 200 ms, then
/// finishes at `end_ms`; returns the summary, dropped count and the samples.
fn run(
    mut events: Vec<(u64, Channel, Vec<u8>)>,
    end_ms: u64,
) -> (Summary, u64, Vec<i16>, Vec<i16>) {
    events.sort_by_key(|e| e.0); // stable: equal arrivals keep their order
    let t = TempFile(temp_path("call"));
    let mut rec = Recorder::create(&t.0, START).unwrap();
    let mut next_tick = START;
    for (at, ch, d) in &events {
        while next_tick <= *at {
            rec.tick(next_tick).unwrap();
            next_tick += 200;
        }
        assert!(rec.packet(*ch, *at, d, kind).unwrap());
    }
    let dropped = rec.dropped();
    let s = rec.finish(end_ms).unwrap();
    let (l, r) = read(&t.0);
    assert_eq!(s.frames as usize, l.len());
    assert_eq!(s.bytes, std::fs::metadata(&t.0).unwrap().len());
    (s, dropped, l, r)
}

/// Goertzel power at `freq` normalised by the block's energy: ≈1 for a pure tone at
/// `freq` (whole cycles in the block), ≈0 for other tones and for silence.
fn tone(x: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = v as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - c * s1 * s2;
    let energy: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    if energy == 0.0 {
        0.0
    } else {
        power / (energy * x.len() as f64 / 2.0)
    }
}

fn silent(x: &[i16]) -> bool {
    x.iter().all(|&v| v == 0)
}

#[test]
fn synthetic_call_is_aligned() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let a = Stream {
        pt: 0,
        freq: 440.0,
        ssrc: 0xA,
        ts0: rng.next() as u32,
    };
    // B's timestamps start at a random offset chosen to wrap 2^32 mid-call.
    let b = Stream {
        pt: 8,
        freq: 660.0,
        ssrc: 0xB,
        ts0: u32::MAX - 160 * (40 + rng.below(50) as u32),
    };
    let mut ev = Vec::new();
    for (s, ch, t0, lost, late) in [(a, Channel::A, 0, 60, 90), (b, Channel::B, 1000, 30, 100)] {
        for k in 0..150u64 {
            if k == lost {
                continue;
            }
            let jitter = if k == 0 { 0 } else { rng.below(25) };
            let reorder = if k == late { 45 } else { 0 }; // arrives after k+1 and k+2
            ev.push((START + t0 + 20 * k + jitter + reorder, ch, s.packet(k)));
        }
    }
    let (sum, dropped, l, r) = run(ev, START + 4000);
    assert_eq!(sum.duration_ms, 4000);
    assert_eq!(sum.frames, 32_000);
    assert_eq!(dropped, 0);
    for n in 0..32_000u64 {
        let want_l = if n < 24_000 && n / 160 != 60 {
            a.expect(n)
        } else {
            0
        };
        assert_eq!(l[n as usize], want_l, "left {n}");
        let m = n.wrapping_sub(8000);
        let want_r = if (8000..32_000).contains(&n) && m / 160 != 30 {
            b.expect(m)
        } else {
            0
        };
        assert_eq!(r[n as usize], want_r, "right {n}");
    }
    // The same by ear, 100 ms blocks: 440 Hz left for 0–3 s, 660 Hz right for 1–4 s.
    for blk in 0..40usize {
        let (lb, rb) = (
            &l[blk * 800..blk * 800 + 800],
            &r[blk * 800..blk * 800 + 800],
        );
        if blk < 30 {
            assert!(
                tone(lb, 440.0) > 0.6 && tone(lb, 660.0) < 0.05,
                "left block {blk}"
            );
        } else {
            assert!(silent(lb), "left block {blk}");
        }
        if blk >= 10 {
            assert!(
                tone(rb, 660.0) > 0.6 && tone(rb, 440.0) < 0.05,
                "right block {blk}"
            );
        } else {
            assert!(silent(rb), "right block {blk}");
        }
    }
}

#[test]
fn hold_is_silence_and_audio_resumes_in_place() {
    let a = Stream {
        pt: 0,
        freq: 440.0,
        ssrc: 1,
        ts0: 777,
    };
    let mut ev = Vec::new();
    // Timestamps keep running through the hold (RFC 3550): packets 50..100 are not sent.
    for k in (0..50).chain(100..150) {
        ev.push((START + 20 * k, Channel::A, a.packet(k)));
    }
    let (_, dropped, l, r) = run(ev, START + 3000);
    assert_eq!(dropped, 0);
    assert!(silent(&l[8000..16_000]));
    assert!(silent(&r));
    assert!((16_000..24_000).all(|n| l[n] == a.expect(n as u64)));
}

#[test]
fn long_hold_with_frozen_timestamps_reanchors() {
    // The sender resumes 3 s later with timestamps continuing from where it stopped: the
    // map says 3 s in the past (beyond 2 s), so the channel re-anchors on arrival.
    let a = Stream {
        pt: 8,
        freq: 440.0,
        ssrc: 1,
        ts0: 0,
    };
    let mut ev: Vec<_> = (0..50)
        .map(|k| (START + 20 * k, Channel::A, a.packet(k)))
        .collect();
    ev.extend((50..100).map(|k| (START + 3000 + 20 * k, Channel::A, a.packet(k))));
    let (sum, dropped, l, _) = run(ev, START + 5000);
    assert_eq!((sum.duration_ms, dropped), (5000, 0));
    assert!(silent(&l[8000..32_000]));
    assert!((32_000..40_000).all(|n| l[n] == a.expect(n as u64 - 24_000)));
}

#[test]
fn events_and_comfort_noise_are_silence() {
    let a = Stream {
        pt: 0,
        freq: 440.0,
        ssrc: 5,
        ts0: 100,
    };
    let mut ev: Vec<_> = (0..50)
        .map(|k| (START + 20 * k, Channel::A, a.packet(k)))
        .collect();
    let event_ts = a.ts0.wrapping_add(8000);
    for k in 50..75u64 {
        // RFC 4733: the timestamp stays at the event's start while the duration grows; the
        // payload bytes would be loud if decoded as µ-law.
        let dur = ((k - 49) * 160) as u16;
        let p = [0x05, 0x0A, (dur >> 8) as u8, dur as u8];
        ev.push((
            START + 20 * k,
            Channel::A,
            build(101, k as u16, event_ts, 5, &p),
        ));
    }
    for k in 75..100u64 {
        let ts = a.ts0.wrapping_add((k * 160) as u32);
        ev.push((
            START + 20 * k,
            Channel::A,
            build(13, k as u16, ts, 5, &[0x00]),
        ));
    }
    ev.extend((100..150).map(|k| (START + 20 * k, Channel::A, a.packet(k))));
    let (_, dropped, l, _) = run(ev, START + 3000);
    assert_eq!(dropped, 0);
    assert!(silent(&l[8000..16_000]));
    assert!((0..8000)
        .chain(16_000..24_000)
        .all(|n| l[n] == a.expect(n as u64)));
}

#[test]
fn ssrc_change_and_timestamp_jump_reanchor() {
    let s1 = Stream {
        pt: 0,
        freq: 440.0,
        ssrc: 1,
        ts0: 5000,
    };
    // A new source whose timestamps happen to look plausible under s1's map (1.5 s
    // ahead, inside the jump threshold): only the SSRC tells it is a new timeline.
    let s2 = Stream {
        pt: 0,
        freq: 440.0,
        ssrc: 2,
        ts0: s1.ts0.wrapping_add(20_000),
    };
    // Same SSRC as s2, timestamps 10 s further on: a jump, not 10 s of audio to skip.
    let s3 = Stream {
        ts0: s2.ts0.wrapping_add(80_000 + 8000),
        ..s2
    };
    let mut ev: Vec<_> = (0..50)
        .map(|k| (START + 20 * k, Channel::B, s1.packet(k)))
        .collect();
    ev.extend((0..50).map(|k| (START + 1000 + 20 * k, Channel::B, s2.packet(k))));
    ev.extend((0..50).map(|k| (START + 2000 + 20 * k, Channel::B, s3.packet(k))));
    let (_, dropped, l, r) = run(ev, START + 3000);
    assert_eq!(dropped, 0);
    assert!(silent(&l));
    for (n, &v) in r.iter().enumerate() {
        assert_eq!(v, s1.expect(n as u64 % 8000), "right {n}");
    }
}

#[test]
fn late_packets_are_dropped_and_a_stream_that_fell_behind_recovers() {
    // B: packet 10 delayed 1.5 s, past the 1 s allowance: dropped, its slot stays silent,
    // and the stream carries on in place.
    let b = Stream {
        pt: 8,
        freq: 660.0,
        ssrc: 7,
        ts0: 99,
    };
    // Packet 20 is delayed 0.9 s, inside the allowance: it still lands in place.
    let mut ev: Vec<_> = (0..100)
        .filter(|&k| k != 10 && k != 20)
        .map(|k| (START + 20 * k, Channel::B, b.packet(k)))
        .collect();
    ev.push((START + 1700, Channel::B, b.packet(10)));
    ev.push((START + 1300, Channel::B, b.packet(20)));
    // A: from 1 s the timestamps step back 1.5 s (same SSRC): within the 2 s jump
    // threshold but too late to place. Two packets are dropped, the third re-anchors on
    // its arrival.
    let a = Stream {
        pt: 0,
        freq: 440.0,
        ssrc: 9,
        ts0: 42,
    };
    ev.extend((0..50).map(|k| (START + 20 * k, Channel::A, a.packet(k))));
    let back = Stream {
        ts0: a.ts0.wrapping_sub(12_000),
        ..a
    };
    ev.extend((50..100).map(|k| (START + 20 * k, Channel::A, back.packet(k))));
    let (_, dropped, l, r) = run(ev, START + 2000);
    assert_eq!(dropped, 3);
    assert!(silent(&r[1600..1760]));
    assert!((0..1600)
        .chain(1760..16_000)
        .all(|n| r[n] == b.expect(n as u64)));
    assert!((0..8000).all(|n| l[n] == a.expect(n as u64)));
    assert!(silent(&l[8000..8320]));
    assert!((8320..16_000).all(|n| l[n] == back.expect(n as u64)));
}

#[test]
fn a_packet_longer_than_the_window_is_clipped() {
    let t = TempFile(temp_path("long"));
    let mut rec = Recorder::create(&t.0, START).unwrap();
    let d = build(0, 0, 0, 1, &vec![0x80; 40_000]); // 5 s in one datagram
    assert!(rec.packet(Channel::A, START, &d, kind).unwrap());
    assert_eq!(rec.dropped(), 1);
    let s = rec.finish(START + 5000).unwrap();
    let (l, _) = read(&t.0);
    assert_eq!(s.frames, 40_000);
    assert!(l[..WINDOW_FRAMES].iter().all(|&v| v == 32124));
    assert!(silent(&l[WINDOW_FRAMES..]));
}

#[test]
fn ignored_inputs() {
    let t = TempFile(temp_path("ignored"));
    let mut rec = Recorder::create(&t.0, START).unwrap();
    let good = build(0, 0, 0, 1, &[0x80; 160]);
    assert!(!rec.packet(Channel::A, START, &good[..11], kind).unwrap());
    assert!(!rec.packet(Channel::A, START - 1, &good, kind).unwrap()); // before answer
    assert!(!rec
        .packet(Channel::A, START, &build(18, 0, 0, 1, &[1; 20]), kind)
        .unwrap());
    assert!(rec.packet(Channel::A, START, &good, kind).unwrap());
    assert_eq!(rec.finish(START + 100).unwrap().frames, 800);
    // The path exists now: never overwritten.
    let e = Recorder::create(&t.0, START).err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
}

#[test]
fn ten_minute_call_keeps_a_fixed_window() {
    let a = Stream {
        pt: 0,
        freq: 440.0,
        ssrc: 1,
        ts0: 3,
    };
    let b = Stream {
        pt: 8,
        freq: 660.0,
        ssrc: 2,
        ts0: 4_000_000_000,
    };
    let t = TempFile(temp_path("long-call"));
    let mut rec = Recorder::create(&t.0, START).unwrap();
    let window = rec.window_bytes();
    assert_eq!(window, WINDOW_FRAMES * 4);
    for k in 0..30_000u64 {
        let at = START + 20 * k;
        assert!(rec.packet(Channel::A, at, &a.packet(k), kind).unwrap());
        assert!(rec.packet(Channel::B, at + 7, &b.packet(k), kind).unwrap());
        if k % 10 == 0 {
            rec.tick(at + 10).unwrap();
        }
        assert_eq!(rec.window_bytes(), window);
        // Nothing older than the jitter allowance stays in memory.
        assert!(rec.frames_written() + 8000 + 160 >= (at + 7 - START) * 8);
    }
    assert_eq!(rec.dropped(), 0);
    let s = rec.finish(START + 600_000).unwrap();
    assert_eq!(s.duration_ms, 600_000);
    // Already right: finish left nothing for repair to do.
    let r = repair(&t.0).unwrap();
    assert_eq!((r.changed, r.data_bytes), (false, 600 * 32_000));
}

#[test]
fn crash_leaves_a_repairable_file() {
    let a = Stream {
        pt: 0,
        freq: 440.0,
        ssrc: 1,
        ts0: 0,
    };
    let t = TempFile(temp_path("crash"));
    {
        let mut rec = Recorder::create(&t.0, START).unwrap();
        for k in 0..150 {
            rec.packet(Channel::A, START + 20 * k, &a.packet(k), kind)
                .unwrap();
        }
        rec.tick(START + 3000).unwrap();
        assert_eq!(rec.frames_written(), 16_000);
        // Dropped without finish: the write buffer reaches the file, the header does not.
    }
    let mut bytes = std::fs::read(&t.0).unwrap();
    assert_eq!(&bytes[40..44], &[0, 0, 0, 0]);
    bytes.extend_from_slice(&[1, 2]); // torn final frame
    std::fs::write(&t.0, &bytes).unwrap();
    let r = repair(&t.0).unwrap();
    assert_eq!((r.changed, r.data_bytes, r.trimmed), (true, 64_000, 2));
    let (l, _) = read(&t.0);
    assert!((0..16_000).all(|n| l[n] == a.expect(n as u64)));

    // A finished file whose sizes were zeroed comes back identical.
    let t2 = TempFile(temp_path("zeroed"));
    let mut rec = Recorder::create(&t2.0, START).unwrap();
    for k in 0..50 {
        rec.packet(Channel::B, START + 20 * k, &a.packet(k), kind)
            .unwrap();
    }
    rec.finish(START + 1000).unwrap();
    let good = std::fs::read(&t2.0).unwrap();
    let mut bad = good.clone();
    bad[4..8].fill(0);
    bad[40..44].fill(0);
    std::fs::write(&t2.0, &bad).unwrap();
    assert!(repair(&t2.0).unwrap().changed);
    assert_eq!(std::fs::read(&t2.0).unwrap(), good);
}

#[test]
fn garbage_never_panics() {
    let mut rng = XorShift(0x0123_4567_89AB_CDEF);
    let t = TempFile(temp_path("fuzz"));
    let mut rec = Recorder::create(&t.0, START).unwrap();
    let kinds = [
        Payload::Pcmu,
        Payload::Pcma,
        Payload::Event,
        Payload::ComfortNoise,
        Payload::Other,
    ];
    let mut now = START;
    let mut max_now = now;
    for i in 0..20_000u64 {
        let len = rng.below(400) as usize;
        let mut d: Vec<u8> = if rng.below(2) == 0 {
            build(
                rng.below(128) as u8,
                i as u16,
                rng.next() as u32,
                rng.below(4) as u32,
                &vec![0x55; len],
            )
        } else {
            (0..len).map(|_| rng.next() as u8).collect()
        };
        for _ in 0..rng.below(6) {
            if d.is_empty() {
                break;
            }
            let at = rng.below(d.len() as u64) as usize;
            d[at] ^= 1 << rng.below(8);
        }
        if rng.below(8) == 0 {
            d.truncate(rng.below(20) as usize);
        }
        // The clock mostly advances, sometimes steps back or leaps.
        now = match rng.below(20) {
            0 => now.saturating_sub(rng.below(5000)),
            1 => now + rng.below(600),
            _ => now + rng.below(30),
        };
        max_now = max_now.max(now);
        let ch = if rng.below(2) == 0 {
            Channel::A
        } else {
            Channel::B
        };
        let k = kinds[rng.below(5) as usize];
        rec.packet(ch, now, &d, |_| k).unwrap();
        if i % 50 == 0 {
            rec.tick(now).unwrap();
        }
        assert_eq!(rec.window_bytes(), WINDOW_FRAMES * 4);
    }
    // A clock of 0 is long before the answer: ignored.
    assert!(!rec
        .packet(Channel::A, 0, &build(0, 0, 0, 1, &[0; 160]), kind)
        .unwrap());
    rec.tick(0).unwrap();
    let s = rec.finish(now).unwrap();
    let (l, r) = read(&t.0);
    assert_eq!((l.len(), r.len()), (s.frames as usize, s.frames as usize));
    assert!(s.duration_ms >= now.saturating_sub(START));
    assert!(s.duration_ms <= max_now - START);
}

#[test]
fn a_payload_type_the_answer_did_not_map_falls_back_to_its_static_codec() {
    // The answer offered µ-law and events; a re-INVITE later moved the call to A-law.
    let map = [(0, Payload::Pcmu), (101, Payload::Event)];
    assert_eq!(Payload::of(&map, 0), Payload::Pcmu);
    assert_eq!(Payload::of(&map, 101), Payload::Event);
    assert_eq!(Payload::of(&map, 8), Payload::Pcma);
    assert_eq!(Payload::of(&map, 13), Payload::ComfortNoise);
    assert_eq!(Payload::of(&map, 9), Payload::Other); // G.722: not decoded
    assert_eq!(Payload::of(&map, 96), Payload::Other);
    // What the answer mapped wins over the static table.
    assert_eq!(Payload::of(&[(8, Payload::Other)], 8), Payload::Other);
}
