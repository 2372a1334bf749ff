//! The few RTP header fields a recorder needs (RFC 3550 §5.1), read without trusting the
//! datagram: every offset is checked, so a short or lying header yields `None`, never a
//! panic or a payload slice outside the packet.

/// A parsed RTP packet borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp<'a> {
    /// Payload type (7 bits; the marker bit is not part of it).
    pub pt: u8,
    /// Media timestamp, in the payload's clock (8 kHz for G.711, CN and 8 kHz events).
    pub ts: u32,
    /// Synchronisation source: a new value means a new timeline.
    pub ssrc: u32,
    /// What follows the fixed header, CSRC list and extension, minus padding.
    pub payload: &'a [u8],
}

/// Parses `d`: version must be 2; the CSRC list (CC × 4 bytes) and, when X is set, the
/// extension (4-byte header + length × 4 bytes) are skipped; when P is set the last byte
/// counts the padding, itself included, so 0 or more than what is left is malformed.
pub fn parse(d: &[u8]) -> Option<Rtp<'_>> {
    let b0 = *d.first()?;
    if b0 >> 6 != 2 {
        return None;
    }
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let csrc = usize::from(b0 & 0x0F);
    let pt = d.get(1)? & 0x7F;
    let ts = u32::from_be_bytes(d.get(4..8)?.try_into().ok()?);
    let ssrc = u32::from_be_bytes(d.get(8..12)?.try_into().ok()?);
    let mut start = 12 + csrc * 4;
    if extension {
        let len = usize::from(u16::from_be_bytes(
            d.get(start + 2..start + 4)?.try_into().ok()?,
        ));
        start += 4 + len * 4;
    }
    let mut end = d.len();
    if padding {
        let pad = usize::from(*d.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    let payload = d.get(start..end)?;
    Some(Rtp {
        pt,
        ts,
        ssrc,
        payload,
    })
}

/// Test helper: a minimal RTP datagram (V=2, no CSRC, no extension, no padding).
#[cfg(test)]
pub fn build(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.push(0x80);
    v.push(pt & 0x7F);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header() {
        let d = build(8, 7, 0x0102_0304, 0xAABB_CCDD, &[1, 2, 3]);
        let p = parse(&d).unwrap();
        assert_eq!(
            (p.pt, p.ts, p.ssrc, p.payload),
            (8, 0x0102_0304, 0xAABB_CCDD, &[1u8, 2, 3][..])
        );
        // Marker bit is not part of the payload type.
        let mut m = d.clone();
        m[1] |= 0x80;
        assert_eq!(parse(&m).unwrap().pt, 8);
        // Empty payload is valid RTP (and carries no samples).
        assert_eq!(parse(&d[..12]).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        let mut d = vec![0x80 | 0x20 | 0x10 | 2, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 5];
        d.extend_from_slice(&[0xC1; 8]); // two CSRCs
        d.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0xE1, 0xE2, 0xE3, 0xE4]); // ext, 1 word
        d.extend_from_slice(&[10, 20, 30]); // payload
        d.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = parse(&d).unwrap();
        assert_eq!((p.ts, p.ssrc, p.payload), (9, 5, &[10u8, 20, 30][..]));
    }

    #[test]
    fn malformed_is_none() {
        let good = build(0, 1, 2, 3, &[0; 4]);
        assert!(parse(&[]).is_none());
        assert!(parse(&good[..11]).is_none());
        let mut v1 = good.clone();
        v1[0] = 0x40; // version 1
        assert!(parse(&v1).is_none());
        let mut cc = good.clone();
        cc[0] |= 0x0F; // 15 CSRCs the datagram does not hold
        assert!(parse(&cc).is_none());
        let mut x = good.clone();
        x[0] |= 0x10; // extension header present but only 4 bytes follow: length 0 fits
        assert!(parse(&x).is_some());
        x[14] = 0xFF; // extension length that overruns
        assert!(parse(&x).is_none());
        let mut p0 = good.clone();
        p0[0] |= 0x20;
        *p0.last_mut().unwrap() = 0; // padding count 0
        assert!(parse(&p0).is_none());
        *p0.last_mut().unwrap() = 200; // more padding than packet
        assert!(parse(&p0).is_none());
        *p0.last_mut().unwrap() = 4; // padding eats the whole payload: valid, empty
        assert_eq!(parse(&p0).unwrap().payload.len(), 0);
        *p0.last_mut().unwrap() = 5; // and one byte into the header: malformed
        assert!(parse(&p0).is_none());
    }
}
