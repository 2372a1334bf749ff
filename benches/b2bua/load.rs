//! SIPp's call flow (tests/sipp/uac.xml against SIPp's default UAS) driven through
//! `B2bua::handle` and `on_timer` in simulated time at 1,000 calls/s, each call hung up
//! 200 ms after its answer, the timer ticked every 50 ms as the voice plane does. Steady
//! state: transactions live their full RFC 3261 lifetimes (32 s of timer J and L), so the
//! tables are as large as under the real load. Only what happens inside the B2BUA is
//! counted (time, and allocations when the bench counts them); building the peers'
//! messages is not. Shared by the `b2bua` and `b2bua_allocs` benches.

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use maskd::core::model::Mode;
use maskd::core::routing::Target;
use maskd::core::store::WriteOp;
use maskd::core::{Sid, SidKind, E164};
use maskd::sip::b2bua::{B2bua, Core, Datagram, Remote, Settings};
use maskd::sip::{parse, HeaderName, Message, Transport};

const PROXY_A: &str = "+14155550101";

/// The core as the B2BUA sees it: one session routes every call; writes are counted and
/// dropped (the store writer's cost is the store's, measured by its own benches).
struct BenchCore {
    target: Target,
    seq: AtomicU64,
    writes: AtomicU64,
}

impl Core for BenchCore {
    fn target(&self, _proxy: E164, _sender: E164) -> Option<Target> {
        Some(self.target)
    }
    fn record(&self, ops: Vec<WriteOp>, _touch: Option<(Sid, i64)>) {
        self.writes.fetch_add(ops.len() as u64, Ordering::Relaxed);
        black_box(ops);
    }
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn settings() -> Settings {
    Settings {
        advertised_host: "127.0.0.1".into(),
        local_port: 5060,
        tls_port: None,
        trunk: addr(5070),
        trusted: vec!["127.0.0.0/8".parse().expect("a CIDR")],
        assert_identity: false,
        max_calls: 1_000_000,
        max_transactions: 10_000_000,
        timers: Default::default(),
        keep_calls_on_close: false,
        server_header: None,
        trunk_tcp: false,
        ring_timeout: 120_000,
        media_ip: "127.0.0.1".parse().expect("an IP"),
        carriers: Default::default(),
        tags: Default::default(),
        dns_server: None,
    }
}

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// SIPp's INVITE (tests/sipp/uac.xml), call `n`.
fn invite(n: u64) -> String {
    format!(
        "INVITE sip:{PROXY_A}@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-{n}-0\r\n\
         From: \"Alice\" <sip:+14155551001@127.0.0.1:5080>;tag=1SIPpTag00{n}\r\n\
         To: <sip:{PROXY_A}@127.0.0.1:5060>\r\n\
         Call-ID: {n}-1@127.0.0.1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:+14155551001@127.0.0.1:5080>\r\nMax-Forwards: 70\r\n\
         User-Agent: secret-pbx-of-alice\r\n\
         P-Preferred-Identity: <sip:+14155551001@pbx.alice.example>\r\n\
         Subject: maskd interop\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// SIPp's ACK or BYE for call `n`, To with the tag of maskd's 200.
fn in_dialog(n: u64, method: &str, cseq: u32, to: &str, branch: u32) -> String {
    format!(
        "{method} sip:{PROXY_A}@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-{n}-{branch}\r\n\
         From: \"Alice\" <sip:+14155551001@127.0.0.1:5080>;tag=1SIPpTag00{n}\r\n\
         To: {to}\r\nCall-ID: {n}-1@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The UAS's answer to a request maskd sent it (SIPp's default UAS echoes these headers).
fn answer(req: &Message<'_>, code: u16, body: &str) -> String {
    let mut s = format!("SIP/2.0 {code} X\r\n");
    for h in req.headers.iter().filter(|h| h.name == HeaderName::Via) {
        s.push_str(&format!("Via: {}\r\n", h.value));
    }
    let to = req.header(HeaderName::To).unwrap_or("");
    let tag = if to.contains(";tag=") {
        ""
    } else {
        ";tag=uas1"
    };
    s.push_str(&format!(
        "From: {}\r\nTo: {to}{tag}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:127.0.0.1:5070;transport=UDP>\r\n",
        req.header(HeaderName::From).unwrap_or(""),
        req.header(HeaderName::CallId).unwrap_or(""),
        req.header(HeaderName::CSeq).unwrap_or(""),
    ));
    if body.is_empty() {
        s.push_str("Content-Length: 0\r\n\r\n");
    } else {
        s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    s
}

pub struct Load {
    b2bua: B2bua,
    core: BenchCore,
    now: u64,
    next_tick: u64,
    n: u64,
    a: Remote,
    trunk: Remote,
    /// Answered calls waiting for their BYE: (when, call number, To of maskd's 200).
    up: VecDeque<(u64, u64, String)>,
    out: Vec<Datagram>,
    /// Time spent inside the B2BUA.
    pub spent: Duration,
    /// Allocations made inside the B2BUA (counted by `count`, the bench's allocator).
    pub allocs: u64,
    count: fn() -> u64,
    /// When set, written over before every datagram and tick (untimed): what the kernel and
    /// the peers do to the caches between two datagrams in the daemon.
    pub evict: Option<Vec<u8>>,
}

impl Load {
    fn new(count: fn() -> u64) -> Load {
        let sid = Sid::generate;
        Load {
            b2bua: B2bua::new(settings()),
            core: BenchCore {
                target: Target {
                    service: sid(SidKind::Service),
                    session: sid(SidKind::Session),
                    participant: sid(SidKind::Participant),
                    counterpart: sid(SidKind::Participant),
                    counterpart_real: E164::parse("+14155552002").expect("a number"),
                    counterpart_proxy: E164::parse("+14155550102").expect("a number"),
                    mode: Mode::VoiceAndMessage,
                },
                seq: AtomicU64::new(1),
                writes: AtomicU64::new(0),
            },
            now: 1_000_000,
            next_tick: 1_000_000,
            n: 0,
            a: Remote::udp(addr(5080)),
            trunk: Remote::udp(addr(5070)),
            up: VecDeque::new(),
            out: Vec::new(),
            spent: Duration::ZERO,
            allocs: 0,
            count,
            evict: None,
        }
    }

    /// One datagram into the B2BUA (timed); what it sent is returned.
    fn deliver(&mut self, from: Remote, text: &str) -> Vec<Datagram> {
        self.pollute();
        self.out.clear();
        let a = (self.count)();
        let t = Instant::now();
        self.b2bua
            .handle(from, text.as_bytes(), self.now, &self.core, &mut self.out);
        self.spent += t.elapsed();
        self.allocs += (self.count)() - a;
        std::mem::take(&mut self.out)
    }

    /// Writes a line of every cache line of `evict`, if set.
    fn pollute(&mut self) {
        if let Some(buf) = self.evict.as_mut() {
            for line in buf.chunks_mut(64) {
                line[0] = line[0].wrapping_add(1);
            }
            black_box(&buf);
        }
    }

    /// The only datagram sent to `to` among `sent`.
    fn one(sent: &[Datagram], to: Remote) -> &[u8] {
        let mut it = sent.iter().filter(|d| d.to == to);
        let Some(d) = it.next() else {
            let all: Vec<String> = sent
                .iter()
                .map(|d| format!("{:?}: {}", d.to, String::from_utf8_lossy(&d.data)))
                .collect();
            panic!("no datagram to {to:?} among {all:#?}");
        };
        assert!(it.next().is_none(), "one datagram to this peer");
        &d.data
    }

    /// One millisecond of load: a new call set up to its ACK, the BYE of the call answered
    /// 200 ms ago, the tick when due.
    pub fn step(&mut self) {
        self.now += 1;
        self.n += 1;
        let n = self.n;
        let sent = self.deliver(self.a, &invite(n));
        let inv_b = Self::one(&sent, self.trunk).to_vec();
        let (inv_b, _) = parse(&inv_b, Transport::Datagram)
            .expect("parses")
            .expect("whole");
        let ringing = answer(&inv_b, 180, "");
        let ok = answer(&inv_b, 200, SDP);
        self.deliver(self.trunk, &ringing);
        let sent = self.deliver(self.trunk, &ok);
        let ok_a = Self::one(&sent, self.a).to_vec();
        let (ok_a, _) = parse(&ok_a, Transport::Datagram)
            .expect("parses")
            .expect("whole");
        let to = ok_a.header(HeaderName::To).unwrap_or("").to_string();
        assert!(ok_a.body == SDP.as_bytes(), "the answer crosses");
        self.deliver(self.a, &in_dialog(n, "ACK", 1, &to, 0));
        self.up.push_back((self.now + 200, n, to));
        while self.up.front().is_some_and(|(at, _, _)| *at <= self.now) {
            let Some((_, m, to)) = self.up.pop_front() else {
                break;
            };
            let sent = self.deliver(self.a, &in_dialog(m, "BYE", 2, &to, 1));
            assert!(!Self::one(&sent, self.a).is_empty(), "200 for the BYE");
            let bye_b = Self::one(&sent, self.trunk).to_vec();
            let (bye_b, _) = parse(&bye_b, Transport::Datagram)
                .expect("parses")
                .expect("whole");
            let ok = answer(&bye_b, 200, "");
            assert!(self.deliver(self.trunk, &ok).is_empty());
        }
        if self.now >= self.next_tick {
            self.next_tick = self.now + 50;
            self.pollute();
            self.out.clear();
            let a = (self.count)();
            let t = Instant::now();
            self.b2bua.on_timer(self.now, &self.core, &mut self.out);
            self.spent += t.elapsed();
            self.allocs += (self.count)() - a;
        }
    }
}

/// `Load` past 40 s of simulated load: every table at its steady size.
pub fn steady(count: fn() -> u64) -> Load {
    let mut load = Load::new(count);
    for _ in 0..40_000 {
        load.step();
    }
    assert!(load.b2bua.transactions() > 30_000, "steady-state tables");
    assert!(load.core.writes.load(Ordering::Relaxed) >= 40_000);
    load
}
