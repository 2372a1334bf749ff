//! E.164 numbers: parsing and normalisation at the edge, the calling-code table that gives a
//! number its country (`iso_country`), and the NANP area code used by geo-matching.
//! A number is kept as its digits in a `u64` (at most 15 digits; country codes never start
//! with 0, so the value round-trips), which makes route keys two integers.

use std::fmt;

/// A normalised E.164 number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(u64);

/// Why a string is not a usable phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum E164Error {
    #[error("empty phone number")]
    Empty,
    #[error("phone number has a character that is not a digit or separator")]
    BadCharacter,
    #[error("phone number must have 7 to 15 digits")]
    BadLength,
    #[error("phone number has no known country calling code")]
    UnknownCountryCode,
}

impl E164 {
    /// Parses `+digits`, `00digits`, bare international digits or a `tel:` URI user part.
    /// Visual separators (space, `-`, `.`, `(`, `)`) are ignored.
    pub fn parse(text: &str) -> Result<E164, E164Error> {
        let mut s = text.trim();
        if let Some(rest) = s.strip_prefix("tel:") {
            s = rest.split(';').next().unwrap_or("");
        }
        if let Some(rest) = s.strip_prefix('+') {
            s = rest;
        } else if let Some(rest) = s.strip_prefix("00") {
            s = rest;
        }
        if s.is_empty() {
            return Err(E164Error::Empty);
        }
        let mut value: u64 = 0;
        let mut digits = 0u32;
        for c in s.bytes() {
            match c {
                b'0'..=b'9' => {
                    if digits == 0 && c == b'0' {
                        return Err(E164Error::UnknownCountryCode);
                    }
                    digits += 1;
                    if digits > 15 {
                        return Err(E164Error::BadLength);
                    }
                    value = value * 10 + u64::from(c - b'0');
                }
                b' ' | b'-' | b'.' | b'(' | b')' => {}
                _ => return Err(E164Error::BadCharacter),
            }
        }
        if digits < 7 {
            return Err(E164Error::BadLength);
        }
        let number = E164(value);
        if number.country().is_none() {
            return Err(E164Error::UnknownCountryCode);
        }
        Ok(number)
    }

    /// Parses a number in the national format of the country with `calling_code` (as dialled
    /// inside it, SMPP's TON 2): separators ignored, one leading trunk prefix dropped (`0` in
    /// most countries; `1` in NANP and `8` in Russia and Kazakhstan before 10 digits, `06`
    /// in Hungary, none in Italy and San Marino, where a leading 0 belongs to the number),
    /// then the calling code put in front. NANP numbers must then have 10 digits.
    pub fn parse_national(text: &str, calling_code: u16) -> Result<E164, E164Error> {
        let mut digits = String::with_capacity(text.len());
        for c in text.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(E164Error::BadCharacter),
            }
        }
        if digits.is_empty() {
            return Err(E164Error::Empty);
        }
        if digits.len() > 15 {
            return Err(E164Error::BadLength);
        }
        let trunk = match (calling_code, digits.len()) {
            (1, 11) => "1",
            (7, 11) => "8",
            (1 | 7, _) | (39 | 378, _) => "",
            (36, _) => "06",
            _ => "0",
        };
        let national = digits.strip_prefix(trunk).unwrap_or(&digits);
        if calling_code == 1 && national.len() != 10 {
            return Err(E164Error::BadLength);
        }
        E164::parse(&format!("+{calling_code}{national}"))
    }

    /// The calling code of an ISO 3166 alpha-2 country code (upper case), for the countries
    /// the calling-code table knows, those sharing a code included (`CA` → 1, `JE` → 44).
    pub fn calling_code_of(iso: &str) -> Option<u16> {
        CALLING_CODES
            .iter()
            .chain(SHARED_CODES)
            .find(|(_, i)| *i == iso)
            .map(|(c, _)| *c)
    }

    /// Builds a number from its digits value, as stored; checks it like `parse`.
    pub fn from_u64(value: u64) -> Option<E164> {
        let digits = digit_count(value);
        if !(7..=15).contains(&digits) {
            return None;
        }
        let n = E164(value);
        n.country().map(|_| n)
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    fn digits(self) -> ([u8; 15], usize) {
        let mut buf = [0u8; 15];
        let n = digit_count(self.0) as usize;
        let mut v = self.0;
        for i in (0..n).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        (buf, n)
    }

    /// The country calling code (1 to 3 digits) and the ISO country it maps to.
    pub fn country(self) -> Option<(u16, &'static str)> {
        let (d, n) = self.digits();
        let prefix = |len: usize| -> u16 {
            d[..len.min(n)]
                .iter()
                .fold(0u16, |acc, c| acc * 10 + u16::from(c - b'0'))
        };
        for len in 1..=3 {
            let code = prefix(len);
            if let Ok(i) = CALLING_CODES.binary_search_by_key(&code, |(c, _)| *c) {
                let iso = if code == 1 {
                    nanp_country(self.nanp_area_code().unwrap_or(0))
                } else {
                    CALLING_CODES[i].1
                };
                return Some((code, iso));
            }
        }
        None
    }

    pub fn calling_code(self) -> u16 {
        self.country().map(|(c, _)| c).unwrap_or(0)
    }

    pub fn iso_country(self) -> &'static str {
        self.country().map(|(_, iso)| iso).unwrap_or("ZZ")
    }

    /// The NANP area code (NPA) of a `+1` number with 11 digits.
    pub fn nanp_area_code(self) -> Option<u16> {
        if (10_000_000_000..20_000_000_000).contains(&self.0) {
            Some(((self.0 / 10_000_000) % 1000) as u16)
        } else {
            None
        }
    }

    /// The last four digits, for logs: numbers are personal data.
    pub fn masked(self) -> Masked {
        Masked(self)
    }
}

fn digit_count(mut v: u64) -> u32 {
    let mut n = 0;
    while v > 0 {
        n += 1;
        v /= 10;
    }
    n
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, n) = self.digits();
        f.write_str("+")?;
        f.write_str(std::str::from_utf8(&d[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.masked(), f)
    }
}

/// A number shown with all but its last four digits hidden: `+*******4567`.
pub struct Masked(E164);

impl fmt::Display for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, n) = self.0.digits();
        f.write_str("+")?;
        for _ in 0..n.saturating_sub(4) {
            f.write_str("*")?;
        }
        f.write_str(std::str::from_utf8(&d[n.saturating_sub(4)..n]).map_err(|_| fmt::Error)?)
    }
}

/// NANP area codes outside the United States; every other `+1` number is `US`.
fn nanp_country(npa: u16) -> &'static str {
    const CA: &[u16] = &[
        204, 226, 236, 249, 250, 257, 263, 289, 306, 343, 354, 365, 367, 368, 382, 387, 403, 416,
        418, 428, 431, 437, 438, 450, 460, 468, 474, 506, 514, 519, 548, 579, 581, 584, 587, 600,
        604, 613, 639, 647, 672, 683, 705, 709, 742, 753, 778, 780, 782, 807, 819, 825, 867, 873,
        879, 902, 905, 942,
    ];
    const OTHER: &[(u16, &str)] = &[
        (242, "BS"),
        (246, "BB"),
        (264, "AI"),
        (268, "AG"),
        (284, "VG"),
        (340, "VI"),
        (345, "KY"),
        (441, "BM"),
        (473, "GD"),
        (649, "TC"),
        (658, "JM"),
        (664, "MS"),
        (670, "MP"),
        (671, "GU"),
        (684, "AS"),
        (721, "SX"),
        (758, "LC"),
        (767, "DM"),
        (784, "VC"),
        (787, "PR"),
        (809, "DO"),
        (829, "DO"),
        (849, "DO"),
        (868, "TT"),
        (869, "KN"),
        (876, "JM"),
        (939, "PR"),
    ];
    if CA.binary_search(&npa).is_ok() {
        return "CA";
    }
    OTHER
        .iter()
        .find(|(code, _)| *code == npa)
        .map(|(_, iso)| *iso)
        .unwrap_or("US")
}

/// Countries that share a calling code with the one the table below names for it.
static SHARED_CODES: &[(u16, &str)] = &[
    (1, "CA"),
    (1, "AG"),
    (1, "AI"),
    (1, "AS"),
    (1, "BB"),
    (1, "BM"),
    (1, "BS"),
    (1, "DM"),
    (1, "DO"),
    (1, "GD"),
    (1, "GU"),
    (1, "JM"),
    (1, "KN"),
    (1, "KY"),
    (1, "LC"),
    (1, "MP"),
    (1, "MS"),
    (1, "PR"),
    (1, "SX"),
    (1, "TC"),
    (1, "TT"),
    (1, "VC"),
    (1, "VG"),
    (1, "VI"),
    (7, "KZ"),
    (39, "VA"),
    (44, "GG"),
    (44, "IM"),
    (44, "JE"),
    (47, "SJ"),
    (61, "CC"),
    (61, "CX"),
    (212, "EH"),
    (262, "YT"),
    (358, "AX"),
    (590, "BL"),
    (590, "MF"),
    (599, "BQ"),
];

/// ITU-T E.164 country calling codes, sorted, with the main ISO 3166 country of each.
/// Shared codes map to their largest member (7 → RU, 44 → GB, 47 → NO, 61 → AU, 262 → RE,
/// 590 → GP, 599 → CW); `+1` is refined by area code above.
static CALLING_CODES: &[(u16, &str)] = &[
    (1, "US"),
    (7, "RU"),
    (20, "EG"),
    (27, "ZA"),
    (30, "GR"),
    (31, "NL"),
    (32, "BE"),
    (33, "FR"),
    (34, "ES"),
    (36, "HU"),
    (39, "IT"),
    (40, "RO"),
    (41, "CH"),
    (43, "AT"),
    (44, "GB"),
    (45, "DK"),
    (46, "SE"),
    (47, "NO"),
    (48, "PL"),
    (49, "DE"),
    (51, "PE"),
    (52, "MX"),
    (53, "CU"),
    (54, "AR"),
    (55, "BR"),
    (56, "CL"),
    (57, "CO"),
    (58, "VE"),
    (60, "MY"),
    (61, "AU"),
    (62, "ID"),
    (63, "PH"),
    (64, "NZ"),
    (65, "SG"),
    (66, "TH"),
    (81, "JP"),
    (82, "KR"),
    (84, "VN"),
    (86, "CN"),
    (90, "TR"),
    (91, "IN"),
    (92, "PK"),
    (93, "AF"),
    (94, "LK"),
    (95, "MM"),
    (98, "IR"),
    (211, "SS"),
    (212, "MA"),
    (213, "DZ"),
    (216, "TN"),
    (218, "LY"),
    (220, "GM"),
    (221, "SN"),
    (222, "MR"),
    (223, "ML"),
    (224, "GN"),
    (225, "CI"),
    (226, "BF"),
    (227, "NE"),
    (228, "TG"),
    (229, "BJ"),
    (230, "MU"),
    (231, "LR"),
    (232, "SL"),
    (233, "GH"),
    (234, "NG"),
    (235, "TD"),
    (236, "CF"),
    (237, "CM"),
    (238, "CV"),
    (239, "ST"),
    (240, "GQ"),
    (241, "GA"),
    (242, "CG"),
    (243, "CD"),
    (244, "AO"),
    (245, "GW"),
    (246, "IO"),
    (248, "SC"),
    (249, "SD"),
    (250, "RW"),
    (251, "ET"),
    (252, "SO"),
    (253, "DJ"),
    (254, "KE"),
    (255, "TZ"),
    (256, "UG"),
    (257, "BI"),
    (258, "MZ"),
    (260, "ZM"),
    (261, "MG"),
    (262, "RE"),
    (263, "ZW"),
    (264, "NA"),
    (265, "MW"),
    (266, "LS"),
    (267, "BW"),
    (268, "SZ"),
    (269, "KM"),
    (290, "SH"),
    (291, "ER"),
    (297, "AW"),
    (298, "FO"),
    (299, "GL"),
    (350, "GI"),
    (351, "PT"),
    (352, "LU"),
    (353, "IE"),
    (354, "IS"),
    (355, "AL"),
    (356, "MT"),
    (357, "CY"),
    (358, "FI"),
    (359, "BG"),
    (370, "LT"),
    (371, "LV"),
    (372, "EE"),
    (373, "MD"),
    (374, "AM"),
    (375, "BY"),
    (376, "AD"),
    (377, "MC"),
    (378, "SM"),
    (380, "UA"),
    (381, "RS"),
    (382, "ME"),
    (383, "XK"),
    (385, "HR"),
    (386, "SI"),
    (387, "BA"),
    (389, "MK"),
    (420, "CZ"),
    (421, "SK"),
    (423, "LI"),
    (500, "FK"),
    (501, "BZ"),
    (502, "GT"),
    (503, "SV"),
    (504, "HN"),
    (505, "NI"),
    (506, "CR"),
    (507, "PA"),
    (508, "PM"),
    (509, "HT"),
    (590, "GP"),
    (591, "BO"),
    (592, "GY"),
    (593, "EC"),
    (594, "GF"),
    (595, "PY"),
    (596, "MQ"),
    (597, "SR"),
    (598, "UY"),
    (599, "CW"),
    (670, "TL"),
    (672, "NF"),
    (673, "BN"),
    (674, "NR"),
    (675, "PG"),
    (676, "TO"),
    (677, "SB"),
    (678, "VU"),
    (679, "FJ"),
    (680, "PW"),
    (681, "WF"),
    (682, "CK"),
    (683, "NU"),
    (685, "WS"),
    (686, "KI"),
    (687, "NC"),
    (688, "TV"),
    (689, "PF"),
    (690, "TK"),
    (691, "FM"),
    (692, "MH"),
    (850, "KP"),
    (852, "HK"),
    (853, "MO"),
    (855, "KH"),
    (856, "LA"),
    (880, "BD"),
    (886, "TW"),
    (960, "MV"),
    (961, "LB"),
    (962, "JO"),
    (963, "SY"),
    (964, "IQ"),
    (965, "KW"),
    (966, "SA"),
    (967, "YE"),
    (968, "OM"),
    (970, "PS"),
    (971, "AE"),
    (972, "IL"),
    (973, "BH"),
    (974, "QA"),
    (975, "BT"),
    (976, "MN"),
    (977, "NP"),
    (992, "TJ"),
    (993, "TM"),
    (994, "AZ"),
    (995, "GE"),
    (996, "KG"),
    (998, "UZ"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted() {
        assert!(CALLING_CODES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn normalises_the_forms_carriers_send() {
        let want = E164::parse("+14155550101").unwrap();
        for form in [
            "14155550101",
            "+1 (415) 555-0101",
            "0014155550101",
            "tel:+1-415-555-0101;phone-context=x",
        ] {
            assert_eq!(E164::parse(form), Ok(want), "{form}");
        }
        assert_eq!(want.to_string(), "+14155550101");
        assert_eq!(E164::from_u64(want.as_u64()), Some(want));
    }

    #[test]
    fn countries_and_area_codes() {
        let n = |s| E164::parse(s).unwrap();
        assert_eq!(n("+14155550101").iso_country(), "US");
        assert_eq!(n("+14165550101").iso_country(), "CA");
        assert_eq!(n("+18765550101").iso_country(), "JM");
        assert_eq!(n("+14155550101").nanp_area_code(), Some(415));
        assert_eq!(n("+447700900123").iso_country(), "GB");
        assert_eq!(n("+447700900123").calling_code(), 44);
        assert_eq!(n("+447700900123").nanp_area_code(), None);
        assert_eq!(n("+35312345678").iso_country(), "IE");
        assert_eq!(n("+4915112345678").calling_code(), 49);
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        assert_eq!(E164::parse(""), Err(E164Error::Empty));
        assert_eq!(E164::parse("+"), Err(E164Error::Empty));
        assert_eq!(E164::parse("not-a-number"), Err(E164Error::BadCharacter));
        assert_eq!(E164::parse("+12345"), Err(E164Error::BadLength));
        assert_eq!(E164::parse("+1234567890123456"), Err(E164Error::BadLength));
        assert_eq!(
            E164::parse("+0123456789"),
            Err(E164Error::UnknownCountryCode)
        );
        assert_eq!(
            E164::parse("+8001234567"),
            Err(E164Error::UnknownCountryCode)
        );
    }

    #[test]
    fn national_numbers_through_a_country() {
        let n = |s| E164::parse(s).unwrap();
        let us = E164::calling_code_of("US").unwrap();
        assert_eq!(us, 1);
        assert_eq!(
            E164::parse_national("5551230001", us),
            Ok(n("+15551230001"))
        );
        assert_eq!(
            E164::parse_national("1 (555) 123-0001", us),
            Ok(n("+15551230001"))
        );
        assert_eq!(
            E164::parse_national("555123000", us),
            Err(E164Error::BadLength)
        );
        let gb = E164::calling_code_of("GB").unwrap();
        assert_eq!(
            E164::parse_national("07700 900123", gb),
            Ok(n("+447700900123"))
        );
        assert_eq!(E164::calling_code_of("JE"), Some(44));
        assert_eq!(E164::calling_code_of("CA"), Some(1));
        assert_eq!(
            E164::parse_national("0612345678", 33),
            Ok(n("+33612345678"))
        );
        assert_eq!(
            E164::parse_national("06 30 123 4567", 36),
            Ok(n("+36301234567"))
        );
        assert_eq!(
            E164::parse_national("89161234567", 7),
            Ok(n("+79161234567"))
        );
        // Italy keeps its leading 0 (landlines).
        assert_eq!(
            E164::parse_national("0612345678", 39),
            Ok(n("+390612345678"))
        );
        assert_eq!(E164::parse_national("", 44), Err(E164Error::Empty));
        assert_eq!(
            E164::parse_national("0770x", 44),
            Err(E164Error::BadCharacter)
        );
        assert_eq!(E164::calling_code_of("XX"), None);
        assert_eq!(E164::calling_code_of("us"), None);
    }

    #[test]
    fn masks_all_but_last_four() {
        let n = E164::parse("+14155550101").unwrap();
        assert_eq!(n.masked().to_string(), "+*******0101");
        assert_eq!(format!("{n:?}"), "+*******0101");
    }
}
