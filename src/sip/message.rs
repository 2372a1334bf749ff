//! SIP messages (RFC 3261 §7, §25): a sans-IO parser that borrows from the input, and a
//! writer. `parse` returns a message and the bytes it used, "need more bytes" (stream
//! transports), or an error carrying the status and reason phrase to answer with. Folded
//! header lines are unfolded, compact header names are understood, Content-Length frames the
//! body and is checked against what arrived. Nothing here panics on input.

use std::borrow::Cow;

pub use super::writer::{concat, decimal, Outgoing};

/// Header names maskd looks at, including their compact forms; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Supported,
    Require,
    ProxyRequire,
    Allow,
    Accept,
    SessionExpires,
    MinSe,
    Expires,
    PAssertedIdentity,
    Other,
}

impl HeaderName {
    pub fn from_name(name: &str) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name.as_bytes()[0].to_ascii_lowercase() {
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'i' => CallId,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'k' => Supported,
                b'x' => SessionExpires,
                _ => Other,
            };
        }
        // Candidates by length first: one comparison for almost every header.
        let candidates: &[(&str, HeaderName)] = match name.len() {
            2 => &[("to", To)],
            3 => &[("via", Via)],
            4 => &[("from", From), ("cseq", CSeq)],
            5 => &[("route", Route), ("allow", Allow)],
            6 => &[("accept", Accept), ("min-se", MinSe)],
            7 => &[
                ("call-id", CallId),
                ("contact", Contact),
                ("require", Require),
                ("expires", Expires),
            ],
            9 => &[("supported", Supported)],
            12 => &[
                ("max-forwards", MaxForwards),
                ("record-route", RecordRoute),
                ("content-type", ContentType),
            ],
            13 => &[("proxy-require", ProxyRequire)],
            14 => &[("content-length", ContentLength)],
            15 => &[("session-expires", SessionExpires)],
            19 => &[("p-asserted-identity", PAssertedIdentity)],
            _ => &[],
        };
        candidates
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Other, |(_, h)| *h)
    }

    /// Headers that may appear only once (RFC 3261 §7.3.1: not comma-list headers).
    fn single(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            From | To | CallId | CSeq | MaxForwards | ContentLength | ContentType
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: HeaderName,
    pub raw_name: &'a str,
    pub value: Cow<'a, str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { code: u16, reason: &'a str },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub start: StartLine<'a>,
    pub headers: Vec<Header<'a>>,
    pub body: &'a [u8],
    /// The whole message as received (leading blank lines excluded).
    pub raw: &'a [u8],
}

/// Why bytes are not a usable SIP message: the status and reason phrase to answer with
/// (when the message is a request and can be answered at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct ParseError {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> ParseError {
    ParseError {
        status: 400,
        reason,
    }
}

/// How the bytes arrived: a datagram is one whole message; a stream needs framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Datagram,
    Stream,
}

/// Largest message accepted (header block plus body).
pub const MAX_MESSAGE: usize = 65_535;
const MAX_HEADERS: usize = 256;

fn is_token(c: u8) -> bool {
    super::uri::TOKEN_CHARS[c as usize]
}

/// Parses one message from the front of `buf`. `Ok(None)`: a stream needs more bytes.
pub fn parse(buf: &[u8], transport: Transport) -> Result<Option<(Message<'_>, usize)>, ParseError> {
    // Keep-alive CRLFs between messages on a stream are skipped by the caller; here leading
    // blank lines are tolerated (RFC 3261 §7.5).
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let data = &buf[start..];
    let Some(head_end) = find(data, b"\r\n\r\n") else {
        if data.len() > MAX_MESSAGE || transport == Transport::Datagram {
            return Err(bad("Incomplete Header Block"));
        }
        return Ok(None);
    };
    let head =
        std::str::from_utf8(&data[..head_end]).map_err(|_| bad("Header Block Is Not UTF-8"))?;
    let mut lines = crlf_lines(head);
    let first = lines.next().unwrap_or("");
    let start_line = parse_start_line(first)?;
    let mut headers: Vec<Header<'_>> = Vec::with_capacity(24);
    // The header being read: its name, its value as a slice of the input, and an owned
    // copy only once a folded continuation line forces one.
    let mut pending: Option<(&str, &str, Option<String>)> = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // A folded continuation line (LWS): joins the previous header with one space.
            let Some((_, value, folded)) = pending.as_mut() else {
                return Err(bad("Continuation Line Without A Header"));
            };
            let owned = folded.get_or_insert_with(|| value.to_string());
            owned.push(' ');
            owned.push_str(line.trim());
            continue;
        }
        if let Some(p) = pending.take() {
            push_header(&mut headers, p)?;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(bad("Header Line Without A Colon"))?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(bad("Invalid Header Name"));
        }
        pending = Some((name, value.trim(), None));
        if headers.len() >= MAX_HEADERS {
            return Err(bad("Too Many Header Fields"));
        }
    }
    if let Some(p) = pending.take() {
        push_header(&mut headers, p)?;
    }
    let body_start = head_end + 4;
    let available = data.len() - body_start;
    let mut lengths = headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength);
    let declared = match (lengths.next(), lengths.next()) {
        (Some(_), Some(_)) => return Err(bad("Multiple Content-Length Values")),
        (Some(h), None) => Some(parse_u32(&h.value).ok_or(bad("Invalid Content-Length"))? as usize),
        (None, _) => None,
    };
    let body_len = match (declared, transport) {
        (Some(n), _) if n > MAX_MESSAGE => return Err(bad("Content-Length Too Large")),
        (Some(n), Transport::Datagram) if n > available => {
            return Err(bad("Content-Length Larger Than The Body"))
        }
        (Some(n), _) if body_start + n > MAX_MESSAGE => return Err(bad("Message Too Large")),
        (Some(n), Transport::Stream) if n > available => return Ok(None),
        (Some(n), _) => n,
        (None, Transport::Datagram) => available,
        (None, Transport::Stream) => return Err(bad("Missing Content-Length")),
    };
    if body_start + body_len > MAX_MESSAGE {
        return Err(bad("Message Too Large"));
    }
    let msg = Message {
        start: start_line,
        headers,
        body: &data[body_start..body_start + body_len],
        raw: &data[..body_start + body_len],
    };
    Ok(Some((msg, start + body_start + body_len)))
}

fn push_header<'a>(
    headers: &mut Vec<Header<'a>>,
    (name, value, folded): (&'a str, &'a str, Option<String>),
) -> Result<(), ParseError> {
    let hn = HeaderName::from_name(name);
    let value: Cow<'a, str> = match folded {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(value),
    };
    if hn.single()
        && hn != HeaderName::ContentType
        && value.contains(',')
        && has_top_level_comma(&value)
    {
        // A comma in a single-valued header that is not inside quotes or <>: two values.
        return Err(bad("Multiple Values In A Single-Value Header"));
    }
    headers.push(Header {
        name: hn,
        raw_name: name,
        value,
    });
    Ok(())
}

fn has_top_level_comma(v: &str) -> bool {
    let (mut quoted, mut angle) = (false, 0i32);
    let mut escaped = false;
    for c in v.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle += 1,
            '>' if !quoted => angle -= 1,
            ',' if !quoted && angle == 0 => return true,
            _ => {}
        }
    }
    false
}

fn parse_u32(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (version, rest) = rest.split_once(' ').ok_or(bad("Malformed Status Line"))?;
        if version != "2.0" {
            return Err(ParseError {
                status: 505,
                reason: "Version Not Supported",
            });
        }
        let (code, reason) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("Malformed Status Code"));
        }
        let code: u16 = code.parse().map_err(|_| bad("Malformed Status Code"))?;
        if !(100..=699).contains(&code) {
            return Err(bad("Status Code Out Of Range"));
        }
        return Ok(StartLine::Response { code, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (single spaces, RFC 3261 §25.1)
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("Malformed Request Line"));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(bad("Invalid Method"));
    }
    if uri.is_empty() || uri.contains(['<', '>', '"']) || uri.bytes().any(|c| c.is_ascii_control())
    {
        return Err(bad("Malformed Request-URI"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if version.len() > 4 && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            return Err(ParseError {
                status: 505,
                reason: "Version Not Supported",
            });
        }
        return Err(bad("Malformed Request Line"));
    }
    let scheme_ok = uri.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
    });
    if !scheme_ok {
        return Err(bad("Malformed Request-URI"));
    }
    Ok(StartLine::Request { method, uri })
}

/// The offset of the first `\r\n\r\n`.
/// The lines of a header block split at CRLF (a lone CR or LF stays inside its line), like
/// `split("\r\n")` but searching for the LF with memchr.
fn crlf_lines(head: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(head);
    std::iter::from_fn(move || {
        let r = rest?;
        let b = r.as_bytes();
        let mut from = 0;
        loop {
            match memchr::memchr(b'\n', &b[from..]) {
                Some(p) if from + p > 0 && b[from + p - 1] == b'\r' => {
                    let end = from + p - 1;
                    rest = Some(&r[from + p + 1..]);
                    return Some(&r[..end]);
                }
                Some(p) => from += p + 1,
                None => {
                    rest = None;
                    return Some(r);
                }
            }
        }
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

impl<'a> Message<'a> {
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_ref())
    }

    /// Every value of a list header, across lines and commas (outside quotes and <>).
    pub fn header_values(&self, name: HeaderName) -> Vec<&str> {
        self.values(name).collect()
    }

    /// `header_values` without collecting them (nothing allocated).
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .flat_map(|h| Elements {
                rest: Some(h.value.as_ref()),
            })
    }

    pub fn method(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// `(number, method)` of the CSeq header.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header(HeaderName::CSeq)?;
        let mut it = v.split_ascii_whitespace();
        let (n, m, None) = (it.next()?, it.next()?, it.next()) else {
            return None;
        };
        let n = parse_u32(n).filter(|n| *n < 1 << 31)?;
        Some((n, m))
    }

    /// What a message must carry before maskd acts on it (RFC 3261 §8.1.1, §20): `Err`
    /// gives the 400 reason phrase naming the fault. For responses the same header checks
    /// apply (a broken response is discarded).
    pub fn validate_request(&self) -> Result<(), ParseError> {
        // One pass: how often each known header occurs, and the Date header if any.
        let mut count = [0u32; HeaderName::Other as usize + 1];
        let mut date = None;
        for h in &self.headers {
            count[h.name as usize] += 1;
            if h.name == HeaderName::Other
                && h.raw_name.len() == 4
                && h.raw_name.eq_ignore_ascii_case("date")
                && date.is_none()
            {
                date = Some(&h.value);
            }
        }
        for (name, reason) in [
            (HeaderName::To, "Missing To Header"),
            (HeaderName::From, "Missing From Header"),
            (HeaderName::CallId, "Missing Call-ID Header"),
            (HeaderName::CSeq, "Missing CSeq Header"),
            (HeaderName::Via, "Missing Via Header"),
        ] {
            match count[name as usize] {
                0 => return Err(bad(reason)),
                n if n > 1 && name != HeaderName::Via => {
                    return Err(bad("Multiple Values In A Single-Value Header"))
                }
                _ => {}
            }
        }
        if count[HeaderName::MaxForwards as usize] > 1 {
            return Err(bad("Multiple Values In A Single-Value Header"));
        }
        let (_, cseq_method) = self.cseq().ok_or(bad("Malformed CSeq"))?;
        if let StartLine::Request { method, uri } = self.start {
            if cseq_method != method {
                return Err(bad("CSeq Method Does Not Match The Request"));
            }
            let u = super::uri::Uri::parse(uri).ok_or(bad("Malformed Request-URI"))?;
            if matches!(u.scheme, super::uri::Scheme::Sip | super::uri::Scheme::Sips)
                && u.rest.contains('?')
            {
                return Err(bad("Headers Not Allowed In The Request-URI"));
            }
        }
        if let Some(mf) = self.header(HeaderName::MaxForwards) {
            parse_u32(mf)
                .filter(|n| *n <= 255)
                .ok_or(bad("Invalid Max-Forwards"))?;
        }
        for (name, reason) in [
            (HeaderName::From, "Malformed From Header"),
            (HeaderName::To, "Malformed To Header"),
        ] {
            let v = self.header(name).unwrap_or("");
            super::uri::NameAddr::parse(v).ok_or(bad(reason))?;
        }
        for c in self.values(HeaderName::Contact) {
            if c.trim() != "*" && super::uri::NameAddr::parse(c).is_none() {
                return Err(bad("Malformed Contact Header"));
            }
        }
        for via in self.values(HeaderName::Via) {
            if !valid_via(via) {
                return Err(bad("Malformed Via Header"));
            }
        }
        if let Some(date) = date {
            // RFC 3261 §20.17: rfc1123-date, always GMT.
            if !date.trim_end().ends_with(" GMT") {
                return Err(bad("Malformed Date Header"));
            }
        }
        Ok(())
    }
}

/// `SIP/2.0/TRANSPORT sent-by *(;param)` (RFC 3261 §20.42).
fn valid_via(v: &str) -> bool {
    // LWS may surround the slashes of sent-protocol (`SIP / 2.0 / UDP`): drop it there,
    // in one pass (a run of whitespace is kept only if neither side of it is a slash).
    let mut compact = String::with_capacity(v.len());
    let mut pending_ws = false;
    for c in v.trim().chars() {
        if c.is_whitespace() {
            pending_ws = true;
            continue;
        }
        if pending_ws && c != '/' && !compact.ends_with('/') {
            compact.push(' ');
        }
        pending_ws = false;
        compact.push(c);
    }
    let v = compact.as_str();
    let Some((proto, rest)) = v.split_once(|c: char| c.is_ascii_whitespace()) else {
        return false;
    };
    let mut p = proto.split('/').map(str::trim);
    let (Some(name), Some(version), Some(transport), None) =
        (p.next(), p.next(), p.next(), p.next())
    else {
        return false;
    };
    if !name.eq_ignore_ascii_case("SIP")
        || version != "2.0"
        || transport.is_empty()
        || !transport.bytes().all(is_token)
    {
        return false;
    }
    let rest = rest.trim();
    let (sent_by, params) = match rest.find(';') {
        Some(i) => (rest[..i].trim(), Some(&rest[i + 1..])),
        None => (rest, None),
    };
    !sent_by.is_empty()
        && !sent_by.contains(char::is_whitespace)
        && params.is_none_or(super::uri::valid_params)
}

/// The elements of one list header's value, split at commas outside quotes and <>, each
/// trimmed. An empty element (`a,,b` or a trailing comma) is kept: validators reject it.
struct Elements<'v> {
    rest: Option<&'v str>,
}

impl<'v> Iterator for Elements<'v> {
    type Item = &'v str;

    fn next(&mut self) -> Option<&'v str> {
        let v = self.rest?;
        // At a top-level comma nothing is open, so each element starts afresh.
        let (mut quoted, mut angle, mut escaped) = (false, 0i32, false);
        for (i, c) in v.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '<' if !quoted => angle += 1,
                '>' if !quoted => angle -= 1,
                ',' if !quoted && angle == 0 => {
                    self.rest = Some(&v[i + 1..]);
                    return Some(v[..i].trim());
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(v.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+14155550101@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
t: <sip:+14155550101@127.0.0.1>\r\n\
f: \"Alice\" <sip:+14155551001@10.0.0.1>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Subject: folded\r\n  across lines\r\n\
m: <sip:alice@10.0.0.1>\r\n\
c: application/sdp\r\n\
l: 5\r\n\
\r\n\
v=0\r\n";

    #[test]
    fn compact_forms_folding_and_framing() {
        let (m, used) = parse(INVITE.as_bytes(), Transport::Datagram)
            .unwrap()
            .unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(
            m.header(HeaderName::CallId),
            Some("a84b4c76e66710@pc33.atlanta.com")
        );
        assert_eq!(
            m.header(HeaderName::Via),
            Some("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds")
        );
        let subject = m.headers.iter().find(|h| h.raw_name == "Subject").unwrap();
        assert_eq!(subject.value, "folded across lines");
        assert_eq!(m.body, b"v=0\r\n");
        assert_eq!(used, INVITE.len(), "Content-Length frames the body");
        assert_eq!(m.cseq(), Some((314159, "INVITE")));
        m.validate_request().unwrap();
        // Borrowed where not folded.
        assert!(matches!(m.headers[0].value, Cow::Borrowed(_)));
    }

    #[test]
    fn stream_framing_needs_more_bytes() {
        let b = INVITE.as_bytes();
        for cut in [10, 200, b.len() - 3] {
            assert_eq!(
                parse(&b[..cut], Transport::Stream),
                Ok(None),
                "cut at {cut}"
            );
        }
        let two = [b, b].concat();
        let (_, used) = parse(&two, Transport::Stream).unwrap().unwrap();
        let (m2, _) = parse(&two[used..], Transport::Stream).unwrap().unwrap();
        assert_eq!(m2.method(), Some("INVITE"));
    }

    #[test]
    fn refusals_name_the_fault() {
        let e = |t: &str| parse(t.as_bytes(), Transport::Datagram).unwrap_err();
        assert_eq!(e("INVITE sip:a@b SIP/3.0\r\n\r\n").status, 505);
        assert_eq!(
            e("INVITE  sip:a@b SIP/2.0\r\n\r\n").reason,
            "Malformed Request Line"
        );
        assert_eq!(
            e("INVITE <sip:a@b> SIP/2.0\r\n\r\n").reason,
            "Malformed Request-URI"
        );
        assert_eq!(
            e("INVITE sip:a@b SIP/2.0\r\nContent-Length: 99\r\n\r\nabc").reason,
            "Content-Length Larger Than The Body"
        );
        assert_eq!(
            e("INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\na").reason,
            "Multiple Content-Length Values"
        );
        assert_eq!(
            e("SIP/2.0 999 Big\r\n\r\n").reason,
            "Status Code Out Of Range"
        );
        assert_eq!(
            e("INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n").reason,
            "Invalid Header Name"
        );
        assert_eq!(
            e("INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n").reason,
            "Header Line Without A Colon"
        );
        let (m, _) = parse(b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 BYE\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nVia: SIP/2.0/UDP h\r\n\r\n", Transport::Datagram).unwrap().unwrap();
        assert_eq!(
            m.validate_request().unwrap_err().reason,
            "CSeq Method Does Not Match The Request"
        );
    }

    #[test]
    fn writer_round_trips() {
        let out = Outgoing::request("BYE", "sip:bob@b.example")
            .header("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1")
            .header("CSeq", "2 BYE")
            .encode();
        let (m, used) = parse(&out, Transport::Stream).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(m.cseq(), Some((2, "BYE")));
        assert_eq!(m.header(HeaderName::ContentLength), Some("0"));
    }

    #[test]
    fn header_names_by_any_case() {
        use HeaderName::*;
        for (n, h) in [
            ("via", Via),
            ("from", From),
            ("to", To),
            ("call-id", CallId),
            ("cseq", CSeq),
            ("max-forwards", MaxForwards),
            ("contact", Contact),
            ("content-length", ContentLength),
            ("content-type", ContentType),
            ("route", Route),
            ("record-route", RecordRoute),
            ("supported", Supported),
            ("require", Require),
            ("proxy-require", ProxyRequire),
            ("allow", Allow),
            ("accept", Accept),
            ("session-expires", SessionExpires),
            ("min-se", MinSe),
            ("expires", Expires),
            ("p-asserted-identity", PAssertedIdentity),
        ] {
            assert_eq!(HeaderName::from_name(n), h, "{n}");
            assert_eq!(HeaderName::from_name(&n.to_ascii_uppercase()), h, "{n}");
        }
        for other in [
            "subject",
            "x-via",
            "tos",
            "call-info",
            "",
            "content-lengths",
        ] {
            assert_eq!(HeaderName::from_name(other), Other, "{other}");
        }
    }

    #[test]
    fn list_values_split_at_commas_outside_quotes_and_angle_brackets() {
        let m =
            "OPTIONS sip:a@b SIP/2.0\r\nContact: \"B, \\\"x\\\"\" <sip:b@h;p=1,2>, ,<sip:c@h>\r\n\
                 Contact: sip:d@h,\r\n\r\n";
        let (m, _) = parse(m.as_bytes(), Transport::Datagram).unwrap().unwrap();
        let want = [
            "\"B, \\\"x\\\"\" <sip:b@h;p=1,2>",
            "",
            "<sip:c@h>",
            "sip:d@h",
            "",
        ];
        assert_eq!(m.header_values(HeaderName::Contact), want);
        assert_eq!(m.values(HeaderName::Contact).collect::<Vec<_>>(), want);
        assert_eq!(m.values(HeaderName::Via).next(), None);
    }

    proptest::proptest! {
        #[test]
        fn crlf_lines_split_like_str_split(s in "[a\r\n:]{0,40}") {
            let ours: Vec<&str> = crlf_lines(&s).collect();
            let std: Vec<&str> = s.split("\r\n").collect();
            proptest::prop_assert_eq!(ours, std);
        }

        #[test]
        fn list_elements_are_those_of_one_pass_over_the_value(s in "[a,<>\"\\\\ é]{0,30}") {
            // The one pass `Elements` replaced: its state carried across the whole value.
            let mut want = Vec::new();
            let (mut quoted, mut angle, mut escaped, mut start) = (false, 0i32, false, 0);
            for (i, c) in s.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if quoted => escaped = true,
                    '"' => quoted = !quoted,
                    '<' if !quoted => angle += 1,
                    '>' if !quoted => angle -= 1,
                    ',' if !quoted && angle == 0 => {
                        want.push(s[start..i].trim());
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            want.push(s[start..].trim());
            let got: Vec<&str> = Elements { rest: Some(&s) }.collect();
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            for t in [Transport::Datagram, Transport::Stream] {
                if let Ok(Some((m, _))) = parse(&bytes, t) {
                    let _ = m.validate_request();
                    let _ = m.header_values(HeaderName::Via);
                }
            }
        }

        #[test]
        fn non_ascii_versions_are_refused_not_panicked_on(v in "[a-zA-Zé/.0-9 ]{0,8}") {
        let _ = parse(format!("INVITE sip:a@b {v}\r\n\r\n").as_bytes(), Transport::Datagram);
        let _ = parse(format!("INVITE sip:a@b SIPé/{v}\r\n\r\n").as_bytes(), Transport::Datagram);
    }

    #[test]
    fn never_panics_on_mutated_invites(pos in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut b = INVITE.as_bytes().to_vec();
            let i = pos % b.len();
            b[i] = byte;
            if let Ok(Some((m, _))) = parse(&b, Transport::Datagram) {
                let _ = m.validate_request();
            }
        }
    }
}
