//! Text codings for the interaction log and callbacks: GSM 03.38 default alphabet with its
//! extension table (data_coding 0, one septet per octet as SMPP carries it), Latin-1 (3) and
//! UCS-2 (8). Other codings are shown as hex. Also the user data header (UDH) of
//! concatenated messages. Forwarding never re-encodes: the octets go out as they came in.

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

/// Decodes message octets by data_coding for logs; unknown codings come back as hex.
pub fn decode(data_coding: u8, octets: &[u8]) -> String {
    match data_coding {
        0x00 | 0x01 => decode_gsm(octets),
        0x03 => decode_latin1(octets),
        0x08 => decode_ucs2(octets),
        _ => octets.iter().map(|b| format!("{b:02x}")).collect(),
    }
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
