//! The media plane, sans-IO parts (SPEC §2.4, §2.5): SDP rewriting (`sdp`), RTCP SDES
//! scrubbing (`rtcp`), the relay's port pool (`ports`), one stream's latching and
//! forwarding decisions (`stream`), and the call recorder (`record`). The sockets and
//! threads that move packets live in `net::media`; the B2BUA drives both through the
//! [`Media`] handle.

pub mod ports;
pub mod stream;

use std::net::SocketAddr;

/// A call's two sides as the relay sees them: A (the caller's leg) and B (the callee's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A = 0,
    B = 1,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// maskd's RTP ports for one stream (one m= line): the one side A sends to, the one side B
/// sends to. Each RTCP port is the odd port above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamPorts {
    pub a: u16,
    pub b: u16,
}

impl StreamPorts {
    /// The port a side's peer sends to.
    pub fn facing(&self, side: Side) -> u16 {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }
}

/// What one side's SDP says about where it receives a stream. The relay sends there until
/// the peer's own packets show its real source (symmetric RTP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PeerMedia {
    /// Where it wants RTP (None: not known, or port 0).
    pub rtp: Option<SocketAddr>,
    /// Where it wants RTCP (a=rtcp, else the RTP port + 1).
    pub rtcp: Option<SocketAddr>,
    /// RTCP shares the RTP port (a=rtcp-mux in its SDP, and accepted).
    pub mux: bool,
    /// Old-style (c=0.0.0.0) or direction hold: no media timeout while held.
    pub hold: bool,
    /// The stream is not RTP (T.38 over UDPTL, say): datagrams pass as they come, with no
    /// RTP check and no RTCP.
    pub not_rtp: bool,
}

/// What a recorded call needs once answered: where to write and how to decode.
#[derive(Clone, Debug)]
pub struct RecordSpec {
    /// The recording's SID (`RE…`).
    pub sid: String,
    /// The WAV file (`<media.recording.dir>/<sid>.wav`).
    pub path: std::path::PathBuf,
    /// Payload types → what they carry (from the answered SDP; a B2BUA that does not
    /// transcode passes payload type numbers unchanged, so one map serves both sides).
    pub payloads: Vec<(u8, record::Payload)>,
    /// Why it cannot be recorded (a codec maskd does not decode): the recording is absent.
    pub absent: Option<String>,
}

/// How a recording ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordingOutcome {
    Completed {
        duration_ms: u64,
    },
    /// Not recorded, and why (the codec).
    Absent {
        reason: String,
    },
    /// The file could not be written, and why.
    Failed {
        reason: String,
    },
}

/// Where the relay reports recordings that ended (the engine: the Recording resource and
/// its status callback).
pub trait RecordingSink: Send + Sync {
    fn ended(&self, sid: &str, outcome: RecordingOutcome);
}

/// Why a stream could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaError {
    /// No free port pair left in `media.port_range`.
    Exhausted,
}

/// The relay as the B2BUA uses it: synchronous, cheap calls (a bind and a queued message
/// at most); packets never pass through here.
pub trait Media: Send + Sync {
    /// Takes `n` more streams for call `call` (its first or added m= lines).
    fn allocate(&self, call: u64, n: usize) -> Result<Vec<StreamPorts>, MediaError>;
    /// A side's SDP for stream `index` of `call` was seen.
    fn update(&self, call: u64, index: usize, side: Side, peer: PeerMedia);
    /// The call was answered (the media timeout runs from now), and is recorded if `record`.
    fn answered(&self, call: u64, record: Option<RecordSpec>);
    /// The call ended: its ports return to the pool, its recording is finalised.
    fn release(&self, call: u64);
}

pub mod record;
pub mod rtcp;
pub mod sdp;
