//! One leg's dialog (RFC 3261 §12): Call-ID, the local and remote URIs and tags, the local
//! CSeq, the remote target (the peer's Contact) and the route set, and the flow requests go
//! out on. Every request maskd sends inside a leg is built here, so each leg's requests
//! carry that leg's identity only.

use std::net::SocketAddr;

use super::{Remote, Settings};
use crate::core::{Sid, SidKind, E164};
use crate::sip::message::{concat, decimal, HeaderName, Message, Outgoing};
use crate::sip::uri::{param, NameAddr, Uri};

#[derive(Debug, Clone)]
pub(super) struct Dialog {
    pub call_id: String,
    /// Our URI on this leg (a name-addr without tag).
    pub local: String,
    pub local_tag: String,
    /// The peer's URI (a name-addr without tag).
    pub remote: String,
    pub remote_tag: Option<String>,
    /// The last CSeq number of a request of ours.
    pub cseq: u32,
    /// The Request-URI of our in-dialog requests: the peer's Contact.
    pub target: String,
    /// Route headers of our in-dialog requests, in the order they are written.
    pub routes: Vec<String>,
    /// Where our requests go, and over which transport: the peer the dialog was set up
    /// with (the trunk, or the source of leg A's INVITE).
    pub flow: Remote,
    /// The flow is a TCP connection the peer opened (its source port listens for nothing):
    /// once it closes, requests go to the peer's Contact instead. A flow maskd opened (the
    /// trunk) is opened again.
    pub peer_opened: bool,
    /// The user of our Contact on this leg: the proxy number this side knows.
    pub user: String,
}

impl Dialog {
    pub fn local_header(&self) -> String {
        concat(&[&self.local, ";tag=", &self.local_tag])
    }

    pub fn remote_header(&self) -> String {
        match &self.remote_tag {
            Some(t) => concat(&[&self.remote, ";tag=", t]),
            None => self.remote.clone(),
        }
    }

    /// Where the next request of ours goes: over the dialog's flow; when that was a TCP
    /// connection the peer opened and it has closed, to the peer's Contact address over a
    /// new connection (a connection's source port is not a listening port).
    pub fn next_hop(&self, open_streams: &dyn Fn(SocketAddr) -> bool) -> Remote {
        if self.flow.tcp && self.peer_opened && !open_streams(self.flow.addr) {
            if let Some(addr) = uri_addr(&self.target) {
                return self.flow.stream(addr);
            }
        }
        self.flow
    }

    /// A new request in this dialog (its CSeq is the next one): Via for `to`'s transport,
    /// the route set, and our Contact for the methods that carry one.
    pub fn request(&mut self, method: &str, branch: &str, to: Remote, cfg: &Settings) -> Outgoing {
        self.cseq += 1;
        let cseq = self.cseq;
        self.request_with(method, cseq, branch, to, cfg)
    }

    /// A request with a given CSeq number (ACK takes its INVITE's).
    pub fn request_with(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        to: Remote,
        cfg: &Settings,
    ) -> Outgoing {
        let mut r = Outgoing::request(method, &self.target)
            .header("Via", cfg.via(to, branch))
            .header("Max-Forwards", "70");
        for route in &self.routes {
            r = r.header("Route", route.clone());
        }
        r = r
            .header("From", self.local_header())
            .header("To", self.remote_header())
            .header("Call-ID", self.call_id.clone())
            .header(
                "CSeq",
                concat(&[decimal(cseq.into(), &mut [0u8; 20]), " ", method]),
            );
        if matches!(method, "INVITE" | "UPDATE") {
            r = r.header("Contact", cfg.contact(&self.user, to));
        }
        r
    }

    /// Learns the remote target and route set from a message of the peer that sets or
    /// refreshes them (RFC 3261 §12.1.2, §12.2.1.2): a Contact replaces the target; the
    /// route set is taken once, from the response that creates the dialog (reversed).
    pub fn learn_from_response(&mut self, m: &Message<'_>, creates: bool) {
        if let Some(t) = contact_uri(m) {
            self.target = t;
        }
        if creates {
            let mut rr: Vec<String> = m
                .header_values(HeaderName::RecordRoute)
                .into_iter()
                .map(str::to_string)
                .collect();
            rr.reverse();
            self.routes = rr;
        }
    }
}

/// A fresh random token for tags, branches and Call-IDs.
pub(super) fn token() -> String {
    // Sixteen hex digits of a fresh SID (ASCII), in one allocation.
    String::from_utf8_lossy(&Sid::generate(SidKind::Call).ascii()[2..18]).into_owned()
}

/// The phone number in a URI's user part.
pub(super) fn number_of(uri: &str) -> Option<E164> {
    let u = Uri::parse(uri)?;
    E164::parse(u.user?.split(';').next()?).ok()
}

/// The user part of a name-addr (`<sip:+1555@host>` → `+1555`).
pub(super) fn user_of(name_addr: &str) -> String {
    NameAddr::parse(name_addr)
        .and_then(|n| n.uri.user.map(str::to_string))
        .unwrap_or_default()
}

/// The URI inside the message's (first) Contact.
pub(super) fn contact_uri(m: &Message<'_>) -> Option<String> {
    let v = m.values(HeaderName::Contact).next()?;
    let n = NameAddr::parse(v)?;
    // Re-slice the URI text as written (NameAddr keeps parts, not the whole).
    let text = match (v.find('<'), v.find('>')) {
        (Some(i), Some(j)) if i < j => v[i + 1..j].to_string(),
        _ => v.split(';').next().unwrap_or("").trim().to_string(),
    };
    (!n.uri.host.is_empty()).then_some(text)
}

/// The socket address of a SIP URI whose host is an IP literal.
pub(super) fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let u = Uri::parse(uri)?;
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    let tls = matches!(u.scheme, crate::sip::uri::Scheme::Sips)
        || crate::sip::uri::param(u.rest.split('?').next().unwrap_or(""), "transport")
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
    Some(SocketAddr::new(
        ip,
        u.port.unwrap_or(if tls { 5061 } else { 5060 }),
    ))
}

/// Removes a `;tag=` parameter from a From/To value (keeps the rest verbatim).
pub(super) fn strip_tag(v: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut cut = v.len();
    for (i, c) in v.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ';' if depth == 0
                && v[i + 1..]
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("tag") =>
            {
                cut = i;
                break;
            }
            _ => {}
        }
    }
    out.push_str(v[..cut].trim_end());
    if let Some(rest) = v[cut..].get(1..) {
        if let Some(next) = rest.find(';') {
            out.push_str(&rest[next..]);
        }
    }
    out
}

/// The tag parameter of a From/To value.
pub(super) fn tag_of(v: &str) -> Option<String> {
    NameAddr::parse(v).and_then(|n| n.param("tag").map(str::to_string))
}

/// The branch of the top Via.
pub(super) fn branch_of(m: &Message<'_>) -> Option<String> {
    let via = m.values(HeaderName::Via).next()?;
    param(via.split_once(';').map_or("", |x| x.1), "branch").map(str::to_string)
}

/// Every Via of request `m` from `src`, as its answers carry them: the top one stamped.
pub(super) fn answer_vias(m: &Message<'_>, src: SocketAddr) -> Vec<String> {
    m.headers
        .iter()
        .filter(|h| h.name == HeaderName::Via)
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                stamp_via(&h.value, src)
            } else {
                h.value.to_string()
            }
        })
        .collect()
}

/// The top Via of a request from `src`, as the response carries it (RFC 3581, RFC 3261
/// §18.2.1): `received` when the sent-by host is not the source address, and `rport`
/// filled in when the client asked for it.
pub(super) fn stamp_via(via: &str, src: SocketAddr) -> String {
    let (head, params) = match via.split_once(';') {
        Some((h, p)) => (h.trim_end(), p),
        None => (via.trim_end(), ""),
    };
    let sent_by = head.split_ascii_whitespace().nth(1).unwrap_or("");
    let host = if let Some(rest) = sent_by.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        sent_by.split(':').next().unwrap_or("")
    };
    let mut out = head.to_string();
    let mut asked_rport = false;
    let mut has_received = false;
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("rport") {
            asked_rport = true;
            continue;
        }
        if name.eq_ignore_ascii_case("received") {
            has_received = true;
            continue;
        }
        out.push(';');
        out.push_str(p);
    }
    let differs = host.parse::<std::net::IpAddr>().ok() != Some(src.ip());
    if asked_rport || differs || has_received {
        out.push_str(&format!(";received={}", src.ip()));
    }
    if asked_rport {
        out.push_str(&format!(";rport={}", src.port()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_gets_received_and_rport() {
        let src: SocketAddr = "192.0.2.7:40001".parse().unwrap();
        assert_eq!(
            stamp_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport", src),
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;received=192.0.2.7;rport=40001"
        );
        // Same host, no rport asked: untouched.
        assert_eq!(
            stamp_via("SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bKx", src),
            "SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bKx"
        );
        // A hostname always gets received.
        assert_eq!(
            stamp_via("SIP/2.0/UDP pbx.example.com;branch=z9hG4bKx", src),
            "SIP/2.0/UDP pbx.example.com;branch=z9hG4bKx;received=192.0.2.7"
        );
    }

    #[test]
    fn tags_and_addresses() {
        assert_eq!(strip_tag("<sip:a@h>;tag=1;x=2"), "<sip:a@h>;x=2");
        assert_eq!(tag_of("<sip:a@h>;tag=abc").as_deref(), Some("abc"));
        assert_eq!(
            uri_addr("sip:+1@127.0.0.1:5099;transport=tcp"),
            Some("127.0.0.1:5099".parse().unwrap())
        );
        assert_eq!(uri_addr("sip:+1@example.com"), None);
        // TLS without a port: 5061.
        for tls in ["sips:+1@127.0.0.1", "sip:+1@127.0.0.1;transport=TLS"] {
            assert_eq!(
                uri_addr(tls),
                Some(SocketAddr::from(([127, 0, 0, 1], 5061)))
            );
        }
    }
}
