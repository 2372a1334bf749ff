//! Anchored media, the signalling half (SPEC §2.4): every SDP body that crosses from one
//! leg to the other is parsed, the streams it names get relay ports (through the core's
//! `media::Media` handle), the relay learns where that side receives, and the body is
//! rewritten so the other side sees maskd's address, ports and origin only. Each side is
//! shown its own `o=` session id; its version goes up whenever the SDP sent to it changes
//! (RFC 3264 §8), not when the same SDP is sent again.
//!
//! With `media.mode: passthrough` (no handle) bodies cross untouched.

use std::net::{IpAddr, SocketAddr};

use super::call::CallState;
use super::{B2bua, Ctx};
use crate::media::record::Payload;
use crate::media::sdp::{self, Parsed};
pub(super) use crate::media::Side;
use crate::media::{Media, MediaError, PeerMedia, RecordSpec, StreamPorts};

/// A call's anchored media.
#[derive(Debug, Default)]
pub(super) struct CallMedia {
    pub ports: Vec<StreamPorts>,
    /// The `o=` session id and version each side is shown (`[A, B]`).
    origin: [(u64, u64); 2],
    /// A fingerprint of the last SDP each side sent.
    last_from: [Option<u64>; 2],
    /// The last SDP B sent (the answer, or B's offer): what a recording decodes.
    pub b_sdp: Option<Parsed>,
}

/// Why an SDP could not be anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AnchorError {
    /// Unreadable SDP: 488 with this reason.
    Sdp(&'static str),
    /// A body that is not SDP where an SDP belongs: 415.
    NotSdp,
    /// No relay ports left: 503.
    Exhausted,
}

impl AnchorError {
    /// The SIP answer to a request whose body could not be anchored.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            AnchorError::Sdp(reason) => (488, reason),
            AnchorError::NotSdp => (415, "Unsupported Media Type"),
            AnchorError::Exhausted => (503, "Media Ports Exhausted"),
        }
    }
}

fn fingerprint(body: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(body);
    h.finish()
}

fn random_u32() -> u64 {
    let mut b = [0u8; 4];
    let _ = getrandom::getrandom(&mut b);
    u32::from_be_bytes(b) as u64 | 1
}

impl CallMedia {
    pub fn new() -> CallMedia {
        CallMedia {
            origin: [(random_u32(), 1), (random_u32(), 1)],
            ..CallMedia::default()
        }
    }
}

/// What a side's SDP says about where it receives stream `d`.
fn peer_of(d: &sdp::MediaDesc) -> PeerMedia {
    let not_rtp = !d.proto.to_ascii_uppercase().contains("RTP");
    let rtp = match (d.addr, d.port) {
        (Some(ip), port) if port != 0 && !d.hold_addr && !ip.is_unspecified() => {
            Some(SocketAddr::new(ip, port))
        }
        _ => None,
    };
    let rtcp = if not_rtp {
        None
    } else {
        match d.rtcp {
            Some((port, ip)) => ip
                .or(d.addr)
                .filter(|a: &IpAddr| !a.is_unspecified())
                .map(|ip| SocketAddr::new(ip, port)),
            None => rtp.and_then(|a| a.port().checked_add(1).map(|p| SocketAddr::new(a.ip(), p))),
        }
    };
    PeerMedia {
        rtp,
        rtcp,
        mux: d.rtcp_mux,
        hold: d.on_hold(),
        not_rtp,
        srtp: d.proto.to_ascii_uppercase().contains("SAVP"),
    }
}

/// Whether a Content-Type names SDP.
pub(super) fn is_sdp(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}

/// What a recording of this answer decodes: each payload type it lists, and why it cannot
/// be recorded when its first audio codec is neither G.711 law.
pub(super) fn payloads(answer: &Parsed) -> (Vec<(u8, Payload)>, Option<String>) {
    let Some(audio) = answer
        .media
        .iter()
        .find(|m| m.kind.eq_ignore_ascii_case("audio") && m.port != 0)
    else {
        return (Vec::new(), Some("no audio stream".into()));
    };
    if audio.proto.to_ascii_uppercase().contains("SAVP") {
        // SRTP: the payload is encrypted with keys only the endpoints use.
        return (
            Vec::new(),
            Some("SRTP media is encrypted end to end".into()),
        );
    }
    let mut map = Vec::new();
    let mut first: Option<String> = None;
    for f in &audio.formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        let name = audio
            .codec(pt)
            .map(|r| r.encoding.to_ascii_uppercase())
            .unwrap_or_default();
        let kind = match name.as_str() {
            "PCMU" => Payload::Pcmu,
            "PCMA" => Payload::Pcma,
            "TELEPHONE-EVENT" => Payload::Event,
            "CN" => Payload::ComfortNoise,
            _ => Payload::Other,
        };
        if first.is_none() && !matches!(kind, Payload::Event | Payload::ComfortNoise) {
            first = Some(if name.is_empty() {
                format!("payload type {pt}")
            } else {
                name
            });
        }
        map.push((pt, kind));
    }
    let absent = match first.as_deref() {
        Some("PCMU") | Some("PCMA") => None,
        Some(other) => Some(format!("codec {other} is not decoded (G.711 only)")),
        None => Some("no codec".into()),
    };
    (map, absent)
}

/// Anchors an SDP body sent by side `from` of call `id` (whose media state is `m`), and
/// returns the body the other side gets (`ip`: maskd's advertised media address). In
/// passthrough (the core has no media handle) the body crosses as is.
pub(super) fn anchor(
    media: &dyn Media,
    ip: IpAddr,
    id: u64,
    m: &mut CallMedia,
    from: Side,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, AnchorError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    if !content_type.is_some_and(is_sdp) {
        return Err(AnchorError::NotSdp);
    }
    let parsed = sdp::parse(body).map_err(|e| AnchorError::Sdp(e.0))?;
    let n = parsed.media.len();
    if n > m.ports.len() {
        let more = media
            .allocate(id, n - m.ports.len())
            .map_err(|MediaError::Exhausted| AnchorError::Exhausted)?;
        m.ports.extend(more);
    }
    for (i, d) in parsed.media.iter().enumerate() {
        media.update(id, i, from, peer_of(d));
    }
    let to = from.other();
    let print = fingerprint(body);
    if m.last_from[from.index()] != Some(print) {
        if m.last_from[from.index()].is_some() {
            m.origin[to.index()].1 += 1;
        }
        m.last_from[from.index()] = Some(print);
    }
    let ports: Vec<u16> = m.ports.iter().map(|p| p.facing(to)).collect();
    let (session_id, version) = m.origin[to.index()];
    let out = sdp::rewrite(
        body,
        &sdp::Rewrite {
            origin_user: "maskd",
            session_id,
            version,
            ip,
            ports: &ports,
        },
    )
    .map_err(|e| AnchorError::Sdp(e.0))?;
    if from == Side::B {
        m.b_sdp = Some(parsed);
    }
    Ok(out)
}

impl B2bua {
    /// A new call's media state, when media is anchored.
    pub(super) fn new_media(&self) -> Option<CallMedia> {
        self.media.as_ref().map(|_| CallMedia::new())
    }

    /// Rewrites an SDP body of call `id` from side `from` for the other side (as is when
    /// media is not anchored or the call has no media state).
    pub(super) fn anchor_body(
        &mut self,
        id: u64,
        from: Side,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<u8>, AnchorError> {
        let ip = self.cfg.media_ip;
        let (Some(media), Some(c)) = (self.media.as_deref(), self.calls.get_mut(&id)) else {
            return Ok(body.to_vec());
        };
        let Some(cm) = c.media.as_mut() else {
            return Ok(body.to_vec());
        };
        anchor(media, ip, id, cm, from, content_type, body)
    }

    /// Whether media is anchored (SDP bodies are rewritten).
    pub(super) fn anchoring(&self) -> bool {
        self.media.is_some()
    }

    /// Gives a call's relay ports back, at most once.
    pub(super) fn release_media(&mut self, id: u64) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if let (Some(_), Some(media)) = (c.media.take(), self.media.as_ref()) {
            media.release(id);
        }
    }

    /// Leg B answered: the media timeout starts, and a recorded session's call is recorded.
    pub(super) fn media_answered(&mut self, id: u64, cx: &Ctx) {
        let Some(media) = self.media.as_ref() else {
            return;
        };
        let Some(c) = self.calls.get(&id) else { return };
        let Some(cm) = &c.media else { return };
        let call_sid = c
            .interaction
            .inbound
            .resource_sid
            .clone()
            .unwrap_or_default();
        let spec = cx
            .core
            .start_recording(c.session, &call_sid)
            .map(|(sid, path)| {
                let (payloads, absent) = match &cm.b_sdp {
                    Some(p) => payloads(p),
                    None => (Vec::new(), Some("no SDP answer".into())),
                };
                RecordSpec {
                    sid,
                    path,
                    payloads,
                    absent,
                }
            });
        media.answered(id, spec);
    }

    /// The relay saw no media on call `id` for `media.timeout`: BYE on both legs.
    pub fn media_timeout(
        &mut self,
        id: u64,
        now: u64,
        core: &dyn super::Core,
        out: &mut Vec<super::Datagram>,
    ) {
        let mut cx = Ctx { now, core, out };
        if self.calls.get(&id).map(|c| c.state) == Some(CallState::Answered) {
            tracing::info!(call = id, "no media for media.timeout: call ended");
            self.end_answered(id, &mut cx);
        }
        self.client.settle();
        self.server.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_sdp("application/sdp"));
        assert!(is_sdp("Application/SDP; charset=utf-8"));
        assert!(!is_sdp("multipart/mixed;boundary=x"));
    }
}
