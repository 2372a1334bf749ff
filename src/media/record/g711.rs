//! G.711 µ-law and A-law expansion to 16-bit linear PCM (ITU-T G.711).
//!
//! Decoding is a 256-entry table per law, built at compile time from the standard's
//! expansion rule, so a byte of payload costs one load and no input can fail: every one of
//! the 256 codes is a valid G.711 word. The tables are the whole cost of supporting both
//! laws (1 KiB of read-only data).
//!
//! Scale: G.711 works on 14-bit (µ-law) and 13-bit (A-law) magnitudes; the values here are
//! those shifted up to 16 bits (µ-law ×4, A-law ×8), the usual convention, so full scale is
//! ±32124 (µ-law) and ±32256 (A-law).

/// µ-law expansion: the code is transmitted inverted; sign bit set means negative after
/// inversion; the 3-bit segment doubles the step size, the 4-bit mantissa sits on an
/// implicit leading one with the 0x84 (132) bias that keeps segment 0 continuous.
const fn ulaw_expand(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// A-law expansion: even bits are inverted on the wire (XOR 0x55); sign bit set means
/// positive; segment 0 is linear (no implicit one), segments 1–7 carry an implicit one and
/// double the step each time; the half-step (+8 at 16-bit scale) centres the reconstruction
/// in its quantisation interval.
const fn alaw_expand(code: u8) -> i16 {
    let a = code ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mantissa = ((a & 0x0F) as i32) << 4;
    let magnitude = match segment {
        0 => mantissa + 8,
        _ => (mantissa + 0x108) << (segment - 1),
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Builds a law's table; a flag rather than a function pointer because const fns cannot
/// call through pointers.
const fn table(mu: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if mu {
            ulaw_expand(i as u8)
        } else {
            alaw_expand(i as u8)
        };
        i += 1;
    }
    t
}

/// The µ-law table (code → linear sample).
pub static ULAW: [i16; 256] = table(true);
/// The A-law table (code → linear sample).
pub static ALAW: [i16; 256] = table(false);

/// Test-only encoders (the recorder never encodes): the inverse quantisers of G.711, used
/// to synthesise calls and to prove the decoders by round trip.
#[cfg(test)]
pub mod encode {
    /// Linear → µ-law: bias by 132, find the segment from the highest set bit, keep 4 bits
    /// below it, invert.
    pub fn ulaw(sample: i16) -> u8 {
        let mut x = sample as i32;
        let sign = if x < 0 {
            x = -x;
            0x80
        } else {
            0
        };
        x = x.min(32635) + 0x84;
        let top = 31 - (x as u32).leading_zeros() as i32; // 7..=14
        let exponent = top - 7;
        let mantissa = (x >> (exponent + 3)) & 0x0F;
        !((sign | (exponent << 4) | mantissa) as u8)
    }

    /// Linear → A-law, on the 13-bit magnitude: negative values are one's-complemented,
    /// segment from the magnitude, 4 bits of mantissa, even bits inverted.
    pub fn alaw(sample: i16) -> u8 {
        let mut v = (sample as i32) >> 3;
        let mask = if v >= 0 {
            0xD5
        } else {
            v = -v - 1;
            0x55
        };
        let mut segment = 0;
        while segment < 8 && v > (0x20 << segment) - 1 {
            segment += 1;
        }
        if segment >= 8 {
            return (0x7F ^ mask) as u8;
        }
        let mantissa = if segment < 2 {
            (v >> 1) & 0x0F
        } else {
            (v >> segment) & 0x0F
        };
        (((segment << 4) | mantissa) ^ mask) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulaw(code: u8) -> i16 {
        ULAW[code as usize]
    }
    fn alaw(code: u8) -> i16 {
        ALAW[code as usize]
    }

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw(0xFF), 0);
        assert_eq!(ulaw(0x7F), 0); // "negative zero"
        assert_eq!(ulaw(0x00), -32124);
        assert_eq!(ulaw(0x80), 32124);
        assert_eq!(ulaw(0xFE), 8); // smallest positive step: ((1<<3)+132)-132
        assert_eq!(ulaw(0x7E), -8);
        assert_eq!(ulaw(0xEF), 132); // segment 1, mantissa 0: (132 << 1) - 132
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw(0xD5), 8);
        assert_eq!(alaw(0x55), -8);
        // 0x2A ^ 0x55 = 0x7F: sign bit clear (negative), segment 7, mantissa 15:
        // (0xF0 + 0x108) << 6 = 32256. So 0x2A is the most *negative* code.
        assert_eq!(alaw(0x2A), -32256);
        assert_eq!(alaw(0xAA), 32256);
        assert_eq!(alaw(0xD4), 24); // segment 0, mantissa 1: 16 + 8
        assert_eq!(alaw(0xC5), 264); // segment 1, mantissa 0: 0x108
    }

    #[test]
    fn symmetric_about_the_sign_bit() {
        for c in 0..=255u8 {
            assert_eq!(ulaw(c), -ulaw(c ^ 0x80), "ulaw {c:#04x}");
            assert_eq!(alaw(c), -alaw(c ^ 0x80), "alaw {c:#04x}");
        }
    }

    #[test]
    fn monotonic_within_each_sign() {
        // µ-law: codes 0x80..=0xFF run from +max down to 0 (inverted), 0x00..=0x7F from
        // -max up to 0.
        for c in 0x80..0xFFu8 {
            assert!(ulaw(c) > ulaw(c + 1));
        }
        for c in 0x00..0x7Fu8 {
            assert!(ulaw(c) < ulaw(c + 1));
        }
        // A-law: sort the positive codes by magnitude; they must be 128 distinct values.
        let mut pos: Vec<i16> = (0x80..=0xFFu8).map(alaw).collect();
        pos.sort_unstable();
        pos.dedup();
        assert_eq!(pos.len(), 128);
        assert!(pos.iter().all(|&v| v > 0));
    }

    #[test]
    fn encoders_invert_decoders() {
        for c in 0..=255u8 {
            let want = if c == 0x7F { 0xFF } else { c }; // µ-law's two zeros encode as +0
            assert_eq!(encode::ulaw(ulaw(c)), want, "ulaw {c:#04x}");
            assert_eq!(encode::alaw(alaw(c)), c, "alaw {c:#04x}");
        }
        // Full-scale inputs clip instead of wrapping.
        assert_eq!(ulaw(encode::ulaw(i16::MAX)), 32124);
        assert_eq!(ulaw(encode::ulaw(i16::MIN)), -32124);
        assert_eq!(alaw(encode::alaw(i16::MAX)), 32256);
        assert_eq!(alaw(encode::alaw(i16::MIN)), -32256);
    }

    #[test]
    fn quantisation_error_is_bounded() {
        // Every 16-bit input decodes back within half a step of its segment (µ-law's
        // largest step at 16-bit scale is 1024, A-law's 1024 too), so the encoders used by
        // the call tests produce faithful tones.
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw(encode::ulaw(s)) as i32 - s.clamp(-32635, 32635) as i32;
            let a = alaw(encode::alaw(s)) as i32 - s as i32;
            assert!(u.abs() <= 1024, "ulaw {s}: {u}");
            assert!(a.abs() <= 1024, "alaw {s}: {a}");
        }
    }
}
