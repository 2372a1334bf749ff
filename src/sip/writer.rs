//! The SIP message writer: a message built header by header and written out in one
//! allocation of the exact size, and the small text helpers the B2BUA builds header values
//! with (no formatting machinery on the voice plane's hot path).

/// A message to send, built header by header.
#[derive(Clone, Debug, Default)]
pub struct Outgoing {
    pub start: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Outgoing {
    pub fn request(method: &str, uri: &str) -> Outgoing {
        Outgoing {
            start: concat(&[method, " ", uri, " SIP/2.0"]),
            ..Outgoing::default()
        }
    }
    pub fn response(code: u16, reason: &str) -> Outgoing {
        let mut digits = [0u8; 20];
        Outgoing {
            start: concat(&["SIP/2.0 ", decimal(code.into(), &mut digits), " ", reason]),
            ..Outgoing::default()
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Outgoing {
        self.headers.push((name, value.into()));
        self
    }
    pub fn body(mut self, content_type: Option<&str>, body: &[u8]) -> Outgoing {
        if let Some(ct) = content_type {
            self.headers.push(("Content-Type", ct.to_string()));
        }
        self.body = body.to_vec();
        self
    }
    /// The wire form; Content-Length is always written last among the headers. One
    /// allocation of the exact size, no formatting machinery (the voice plane's hot path).
    pub fn encode(&self) -> Vec<u8> {
        let mut digits = [0u8; 20];
        let length = decimal(self.body.len() as u64, &mut digits);
        let size = self.start.len()
            + 2
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + "Content-Length: ".len()
            + length.len()
            + 4
            + self.body.len();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(self.start.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(length.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
        debug_assert_eq!(out.len(), size);
        out
    }
}

/// The pieces joined, in one allocation of the exact size.
pub fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// `n` in decimal, written into `buf` (20 bytes hold any u64).
pub fn decimal(mut n: u64, buf: &mut [u8]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_encode_write_what_format_would() {
        let mut b = [0u8; 20];
        for n in [0u64, 7, 10, 487, 65_535, u64::MAX] {
            assert_eq!(decimal(n, &mut b), n.to_string());
        }
        let o = Outgoing::response(183, "Session Progress")
            .header("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx")
            .header("CSeq", "1 INVITE")
            .body(Some("application/sdp"), b"v=0\r\n");
        let want = "SIP/2.0 183 Session Progress\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\
CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";
        assert_eq!(String::from_utf8(o.encode()).unwrap(), want);
        let r = Outgoing::request("BYE", "sip:a@b").encode();
        assert_eq!(r, b"BYE sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    }
}
