//! Call recording: the two legs' RTP, decoded from G.711, written as one stereo WAV file
//! (leg A left, leg B right; 8 kHz, 16-bit PCM) while the call runs.
//!
//! # Why it is built this way
//!
//! * **Bounded memory.** A call may last hours, so nothing grows with its length: each
//!   recorder holds a fixed 4-second stereo window (128 KiB) plus a 64 KiB write buffer.
//!   Audio leaves the window for the file as soon as it is older than the jitter allowance.
//! * **Aligned by RTP timestamps, not arrival order.** Network jitter reorders and delays
//!   packets; placing a packet at its arrival time would smear both. Each channel instead
//!   anchors its first packet's timestamp to that packet's arrival time, and every later
//!   packet of the same stream goes where its timestamp says. Arrival time only decides
//!   when the anchor is no longer believable (see [`Recorder::packet`]).
//! * **Silence is the default.** The window starts zeroed and is re-zeroed as it is
//!   written, so loss, gaps, hold, comfort noise and DTMF events all come out as silence
//!   without special cases, and both channels always have the same length.
//! * **Crash-safe by construction.** The header is written first with zero sizes and only
//!   fixed at [`Recorder::finish`]; the data chunk is last and the format fixed, so after a
//!   crash [`repair`] recomputes the sizes from the file length alone.
//!
//! Positions are counted in samples (= frames) since `start_ms`, the call's answer time:
//! `(ms - start_ms) * 8`. The caller's millisecond clock is trusted to be roughly
//! monotonic: a step back is harmless (the clock never moves back), but a leap forward is
//! written out as that much silence, up to the WAV size limit (about 37 hours). Packet
//! contents are not trusted at all: any datagram is either used or ignored, never a panic.

mod g711;
mod rtp;
mod wav;

#[cfg(test)]
mod tests;

pub use wav::{repair, write_header, Repaired};

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// What a payload type carries, as the SDP negotiated it (the caller maps PT → kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// G.711 µ-law (static PT 0).
    Pcmu,
    /// G.711 A-law (static PT 8).
    Pcma,
    /// RFC 4733 telephone-event: recorded as silence; its timestamp is the event's start,
    /// not the packet's send time, so it never moves the channel's anchor.
    Event,
    /// Comfort noise (PT 13): recorded as silence.
    ComfortNoise,
    /// Anything else (another codec, RTCP on a muxed port): ignored.
    Other,
}

impl Payload {
    /// What payload type `pt` carries in a call whose answer mapped `map`; a type the answer
    /// did not map falls back to its static assignment in RFC 3551 (0 µ-law, 8 A-law, 13
    /// comfort noise), so a switch between them by a later re-INVITE is still recorded;
    /// anything else is `Other`.
    pub fn of(map: &[(u8, Payload)], pt: u8) -> Payload {
        if let Some((_, k)) = map.iter().find(|(p, _)| *p == pt) {
            return *k;
        }
        match pt {
            0 => Payload::Pcmu,
            8 => Payload::Pcma,
            13 => Payload::ComfortNoise,
            _ => Payload::Other,
        }
    }
}

/// Which leg a packet was sent by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Leg A, the caller side: the left channel.
    A,
    /// Leg B, the callee side: the right channel.
    B,
}

/// What [`Recorder::finish`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Length of the recording (frames / 8).
    pub duration_ms: u64,
    /// Stereo frames in the data chunk.
    pub frames: u64,
    /// Size of the file, header included.
    pub bytes: u64,
}

/// Frames per millisecond at 8 kHz.
const PER_MS: i64 = 8;
/// Frames the window holds: 4 s. A packet may land up to 1 s behind and 3 s ahead of the
/// latest arrival, which covers the 2 s re-anchor threshold plus any sane packet length.
pub const WINDOW_FRAMES: usize = 32_000;
const WINDOW: i64 = WINDOW_FRAMES as i64;
/// Jitter allowance, 1 s: frames older than the latest arrival minus this are written out,
/// so a packet delayed less than this still lands in place.
const JITTER: i64 = 1000 * PER_MS;
/// A timestamp-derived position further than 2 s from the arrival-derived one is a
/// timestamp jump (stream restart, sender bug), not jitter: re-anchor on arrival.
const JUMP: i64 = 2000 * PER_MS;
/// After this many consecutive wholly-too-late packets of one stream, re-anchor on arrival
/// of the last: the stream's clock has fallen behind (drift, or a backward timestamp step
/// under 2 s) and would otherwise be dropped packet after packet.
const LATE_RUN: u32 = 3;
/// Write buffer: 2 s of audio between disk writes.
const BUF_BYTES: usize = 64 * 1024;
/// Frames a WAV file can hold (its sizes are u32): about 37 h. Past this audio is dropped.
const MAX_FRAMES: i64 = (wav::MAX_DATA / 4) as i64;
/// Bounds for positions, far inside i64 so sums of a position and a packet length or
/// window size cannot overflow whatever the caller's clock says.
const POS_LIMIT: i128 = 1 << 60;

/// One stream's timestamp → position map: `pos + (ts' - ts)` for timestamp `ts'`.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    ssrc: u32,
    ts: u32,
    pos: i64,
}

/// Per-channel alignment state.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    anchor: Option<Anchor>,
    late_run: u32,
}

/// Records one call into one WAV file; see the module docs.
///
/// Call [`packet`](Self::packet) for each RTP datagram relayed, [`tick`](Self::tick)
/// periodically, and [`finish`](Self::finish) at hang-up. After any `Err` the recorder
/// should be dropped: the file holds what was written and [`repair`] makes it valid.
/// Dropping without `finish` (crash path, task cancelled) flushes the write buffer but
/// leaves the placeholder header, which [`repair`] fixes at the next start.
pub struct Recorder {
    out: BufWriter<File>,
    start_ms: u64,
    /// Frames `[written, written + WINDOW)` live at `pos % WINDOW`, 4 bytes each, already
    /// in file byte order (L, R little-endian) so flushing is a plain copy.
    ring: Vec<u8>,
    /// Frames before this have left the window.
    written: i64,
    /// Latest arrival (or tick) position seen: the clock that drives flushing.
    latest: i64,
    tracks: [Track; 2],
    dropped: u64,
    /// When `tick` last pushed the write buffer to the file (a crash loses at most about
    /// `FLUSH_MS` of audio beyond the 1-s jitter window).
    flushed_ms: u64,
}

/// How often `tick` hands buffered audio to the operating system.
const FLUSH_MS: u64 = 1_000;

impl Recorder {
    /// Creates the file (parent dir must exist) with a placeholder header; `start_ms` is
    /// the call's answer time on the caller's clock: time 0 of the recording.
    ///
    /// The file must not exist yet (`AlreadyExists` otherwise): a recording is never
    /// silently overwritten.
    pub fn create(path: &Path, start_ms: u64) -> io::Result<Recorder> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        let mut out = BufWriter::with_capacity(BUF_BYTES, file);
        write_header(&mut out, 0)?;
        Ok(Recorder {
            out,
            start_ms,
            ring: vec![0; WINDOW_FRAMES * 4],
            written: 0,
            latest: 0,
            tracks: [Track::default(); 2],
            dropped: 0,
            flushed_ms: start_ms,
        })
    }

    /// One RTP packet (whole datagram, header included) that arrived on `ch` at
    /// `arrival_ms`; `kind` maps its payload type. Bad/short RTP is ignored (returns
    /// Ok(false)); Ok(true) when it was used.
    ///
    /// Also ignored: payload kind [`Payload::Other`], and packets that arrived before
    /// `start_ms` (early media is not part of the recording).
    ///
    /// Placement: a channel's first audio packet goes at its arrival position and anchors
    /// its SSRC's timestamps there; later packets of that SSRC go at the anchor plus the
    /// timestamp difference (wrapping, as a signed 32-bit step). The channel re-anchors on
    /// arrival when the SSRC changes, when the timestamp puts the packet more than 2 s from
    /// its arrival, or after 3 consecutive packets too late to place. Samples that fall
    /// before what is already written, or beyond the window, are discarded and the packet
    /// counted in [`dropped`](Self::dropped).
    pub fn packet(
        &mut self,
        ch: Channel,
        arrival_ms: u64,
        rtp: &[u8],
        kind: impl Fn(u8) -> Payload,
    ) -> io::Result<bool> {
        let Some(p) = rtp::parse(rtp) else {
            return Ok(false);
        };
        let arrival = self.pos_of(arrival_ms);
        if arrival < 0 {
            return Ok(false);
        }
        let decode: &[i16; 256] = match kind(p.pt) {
            Payload::Pcmu => &g711::ULAW,
            Payload::Pcma => &g711::ALAW,
            Payload::Event | Payload::ComfortNoise => {
                // Silence: the window is already zero there. Still a sign of life that
                // moves the clock.
                self.advance(arrival)?;
                return Ok(true);
            }
            Payload::Other => return Ok(false),
        };
        // Flush first, so the window is [latest - 1 s, latest + 3 s) when placing.
        self.advance(arrival)?;
        if let Some(pos) = self.place(ch, arrival, &p) {
            self.put(ch, pos, p.payload, decode);
        }
        Ok(true)
    }

    /// Flushes what is old enough (call this periodically too, e.g. every 200 ms, so
    /// silence on both sides still advances the file), and at most every second hands the
    /// buffered audio to the file, so a crash loses little.
    pub fn tick(&mut self, now_ms: u64) -> io::Result<()> {
        let now = self.pos_of(now_ms);
        self.advance(now)?;
        if now_ms >= self.flushed_ms + FLUSH_MS {
            self.flushed_ms = now_ms;
            self.out.flush()?;
        }
        Ok(())
    }

    /// Writes everything up to `end_ms` (silence where nothing came), fixes the header,
    /// fsyncs, closes. Audio placed after `end_ms` is discarded. If earlier calls already
    /// wrote past `end_ms` (a `tick` from a clock ahead of it), the file keeps that length.
    pub fn finish(mut self, end_ms: u64) -> io::Result<Summary> {
        let end = self.pos_of(end_ms);
        self.flush_to(end)?;
        let frames = self.written.clamp(0, MAX_FRAMES);
        let data_bytes = u32::try_from(frames * 4).unwrap_or(wav::MAX_DATA);
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        write_header(&mut file, data_bytes)?;
        file.sync_all()?;
        let frames = frames as u64;
        Ok(Summary {
            duration_ms: frames / PER_MS as u64,
            frames,
            bytes: wav::HEADER_LEN + frames * 4,
        })
    }

    /// Audio packets not placed in full: too late (behind what was written), beyond the
    /// window, or before a re-anchor caught up with a stream that fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes reserved for the window (fixed at creation; never grows).
    pub fn window_bytes(&self) -> usize {
        self.ring.capacity()
    }

    /// Frames written out of the window so far (the file's data length once flushed).
    pub fn frames_written(&self) -> u64 {
        self.written.clamp(0, MAX_FRAMES) as u64
    }

    /// Position of a time on the caller's clock; clamped so later sums cannot overflow.
    fn pos_of(&self, ms: u64) -> i64 {
        let p = (i128::from(ms) - i128::from(self.start_ms)) * i128::from(PER_MS);
        p.clamp(-POS_LIMIT, POS_LIMIT) as i64
    }

    /// Moves the clock to `now` (never back) and writes out what the jitter allowance no
    /// longer protects.
    fn advance(&mut self, now: i64) -> io::Result<()> {
        self.latest = self.latest.max(now);
        self.flush_to(self.latest - JITTER)
    }

    /// Decides where a packet's first sample goes, updating the channel's anchor; `None`
    /// when the packet is dropped as too late.
    fn place(&mut self, ch: Channel, arrival: i64, p: &rtp::Rtp<'_>) -> Option<i64> {
        let len = p.payload.len() as i64;
        let written = self.written;
        let t = &mut self.tracks[ch as usize];
        let mapped = match t.anchor {
            Some(a) if a.ssrc == p.ssrc => {
                let pos = a.pos + i64::from(p.ts.wrapping_sub(a.ts) as i32);
                ((pos - arrival).abs() <= JUMP).then_some(pos)
            }
            _ => None,
        };
        let pos = match mapped {
            Some(pos) if len > 0 && pos + len <= written => {
                t.late_run += 1;
                if t.late_run < LATE_RUN {
                    // Keep the map (rebased on this packet: same line, fresher point).
                    t.anchor = Some(Anchor {
                        ssrc: p.ssrc,
                        ts: p.ts,
                        pos,
                    });
                    self.dropped += 1;
                    return None;
                }
                arrival
            }
            Some(pos) => pos,
            None => arrival,
        };
        t.late_run = 0;
        // Rebasing on every packet keeps the signed 32-bit difference small however long
        // the call, and changes nothing when the map is unchanged.
        t.anchor = Some(Anchor {
            ssrc: p.ssrc,
            ts: p.ts,
            pos,
        });
        Some(pos)
    }

    /// Decodes `payload` into the window from `pos` on, discarding (and counting) samples
    /// outside it.
    /// Decodes `payload` through `table` into channel `ch` from frame `pos` on. (One
    /// division per packet, not per sample: the slot moves on by one and wraps.)
    fn put(&mut self, ch: Channel, pos: i64, payload: &[u8], table: &[i16; 256]) {
        let len = payload.len() as i64;
        let first = (self.written - pos).clamp(0, len);
        let last = (self.written + WINDOW - pos).clamp(first, len);
        if first > 0 || last < len {
            self.dropped += 1;
        }
        let offset = ch as usize * 2;
        let codes = payload.get(first as usize..last as usize).unwrap_or(&[]);
        let mut frame = (pos + first).rem_euclid(WINDOW) as usize;
        for &code in codes {
            let at = frame * 4 + offset;
            if let Some(s) = self.ring.get_mut(at..at + 2) {
                s.copy_from_slice(&table[code as usize].to_le_bytes());
            }
            frame += 1;
            if frame == WINDOW as usize {
                frame = 0;
            }
        }
    }

    /// Writes frames `[written, target)` to the file and re-zeroes their slots, which now
    /// stand for frames a window later. More than a window's worth simply goes round the
    /// ring again, writing the zeros it left behind. Past the WAV size limit nothing more
    /// is written; the window is just cleared and moved.
    fn flush_to(&mut self, target: i64) -> io::Result<()> {
        while self.written < target {
            if self.written >= MAX_FRAMES {
                self.ring.fill(0);
                self.written = target;
                break;
            }
            let slot = self.written.rem_euclid(WINDOW);
            let n = (target - self.written)
                .min(WINDOW - slot)
                .min(MAX_FRAMES - self.written);
            let range = slot as usize * 4..(slot + n) as usize * 4;
            if let Some(bytes) = self.ring.get_mut(range) {
                self.out.write_all(bytes)?;
                bytes.fill(0);
            }
            self.written += n;
        }
        Ok(())
    }
}
