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
mod tests;
