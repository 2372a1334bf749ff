//! The SDP reader and rewriter against real user agents' offers, holds, several m= lines,
//! every error bound, and a deterministic mutation fuzz.

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
    let c = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
    let body =
        format!("v=0\nc=IN IP4 10.0.0.5\nm=audio 4000 RTP/SAVP 0\na=rtcp:4000\na=rtcp-mux\n{c}\n");
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
