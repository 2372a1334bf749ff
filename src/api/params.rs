//! Request parameters: form-encoded PascalCase bodies (repeated keys kept in order), typed
//! accessors that answer Twilio-shaped 400s, and the paging query (`PageSize`, `Page`,
//! `PageToken`).

use super::error::ApiError;
use crate::core::engine::Cursor;

/// Whether `text` matches Twilio's pattern for a SID with this prefix:
/// `^<prefix>[0-9a-fA-F]{32}$`.
pub fn is_sid(prefix: &str, text: &str) -> bool {
    text.len() == 34
        && text.starts_with(prefix)
        && prefix.len() == 2
        && text.bytes().skip(2).all(|c| c.is_ascii_hexdigit())
}

/// A decoded `application/x-www-form-urlencoded` body or query string.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(bytes: &[u8]) -> Params {
        Params(form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// The last value of `name` (Twilio's libraries send each scalar once).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    pub fn required(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(ApiError::missing(name)),
        }
    }

    /// A SID parameter: `None` when absent or empty, else it must match Twilio's pattern for
    /// `prefix` (400, `ApiError::invalid_sid`).
    pub fn sid(&self, name: &str, prefix: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) if is_sid(prefix, v) => Ok(Some(v.to_string())),
            Some(_) => Err(ApiError::invalid_sid(name, prefix)),
        }
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| ApiError::invalid(name, "must be a non-negative integer"))
            })
            .transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| {
                if v.eq_ignore_ascii_case("true") {
                    Ok(true)
                } else if v.eq_ignore_ascii_case("false") {
                    Ok(false)
                } else {
                    Err(ApiError::invalid(name, "must be true or false"))
                }
            })
            .transpose()
    }

    pub fn enumerated<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        allowed: &[&str],
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                parse(v).ok_or_else(|| {
                    ApiError::invalid(name, format!("must be one of {}", allowed.join(", ")))
                })
            })
            .transpose()
    }

    /// An ISO 8601 date-time from 1970 to 9999 (UTC): the answer formats it as Twilio's
    /// four-digit-year `date-time`, which an offset could otherwise push out of range.
    pub fn date(&self, name: &str) -> Result<Option<i64>, ApiError> {
        /// 9999-12-31T23:59:59Z.
        const LAST: i64 = 253_402_300_799;
        self.get(name)
            .map(|v| {
                crate::core::datetime::parse(v)
                    .filter(|t| (0..=LAST).contains(t))
                    .ok_or_else(|| {
                        ApiError::invalid(name, "must be an ISO 8601 date-time from 1970 to 9999")
                    })
            })
            .transpose()
    }

    /// A callback URL: empty clears it; otherwise http(s) and not maskd's own API.
    pub fn url(&self, name: &str, own_base: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("") => Ok(Some(String::new())),
            Some(v) => {
                if !is_http_uri(v) || v.len() > 2048 {
                    return Err(ApiError::invalid(name, "must be an http or https URL"));
                }
                if v.starts_with(own_base) {
                    return Err(ApiError::invalid(name, "must not point at maskd itself"));
                }
                Ok(Some(v.to_string()))
            }
        }
    }
}

/// Whether `v` is an absolute http(s) URI with a host, by RFC 3986's grammar: the answer
/// echoes it where Twilio's schema says `format: uri`, so spaces, non-ASCII, `<>"{}|\^` and
/// stray `%` are refused here rather than stored.
fn is_http_uri(v: &str) -> bool {
    let Some(rest) = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, hp)) if uri_chars(userinfo, b":") => hp,
        Some(_) => return false,
        None => authority,
    };
    let (host_ok, port) = match host_port.strip_prefix('[') {
        // An IP literal: `[v6 address]`, then an optional port.
        Some(literal) => match literal.split_once(']') {
            Some((ip, after)) => (
                !ip.is_empty()
                    && ip
                        .bytes()
                        .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.'),
                after,
            ),
            None => return false,
        },
        None => {
            let at = host_port.find(':').unwrap_or(host_port.len());
            let host = &host_port[..at];
            (!host.is_empty() && uri_chars(host, b""), &host_port[at..])
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()));
    host_ok && port_ok && uri_chars(tail, b":@/?#") && tail.matches('#').count() <= 1
}

/// Every byte is an RFC 3986 unreserved or sub-delim character, one of `extra`, or part of a
/// `%XX` escape.
fn uri_chars(s: &str, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&c) || extra.contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

/// Largest page served, whatever `PageSize` says (Twilio caps at 100).
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 50;

#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub size: usize,
    pub page: u64,
    pub cursor: Cursor,
}

impl Paging {
    pub fn from_query(q: &Params) -> Result<Paging, ApiError> {
        let size = match q.get("PageSize") {
            None => DEFAULT_PAGE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => n.min(MAX_PAGE),
                _ => {
                    return Err(ApiError::invalid(
                        "PageSize",
                        "must be an integer from 1 to 1000",
                    ))
                }
            },
        };
        let page = match q.get("Page") {
            None => 0,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ApiError::invalid("Page", "must be a non-negative integer"))?,
        };
        let cursor = match q.get("PageToken") {
            None | Some("") => Cursor::Start,
            Some(t) => {
                let seq = |s: &str| {
                    s.parse::<u64>().map_err(|_| {
                        ApiError::invalid("PageToken", "is not a token this server issued")
                    })
                };
                if let Some(rest) = t.strip_prefix("PA") {
                    Cursor::After(seq(rest)?)
                } else if let Some(rest) = t.strip_prefix("PB") {
                    Cursor::Before(seq(rest)?)
                } else {
                    return Err(ApiError::invalid(
                        "PageToken",
                        "is not a token this server issued",
                    ));
                }
            }
        };
        Ok(Paging { size, page, cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_pattern_is_twilios() {
        let hex = "0123456789abcdefABCDEF0123456789";
        assert!(is_sid("IS", &format!("IS{hex}")));
        for bad in [
            "null".to_string(),
            "IS123".to_string(),
            format!("is{hex}"),
            format!("PN{hex}"),
            format!("IS{hex}0"),
            format!("IS{}g", &hex[1..]),
            format!("IS{}é", &hex[2..]),
        ] {
            assert!(!is_sid("IS", &bad), "{bad}");
        }
        let p = Params::parse(format!("A=PN{hex}&B=&C=PN1").as_bytes());
        assert_eq!(p.sid("A", "PN").unwrap(), Some(format!("PN{hex}")));
        assert_eq!(p.sid("B", "PN").unwrap(), None, "empty is absent");
        assert_eq!(p.sid("Z", "PN").unwrap(), None);
        assert_eq!(p.sid("C", "PN").unwrap_err().code, 80407);
        assert_eq!(p.sid("C", "IS").unwrap_err().code, 80701);
    }

    #[test]
    fn callback_urls_are_rfc_3986_uris_with_a_host() {
        for good in [
            "http://x",
            "https://hooks.example.com:8443/a/b?x=1&y=%2F#frag",
            "https://user:pw@example.com/",
            "http://[::1]:8080/cb",
            "http://127.0.0.1/a;b,c=(d)!*'~",
        ] {
            assert!(is_http_uri(good), "{good}");
        }
        for bad in [
            "",
            "http://",
            "http://:80/",
            "ftp://x",
            "http://exa mple.com",
            "http://x/a b",
            "http://x/%zz",
            "http://x/%4",
            "http://x/é",
            "http://x/<a>",
            "http://x/{a}|^\"\\",
            "http://x/a#b#c",
            "http://[",
            "http://[::1",
            "http://[zz]/",
            "http://x:8o/",
            "http://a b@x/",
        ] {
            assert!(!is_http_uri(bad), "{bad}");
        }
    }
}
