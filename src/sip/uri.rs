//! SIP and tel URIs (RFC 3261 §19.1, RFC 3966) and the name-addr / addr-spec forms of From,
//! To, Contact and P-Asserted-Identity. Borrowed from the message text; no allocation.

/// A URI's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The user part (sip/sips) or the number (tel), still %-escaped.
    pub user: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    /// `;params` and `?headers` after the host, raw.
    pub rest: &'a str,
}

/// A byte-class table: `set[c]` for each byte `c` that is alphanumeric or in `extra`.
pub(crate) const fn byte_class(extra: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut c = 0;
    while c < 256 {
        set[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        set[extra[i] as usize] = true;
        i += 1;
    }
    set
}

/// One lookup per byte (the voice plane checks every URI of every message).
const URI_CHARS: [bool; 256] = byte_class(b"-_.!~*'()%;/?:@&=+$,#[]");
pub(crate) const TOKEN_CHARS: [bool; 256] = byte_class(b"-.!%*_+`'~");

fn is_unreserved_uri_char(c: u8) -> bool {
    URI_CHARS[c as usize]
}

impl<'a> Uri<'a> {
    /// Parses a URI with no surrounding whitespace or angle brackets.
    pub fn parse(text: &'a str) -> Option<Uri<'a>> {
        if text.is_empty() || !text.bytes().all(is_unreserved_uri_char) {
            return None;
        }
        let (scheme_text, rest) = text.split_once(':')?;
        let scheme = if scheme_text.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_text.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_text.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            let ok = scheme_text
                .as_bytes()
                .first()
                .is_some_and(u8::is_ascii_alphabetic)
                && scheme_text
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c));
            return ok.then_some(Uri {
                scheme: Scheme::Other,
                user: None,
                host: "",
                port: None,
                rest,
            });
        };
        if scheme == Scheme::Tel {
            let end = rest.find(';').unwrap_or(rest.len());
            let number = &rest[..end];
            if number.is_empty() {
                return None;
            }
            return Some(Uri {
                scheme,
                user: Some(number),
                host: "",
                port: None,
                rest: &rest[end..],
            });
        }
        // user[:password]@hostport;params?headers
        let (user, hostpart) = match rest.rfind('@') {
            Some(at) => {
                let u = &rest[..at];
                let u = u.split(':').next().unwrap_or(u);
                if u.is_empty() {
                    return None;
                }
                (Some(u), &rest[at + 1..])
            }
            None => (None, rest),
        };
        let end = hostpart.find([';', '?']).unwrap_or(hostpart.len());
        let (hostport, tail) = hostpart.split_at(end);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let close = v6.find(']')?;
            let after = &v6[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (&hostport[..close + 2], port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
                None => (hostport, None),
            }
        };
        let host_ok = !host.is_empty()
            && (host.starts_with('[')
                || host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.'));
        if !host_ok {
            return None;
        }
        Some(Uri {
            scheme,
            user,
            host,
            port,
            rest: tail,
        })
    }
}

/// `"Display" <uri>;params`, `Display <uri>;params` or `uri;params` (addr-spec, where the
/// params belong to the header, not the URI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<&'a str>,
    pub uri: Uri<'a>,
    /// Header parameters (`;tag=…`), raw, without the leading `;`.
    pub params: &'a str,
}

fn is_token(c: u8) -> bool {
    TOKEN_CHARS[c as usize]
}

impl<'a> NameAddr<'a> {
    pub fn parse(value: &'a str) -> Option<NameAddr<'a>> {
        let v = value.trim();
        let (display, uri_text, after) = if let Some(rest) = v.strip_prefix('"') {
            // quoted-string display name; backslash escapes a character.
            let b = rest.as_bytes();
            let mut i = 0;
            let close = loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\\') => i += 2,
                    Some(b'"') => break i,
                    Some(_) => i += 1,
                }
            };
            let display = &rest[..close];
            let rest = rest[close + 1..].trim_start();
            let inner = rest.strip_prefix('<')?;
            let gt = inner.find('>')?;
            (Some(display), &inner[..gt], &inner[gt + 1..])
        } else if let Some(lt) = v.find('<') {
            let display = v[..lt].trim();
            if !display
                .split_ascii_whitespace()
                .all(|w| w.bytes().all(is_token))
            {
                return None;
            }
            let inner = &v[lt + 1..];
            let gt = inner.find('>')?;
            (
                if display.is_empty() {
                    None
                } else {
                    Some(display)
                },
                &inner[..gt],
                &inner[gt + 1..],
            )
        } else {
            // addr-spec: no display name; params after the first ';' are the header's. An
            // addr-spec may not carry URI headers (`?`), which need the <> form.
            let (u, p) = match v.find(';') {
                Some(i) => (v[..i].trim_end(), &v[i..]),
                None => (v, ""),
            };
            if u.contains([' ', '\t', '<', '>', '"', ',', '?']) {
                return None;
            }
            (None, u, p)
        };
        let uri = Uri::parse(uri_text)?;
        let after = after.trim();
        let params = match after.strip_prefix(';') {
            Some(p) => p.trim(),
            None if after.is_empty() => "",
            None => return None,
        };
        if !params.is_empty() && !valid_params(params) {
            return None;
        }
        Some(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// A header parameter's value (`tag`, …), if present.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        param(self.params, name)
    }
}

/// `host` as it goes into a SIP URI or Via: an IPv6 literal in brackets (RFC 3261 §25.1,
/// `IPv6reference`), anything else as it is.
pub fn uri_host(host: &str) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => host.to_string(),
    }
}

/// `name[=value]` items separated by `;` (LWS allowed around `;` and `=`): none empty.
pub fn valid_params(params: &str) -> bool {
    params.split(';').all(|p| {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        !k.is_empty()
            && k.bytes().all(is_token)
            && v.is_none_or(|v| {
                !v.is_empty()
                    && (v.starts_with('"') || v.bytes().all(|c| is_token(c) || b":[]".contains(&c)))
            })
    })
}

/// The value of `name` in a `;`-separated parameter list.
pub fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ipv6_host_is_bracketed_in_uris() {
        assert_eq!(super::uri_host("::1"), "[::1]");
        assert_eq!(super::uri_host("2001:db8::10"), "[2001:db8::10]");
        assert_eq!(super::uri_host("[::1]"), "[::1]");
        assert_eq!(super::uri_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(super::uri_host("sbc.example.net"), "sbc.example.net");
    }

    use super::*;

    #[test]
    fn uris() {
        let u = Uri::parse("sip:+14155550101@127.0.0.1:5060;user=phone").unwrap();
        assert_eq!(
            (u.scheme, u.user, u.host, u.port, u.rest),
            (
                Scheme::Sip,
                Some("+14155550101"),
                "127.0.0.1",
                Some(5060),
                ";user=phone"
            )
        );
        let u = Uri::parse("tel:+1-415-555-0101;phone-context=x").unwrap();
        assert_eq!((u.scheme, u.user), (Scheme::Tel, Some("+1-415-555-0101")));
        let u = Uri::parse("sip:alice:secret@[2001:db8::1]:5070").unwrap();
        assert_eq!(
            (u.user, u.host, u.port),
            (Some("alice"), "[2001:db8::1]", Some(5070))
        );
        assert_eq!(
            Uri::parse("http://example.com").unwrap().scheme,
            Scheme::Other
        );
        assert!(Uri::parse("sip:user@host with space").is_none());
        assert!(Uri::parse("sip:@host").is_none());
        assert!(Uri::parse("sip:host:99999").is_none());
        assert!(Uri::parse("nocolon").is_none());
    }

    #[test]
    fn name_addrs() {
        let n = NameAddr::parse(r#""Alice \"A\"" <sip:alice@a.example>;tag=1928"#).unwrap();
        assert_eq!(
            (n.display, n.uri.user, n.param("tag")),
            (Some(r#"Alice \"A\""#), Some("alice"), Some("1928"))
        );
        let n = NameAddr::parse("Bob <sip:bob@b.example>").unwrap();
        assert_eq!(n.display, Some("Bob"));
        let n = NameAddr::parse("sip:carol@c.example;tag=x").unwrap();
        assert_eq!((n.uri.rest, n.param("tag")), ("", Some("x")));
        assert!(NameAddr::parse(r#""unterminated <sip:a@b>"#).is_none());
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_none());
        assert!(NameAddr::parse("<sip:a@b").is_none());
    }
}
