//! Text codings for the interaction log, callbacks and opt-out: every data_coding of SMPP
//! 3.4 §5.2.19 (0x00–0x0F) and the GSM 03.38 (TS 23.038) coding groups above it, turned into
//! text where the coding has one. Forwarding never re-encodes: the octets go out as they came
//! in. Also the user data header (UDH) of concatenated messages.

/// GSM 03.38 default alphabet; index = septet. 0x1B (escape) is a placeholder here.
const GSM: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The extension table: septet after 0x1B → character.
const GSM_EXT: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

pub fn decode_gsm(octets: &[u8]) -> String {
    let mut out = String::with_capacity(octets.len());
    let mut it = octets.iter();
    while let Some(&b) = it.next() {
        let b = b & 0x7F;
        if b == 0x1B {
            match it.next() {
                Some(&e) => match GSM_EXT.iter().find(|(k, _)| *k == e & 0x7F) {
                    Some((_, c)) => out.push(*c),
                    // An unknown extension shows the base character (03.38 §6.2.1.1).
                    None => out.push(GSM[(e & 0x7F) as usize]),
                },
                None => out.push(' '),
            }
        } else {
            out.push(GSM[b as usize]);
        }
    }
    out
}

/// Encodes `text` as unpacked GSM septets; `None` if a character is not in the alphabet.
pub fn encode_gsm(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if let Some(i) = GSM.iter().position(|g| *g == c).filter(|&i| i != 0x1B) {
            out.push(i as u8);
        } else if let Some((k, _)) = GSM_EXT.iter().find(|(_, e)| *e == c) {
            out.extend_from_slice(&[0x1B, *k]);
        } else {
            return None;
        }
    }
    Some(out)
}

pub fn decode_latin1(octets: &[u8]) -> String {
    octets.iter().map(|&b| char::from(b)).collect()
}

pub fn decode_ucs2(octets: &[u8]) -> String {
    let units = octets
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or('\u{FFFD}'))
        .collect()
}

pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// The character set a data_coding names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// GSM 03.38 default alphabet, one septet per octet as SMPP carries it.
    Gsm7,
    /// IA5 (CCITT T.50) / ASCII.
    Ascii,
    Latin1,
    /// ISO-8859-5.
    Cyrillic,
    /// ISO-8859-8.
    Hebrew,
    /// UCS-2, big-endian (surrogate pairs read as UTF-16).
    Ucs2,
    /// JIS X 0208, in the Shift_JIS form SMSCs send it in.
    Jis,
    /// ISO-2022-JP ("music codes").
    Iso2022Jp,
    /// Extended Kanji JIS X 0212, in its EUC-JP form.
    ExtendedKanji,
    /// KS C 5601, in its EUC-KR form.
    Korean,
    /// No text form: 8-bit data, compressed text, pictograms.
    Binary,
}

/// What a data_coding means. 0x00–0x0F as SMPP 3.4 §5.2.19 lists them; above, the GSM 03.38
/// groups: general data coding (0x10–0x3F) and automatic deletion (0x40–0x7F) with bit 5 for
/// compressed and bits 3–2 for the alphabet (the class bits change nothing here), message
/// waiting indication (0xC0–0xDF GSM 7-bit, 0xE0–0xEF UCS-2), message class (0xF0–0xFF, bit 2
/// 8-bit data, else GSM 7-bit). Reserved values are read as the GSM 7-bit alphabet, as TS
/// 23.038 §4 tells a handset to: a text a phone would show is a text opt-out applies to.
pub fn coding(data_coding: u8) -> Coding {
    match data_coding {
        0x00 => Coding::Gsm7,
        0x01 => Coding::Ascii,
        0x02 | 0x04 => Coding::Binary,
        0x03 => Coding::Latin1,
        0x05 => Coding::Jis,
        0x06 => Coding::Cyrillic,
        0x07 => Coding::Hebrew,
        0x08 => Coding::Ucs2,
        0x09 => Coding::Binary, // pictograms
        0x0A => Coding::Iso2022Jp,
        0x0D => Coding::ExtendedKanji,
        0x0E => Coding::Korean,
        0x0B | 0x0C | 0x0F => Coding::Gsm7, // reserved
        0x10..=0x7F if data_coding & 0x20 != 0 => Coding::Binary, // compressed (TS 23.042)
        0x10..=0x7F => match (data_coding >> 2) & 0x03 {
            0x01 => Coding::Binary,
            0x02 => Coding::Ucs2,
            _ => Coding::Gsm7, // 00, and 11 (reserved)
        },
        0x80..=0xBF => Coding::Gsm7, // reserved groups
        0xC0..=0xDF => Coding::Gsm7,
        0xE0..=0xEF => Coding::Ucs2,
        0xF0..=0xFF if data_coding & 0x04 != 0 => Coding::Binary,
        0xF0..=0xFF => Coding::Gsm7,
    }
}

/// The text of message octets by data_coding; `None` for codings with no text form.
pub fn text_of(data_coding: u8, octets: &[u8]) -> Option<String> {
    let with = |enc: &'static encoding_rs::Encoding| {
        enc.decode_without_bom_handling(octets).0.into_owned()
    };
    Some(match coding(data_coding) {
        Coding::Gsm7 => decode_gsm(octets),
        Coding::Ascii => octets
            .iter()
            .map(|&b| if b < 0x80 { char::from(b) } else { '\u{FFFD}' })
            .collect(),
        Coding::Latin1 => decode_latin1(octets),
        Coding::Cyrillic => with(encoding_rs::ISO_8859_5),
        Coding::Hebrew => with(encoding_rs::ISO_8859_8),
        Coding::Ucs2 => decode_ucs2(octets),
        Coding::Jis => with(encoding_rs::SHIFT_JIS),
        Coding::Iso2022Jp => with(encoding_rs::ISO_2022_JP),
        Coding::ExtendedKanji => with(encoding_rs::EUC_JP),
        Coding::Korean => with(encoding_rs::EUC_KR),
        Coding::Binary => return None,
    })
}

/// Message octets for logs: their text, or hex for codings with no text form.
pub fn decode(data_coding: u8, octets: &[u8]) -> String {
    text_of(data_coding, octets).unwrap_or_else(|| hex(octets))
}

/// Octets as lowercase hex, for codings with no text form.
pub fn hex(octets: &[u8]) -> String {
    octets.iter().map(|b| format!("{b:02x}")).collect()
}

/// Concatenation info: reference, total parts, this part (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    pub reference: u16,
    pub total: u8,
    pub seq: u8,
}

/// Splits a user data header off `octets` (esm_class UDHI set): the concatenation info
/// (IE 0x00, 8-bit ref, or 0x08, 16-bit ref) if present, and the text octets after the UDH.
/// `None` when the header is malformed.
pub fn split_udh(octets: &[u8]) -> Option<(Option<Concat>, &[u8])> {
    let udhl = *octets.first()? as usize;
    let header = octets.get(1..1 + udhl)?;
    let rest = &octets[1 + udhl..];
    let mut concat = None;
    let mut i = 0;
    while i < header.len() {
        let iei = header[i];
        let len = *header.get(i + 1)? as usize;
        let data = header.get(i + 2..i + 2 + len)?;
        match (iei, data) {
            (0x00, [r, t, s]) => {
                concat = Some(Concat {
                    reference: u16::from(*r),
                    total: *t,
                    seq: *s,
                })
            }
            (0x08, [r1, r2, t, s]) => {
                concat = Some(Concat {
                    reference: u16::from_be_bytes([*r1, *r2]),
                    total: *t,
                    seq: *s,
                })
            }
            _ => {}
        }
        i += 2 + len;
    }
    Some((concat, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_round_trips_with_extension_table() {
        let text = "Hello @£$ ÄÖÑÜ {€} [~] \\ | ^ Δ";
        let enc = encode_gsm(text).unwrap();
        assert_eq!(decode_gsm(&enc), text);
        assert_eq!(encode_gsm("€").unwrap(), vec![0x1B, 0x65]);
        assert!(encode_gsm("日本").is_none());
    }

    #[test]
    fn ucs2_and_latin1() {
        let t = "Привет 👋 日本";
        assert_eq!(decode_ucs2(&encode_ucs2(t)), t);
        assert_eq!(decode_latin1(b"caf\xe9"), "café");
        assert_eq!(decode(0x04, &[0xde, 0xad]), "dead");
    }

    #[test]
    fn every_coding_of_smpp_and_the_gsm_groups() {
        let gsm = encode_gsm("STOP").unwrap();
        let ucs2 = encode_ucs2("STOP");
        // SMPP 3.4 §5.2.19.
        assert_eq!(text_of(0x00, &gsm).as_deref(), Some("STOP"));
        assert_eq!(text_of(0x01, b"STOP").as_deref(), Some("STOP"));
        assert_eq!(text_of(0x01, b"a\xff").as_deref(), Some("a\u{FFFD}"));
        assert_eq!(text_of(0x02, b"STOP"), None);
        assert_eq!(text_of(0x03, b"caf\xe9").as_deref(), Some("café"));
        assert_eq!(text_of(0x04, b"STOP"), None);
        assert_eq!(text_of(0x05, b"STOP \x93\xfa").as_deref(), Some("STOP 日"));
        assert_eq!(text_of(0x06, b"\xbf\xe0\xd8").as_deref(), Some("При"));
        assert_eq!(text_of(0x07, b"\xf9\xec\xe5\xed").as_deref(), Some("שלום"));
        assert_eq!(text_of(0x08, &ucs2).as_deref(), Some("STOP"));
        assert_eq!(text_of(0x09, b"STOP"), None);
        assert_eq!(
            text_of(0x0A, b"\x1b$BF|\x1b(B STOP").as_deref(),
            Some("日 STOP")
        );
        assert_eq!(text_of(0x0D, b"\xc6\xfc STOP").as_deref(), Some("日 STOP"));
        assert_eq!(text_of(0x0E, b"\xc7\xd1 STOP").as_deref(), Some("한 STOP"));
        // General data coding group: class bits (0x10–0x13 GSM, 0x18–0x1B UCS-2), 8-bit
        // data (0x14–0x17), compressed (bit 5).
        for dc in 0x10..=0x13 {
            assert_eq!(text_of(dc, &gsm).as_deref(), Some("STOP"), "{dc:#x}");
            assert_eq!(text_of(dc + 8, &ucs2).as_deref(), Some("STOP"), "{dc:#x}");
            assert_eq!(text_of(dc + 4, &gsm), None, "{dc:#x}");
            assert_eq!(text_of(dc | 0x20, &gsm), None, "{dc:#x}");
        }
        // Automatic deletion group: the same layout.
        assert_eq!(text_of(0x41, &gsm).as_deref(), Some("STOP"));
        assert_eq!(text_of(0x48, &ucs2).as_deref(), Some("STOP"));
        assert_eq!(text_of(0x44, &gsm), None);
        // Message waiting indication groups.
        assert_eq!(text_of(0xC8, &gsm).as_deref(), Some("STOP"));
        assert_eq!(text_of(0xD0, &gsm).as_deref(), Some("STOP"));
        assert_eq!(text_of(0xE8, &ucs2).as_deref(), Some("STOP"));
        // Message class group: bit 2 selects 8-bit data, else GSM 7-bit.
        for class in 0..4 {
            assert_eq!(text_of(0xF0 | class, &gsm).as_deref(), Some("STOP"));
            assert_eq!(text_of(0xF4 | class, &gsm), None);
        }
        // Reserved values: the GSM 7-bit alphabet, as a handset reads them.
        for dc in [0x0B, 0x0C, 0x0F, 0x1C, 0x80, 0xBF] {
            assert_eq!(text_of(dc, &gsm).as_deref(), Some("STOP"), "{dc:#x}");
        }
        // No text form: hex in the log.
        assert_eq!(decode(0xF5, &[0xca, 0xfe]), "cafe");
        assert_eq!(decode(0x19, &ucs2), "STOP");
    }

    #[test]
    fn udh_8_and_16_bit() {
        let m = [0x05, 0x00, 0x03, 0x2A, 0x02, 0x01, b'h', b'i'];
        let (c, rest) = split_udh(&m).unwrap();
        assert_eq!(
            c,
            Some(Concat {
                reference: 0x2A,
                total: 2,
                seq: 1
            })
        );
        assert_eq!(rest, b"hi");
        let m = [0x06, 0x08, 0x04, 0x12, 0x34, 0x03, 0x02, b'x'];
        assert_eq!(
            split_udh(&m).unwrap().0,
            Some(Concat {
                reference: 0x1234,
                total: 3,
                seq: 2
            })
        );
        assert!(
            split_udh(&[0x05, 0x00, 0x03]).is_none(),
            "header longer than the message"
        );
        assert!(
            split_udh(&[0x02, 0x00, 0x09]).is_none(),
            "IE longer than the header"
        );
        assert!(split_udh(&[]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(dc in proptest::num::u8::ANY, b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode(dc, &b);
            let _ = split_udh(&b);
        }
    }
}
