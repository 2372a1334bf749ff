//! RTCP scrubbing (RFC 3550 §6), sans-IO.
//!
//! maskd relays RTCP between the legs of a call because endpoints use it for quality
//! reports and lip sync, but RTCP also carries identity: the SDES packet holds a CNAME that
//! user agents build from the SIP address (baresip sends `sip:+1555…@10.0.0.5`), and may
//! add NAME, EMAIL, PHONE, LOC, TOOL and NOTE items; BYE may carry a free-text reason; APP
//! packets are opaque. [`scrub`] rebuilds each compound packet so only maskd's CNAME and
//! the measurement reports reach the other side. Feedback (RFC 4585) and extended reports
//! (RFC 3611) carry SSRCs and statistics only, so they pass unchanged.
//!
//! Only plain RTCP can be scrubbed: under SRTP (RFC 3711) the compound is encrypted, so a
//! caller relaying SRTCP end to end must not call [`scrub`] on it.

use std::fmt;

/// Why a datagram was refused; the caller drops it and counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpError(pub &'static str);

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for RtcpError {}

/// What [`scrub`] took out, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scrubbed {
    /// SDES items other than CNAME, BYE reasons, APP and unknown packets.
    pub removed: u32,
}

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;
const RTPFB: u8 = 205;
const PSFB: u8 = 206;
const XR: u8 = 207;
/// SDES item type of the canonical name, the one item every chunk keeps.
const CNAME: u8 = 1;
/// Version 2, no padding: the first octet of every packet maskd builds, before its count.
const V2: u8 = 0x80;

/// Rewrites one (compound) RTCP packet from one side before it goes to the other, and
/// appends the result to `out`:
///
/// - every SDES chunk keeps its SSRC and exactly one item, CNAME, whose text is `cname`
///   (truncated to 255 octets, the most an item holds); every other item is removed;
/// - BYE keeps its SSRCs and loses its reason text;
/// - APP (free-form) and unknown packet types are removed;
/// - SR, RR, RTPFB, PSFB and XR pass unchanged, padding included.
///
/// Rebuilt packets have their length recomputed, no padding, and SDES chunks terminated and
/// padded to 32 bits as RFC 3550 §6.5 requires. Malformed input (wrong version, a length
/// beyond the buffer, bad padding, an SDES item or report block overrunning its packet) is
/// an error and leaves `out` untouched; a compound from which everything is removed is
/// `Ok` with nothing appended.
pub fn scrub(packet: &[u8], cname: &[u8], out: &mut Vec<u8>) -> Result<Scrubbed, RtcpError> {
    let start = out.len();
    let result = scrub_into(packet, cname, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Whether a datagram on an rtcp-mux port is RTCP rather than RTP (RFC 5761 §4): its
/// second octet is 192..=223, which RTP would only show for payload types 64..=95 with the
/// marker bit, a range RFC 5761 keeps free for this purpose. Version 2 is required too, so
/// STUN or DTLS sharing the port (RFC 7983) is never taken for RTCP.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram, [b0, 192..=223, ..] if b0 >> 6 == 2)
}

fn scrub_into(packet: &[u8], cname: &[u8], out: &mut Vec<u8>) -> Result<Scrubbed, RtcpError> {
    if packet.is_empty() {
        return Err(RtcpError("RTCP: empty datagram"));
    }
    let mut removed = 0u32;
    let mut rest = packet;
    while !rest.is_empty() {
        let (b0, pt, words) = match rest {
            [b0, pt, l0, l1, ..] => (*b0, *pt, u16::from_be_bytes([*l0, *l1])),
            _ => return Err(RtcpError("RTCP: truncated header")),
        };
        if b0 >> 6 != 2 {
            return Err(RtcpError("RTCP: version is not 2"));
        }
        let size = (usize::from(words) + 1) * 4;
        let (whole, tail) = rest
            .split_at_checked(size)
            .ok_or(RtcpError("RTCP: length beyond buffer"))?;
        rest = tail;
        // The last octet of a padded packet counts the padding, itself included.
        let pad = match (b0 & 0x20 != 0, whole.last()) {
            (true, Some(&n)) if n == 0 || usize::from(n) > size - 4 => {
                return Err(RtcpError("RTCP: bad padding"))
            }
            (true, Some(&n)) => usize::from(n),
            _ => 0,
        };
        let body = whole
            .get(4..size - pad)
            .ok_or(RtcpError("RTCP: bad padding"))?;
        let count = b0 & 0x1f;
        let blocks = 24 * usize::from(count);
        let need = |min: usize| match body.len() >= min {
            true => Ok(()),
            false => Err(RtcpError("RTCP: packet shorter than its reports")),
        };
        match pt {
            SR => need(24 + blocks)?,
            RR => need(4 + blocks)?,
            RTPFB | PSFB => need(8)?,
            XR => need(4)?,
            SDES => {
                removed += sdes(count, body, cname, out)?;
                continue;
            }
            BYE => {
                removed += bye(count, body, out)?;
                continue;
            }
            _ => {
                removed += 1;
                continue;
            }
        }
        out.extend_from_slice(whole);
    }
    Ok(Scrubbed { removed })
}

/// Rebuilds an SDES packet: per chunk, its SSRC and our CNAME. Returns the items removed.
fn sdes(count: u8, body: &[u8], cname: &[u8], out: &mut Vec<u8>) -> Result<u32, RtcpError> {
    const OVERRUN: RtcpError = RtcpError("RTCP: SDES item overrun");
    let at = out.len();
    out.extend_from_slice(&[V2 | count, SDES, 0, 0]);
    // An item holds at most 255 octets, so the cast below is exact.
    let cname = cname.get(..255).unwrap_or(cname);
    let mut removed = 0;
    let mut off = 0usize;
    for _ in 0..count {
        let ssrc = body.get(off..off + 4).ok_or(OVERRUN)?;
        out.extend_from_slice(ssrc);
        out.extend_from_slice(&[CNAME, cname.len() as u8]);
        out.extend_from_slice(cname);
        // One null octet ends the item list, more pad the chunk to 32 bits (§6.5).
        let used = 4 + 2 + cname.len();
        out.resize(out.len() + (used + 4) / 4 * 4 - used, 0);
        off += 4;
        loop {
            match body.get(off) {
                None => return Err(OVERRUN),
                Some(0) => {
                    // The next chunk starts at the next 32-bit boundary after the null.
                    off = (off + 4) / 4 * 4;
                    break;
                }
                Some(&kind) => {
                    let len = usize::from(*body.get(off + 1).ok_or(OVERRUN)?);
                    body.get(off + 2..off + 2 + len).ok_or(OVERRUN)?;
                    removed += u32::from(kind != CNAME);
                    off += 2 + len;
                }
            }
        }
    }
    set_length(out, at);
    Ok(removed)
}

/// Rebuilds a BYE packet with its SSRCs only. Returns 1 if a reason was dropped.
fn bye(count: u8, body: &[u8], out: &mut Vec<u8>) -> Result<u32, RtcpError> {
    const OVERRUN: RtcpError = RtcpError("RTCP: BYE overrun");
    let n = 4 * usize::from(count);
    let ssrcs = body.get(..n).ok_or(OVERRUN)?;
    let reason = match body.get(n) {
        Some(&len) => {
            body.get(n + 1..n + 1 + usize::from(len)).ok_or(OVERRUN)?;
            1
        }
        None => 0,
    };
    let at = out.len();
    out.extend_from_slice(&[V2 | count, BYE, 0, 0]);
    out.extend_from_slice(ssrcs);
    set_length(out, at);
    Ok(reason)
}

/// Writes the length field of the packet built from `at` to the end of `out`: its size in
/// 32-bit words minus one. Rebuilt packets are at most 31 chunks of 264 octets, so the
/// count always fits.
fn set_length(out: &mut [u8], at: usize) {
    let words = (out.len().saturating_sub(at) / 4).saturating_sub(1);
    let words = u16::try_from(words).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(field) = out.get_mut(at + 2..at + 4) {
        field.copy_from_slice(&words);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk as the walker saw it: SSRC and (type, text) items.
    type Walked = (u32, Vec<(u8, Vec<u8>)>);
    /// A chunk to build: SSRC and (type, text) items.
    type Chunk<'a> = (u32, &'a [(u8, &'a [u8])]);

    /// An independent reader: checks version, lengths, padding and SDES chunk layout, and
    /// returns each packet's type with, for SDES, the (SSRC, items) of every chunk.
    fn walk(mut buf: &[u8]) -> Result<Vec<(u8, Vec<Walked>)>, String> {
        let mut packets = Vec::new();
        while !buf.is_empty() {
            if buf.len() < 4 || buf[0] >> 6 != 2 {
                return Err(format!("bad header {buf:?}"));
            }
            let size = (u16::from_be_bytes([buf[2], buf[3]]) as usize + 1) * 4;
            if size > buf.len() {
                return Err("length beyond buffer".into());
            }
            let (pkt, rest) = buf.split_at(size);
            buf = rest;
            let pad = if pkt[0] & 0x20 != 0 {
                pkt[size - 1] as usize
            } else {
                0
            };
            let body = &pkt[4..size - pad];
            let mut chunks = Vec::new();
            if pkt[1] == SDES {
                let mut c = body;
                for _ in 0..pkt[0] & 0x1f {
                    let ssrc = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                    let (mut i, mut items) = (4, Vec::new());
                    while c[i] != 0 {
                        items.push((c[i], c[i + 2..i + 2 + c[i + 1] as usize].to_vec()));
                        i += 2 + c[i + 1] as usize;
                    }
                    let end = (i + 4) / 4 * 4;
                    if c[i..end].iter().any(|&b| b != 0) {
                        return Err("chunk padding not null".into());
                    }
                    chunks.push((ssrc, items));
                    c = &c[end..];
                }
                if !c.is_empty() {
                    return Err("bytes after the last chunk".into());
                }
            }
            packets.push((pkt[1], chunks));
        }
        Ok(packets)
    }

    fn header(b0: u8, pt: u8, body: &[u8]) -> Vec<u8> {
        assert_eq!(body.len() % 4, 0, "test packets are whole words");
        let words = (body.len() / 4) as u16;
        let mut p = vec![b0, pt];
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    fn sr() -> Vec<u8> {
        // SSRC, NTP, RTP ts, counts, one report block.
        let mut body: Vec<u8> = (0..24).collect();
        body.extend((100..124).collect::<Vec<u8>>());
        header(0x81, SR, &body)
    }

    fn sdes_packet(chunks: &[Chunk]) -> Vec<u8> {
        let mut body = Vec::new();
        for (ssrc, items) in chunks {
            body.extend_from_slice(&ssrc.to_be_bytes());
            for (kind, text) in items.iter() {
                body.push(*kind);
                body.push(text.len() as u8);
                body.extend_from_slice(text);
            }
            body.push(0);
            while body.len() & 3 != 0 {
                body.push(0);
            }
        }
        header(0x80 | chunks.len() as u8, SDES, &body)
    }

    fn bye_packet(ssrc: u32, reason: &[u8]) -> Vec<u8> {
        let mut body = ssrc.to_be_bytes().to_vec();
        body.push(reason.len() as u8);
        body.extend_from_slice(reason);
        while body.len() & 3 != 0 {
            body.push(0);
        }
        header(0x81, BYE, &body)
    }

    const CN: &[u8] = b"maskd-7f3a";

    fn compound() -> Vec<u8> {
        let mut p = sr();
        p.extend(sdes_packet(&[(
            0x1122_3344,
            &[
                (1, b"sip:+15551230001@10.0.0.5"),
                (2, b"Alice +15551230001"),
                (4, b"+15551230001"),
                (6, b"baresip v3.10"),
            ],
        )]));
        p.extend(bye_packet(0x1122_3344, b"bye from +15551230001"));
        p
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn compound_is_scrubbed() {
        let input = compound();
        let mut out = vec![0xEE];
        let s = scrub(&input, CN, &mut out).unwrap();
        assert_eq!(s.removed, 4); // NAME, PHONE, TOOL, BYE reason
        assert_eq!(out[0], 0xEE);
        let out = &out[1..];
        for secret in [
            &b"5551230001"[..],
            b"10.0.0.5",
            b"baresip",
            b"Alice",
            b"bye",
        ] {
            assert!(!contains(out, secret));
        }
        assert_eq!(&out[..sr().len()], &sr()[..]);
        let packets = walk(out).unwrap();
        assert_eq!(
            packets.iter().map(|p| p.0).collect::<Vec<_>>(),
            [SR, SDES, BYE]
        );
        assert_eq!(packets[1].1, [(0x1122_3344, vec![(CNAME, CN.to_vec())])]);
        assert_eq!(
            &out[out.len() - 8..],
            &[0x81, BYE, 0, 1, 0x11, 0x22, 0x33, 0x44]
        );
    }

    #[test]
    fn reports_pass_byte_for_byte() {
        let rr = header(0x81, RR, &(0..28).collect::<Vec<u8>>());
        let fb = header(0x81, RTPFB, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 0, 1]);
        let xr = header(0x80, XR, &[1, 2, 3, 4, 4, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
        let input = [rr.clone(), fb, header(0x81, PSFB, &[9; 8]), xr].concat();
        let mut out = Vec::new();
        assert_eq!(scrub(&rr, CN, &mut out), Ok(Scrubbed { removed: 0 }));
        assert_eq!(out, rr);
        out.clear();
        assert_eq!(scrub(&input, CN, &mut out), Ok(Scrubbed { removed: 0 }));
        assert_eq!(out, input);
    }

    #[test]
    fn app_and_unknown_are_removed() {
        let rr = header(0x80, RR, &[1, 2, 3, 4]);
        let app = header(0x81, 204, b"\x01\x02\x03\x04name+15551230001....");
        let mut out = Vec::new();
        let input = [rr.clone(), app.clone(), header(0x80, 195, &[0; 4])].concat();
        assert_eq!(scrub(&input, CN, &mut out), Ok(Scrubbed { removed: 2 }));
        assert_eq!(out, rr);
        out.clear();
        assert_eq!(scrub(&app, CN, &mut out), Ok(Scrubbed { removed: 1 }));
        assert!(out.is_empty());
    }

    #[test]
    fn padding_multiple_chunks_and_long_cname() {
        // Two chunks, one with no items at all; then 8 octets of padding on the SDES.
        let mut sdes = sdes_packet(&[(7, &[(2, b"Bob"), (8, b"\x01xsecret")]), (8, &[])]);
        sdes[0] |= 0x20;
        sdes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 8]);
        let words = (sdes.len() / 4 - 1) as u16;
        sdes[2..4].copy_from_slice(&words.to_be_bytes());
        let long = [b'x'; 300];
        let mut out = Vec::new();
        assert_eq!(scrub(&sdes, &long, &mut out), Ok(Scrubbed { removed: 2 }));
        let packets = walk(&out).unwrap();
        let cn = (CNAME, vec![b'x'; 255]);
        assert_eq!(packets[0].1, [(7, vec![cn.clone()]), (8, vec![cn])]);
        assert_eq!(out[0], 0x82, "padding bit cleared");
        // A padded RR passes as it came.
        let mut rr = header(0xA0, RR, &[1, 2, 3, 4, 0, 0, 0, 4]);
        out.clear();
        assert_eq!(scrub(&rr, CN, &mut out), Ok(Scrubbed { removed: 0 }));
        assert_eq!(out, rr);
        // Padding count zero, or larger than the packet, is refused.
        rr[11] = 0;
        assert_eq!(
            scrub(&rr, CN, &mut out),
            Err(RtcpError("RTCP: bad padding"))
        );
        rr[11] = 9;
        assert_eq!(
            scrub(&rr, CN, &mut out),
            Err(RtcpError("RTCP: bad padding"))
        );
    }

    #[test]
    fn malformed_input_is_an_error_and_leaves_out_alone() {
        let good = compound();
        let mut v1 = good.clone();
        v1[0] = 0x41;
        let mut overrun = sdes_packet(&[(1, &[(1, b"abc")])]);
        overrun[9] = 200;
        let cases: [(&[u8], &str); 9] = [
            (b"", "RTCP: empty datagram"),
            (&good[..good.len() - 1], "RTCP: length beyond buffer"),
            (&good[..2], "RTCP: truncated header"),
            (&v1, "RTCP: version is not 2"),
            (&overrun, "RTCP: SDES item overrun"),
            (
                &header(0x82, SDES, &[0, 0, 0, 1, 0, 0, 0, 0]),
                "RTCP: SDES item overrun",
            ),
            (&header(0x82, BYE, &[0, 0, 0, 1]), "RTCP: BYE overrun"),
            (
                &header(0x81, BYE, &[0, 0, 0, 1, 9, 0, 0, 0]),
                "RTCP: BYE overrun",
            ),
            (
                &header(0x81, SR, &[0; 24]),
                "RTCP: packet shorter than its reports",
            ),
        ];
        for (input, why) in cases {
            let mut out = vec![1, 2, 3];
            assert_eq!(scrub(input, CN, &mut out), Err(RtcpError(why)));
            assert_eq!(out, [1, 2, 3]);
        }
    }

    #[test]
    fn rtcp_mux_demultiplexing() {
        assert!(is_rtcp(&sr()) && is_rtcp(&[0x80, 192]) && is_rtcp(&[0x80, 223, 0, 0]));
        assert!(!is_rtcp(&[0x80, 0, 0, 1]) && !is_rtcp(&[0x80, 0xE0]) && !is_rtcp(&[0x80, 191]));
        assert!(!is_rtcp(&[0x00, 200]) && !is_rtcp(&[0x80]) && !is_rtcp(&[]));
    }

    #[test]
    fn fuzz_never_panics_and_only_our_cname_remains() {
        let mut seeds = vec![compound(), sr()];
        let mut padded = sdes_packet(&[(5, &[(1, b"a"), (3, b"x@y")]), (6, &[(5, b"LOC")])]);
        padded[0] |= 0x20;
        padded.extend_from_slice(&[0, 0, 0, 4]);
        padded[3] += 1;
        seeds.push([padded, header(0x81, 204, b"APPXdata"), bye_packet(9, b"r")].concat());
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        let (mut ok, mut err) = (0, 0);
        for i in 0..20_000 {
            let mut b = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rnd(3) {
                let at = rnd(b.len() + 1);
                match rnd(4) {
                    0 => b.truncate(at),
                    1 => b.get_mut(at).into_iter().for_each(|v| *v ^= 1 << rnd(8)),
                    2 => b.get_mut(at).into_iter().for_each(|v| *v = rnd(256) as u8),
                    _ => b
                        .splice(at..at, [0x80, 202, 0, rnd(4) as u8])
                        .for_each(drop),
                }
            }
            let mut out = Vec::new();
            match scrub(&b, CN, &mut out) {
                Err(_) => {
                    err += 1;
                    assert!(out.is_empty());
                }
                Ok(_) => {
                    ok += 1;
                    let packets = walk(&out).unwrap_or_else(|e| panic!("{e}: {out:?} from {b:?}"));
                    for (_, chunks) in packets {
                        for (_, items) in chunks {
                            assert_eq!(items, [(CNAME, CN.to_vec())]);
                        }
                    }
                }
            }
        }
        assert!(ok > 2_000 && err > 2_000, "{ok} {err}");
    }
}
