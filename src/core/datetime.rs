//! UTC date-times as Unix seconds, formatted the way Twilio's API does
//! (`2015-07-30T20:00:00Z`) and parsed from the ISO 8601 forms its clients send
//! (`…Z`, `…+hh:mm`, fractional seconds, or a bare date). Pure arithmetic; never reads
//! the clock.

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Formats Unix seconds the way Twilio's 2010-04-01 API does (RFC 2822, always GMT):
/// `Fri, 30 Nov 2026 23:00:00 +0000`.
pub fn format_rfc2822(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m as usize).saturating_sub(1).min(11)],
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Parses `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM:SS[.fff](Z|±hh:mm|±hhmm)`; a space may stand
/// for the `T`. Returns Unix seconds, or `None` for anything else.
pub fn parse(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter().try_fold(0u32, |acc, c| {
            acc.checked_mul(10)?.checked_add(u32::from(c - b'0'))
        })
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = i64::from(num(&b[0..4])?);
    let m = num(&b[5..7])?;
    let d = num(&b[8..10])?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut t = days_from_civil(y, m, d) * 86_400;
    if b.len() == 10 {
        return Some(t);
    }
    if (b[10] != b'T' && b[10] != b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hh = num(&b[11..13])?;
    let mm = num(&b[14..16])?;
    let ss = num(&b[17..19])?;
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    t += i64::from(hh * 3600 + mm * 60 + ss);
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    match rest {
        b"Z" | b"z" => Some(t),
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (h, mi) = match tz {
                [a, b2, b':', c, d2] => (num(&[*a, *b2])?, num(&[*c, *d2])?),
                [a, b2, c, d2] => (num(&[*a, *b2])?, num(&[*c, *d2])?),
                [a, b2] => (num(&[*a, *b2])?, 0),
                _ => return None,
            };
            if h > 23 || mi > 59 {
                return None;
            }
            let off = i64::from(h * 3600 + mi * 60);
            Some(if *sign == b'+' { t - off } else { t + off })
        }
        _ => None,
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(format(1_438_286_400), "2015-07-30T20:00:00Z");
        assert_eq!(format(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn formats_rfc_2822_like_twilio_2010() {
        // The example in Twilio's OAI for the Recording resource.
        assert_eq!(
            format_rfc2822(1_476_482_194),
            "Fri, 14 Oct 2016 21:56:34 +0000"
        );
        assert_eq!(format_rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            format_rfc2822(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }

    #[test]
    fn parses_client_forms() {
        assert_eq!(parse("2015-07-30T20:00:00Z"), Some(1_438_286_400));
        assert_eq!(parse("2015-07-30T22:00:00+02:00"), Some(1_438_286_400));
        assert_eq!(parse("2015-07-30T15:00:00-0500"), Some(1_438_286_400));
        assert_eq!(parse("2015-07-30T20:00:00.123Z"), Some(1_438_286_400));
        assert_eq!(parse("2016-07-31"), Some(1_469_923_200));
        for bad in [
            "",
            "2015-13-01",
            "2015-02-29",
            "2015-07-30T25:00:00Z",
            "2015-07-30T20:00:00",
            "yesterday",
            "2015-07-30T20:00:00Zjunk",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn round_trips(t in -62_135_596_800i64..253_402_300_799) {
            proptest::prop_assert_eq!(parse(&format(t)), Some(t));
        }
    }
}
