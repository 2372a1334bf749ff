//! One stream of a call (one m= line), sans-IO: where each side's packets go, and which
//! sources are believed. Each side's first packet latches the relay onto its real source
//! (symmetric RTP: a peer behind NAT whose SDP names an address it does not send from still
//! works); after that, packets from any other source are dropped (no injection into the
//! call, no media of another call bleeding in). Until a side has sent, the relay sends to
//! the address its SDP named.

use std::net::SocketAddr;

use super::{rtcp, PeerMedia, Side};

/// Why a datagram was not forwarded (a bounded label set for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// The other side's address is not known yet (no SDP from it, or port 0).
    NoDestination,
    /// From a source other than the one the side latched onto.
    WrongSource,
    /// Not RTP version 2, or too short.
    Malformed,
    /// The other side holds with c=0.0.0.0: nothing goes to it.
    Held,
}

impl Drop {
    pub fn label(self) -> &'static str {
        match self {
            Drop::NoDestination => "no_destination",
            Drop::WrongSource => "wrong_source",
            Drop::Malformed => "malformed",
            Drop::Held => "held",
        }
    }
}

/// Where a forwarded datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The side whose facing socket sends it (the other side of the one it came from).
    pub side: Side,
    /// Sent from that side's RTCP socket (else its RTP socket).
    pub rtcp_socket: bool,
    pub to: SocketAddr,
    /// It is RTCP: scrub its SDES first.
    pub rtcp: bool,
}

#[derive(Clone, Debug, Default)]
struct Leg {
    sdp: PeerMedia,
    /// Whether an SDP of this side was seen at all.
    known: bool,
    rtp_source: Option<SocketAddr>,
    rtcp_source: Option<SocketAddr>,
}

#[derive(Clone, Debug, Default)]
pub struct Stream {
    legs: [Leg; 2],
}

impl Stream {
    /// A side's (new) SDP for this stream. If it names a different address than before, the
    /// side has moved (a re-INVITE after a transfer, say): its latches are forgotten.
    pub fn update(&mut self, side: Side, peer: PeerMedia) {
        let leg = &mut self.legs[side.index()];
        let moved = leg.known && (leg.sdp.rtp != peer.rtp && peer.rtp.is_some());
        if moved {
            leg.rtp_source = None;
            leg.rtcp_source = None;
        }
        leg.sdp = peer;
        leg.known = true;
    }

    /// Whether `side` holds (its last SDP said so).
    pub fn held(&self, side: Side) -> bool {
        self.legs[side.index()].sdp.hold
    }

    /// Whether `side`'s stream is SRTP (its RTCP crosses unchanged).
    pub fn srtp(&self, side: Side) -> bool {
        self.legs[side.index()].sdp.srtp
    }

    /// Whether any side holds.
    pub fn on_hold(&self) -> bool {
        self.held(Side::A) || self.held(Side::B)
    }

    /// A datagram from `src` reached the socket facing `side` (its RTCP socket if
    /// `rtcp_port`). Returns where it goes, or why it is dropped.
    pub fn route(
        &mut self,
        side: Side,
        rtcp_port: bool,
        src: SocketAddr,
        data: &[u8],
    ) -> Result<Forward, Drop> {
        let not_rtp = self.legs[side.index()].sdp.not_rtp;
        let is_rtcp = !not_rtp && (rtcp_port || (data.len() >= 2 && rtcp::is_rtcp(data)));
        if !not_rtp && (data.len() < 8 || data[0] >> 6 != 2) {
            return Err(Drop::Malformed);
        }
        if !is_rtcp && !not_rtp && data.len() < 12 {
            return Err(Drop::Malformed);
        }
        let leg = &mut self.legs[side.index()];
        let latch = if is_rtcp {
            &mut leg.rtcp_source
        } else {
            &mut leg.rtp_source
        };
        match latch {
            Some(s) if *s != src => return Err(Drop::WrongSource),
            Some(_) => {}
            None => *latch = Some(src),
        }
        let out = side.other();
        let peer = &self.legs[out.index()];
        if peer.sdp.hold && peer.sdp.rtp.is_none() && peer.known {
            return Err(Drop::Held);
        }
        if is_rtcp {
            if peer.sdp.mux {
                let to = peer
                    .rtp_source
                    .or(peer.sdp.rtp)
                    .ok_or(Drop::NoDestination)?;
                return Ok(Forward {
                    side: out,
                    rtcp_socket: false,
                    to,
                    rtcp: true,
                });
            }
            let to = peer
                .rtcp_source
                .or(peer.sdp.rtcp)
                .ok_or(Drop::NoDestination)?;
            return Ok(Forward {
                side: out,
                rtcp_socket: true,
                to,
                rtcp: true,
            });
        }
        let to = peer
            .rtp_source
            .or(peer.sdp.rtp)
            .ok_or(Drop::NoDestination)?;
        Ok(Forward {
            side: out,
            rtcp_socket: false,
            to,
            rtcp: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn peer(rtp: &str) -> PeerMedia {
        let a = addr(rtp);
        PeerMedia {
            rtp: Some(a),
            rtcp: Some(SocketAddr::new(a.ip(), a.port() + 1)),
            ..PeerMedia::default()
        }
    }

    /// An RTP packet (version 2, PT 0).
    fn rtp() -> Vec<u8> {
        let mut p = vec![0x80, 0x00, 0, 1, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef];
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    /// An RTCP receiver report (PT 201), no report blocks.
    fn rr() -> Vec<u8> {
        vec![0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef]
    }

    #[test]
    fn forwards_to_the_sdp_address_until_the_peer_sends() {
        let mut s = Stream::default();
        s.update(Side::A, peer("127.0.0.1:4000"));
        // B's answer not seen yet: A's media has nowhere to go.
        assert_eq!(
            s.route(Side::A, false, addr("127.0.0.1:4000"), &rtp()),
            Err(Drop::NoDestination)
        );
        s.update(Side::B, peer("127.0.0.2:6000"));
        let f = s
            .route(Side::A, false, addr("127.0.0.1:4000"), &rtp())
            .unwrap();
        assert_eq!(
            (f.side, f.to, f.rtcp_socket),
            (Side::B, addr("127.0.0.2:6000"), false)
        );
        // B sends from elsewhere (NAT): it latches there, and A's media follows it.
        let f = s
            .route(Side::B, false, addr("127.0.0.9:7777"), &rtp())
            .unwrap();
        assert_eq!(f.to, addr("127.0.0.1:4000"));
        let f = s
            .route(Side::A, false, addr("127.0.0.1:4000"), &rtp())
            .unwrap();
        assert_eq!(f.to, addr("127.0.0.9:7777"));
    }

    #[test]
    fn other_sources_are_dropped_after_latching() {
        let mut s = Stream::default();
        s.update(Side::A, peer("127.0.0.1:4000"));
        s.update(Side::B, peer("127.0.0.2:6000"));
        s.route(Side::A, false, addr("127.0.0.1:4000"), &rtp())
            .unwrap();
        assert_eq!(
            s.route(Side::A, false, addr("127.0.0.66:4000"), &rtp()),
            Err(Drop::WrongSource)
        );
        // RTCP latches on its own port.
        let f = s
            .route(Side::A, true, addr("127.0.0.1:4001"), &rr())
            .unwrap();
        assert_eq!(
            (f.rtcp_socket, f.to, f.rtcp),
            (true, addr("127.0.0.2:6001"), true)
        );
        assert_eq!(
            s.route(Side::A, true, addr("127.0.0.66:4001"), &rr()),
            Err(Drop::WrongSource)
        );
    }

    #[test]
    fn rtcp_mux_on_either_side() {
        let mut s = Stream::default();
        let mut a = peer("127.0.0.1:4000");
        a.mux = true;
        s.update(Side::A, a);
        s.update(Side::B, peer("127.0.0.2:6000"));
        // A muxes: its RTCP comes on the RTP port, goes to B's RTCP port.
        let f = s
            .route(Side::A, false, addr("127.0.0.1:4000"), &rr())
            .unwrap();
        assert_eq!(
            (f.rtcp, f.rtcp_socket, f.to),
            (true, true, addr("127.0.0.2:6001"))
        );
        // B's RTCP goes to A's RTP port, from maskd's RTP socket.
        let f = s
            .route(Side::B, true, addr("127.0.0.2:6001"), &rr())
            .unwrap();
        assert_eq!(
            (f.rtcp, f.rtcp_socket, f.to),
            (true, false, addr("127.0.0.1:4000"))
        );
    }

    #[test]
    fn hold_and_moves() {
        let mut s = Stream::default();
        s.update(Side::A, peer("127.0.0.1:4000"));
        s.update(Side::B, peer("127.0.0.2:6000"));
        s.route(Side::B, false, addr("127.0.0.2:6000"), &rtp())
            .unwrap();
        s.update(
            Side::B,
            PeerMedia {
                hold: true,
                ..PeerMedia::default()
            },
        );
        assert!(s.on_hold());
        assert_eq!(
            s.route(Side::A, false, addr("127.0.0.1:4000"), &rtp()),
            Err(Drop::Held)
        );
        // B resumes from a new address: its old latch is forgotten.
        s.update(Side::B, peer("127.0.0.3:6000"));
        assert!(!s.on_hold());
        let f = s
            .route(Side::A, false, addr("127.0.0.1:4000"), &rtp())
            .unwrap();
        assert_eq!(f.to, addr("127.0.0.3:6000"));
        assert!(s
            .route(Side::B, false, addr("127.0.0.3:6000"), &rtp())
            .is_ok());
    }

    #[test]
    fn garbage_is_dropped_unless_the_stream_is_not_rtp() {
        let mut s = Stream::default();
        s.update(Side::A, peer("127.0.0.1:4000"));
        s.update(Side::B, peer("127.0.0.2:6000"));
        for bad in [
            &b""[..],
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            b"\x80",
        ] {
            assert_eq!(
                s.route(Side::A, false, addr("127.0.0.1:4000"), bad),
                Err(Drop::Malformed)
            );
        }
        let mut t38 = peer("127.0.0.1:4000");
        t38.not_rtp = true;
        s.update(Side::A, t38);
        let f = s
            .route(Side::A, false, addr("127.0.0.1:4000"), b"\x00\x01udptl")
            .unwrap();
        assert!(!f.rtcp);
    }
}
