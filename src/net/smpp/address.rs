//! Reading a message's addresses with their TON/NPI (SMPP 3.4 §5.2.5, §5.2.6) into E.164
//! numbers, once, at the edge. A peer's `default_country` (its calling code here) reads its
//! national numbers. What maskd writes is always international (TON 1, NPI 1).

use crate::core::E164;
use crate::smpp::pdu::Address;

/// type_of_number values maskd reads.
const TON_UNKNOWN: u8 = 0;
const TON_INTERNATIONAL: u8 = 1;
const TON_NATIONAL: u8 = 2;
/// numbering_plan_indicator values of phone numbers: unknown, ISDN (E.163/E.164).
const NPI_UNKNOWN: u8 = 0;
const NPI_ISDN: u8 = 1;

/// The phone number an address names, or `None` when it cannot be normalised: an NPI other
/// than unknown or ISDN, control characters, alphanumeric (TON 5) and the other TONs that
/// are no full number (network specific, subscriber, abbreviated), a national number (TON 2)
/// from a peer with no default country, or digits that do not make an E.164 number.
/// International (TON 1) is read as it is; national (TON 2) and unknown (TON 0) without a
/// leading `+` go through `default_country` when the peer has one; unknown without one is
/// read as international digits, as most ESMEs mean it.
pub fn read(a: &Address, default_country: Option<u16>) -> Option<E164> {
    if !matches!(a.npi, NPI_UNKNOWN | NPI_ISDN) || a.addr.chars().any(char::is_control) {
        return None;
    }
    let plus = a.addr.trim_start().starts_with('+');
    match (a.ton, default_country) {
        (TON_INTERNATIONAL, _) => E164::parse(&a.addr).ok(),
        (TON_UNKNOWN | TON_NATIONAL, _) if plus => E164::parse(&a.addr).ok(),
        (TON_UNKNOWN | TON_NATIONAL, Some(cc)) => E164::parse_national(&a.addr, cc).ok(),
        (TON_UNKNOWN, None) => E164::parse(&a.addr).ok(),
        _ => None,
    }
}

/// An address as maskd writes it: international digits without `+`, TON 1, NPI 1.
pub fn international(n: E164) -> Address {
    Address {
        ton: TON_INTERNATIONAL,
        npi: NPI_ISDN,
        addr: digits(n),
    }
}

/// The number's digits without `+`.
pub fn digits(n: E164) -> String {
    let s = n.to_string();
    s.trim_start_matches('+').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ton: u8, npi: u8, addr: &str) -> Address {
        Address {
            ton,
            npi,
            addr: addr.into(),
        }
    }

    #[test]
    fn reads_each_type_of_number() {
        let us = Some(1);
        let n = |s| E164::parse(s).ok();
        let want = n("+15551230001");
        // International: as is, with or without a default country.
        assert_eq!(read(&a(1, 1, "15551230001"), None), want);
        assert_eq!(read(&a(1, 1, "+15551230001"), us), want);
        // National: through the default country only.
        assert_eq!(read(&a(2, 1, "5551230001"), us), want);
        assert_eq!(read(&a(2, 1, "5551230001"), None), None);
        assert_eq!(read(&a(2, 1, "+15551230001"), None), want);
        // Unknown: national with a default country, international digits without.
        assert_eq!(read(&a(0, 0, "5551230001"), us), want);
        assert_eq!(read(&a(0, 0, "15551230001"), us), want);
        assert_eq!(read(&a(0, 0, "15551230001"), None), want);
        assert_eq!(read(&a(0, 1, "+447700900123"), us), n("+447700900123"));
        assert_eq!(read(&a(2, 1, "07700900123"), Some(44)), n("+447700900123"));
        // Not a phone number.
        assert_eq!(read(&a(5, 0, "Shop"), us), None);
        for ton in [3, 4, 6, 7] {
            assert_eq!(read(&a(ton, 1, "15551230001"), us), None, "TON {ton}");
        }
        assert_eq!(read(&a(1, 9, "15551230001"), us), None, "private plan");
        assert_eq!(read(&a(1, 1, "1555123\u{1f}0001"), us), None);
        assert_eq!(read(&a(1, 1, ""), us), None);
        assert_eq!(read(&a(1, 1, "+1x"), us), None);
    }

    #[test]
    fn writes_international() {
        let n = E164::parse("+447700900123").unwrap();
        assert_eq!(international(n), a(1, 1, "447700900123"));
        assert_eq!(read(&international(n), None), Some(n));
    }
}
