//! The properties the fuzz targets check (fuzz/fuzz_targets/*), as plain functions, so the
//! same checks also run over the fuzz seeds and any committed regression inputs in
//! `cargo test` (tests/fuzz_corpora.rs). Each panics when its property fails.

use std::net::SocketAddr;

use crate::core::routing::Target;
use crate::core::store::WriteOp;
use crate::core::{Sid, SidKind, E164};
use crate::sip::b2bua::{B2bua, Core, Datagram, Settings};
use crate::sip::{parse, HeaderName, Transport};
use crate::smpp::codec::{decode, encode, error_response};
use crate::smpp::text;

/// SIP parser: never panics, over either transport; the request checks never panic.
pub fn sip_parse(data: &[u8]) {
    for t in [Transport::Datagram, Transport::Stream] {
        if let Ok(Some((m, used))) = parse(data, t) {
            assert!(used <= data.len());
            let _ = m.validate_request();
            let _ = m.header_values(HeaderName::Via);
            let _ = m.cseq();
        }
    }
}

/// SMPP codec: a decoded PDU re-encodes to bytes that decode to the same PDU; errors say how
/// much to skip within the input and map to an answer.
pub fn smpp_decode(data: &[u8]) {
    match decode(data) {
        Ok(Some((pdu, used))) => {
            assert!(used <= data.len());
            let mut again = Vec::new();
            encode(&pdu, &mut again);
            let (back, n) = decode(&again)
                .expect("re-encoded PDU decodes")
                .expect("complete");
            assert_eq!(n, again.len());
            assert_eq!(back, pdu);
        }
        Ok(None) => {}
        Err(e) => {
            if let Some(skip) = e.skip {
                assert!(skip <= data.len());
            }
            let _ = error_response(&e);
        }
    }
}

/// Text codings: decoding never panics, a UDH is shorter than its message, GSM 03.38 round
/// trips.
pub fn smpp_text(data: &[u8]) {
    if let Some((&dc, rest)) = data.split_first() {
        let _ = text::decode(dc, rest);
        if let Some((_, body)) = text::split_udh(rest) {
            assert!(body.len() < rest.len());
        }
        let s = String::from_utf8_lossy(rest);
        if let Some(g) = text::encode_gsm(&s) {
            assert_eq!(text::decode_gsm(&g), s);
        }
    }
}

/// Config loader: never panics; validation never panics.
pub fn config_parse(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = crate::config::parse(text) {
            let _ = cfg.validate();
        }
    }
}

/// API parameters: the form parser and every typed accessor never panic, and what parses
/// as a form re-encodes to the same pairs.
pub fn api_params(data: &[u8]) {
    use crate::api::params::{Paging, Params};
    let p = Params::parse(data);
    for name in [
        "Ttl",
        "PageSize",
        "Page",
        "DateExpiry",
        "Status",
        "Mode",
        "UniqueName",
    ] {
        let _ = p.get(name);
        let _ = p.u64(name);
        let _ = p.bool(name);
        let _ = p.date(name);
        let _ = p.url(name, "http://127.0.0.1:8080");
        let _ = p.all(name).count();
    }
    let _ = Paging::from_query(&p);
    for v in p.all("Participants") {
        let _ = serde_json::from_str::<serde_json::Value>(v);
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let again = crate::core::callback::encode(&pairs);
    let back: Vec<(String, String)> = form_urlencoded::parse(again.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(back, pairs);
}

struct AnySession;

impl Core for AnySession {
    fn target(&self, _proxy: E164, _sender: E164) -> Option<Target> {
        let sid = |k| Sid::generate(k);
        Some(Target {
            service: sid(SidKind::Service),
            session: sid(SidKind::Session),
            participant: sid(SidKind::Participant),
            counterpart: sid(SidKind::Participant),
            counterpart_real: E164::parse("+14155552002").ok()?,
            counterpart_proxy: E164::parse("+14155550102").ok()?,
            mode: crate::core::model::Mode::VoiceAndMessage,
        })
    }
    fn record(&self, _ops: Vec<WriteOp>, _touch: Option<(Sid, i64)>) {}
    fn next_seq(&self) -> u64 {
        1
    }
}

/// The B2BUA the fuzz properties drive: trunk `trunk`, loopback trusted, small bounds.
fn settings(trunk: SocketAddr) -> Settings {
    Settings {
        advertised_host: "127.0.0.1".into(),
        local_port: 5060,
        tls_port: None,
        trunk,
        trusted: vec!["127.0.0.0/8".parse().expect("a CIDR")],
        assert_identity: false,
        max_calls: 10,
        max_transactions: 200,
        timers: Default::default(),
        keep_calls_on_close: false,
        trunk_tcp: false,
        server_header: Some("maskd".into()),
        ring_timeout: 120_000,
        media_ip: "127.0.0.1".parse().expect("an IP"),
        carriers: Default::default(),
        tags: Default::default(),
        dns_server: None,
    }
}

/// A media relay that hands out ports and moves no packet: what the B2BUA properties and
/// its harness anchor media through.
#[derive(Default)]
pub struct FakeMedia {
    next: std::sync::atomic::AtomicU16,
    /// Calls released, in order.
    pub released: parking_lot::Mutex<Vec<u64>>,
    /// What the B2BUA told the relay: (call, stream, side, peer).
    pub updates: parking_lot::Mutex<Vec<(u64, usize, crate::media::Side, crate::media::PeerMedia)>>,
    /// Calls answered, with whether they are recorded.
    pub answered: parking_lot::Mutex<Vec<(u64, bool)>>,
    /// Pairs left before `allocate` answers Exhausted (`None`: never).
    pub limit: parking_lot::Mutex<Option<usize>>,
}

impl crate::media::Media for FakeMedia {
    fn allocate(
        &self,
        _call: u64,
        n: usize,
    ) -> Result<Vec<crate::media::StreamPorts>, crate::media::MediaError> {
        use std::sync::atomic::Ordering;
        if let Some(left) = self.limit.lock().as_mut() {
            if *left < 2 * n {
                return Err(crate::media::MediaError::Exhausted);
            }
            *left -= 2 * n;
        }
        Ok((0..n)
            .map(|_| {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % 1000;
                crate::media::StreamPorts {
                    a: 40_000 + 4 * i,
                    b: 40_002 + 4 * i,
                }
            })
            .collect())
    }
    fn update(
        &self,
        call: u64,
        index: usize,
        side: crate::media::Side,
        peer: crate::media::PeerMedia,
    ) {
        self.updates.lock().push((call, index, side, peer));
    }
    fn answered(&self, call: u64, record: Option<crate::media::RecordSpec>) {
        self.answered.lock().push((call, record.is_some()));
    }
    fn release(&self, call: u64) {
        self.released.lock().push(call);
    }
}

/// The attributes an anchored SDP may carry (SPEC §2.4).
const SDP_ATTRIBUTES: [&str; 14] = [
    "rtpmap",
    "fmtp",
    "ptime",
    "maxptime",
    "sendrecv",
    "sendonly",
    "recvonly",
    "inactive",
    "rtcp",
    "rtcp-mux",
    "crypto",
    "rtcp-fb",
    "silenceSupp",
    "framerate",
];

/// SDP anchoring: an INVITE carrying `body` goes through a B2BUA that anchors media without
/// a panic. When leg B is placed, its SDP parses, names maskd's origin and address, and
/// carries only whitelisted attributes (no ssrc, msid or ICE line); when it is not, the
/// caller got 488 or 415 and no port stayed taken. A body the SDP reader refuses never
/// reaches leg B.
pub fn sdp(body: &[u8]) {
    if body.len() > 8_000 {
        return; // beyond one datagram with its headers: refused before the B2BUA
    }
    let trunk: SocketAddr = ([127, 0, 0, 1], 5070).into();
    let media = std::sync::Arc::new(FakeMedia::default());
    let mut b = B2bua::new(settings(trunk)).with_media(media.clone());
    let mut invite = format!(
        "INVITE sip:+14155550101@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfz1\r\n\
         From: <sip:+14155551001@127.0.0.1>;tag=f1\r\nTo: <sip:+14155550101@127.0.0.1>\r\nCall-ID: fz1\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:+14155551001@127.0.0.1:5080>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    invite.extend_from_slice(body);
    let mut out: Vec<Datagram> = Vec::new();
    let caller: SocketAddr = ([127, 0, 0, 1], 5080).into();
    b.handle(
        crate::sip::b2bua::Remote::udp(caller),
        &invite,
        1_000,
        &AnySession,
        &mut out,
    );
    b.on_timer(2_000, &AnySession, &mut out);
    let leg_b = out
        .iter()
        .find(|d| d.to.addr == trunk && d.data.starts_with(b"INVITE "));
    let readable = crate::media::sdp::parse(body).is_ok();
    let Some(leg_b) = leg_b else {
        let refused = out.iter().any(|d| {
            d.to.addr == caller
                && (d.data.starts_with(b"SIP/2.0 488") || d.data.starts_with(b"SIP/2.0 415"))
        });
        assert!(refused || body.is_empty(), "no leg B and no 488/415");
        let allocated = media.next.load(std::sync::atomic::Ordering::Relaxed) > 0;
        assert!(
            !allocated || !media.released.lock().is_empty(),
            "ports kept"
        );
        return;
    };
    assert!(
        readable || body.is_empty(),
        "an SDP the reader refuses reached leg B"
    );
    let (m, _) = parse(&leg_b.data, Transport::Datagram)
        .expect("leg B parses")
        .expect("complete");
    if body.is_empty() {
        return;
    }
    let text = std::str::from_utf8(m.body).expect("rewritten SDP is UTF-8");
    crate::media::sdp::parse(m.body).expect("rewritten SDP parses");
    for line in text.split("\r\n") {
        if let Some(o) = line.strip_prefix("o=") {
            assert!(o.starts_with("maskd "), "origin crossed: {line}");
        }
        if let Some(a) = line.strip_prefix("a=") {
            let name = a.split([':', ' ']).next().unwrap_or("");
            let t38 = name.len() >= 3 && name[..3].eq_ignore_ascii_case("t38");
            assert!(
                t38 || SDP_ATTRIBUTES.contains(&name),
                "attribute {name:?} crossed: {line}"
            );
        }
        for letter in ["i=", "u=", "e=", "p=", "k="] {
            assert!(!line.starts_with(letter), "{line} crossed");
        }
    }
}

/// A DNS answer (RFC 3263 resolution reads what a DNS server sends): never panics; names
/// are at most 255 characters; SRV targets come out in priority order, none empty.
pub fn dns(data: &[u8]) {
    let id = u16::from_be_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]);
    let Ok(records) = crate::dns::parse(data, id) else {
        return;
    };
    for r in &records {
        let name = match r {
            crate::dns::Record::Srv { name, target, .. } => {
                assert!(target.len() <= 255);
                name
            }
            crate::dns::Record::A { name, .. } | crate::dns::Record::Aaaa { name, .. } => name,
        };
        assert!(name.len() <= 255, "a name past 255 characters");
    }
    let order = crate::dns::srv_order(&records);
    assert!(order.iter().all(|(t, _, _)| !t.is_empty()));
}

/// A digest challenge from a trunk: reading it never panics, and an answer to what was read
/// is one header line (no CR or LF whatever the challenge held).
pub fn digest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(ch) = crate::sip::digest::parse_challenge(&text) {
        let a = crate::sip::digest::authorization(&ch, "u", "p", "INVITE", "sip:b@h", "c", 1);
        assert!(a.starts_with("Digest username=\"u\""));
        let crlf = a.contains('\r') || a.contains('\n');
        assert!(!crlf || text.contains('\r') || text.contains('\n'));
    }
}

/// RTCP scrubbing: never panics; what it returns walks as RTCP (version 2, lengths that
/// add up), and every SDES chunk carries exactly one item, CNAME, equal to maskd's.
pub fn rtcp(data: &[u8]) {
    let cname = b"maskd-fuzz";
    let mut out = Vec::new();
    if crate::media::rtcp::scrub(data, cname, &mut out).is_err() {
        assert!(out.is_empty(), "an error left output behind");
        return;
    }
    let mut rest = &out[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 4 && rest[0] >> 6 == 2, "not RTCP: {rest:?}");
        let len = (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1) * 4;
        assert!(len <= rest.len(), "length beyond the buffer");
        let (pkt, tail) = rest.split_at(len);
        assert_ne!(pkt[1], 204, "APP crossed");
        if pkt[1] == 202 {
            let mut chunks = &pkt[4..];
            for _ in 0..(pkt[0] & 0x1f) {
                assert!(chunks.len() >= 8, "short chunk");
                assert_eq!(chunks[4], 1, "an item other than CNAME");
                let n = chunks[5] as usize;
                assert_eq!(&chunks[6..6 + n], cname);
                assert_eq!(chunks[6 + n], 0, "a second item");
                let used = (4 + 2 + n + 1).div_ceil(4) * 4;
                chunks = &chunks[used.min(chunks.len())..];
            }
        }
        rest = tail;
    }
}

/// The B2BUA driven by a script of messages (`%A ms`, `%T ms`, `%B ms` or `%X ms` lines
/// start a message from the caller over UDP, the caller over TCP, the trunk, or an
/// untrusted source, after moving the clock `ms` on; lines end with LF or CRLF). In a
/// message, `@VIA@`, `@CALLID@`, `@FROM@` and `@TO@` stand for those headers of the last
/// request maskd sent the trunk, and `@ATO@` for the To of its last answer to the caller, so
/// seeds can follow whole calls. Properties: no panic; every request maskd builds parses (an
/// answer echoing a requester's malformed headers may not); and
/// no number crosses: a number that one side never sent does not appear in the headers maskd
/// sends that side, unless it came from the other side in one of the whitelisted headers
/// that pass verbatim (bodies pass unchanged until the media plane rewrites SDP).
pub fn b2bua(data: &[u8]) {
    use crate::sip::b2bua::Remote;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let a_udp = Remote::udp(([127, 0, 0, 1], 5080).into());
    let a_tcp = Remote::tcp(([127, 0, 0, 1], 5081).into());
    let trunk: SocketAddr = ([127, 0, 0, 1], 5070).into();
    let stranger = Remote::udp(([192, 0, 2, 1], 5060).into());
    let mut b = B2bua::new(settings(trunk));
    // The caller's TCP connection is open throughout, as the driver reports it before its
    // first message (else maskd would address the caller's Contact, wherever it points).
    b.stream_peer(a_tcp.addr, true);
    let mut now = 1_000_000u64;
    // What each side sent (caller: 0, trunk: 1), and what maskd sent each side's headers.
    let mut seen: [String; 2] = Default::default();
    let mut got: [String; 2] = Default::default();
    let (mut via, mut call_id, mut from, mut to, mut a_to) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    for chunk in text.split('%').skip(1).take(64) {
        let (head, msg) = chunk.split_once('\n').unwrap_or((chunk, ""));
        let mut words = head.split_whitespace();
        let src = match words.next() {
            Some("A") => a_udp,
            Some("T") => a_tcp,
            Some("B") => Remote::udp(trunk),
            Some("X") => stranger,
            _ => continue,
        };
        let advance: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let msg = msg
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .replace("@VIA@", &via)
            .replace("@CALLID@", &call_id)
            .replace("@FROM@", &from)
            .replace("@TO@", &to)
            .replace("@ATO@", &a_to);
        let mut out: Vec<Datagram> = Vec::new();
        let end = now + advance.min(600_000);
        while now < end {
            now = (now + 500).min(end);
            b.on_timer(now, &AnySession, &mut out);
        }
        let side = usize::from(src.addr == trunk);
        if src != stranger {
            seen[side].push_str(&msg);
        }
        b.handle(src, msg.as_bytes(), now, &AnySession, &mut out);
        for d in out {
            let to_trunk = d.to.addr == trunk;
            let Ok(Some((m, _))) = parse(&d.data, Transport::Datagram) else {
                // Only an answer may fail to parse: it echoes the requester's own From,
                // To and Via, as RFC 3261 requires, even when they are malformed (a 400).
                assert!(
                    d.data.starts_with(b"SIP/2.0 "),
                    "maskd sent what does not parse ({:?}):\n{}",
                    parse(&d.data, Transport::Datagram).err(),
                    String::from_utf8_lossy(&d.data)
                );
                continue;
            };
            let head_end = d.data.windows(4).position(|w| w == b"\r\n\r\n");
            let head = String::from_utf8_lossy(&d.data[..head_end.unwrap_or(d.data.len())]);
            for line in head.split("\r\n") {
                let name = line.split(':').next().unwrap_or("").trim();
                if !crate::sip::b2bua::passes_verbatim(name) {
                    got[usize::from(to_trunk)].push_str(line);
                    got[usize::from(to_trunk)].push('\n');
                }
            }
            if to_trunk && m.method().is_some_and(|x| x != "ACK" && x != "CANCEL") {
                via = m.header(HeaderName::Via).unwrap_or("").to_string();
                call_id = m.header(HeaderName::CallId).unwrap_or("").to_string();
                from = m.header(HeaderName::From).unwrap_or("").to_string();
                to = m.header(HeaderName::To).unwrap_or("").to_string();
            } else if !to_trunk && m.method().is_none() {
                a_to = m.header(HeaderName::To).unwrap_or("").to_string();
            }
        }
    }
    // Numbers: runs of 8 to 15 digits a side sent (the other side's identity).
    for (side, other) in [(0usize, 1usize), (1, 0)] {
        for n in digit_runs(&seen[other]) {
            if got[side].contains(&n) && !seen[side].contains(&n) && !known_number(&n) {
                panic!(
                    "a number of one side ({n}) reached the other:\n{}",
                    got[side]
                );
            }
        }
    }
}

/// Runs of 8 to 15 ASCII digits in `s` that stand alone (no letter or digit on either
/// side), as numbers do in SIP (`+14155551001@`, `:14155551001;`); digits inside a longer
/// token (maskd's random tags and branches are hex) are not numbers.
fn digit_runs(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let alone = (start == 0 || !b[start - 1].is_ascii_alphanumeric())
            && (i == b.len() || !b[i].is_ascii_alphanumeric());
        if alone && (8..=15).contains(&(i - start)) {
            out.push(s[start..i].to_string());
        }
    }
    out
}

/// Numbers maskd itself may put on either side: the proxy numbers and the callee's real
/// number it dials (the fake core's session), and its own address.
fn known_number(n: &str) -> bool {
    ["14155552002", "14155550102", "14155550101"]
        .iter()
        .any(|k| k.contains(n) || n.contains(k))
}
