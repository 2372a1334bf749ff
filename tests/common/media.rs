//! SDP and RTCP as user agents write them, carrying their user's identity (a number in
//! `o=`, `s=`, an ssrc CNAME, ICE lines; CNAME, NAME and PHONE in RTCP SDES), for the tests
//! that check none of it crosses to the other side.

/// An SDP offer or answer from `user`, receiving RTP on `rtp` and RTCP on `rtcp`, with what
/// real user agents add that must never cross (ssrc CNAME with the number, ICE).
pub fn sdp(user: &str, rtp: u16, rtcp: u16, formats: &str, extra: &str) -> String {
    let mut maps = String::new();
    for f in formats.split_whitespace() {
        match f {
            "0" => maps.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            "8" => maps.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            "101" => maps.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"),
            _ => {}
        }
    }
    format!(
        "v=0\r\no={user} 4242 1 IN IP4 127.0.0.1\r\ns=call of {user}\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp} RTP/AVP {formats}\r\n{maps}a=rtcp:{rtcp}\r\na=ptime:20\r\n\
         a=ssrc:305419896 cname:sip:{user}@127.0.0.1\r\na=ice-ufrag:{rtp}x\r\n\
         a=candidate:1 1 UDP 2130706431 127.0.0.1 {rtp} typ host\r\n{extra}"
    )
}

/// An RTCP compound: an SR, then SDES with CNAME, NAME and PHONE naming `number`.
pub fn rtcp_with_identity(ssrc: u32, number: &str) -> Vec<u8> {
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&ssrc.to_be_bytes());
    sr.extend_from_slice(&[0x11; 20]);
    let mut chunk = ssrc.to_be_bytes().to_vec();
    for (item, text) in [
        (1u8, format!("sip:{number}@127.0.0.1")),
        (2, format!("Caller {number}")),
        (4, number.to_string()),
    ] {
        chunk.push(item);
        chunk.push(text.len() as u8);
        chunk.extend_from_slice(text.as_bytes());
    }
    chunk.push(0);
    while chunk.len() % 4 != 0 {
        chunk.push(0);
    }
    let words = (chunk.len() / 4) as u16;
    let mut sdes = vec![0x81, 202];
    sdes.extend_from_slice(&words.to_be_bytes());
    sdes.extend_from_slice(&chunk);
    sr.extend_from_slice(&sdes);
    sr
}
