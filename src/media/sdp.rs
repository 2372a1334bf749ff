//! SDP (RFC 8866, offer/answer per RFC 3264), sans-IO: a reader for what maskd needs to
//! anchor media, and a rewriter that rebuilds a body for the other leg.
//!
//! maskd sits between the two legs of a call and relays RTP/RTCP through its own ports, so
//! every SDP body it forwards must point at maskd and must carry nothing of the sending side:
//! user agents put usernames (often the caller's number) in `o=`, baresip writes
//! `a=ssrc:… cname:sip:+1555…@host`, ICE candidates and `c=` lines reveal addresses. The
//! rewriter therefore works from a whitelist: it keeps what describes the media (formats,
//! codecs, direction, SRTP keys, fax parameters) and drops everything else, so an attribute
//! nobody has thought about yet cannot leak.
//!
//! Both entry points bound their work: a body over [`MAX_BODY`] octets or with more than
//! [`MAX_MEDIA`] m= lines is refused, and nothing here panics on any input.

use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest body accepted (and produced). Real offers are 300 octets to 4 KiB; WebRTC ones
/// with many candidates stay under 10 KiB.
pub const MAX_BODY: usize = 16 * 1024;
/// Most m= lines accepted: audio, video and fax with room to spare.
pub const MAX_MEDIA: usize = 16;

/// The direction attribute of a stream (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attr(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// One payload type mapping, from `a=rtpmap` or from the RFC 3551 static table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    /// As written, e.g. "PCMU", "telephone-event".
    pub encoding: String,
    pub clock: u32,
    pub channels: Option<u8>,
}

/// What maskd needs to know about one m= section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDesc {
    /// "audio", "video", "image", ...
    pub kind: String,
    /// 0: rejected or unused stream.
    pub port: u16,
    /// "RTP/AVP", "RTP/SAVP", "udptl", ...
    pub proto: String,
    /// As written on the m= line.
    pub formats: Vec<String>,
    /// Media-level c= else session-level c=; None if neither.
    pub addr: Option<IpAddr>,
    /// The effective c= is 0.0.0.0 or `::`: the pre-RFC 3264 way of putting a call on hold.
    pub hold_addr: bool,
    /// Media-level attribute, else session-level, else SendRecv.
    pub direction: Direction,
    /// `a=rtcp:port [IN IP4 addr]` (RFC 3605), when present and well formed.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    pub rtcp_mux: bool,
    /// From `a=rtpmap`, then the static payload types listed without one.
    pub rtpmaps: Vec<RtpMap>,
}

impl MediaDesc {
    /// Whether the sender has put this stream on hold, either way it can say so.
    pub fn on_hold(&self) -> bool {
        self.hold_addr || matches!(self.direction, Direction::SendOnly | Direction::Inactive)
    }

    /// The mapping for payload type `pt`, if the section declares one.
    pub fn codec(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.pt == pt)
    }
}

/// The media sections of a body, in m= line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub media: Vec<MediaDesc>,
}

/// Why a body was refused; the text is short enough for a SIP reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpError(pub &'static str);

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for SdpError {}

/// maskd's own identity for the SDP one leg receives.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite<'a> {
    /// e.g. "maskd"; replaced by "-" if it is empty or not a single visible token.
    pub origin_user: &'a str,
    pub session_id: u64,
    /// The caller bumps it per new offer (RFC 3264 §8).
    pub version: u64,
    /// maskd's advertised media address.
    pub ip: IpAddr,
    /// maskd's RTP port per m= line, in order (missing entries or 0 → port 0).
    pub ports: &'a [u16],
}

/// One `x=value` line, value trimmed of trailing whitespace.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    kind: u8,
    val: &'a str,
}

/// A media section: its m= line's fields, its own c= address, and its other lines in
/// order (the c= line included, so the rewriter can keep its position).
#[derive(Debug)]
struct Section<'a> {
    media: &'a str,
    port: u16,
    proto: &'a str,
    formats: Vec<&'a str>,
    conn: Option<IpAddr>,
    lines: Vec<Line<'a>>,
}

#[derive(Debug, Default)]
struct Doc<'a> {
    conn: Option<IpAddr>,
    session: Vec<Line<'a>>,
    media: Vec<Section<'a>>,
}

/// Reads what maskd needs from a body: every m= section with its effective address,
/// direction, RTCP arrangement and codecs.
pub fn parse(body: &[u8]) -> Result<Parsed, SdpError> {
    let doc = split(body)?;
    let session_dir = last_direction(&doc.session);
    let mut media = Vec::with_capacity(doc.media.len());
    for sec in &doc.media {
        let addr = sec.conn.or(doc.conn);
        let attrs = || {
            sec.lines
                .iter()
                .filter(|l| l.kind == b'a')
                .map(|l| attr(l.val))
        };
        let rtcp = attrs()
            .find(|a| a.0 == "rtcp")
            .and_then(|a| rtcp_attr(a.1?));
        let mut rtpmaps: Vec<RtpMap> = attrs()
            .filter(|a| a.0 == "rtpmap")
            .filter_map(|a| rtpmap(a.1?))
            .collect();
        for st in sec.formats.iter().filter_map(|f| static_pt(num(f)?)) {
            if rtpmaps.iter().all(|m| m.pt != st.pt) {
                rtpmaps.push(st);
            }
        }
        let direction = last_direction(&sec.lines).or(session_dir);
        media.push(MediaDesc {
            kind: sec.media.to_string(),
            port: sec.port,
            proto: sec.proto.to_string(),
            formats: sec.formats.iter().map(|f| f.to_string()).collect(),
            addr,
            hold_addr: addr.is_some_and(|a| a.is_unspecified()),
            direction: direction.unwrap_or(Direction::SendRecv),
            rtcp,
            rtcp_mux: attrs().any(|a| a == ("rtcp-mux", None)),
            rtpmaps,
        });
    }
    Ok(Parsed { media })
}

/// Appends one formatted line and its CRLF; writing to a `String` cannot fail.
macro_rules! emit {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
        $out.push_str("\r\n");
    }};
}

/// Rebuilds `body` for the other leg with maskd's identity, address and ports (see the
/// module doc for why). Output has CRLF line ends and keeps the original line order within
/// each section; `v=`, `o=`, `s=` come first.
pub fn rewrite(body: &[u8], rw: &Rewrite) -> Result<Vec<u8>, SdpError> {
    let doc = split(body)?;
    let (ip, fam) = (rw.ip, family(rw.ip));
    let user = match rw.origin_user {
        u if !u.is_empty() && u.bytes().all(|b| b.is_ascii_graphic()) => u,
        _ => "-",
    };
    let mut out = String::with_capacity(body.len() + 128);
    let (id, version) = (rw.session_id, rw.version);
    emit!(out, "v=0\r\no={user} {id} {version} IN {fam} {ip}\r\ns=-");
    // t= is mandatory: a missing one is supplied before the first session attribute.
    let mut t_done = doc.session.iter().any(|l| l.kind == b't');
    for l in &doc.session {
        if l.kind == b'a' && !t_done {
            emit!(out, "t=0 0");
            t_done = true;
        }
        match l.kind {
            b't' if valid_time(l.val) => emit!(out, "t={}", l.val),
            b't' => emit!(out, "t=0 0"),
            // a=rtcp is media-level only (RFC 3605); a session-level one is noise.
            b'a' if attr(l.val).0 == "rtcp" => {}
            _ => common(&mut out, l, doc.conn, ip),
        }
    }
    if !t_done {
        emit!(out, "t=0 0");
    }
    for (i, sec) in doc.media.iter().enumerate() {
        let port = match sec.port {
            0 => 0,
            _ => rw.ports.get(i).copied().unwrap_or(0),
        };
        let (media, proto, formats) = (sec.media, sec.proto, sec.formats.join(" "));
        emit!(out, "m={media} {port} {proto} {formats}");
        if sec.conn.is_none() && doc.conn.is_none() {
            emit!(out, "c=IN {fam} {ip}");
        }
        let is = |l: &Line, name| l.kind == b'a' && attr(l.val).0 == name;
        // Exactly `a=rtcp-mux` (RFC 5761 §5.1.1), the form keep_attr passes on.
        let mux = sec
            .lines
            .iter()
            .any(|l| l.kind == b'a' && l.val == "rtcp-mux");
        // At most one a=rtcp, and none in a rejected section.
        let mut rtcp_done = port == 0;
        for l in &sec.lines {
            if !is(l, "rtcp") {
                common(&mut out, l, sec.conn, ip);
            } else if !rtcp_done {
                rtcp_done = true;
                match port.checked_add(1) {
                    _ if mux => emit!(out, "a=rtcp:{port}"),
                    Some(next) => emit!(out, "a=rtcp:{next} IN {fam} {ip}"),
                    None => {}
                }
            }
        }
    }
    if out.len() > MAX_BODY {
        return Err(SdpError("SDP: rewritten body too large"));
    }
    Ok(out.into_bytes())
}

/// The lines both levels treat alike: c= becomes ours, unless the original was the hold
/// address, which reveals nothing and must survive so the other side still sees the hold;
/// well-formed b= lines pass (bandwidth is neutral); whitelisted attributes pass.
fn common(out: &mut String, l: &Line, conn: Option<IpAddr>, ip: IpAddr) {
    match l.kind {
        b'c' => match conn {
            Some(a) if a.is_unspecified() => emit!(out, "c=IN {} {a}", family(a)),
            _ => emit!(out, "c=IN {} {ip}", family(ip)),
        },
        b'b' if valid_bandwidth(l.val) => emit!(out, "b={}", l.val),
        b'a' if keep_attr(l.val) => emit!(out, "a={}", l.val),
        _ => {}
    }
}

fn family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// Whether an attribute (the text after `a=`) may pass to the other leg verbatim: a
/// whitelist of attributes that describe media and carry no identity. Those with a fixed
/// grammar must match it, so a mangled line cannot smuggle text through them. Names are
/// compared exactly (as peers write them), except the fax family, spelt `T38…` or `t38…`.
/// `rtcp` is listed, but its value is always regenerated.
fn keep_attr(val: &str) -> bool {
    let (name, v) = attr(val);
    let words = |v: &str| v.split(' ').all(is_token);
    match name {
        "sendrecv" | "sendonly" | "recvonly" | "inactive" | "rtcp-mux" => v.is_none(),
        "ptime" | "maxptime" | "framerate" => v.is_some_and(decimal),
        "rtpmap" => v.and_then(rtpmap).is_some(),
        "rtcp-fb" | "silenceSupp" => v.is_some_and(words),
        "fmtp" | "crypto" => v.is_some_and(|v| v.split(' ').next().is_some_and(is_token)),
        "rtcp" => true,
        _ => {
            let t38 = name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("T38"));
            t38 && is_token(name) && v.is_none_or(words)
        }
    }
}

/// Splits and checks the body: size, UTF-8, line shape, `v=0` first, m= and c= syntax.
/// Empty lines anywhere and trailing whitespace are tolerated; bare LF ends are accepted.
fn split(body: &[u8]) -> Result<Doc<'_>, SdpError> {
    if body.len() > MAX_BODY {
        return Err(SdpError("SDP: body too large"));
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError("SDP: not UTF-8"))?;
    let mut doc = Doc::default();
    let mut first = true;
    for raw in text.split('\n') {
        let line = raw.trim_end_matches([' ', '\t', '\r']);
        if line.is_empty() {
            continue;
        }
        // A stray CR or other control octet inside a line would be passed on inside a kept
        // value and might be read as a line break by the next parser: refuse it.
        if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(SdpError("SDP: control character"));
        }
        let bytes = line.as_bytes();
        let kind = match (bytes.first(), bytes.get(1)) {
            (Some(&k), Some(b'=')) if k.is_ascii_lowercase() => k,
            _ => return Err(SdpError("SDP: malformed line")),
        };
        let val = line.get(2..).ok_or(SdpError("SDP: malformed line"))?;
        if first {
            if kind != b'v' || val != "0" {
                return Err(SdpError("SDP: first line is not v=0"));
            }
            first = false;
            continue;
        }
        match kind {
            b'm' => {
                if doc.media.len() >= MAX_MEDIA {
                    return Err(SdpError("SDP: too many m= lines"));
                }
                doc.media.push(section(val)?);
            }
            b'c' => {
                let addr = conn(val).ok_or(SdpError("SDP: bad c= line"))?;
                let slot = match doc.media.last_mut() {
                    Some(sec) => &mut sec.conn,
                    None => &mut doc.conn,
                };
                // More than one is only meaningful for layered multicast, which no SIP peer
                // of maskd sends; refusing keeps the rewritten size bounded.
                if slot.replace(addr).is_some() {
                    return Err(SdpError("SDP: more than one c= line"));
                }
            }
            _ => {}
        }
        if kind != b'm' {
            let lines = match doc.media.last_mut() {
                Some(sec) => &mut sec.lines,
                None => &mut doc.session,
            };
            lines.push(Line { kind, val });
        }
    }
    if first {
        return Err(SdpError("SDP: empty body"));
    }
    if doc.media.is_empty() {
        return Err(SdpError("SDP: no m= line"));
    }
    Ok(doc)
}

/// `m=<media> <port>[/<count>] <proto> <fmt> ...`; RTP formats must be payload types.
fn section(val: &str) -> Result<Section<'_>, SdpError> {
    let mut it = val.split_ascii_whitespace();
    let (media, port, proto) = match (it.next(), it.next(), it.next()) {
        (Some(m), Some(p), Some(pr)) => (m, p, pr),
        _ => return Err(SdpError("SDP: m= line without format")),
    };
    let formats: Vec<&str> = it.collect();
    if formats.is_empty() {
        return Err(SdpError("SDP: m= line without format"));
    }
    let (port, count) = port
        .split_once('/')
        .map_or((port, None), |(p, c)| (p, Some(c)));
    let port = num::<u16>(port).ok_or(SdpError("SDP: bad m= port"))?;
    if count.is_some_and(|c| num::<u16>(c).is_none()) {
        return Err(SdpError("SDP: bad m= port"));
    }
    if !is_token(media) || !proto.split('/').all(is_token) {
        return Err(SdpError("SDP: bad m= line"));
    }
    let rtp = proto.to_ascii_uppercase().contains("RTP");
    let fmt_ok = |f: &&str| match rtp {
        true => num::<u8>(f).is_some_and(|pt| pt <= 127),
        false => is_token(f),
    };
    if !formats.iter().all(fmt_ok) {
        return Err(SdpError("SDP: bad m= format"));
    }
    let (conn, lines) = (None, Vec::new());
    Ok(Section {
        media,
        port,
        proto,
        formats,
        conn,
        lines,
    })
}

/// `IN IP4|IP6 <addr>[/ttl[/n]]` → the address. Host names are refused: maskd must relay
/// to an address it knows without a resolver, and peers on trunks send literals.
fn conn(val: &str) -> Option<IpAddr> {
    let mut it = val.split_ascii_whitespace();
    let (net, fam, addr) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || !net.eq_ignore_ascii_case("IN") {
        return None;
    }
    let addr = addr.split('/').next()?;
    if fam.eq_ignore_ascii_case("IP4") {
        addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else if fam.eq_ignore_ascii_case("IP6") {
        addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        None
    }
}

/// `name[:value]`.
fn attr(val: &str) -> (&str, Option<&str>) {
    val.split_once(':')
        .map_or((val, None), |(n, v)| (n, Some(v)))
}

fn last_direction(lines: &[Line]) -> Option<Direction> {
    lines
        .iter()
        .rev()
        .filter(|l| l.kind == b'a')
        .find_map(|l| Direction::from_attr(l.val))
}

/// `a=rtcp:<port> [IN IP4|IP6 <addr>]`.
fn rtcp_attr(v: &str) -> Option<(u16, Option<IpAddr>)> {
    match v.trim().split_once(' ') {
        Some((port, addr)) => Some((num(port)?, Some(conn(addr)?))),
        None => Some((num(v.trim())?, None)),
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
fn rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let pt = num::<u8>(pt).filter(|p| *p <= 127)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next().filter(|e| !e.is_empty())?.to_string();
    let clock = num::<u32>(parts.next()?)?;
    let channels = match parts.next() {
        Some(c) => Some(num::<u8>(c)?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        pt,
        encoding,
        clock,
        channels,
    })
}

/// RFC 3551 static payload types that peers commonly list without an rtpmap.
fn static_pt(pt: u8) -> Option<RtpMap> {
    let enc = match pt {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        8 => "PCMA",
        9 => "G722",
        13 => "CN",
        18 => "G729",
        _ => return None,
    };
    rtpmap(&format!("{pt} {enc}/8000"))
}

/// `t=<start> <stop>`, both decimal; anything else is replaced by `t=0 0`.
fn valid_time(v: &str) -> bool {
    let mut it = v.split_ascii_whitespace();
    matches!((it.next(), it.next(), it.next()), (Some(a), Some(b), None)
        if num::<u64>(a).is_some() && num::<u64>(b).is_some())
}

/// `b=<bwtype>:<bandwidth>`.
fn valid_bandwidth(v: &str) -> bool {
    v.split_once(':')
        .is_some_and(|(t, n)| is_token(t) && num::<u64>(n).is_some())
}

/// `20`, `29.97`.
fn decimal(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    num::<u64>(int).is_some() && num::<u64>(frac).is_some()
}

/// A decimal number made of digits only (`str::parse` would also take a leading `+`).
fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// RFC 8866 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARESIP: &str = "v=0\r\no=+15551230001 3818476245 3818476246 IN IP4 192.168.7.23\r\n\
s=baresip 3.10\r\ni=call from +15551230001\r\nc=IN IP4 192.168.7.23\r\nt=0 0\r\n\
a=tool:baresip 3.10\r\na=ice-ufrag:Hx9b\r\na=ice-pwd:dq3tWl4YjF2nqzCjUR8Hp2\r\na=group:BUNDLE 0\r\n\
m=audio 18802 RTP/AVP 0 8 101\r\nb=AS:64\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
a=rtcp:18803 IN IP4 192.168.7.23\r\na=sendrecv\r\na=mid:0\r\na=label:1\r\n\
a=ssrc:2835317592 cname:sip:+15551230001@192.168.7.23\r\na=msid:+15551230001 audio0\r\n\
a=candidate:1 1 UDP 2130706431 192.168.7.23 18802 typ host\r\n\
a=candidate:2 1 UDP 1694498815 203.0.113.77 41002 typ srflx raddr 192.168.7.23 rport 18802\r\n\
a=end-of-candidates\r\n";

    fn rw(ports: &[u16]) -> Rewrite<'_> {
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
        Rewrite {
            origin_user: "maskd",
            session_id: 42,
            version: 7,
            ip,
            ports,
        }
    }

    fn text(body: &str, ports: &[u16]) -> String {
        String::from_utf8(rewrite(body.as_bytes(), &rw(ports)).unwrap()).unwrap()
    }

    fn one(body: &str) -> MediaDesc {
        parse(body.as_bytes()).unwrap().media.remove(0)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn baresip_offer_is_scrubbed() {
        let out = text(BARESIP, &[40000]);
        let gone = "5551230001 192.168.7.23 203.0.113.77 baresip 18802 18803 \
ssrc candidate ice- msid group mid label tool i=";
        for g in gone.split(' ') {
            assert!(!out.contains(g), "{g} leaked in:\n{out}");
        }
        let expect = "v=0\r\no=maskd 42 7 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\n\
t=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\nb=AS:64\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n\
a=ptime:20\r\na=rtcp:40001 IN IP4 198.51.100.9\r\na=sendrecv\r\n";
        assert_eq!(out, expect);
        let m = one(BARESIP);
        let want = (Some((18803, ip("192.168.7.23"))), ip("192.168.7.23"));
        assert_eq!((m.rtcp, m.addr), want);
        let dtmf = m.codec(101).map(|c| c.encoding.as_str());
        assert!(!m.on_hold() && !m.rtcp_mux && dtmf == Some("telephone-event"));
    }

    #[test]
    fn hold_is_detected_and_kept() {
        let body = "v=0\no=a 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\n\
m=audio 4000 RTP/AVP 0\na=sendonly\n";
        let m = one(body);
        assert!(m.hold_addr && m.on_hold() && m.direction == Direction::SendOnly);
        let expect = "v=0\r\no=maskd 42 7 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 0.0.0.0\r\n\
t=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=sendonly\r\n";
        assert_eq!(text(body, &[5000]), expect);
        // Direction alone; session-level direction inherited unless overridden.
        let m = one("v=0\nc=IN IP4 10.0.0.5\na=inactive\nm=audio 4000 RTP/AVP 0\n");
        assert!(!m.hold_addr && m.on_hold() && m.direction == Direction::Inactive);
        let m = one("v=0\nc=IN IP4 10.0.0.5\na=inactive\nm=audio 4000 RTP/AVP 0\na=recvonly\n");
        assert!(!m.on_hold() && m.direction == Direction::RecvOnly);
        let body = "v=0\nc=IN IP6 ::\nm=audio 4000 RTP/AVP 0\n";
        assert!(one(body).hold_addr && text(body, &[1]).contains("\r\nc=IN IP6 ::\r\n"));
    }

    #[test]
    fn rejected_stream_stays_rejected() {
        let body = "v=0\no=a 1 2 IN IP4 10.0.0.5\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n\
c=IN IP4 10.0.0.5\na=rtcp:4001\nm=video 0 RTP/AVP 96\nc=IN IP4 10.0.0.5\n\
a=rtpmap:96 H264/90000\na=rtcp:4003\n";
        let p = parse(body.as_bytes()).unwrap().media;
        let ports: Vec<_> = p.iter().map(|m| (m.port, m.rtcp)).collect();
        assert_eq!(ports, [(4000, Some((4001, None))), (0, Some((4003, None)))]);
        let expect = "v=0\r\no=maskd 42 7 IN IP4 198.51.100.9\r\ns=-\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\nc=IN IP4 198.51.100.9\r\na=rtcp:6001 IN IP4 198.51.100.9\r\n\
m=video 0 RTP/AVP 96\r\nc=IN IP4 198.51.100.9\r\na=rtpmap:96 H264/90000\r\n";
        assert_eq!(text(body, &[6000, 6002]), expect);
        // A missing ports entry, or 0, rejects the stream too.
        let out = text(body, &[]);
        assert!(out.contains("m=audio 0 RTP/AVP 0\r\n") && !out.contains("a=rtcp:"));
    }

    #[test]
    fn rtcp_mux_and_srtp() {
        let c =
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let body = format!(
            "v=0\nc=IN IP4 10.0.0.5\nm=audio 4000 RTP/SAVP 0\na=rtcp:4000\na=rtcp-mux\n{c}\n"
        );
        let m = one(&body);
        assert!(m.rtcp_mux && m.proto == "RTP/SAVP");
        let out = text(&body, &[7000]);
        assert!(out.contains(&format!(
            "RTP/SAVP 0\r\na=rtcp:7000\r\na=rtcp-mux\r\n{c}\r\n"
        )));
    }

    #[test]
    fn ipv6_both_ways() {
        let body = "v=0\no=- 1 1 IN IP6 2001:db8::5\ns=-\nc=IN IP6 2001:db8::5\nt=0 0\n\
m=audio 4000 RTP/AVP 8\na=rtcp:4001 IN IP6 2001:db8::5\n";
        let m = one(body);
        let want = (ip("2001:db8::5"), Some((4001, ip("2001:db8::5"))));
        assert_eq!((m.addr, m.rtcp), want);
        let ip = "2001:db8:ffff::1".parse().unwrap();
        let out = rewrite(body.as_bytes(), &Rewrite { ip, ..rw(&[9000]) }).unwrap();
        let expect = "v=0\r\no=maskd 42 7 IN IP6 2001:db8:ffff::1\r\ns=-\r\n\
c=IN IP6 2001:db8:ffff::1\r\nt=0 0\r\nm=audio 9000 RTP/AVP 8\r\n\
a=rtcp:9001 IN IP6 2001:db8:ffff::1\r\n";
        assert_eq!(String::from_utf8_lossy(&out), expect);
    }

    #[test]
    fn static_payload_types_get_default_rtpmaps() {
        let m = one(
            "v=0\nc=IN IP4 10.0.0.5\nm=audio 4000 RTP/AVP 18 0 3 4 8 9 13 101 96\n\
a=rtpmap:101 telephone-event/8000\na=rtpmap:0 PCMU/8000/1\na=rtpmap:96 opus/48000/2\n",
        );
        let maps: Vec<String> = m
            .rtpmaps
            .iter()
            .map(|c| format!("{} {}/{}/{:?}", c.pt, c.encoding, c.clock, c.channels))
            .collect();
        let want = "101 telephone-event/8000/None 0 PCMU/8000/Some(1) 96 opus/48000/Some(2) \
18 G729/8000/None 3 GSM/8000/None 4 G723/8000/None 8 PCMA/8000/None 9 G722/8000/None 13 CN/8000/None";
        assert_eq!(maps.join(" "), want);
        assert_eq!(m.codec(8), m.rtpmaps.get(6));
        assert_eq!(m.codec(97), None);
    }

    #[test]
    fn fax_sloppy_input_and_missing_connection() {
        // No c= anywhere: the section gets ours. Port counts drop; T38 attributes stay.
        let body = "v=0  \n\no=u 1 1 IN IP4 10.0.0.5\t\nt=+1555 0\nb=AS:+1555\n\
m=image 4000/2 udptl t38 \na=T38FaxVersion:0\na=t38faxratemanagement:x\na=x-secret:1\n\n \n";
        let m = one(body);
        assert_eq!((m.kind.as_str(), m.port, m.addr), ("image", 4000, None));
        let expect = "v=0\r\no=maskd 42 7 IN IP4 198.51.100.9\r\ns=-\r\nt=0 0\r\n\
m=image 8000 udptl t38\r\nc=IN IP4 198.51.100.9\r\na=T38FaxVersion:0\r\na=t38faxratemanagement:x\r\n";
        assert_eq!(text(body, &[8000]), expect);
        let origin_user = "bad user";
        let out = rewrite(
            body.as_bytes(),
            &Rewrite {
                origin_user,
                ..rw(&[1])
            },
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&out).contains("o=- 42"));
        // Capitalised names are not the whitelisted ones; mangled grammar is dropped.
        let body = "v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=RTCP:9 IN IP4 1.2.3.4\n\
a=ptime:20 1.2.3.4\na=sendrecv:1.2.3.4\na=T38x:1.2.3.4=\n";
        assert!(!text(body, &[5]).contains("1.2.3.4"));
    }

    #[test]
    fn every_bound_is_an_error() {
        let mut big = "v=0\nc=IN IP4 10.0.0.5\nm=audio 4000 RTP/AVP 0\n".to_string();
        assert!(parse(big.as_bytes()).is_ok());
        while big.len() <= MAX_BODY {
            big.push_str("a=ptime:20\n");
        }
        let many = format!("v=0\nc=IN IP4 1.2.3.4\n{}", "m=a 1 RTP/AVP 0\n".repeat(17));
        assert!(parse(many.replacen("m=a 1 RTP/AVP 0\n", "", 1).as_bytes()).is_ok());
        let cases: [(&[u8], &str); 18] = [
            (big.as_bytes(), "body too large"),
            (many.as_bytes(), "too many m= lines"),
            (b"v=0\nhello\nm=audio 1 RTP/AVP 0\n", "malformed line"),
            (b"v=0\nA=b\nm=audio 1 RTP/AVP 0\n", "malformed line"),
            (b"v=0\nm=audio 70000 RTP/AVP 0\n", "bad m= port"),
            (b"v=0\nm=audio +1 RTP/AVP 0\n", "bad m= port"),
            (b"v=0\nm=audio 1/x RTP/AVP 0\n", "bad m= port"),
            (b"v=0\nm=audio 1 RTP/AVP\n", "m= line without format"),
            (b"v=0\nm=audio 1 RTP/AVP 128\n", "bad m= format"),
            (b"v=0\nm=audio 1 RTP/AVP 0\xff\n", "not UTF-8"),
            (
                b"v=0\nm=a 1 RTP/AVP 0\na=fmtp:0 x\ra=ssrc:1\n",
                "control character",
            ),
            (b"v=0\nc=IN IP4 10.0.0.5\n", "no m= line"),
            (b"", "empty body"),
            (b"\r\n\r\n", "empty body"),
            (b"o=x\nv=0\nm=audio 1 RTP/AVP 0\n", "first line is not v=0"),
            (b"v=0\nc=IN IP4 a.b\nm=a 1 RTP/AVP 0\n", "bad c= line"),
            (
                b"v=0\nm=a 1 RTP/AVP 0\nc=IN IP4 1.2.3.4\nc=IN IP4 1.2.3.5\n",
                "more than one c= line",
            ),
            (b"v=0\nm=audio 1 RTP/A\x01VP 0\n", "control character"),
        ];
        for (body, why) in cases {
            let got = (parse(body).err(), rewrite(body, &rw(&[1])).err());
            let why = format!("SDP: {why}");
            assert_eq!(got.0.map(|e| e.to_string()).as_ref(), Some(&why));
            assert_eq!(got.1.map(|e| e.to_string()), Some(why));
        }
    }

    /// xorshift64: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % (n.max(1) as u64)) as usize
        }
    }

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        const SPLICE: &str =
            "\nm=audio 0 RTP/AVP 0\n|\nc=IN IP6 ::\n|\na=rtcp-mux\n|\na=rtcp:65535\n|\r|/|:| \
|\nm=image 9 udptl t38\n|\na=T38X:1\n|\u{e9}|\nc=IN IP4 0.0.0.0\n";
        let mut b = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len() + 1);
            match rng.below(5) {
                0 => b.truncate(at),
                1 => b.get_mut(at).into_iter().for_each(|x| *x ^= 1 << (at % 8)),
                2 => {
                    let s = SPLICE.split('|').nth(rng.below(12)).unwrap_or("");
                    b.splice(at..at, s.bytes());
                }
                op => {
                    // Duplicate (3) or delete (4) the line starting after `at`.
                    let eol = |i: usize| {
                        b.iter()
                            .skip(i)
                            .position(|&c| c == b'\n')
                            .map(|p| i + p + 1)
                    };
                    let start = eol(at).unwrap_or(b.len());
                    let end = eol(start).unwrap_or(b.len());
                    let line: Vec<u8> = b.drain(start..end).collect();
                    if op == 3 {
                        b.splice(start..start, line.iter().chain(&line).copied());
                    }
                }
            }
        }
        b
    }

    #[test]
    fn fuzz_never_panics_and_output_is_clean() {
        let seeds: [&[u8]; 3] = [
            BARESIP.as_bytes(),
            b"v=0\no=x 1 1 IN IP6 ::1\ns=x\nt=0 0\nm=audio 4000/2 RTP/SAVP 0 8\nc=IN IP4 10.0.0.5\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\na=rtcp-mux\na=rtcp:4000\na=sendonly\n\
m=video 0 RTP/AVP 96\nc=IN IP6 ::\n",
            b"v=0\nc=IN IP4 0.0.0.0\nm=image 4000 udptl t38\na=T38FaxVersion:0\na=ssrc:1\n",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut parsed, mut rewritten) = (0, 0);
        for _ in 0..20_000 {
            let seed = seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, seed);
            parsed += parse(&input).is_ok() as u32;
            let ports = [rng.below(65536) as u16, 5002, 0];
            let Ok(out) = rewrite(&input, &rw(&ports)) else {
                continue;
            };
            rewritten += 1;
            // The output parses, and rewriting it again changes nothing.
            let lossy = String::from_utf8_lossy(&out);
            assert!(parse(&out).is_ok(), "{lossy}");
            assert_eq!(rewrite(&out, &rw(&ports)).as_ref(), Ok(&out), "{lossy}");
            let text = std::str::from_utf8(&out).unwrap();
            assert!(text.ends_with("\r\n") && !text.contains("\r\n\r\n"));
            for l in text.split("\r\n").filter(|l| !l.is_empty()) {
                assert!(!l.contains('\r') && !l.contains('\n'));
                let bad = l.contains("a=ssrc") || l.contains("candidate") || l.contains("ice-");
                assert!(!bad, "{l}");
                if let Some(a) = l.strip_prefix("a=") {
                    assert!(keep_attr(a), "{l}");
                }
                if let Some(c) = l.strip_prefix("c=") {
                    let ip = conn(c).unwrap();
                    assert!(ip.is_unspecified() || ip == rw(&[]).ip, "{l}");
                }
                assert!(!l.starts_with("o=") || l == "o=maskd 42 7 IN IP4 198.51.100.9");
            }
        }
        // The loop must exercise both outcomes, or it proves little.
        assert!(
            parsed > 2_000 && rewritten > 2_000 && rewritten < 20_000,
            "{parsed} {rewritten}"
        );
    }
}
