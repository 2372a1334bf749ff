//! The B2BUA in simulated time: scripted peers on leg A and leg B, a fake core, the clock
//! moved by the test. Each test drives one call's story and reads what maskd sent where.

mod auth;
mod failover;
mod media;
mod probe;
mod register;
mod teardown;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{B2bua, Core, Datagram, Remote, Settings};
use crate::core::model::{Mode, ResourceStatus};
use crate::core::routing::Target;
use crate::core::store::WriteOp;
use crate::core::{Sid, SidKind, E164};
use crate::sip::message::{parse, HeaderName, Message, StartLine, Transport};

const PROXY_A: &str = "+14155550101";
const CALLER: &str = "+14155551001";
const PROXY_B: &str = "+14155550102";
const CALLEE: &str = "+14155552002";

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

struct FakeCore {
    target: Target,
    routed: Mutex<bool>,
    writes: Mutex<Vec<WriteOp>>,
    seq: AtomicU64,
}

impl FakeCore {
    fn new() -> FakeCore {
        let sid = Sid::generate;
        FakeCore {
            target: Target {
                service: sid(SidKind::Service),
                session: sid(SidKind::Session),
                participant: sid(SidKind::Participant),
                counterpart: sid(SidKind::Participant),
                counterpart_real: E164::parse(CALLEE).expect("a number"),
                counterpart_proxy: E164::parse(PROXY_B).expect("a number"),
                mode: Mode::VoiceAndMessage,
            },
            routed: Mutex::new(true),
            writes: Mutex::new(Vec::new()),
            seq: AtomicU64::new(1),
        }
    }

    /// The outbound leg's status in the last write of the call's interaction.
    fn outbound(&self) -> Option<ResourceStatus> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|w| match w {
                WriteOp::PutInteraction(i) => i.outbound.resource_status,
                _ => None,
            })
    }

    fn interaction_writes(&self) -> usize {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .filter(|w| matches!(w, WriteOp::PutInteraction(_)))
            .count()
    }
}

impl Core for FakeCore {
    fn target(&self, _proxy: E164, _sender: E164) -> Option<Target> {
        self.routed.lock().unwrap().then_some(self.target)
    }
    fn record(&self, ops: Vec<WriteOp>, _touch: Option<(Sid, i64)>) {
        self.writes.lock().unwrap().extend(ops);
    }
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

/// A message maskd sent, parsed back for the test to read.
struct Sent {
    to: Remote,
    text: String,
}

impl Sent {
    fn msg(&self) -> Message<'_> {
        parse(self.text.as_bytes(), Transport::Datagram)
            .expect("maskd sends what parses")
            .expect("complete")
            .0
    }
    fn code(&self) -> Option<u16> {
        match self.msg().start {
            StartLine::Response { code, .. } => Some(code),
            _ => None,
        }
    }
    fn method(&self) -> Option<String> {
        self.msg().method().map(str::to_string)
    }
    fn header(&self, h: HeaderName) -> String {
        self.msg().header(h).unwrap_or("").to_string()
    }
    fn headers(&self, h: HeaderName) -> Vec<String> {
        let m = self.msg();
        m.headers
            .iter()
            .filter(|x| x.name == h)
            .map(|x| x.value.to_string())
            .collect()
    }
    fn uri(&self) -> String {
        match self.msg().start {
            StartLine::Request { uri, .. } => uri.to_string(),
            _ => String::new(),
        }
    }
}

struct Harness {
    b2bua: B2bua,
    core: FakeCore,
    now: u64,
    sent: Vec<Sent>,
    a: Remote,
    trunk: Remote,
}

fn settings(trunk_tcp: bool) -> Settings {
    Settings {
        advertised_host: "127.0.0.1".into(),
        local_port: 5060,
        tls_port: None,
        trunk: addr(5070),
        trusted: vec!["127.0.0.0/8".parse().expect("a CIDR")],
        assert_identity: false,
        max_calls: 100,
        max_transactions: 1000,
        timers: Default::default(),
        keep_calls_on_close: false,
        server_header: None,
        trunk_tcp,
        ring_timeout: 120_000,
        media_ip: "127.0.0.1".parse().expect("an IP"),
        carriers: Default::default(),
        tags: Default::default(),
        dns_server: None,
    }
}

/// A harness whose callee's proxy number (`PROXY_B`) belongs to carrier "carrier-b" with
/// `trunks` (probed each `options_interval`, registered with for `register`); `sip.trunk`
/// (:5070) is for numbers no carrier owns.
fn carrier_harness(
    trunks: Vec<crate::core::carriers::Trunk>,
    options_interval: std::time::Duration,
    register: Option<std::time::Duration>,
) -> Harness {
    let carriers = crate::core::carriers::Carriers::new(
        vec![crate::core::carriers::Carrier {
            name: "carrier-b".into(),
            smpp: None,
            trunks,
            options_interval,
            register,
            specs: Vec::new(),
            mps: None,
        }],
        vec![(PROXY_B.into(), 0)],
    );
    let mut h = Harness::new(Remote::udp(addr(5062)), false);
    h.b2bua = B2bua::new(Settings {
        carriers: std::sync::Arc::new(carriers),
        ..settings(false)
    });
    h
}

impl Harness {
    fn new(a: Remote, trunk_tcp: bool) -> Harness {
        Harness {
            b2bua: B2bua::new(settings(trunk_tcp)),
            core: FakeCore::new(),
            now: 1_000_000,
            sent: Vec::new(),
            a,
            trunk: Remote {
                addr: addr(5070),
                tcp: trunk_tcp,
                tls: false,
            },
        }
    }

    fn collect(&mut self, out: Vec<Datagram>) {
        for d in out {
            self.sent.push(Sent {
                to: d.to,
                text: String::from_utf8(d.data).expect("maskd sends text"),
            });
        }
    }

    fn deliver(&mut self, from: Remote, text: &str) {
        let mut out = Vec::new();
        self.b2bua
            .handle(from, text.as_bytes(), self.now, &self.core, &mut out);
        self.collect(out);
    }

    /// Moves the clock `ms` on, in 50-ms ticks as the driver does.
    fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + 50).min(end);
            let mut out = Vec::new();
            self.b2bua.on_timer(self.now, &self.core, &mut out);
            self.collect(out);
        }
    }

    /// Takes what was sent to `to` since the last take.
    fn take(&mut self, to: Remote) -> Vec<Sent> {
        let (mine, rest) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|s| s.to == to);
        self.sent = rest;
        mine
    }

    fn take_a(&mut self) -> Vec<Sent> {
        self.take(self.a)
    }
    fn take_b(&mut self) -> Vec<Sent> {
        self.take(self.trunk)
    }

    /// Anchors media through `media`.
    fn with_media(mut self, media: std::sync::Arc<crate::fuzzing::FakeMedia>) -> Harness {
        self.b2bua =
            std::mem::replace(&mut self.b2bua, B2bua::new(settings(false))).with_media(media);
        self
    }

    /// Leg A's INVITE, with a Contact and optional extra headers.
    fn invite_from_a(&mut self, extra: &str) {
        self.invite_from_a_with(extra, Some("v=0\n"));
    }

    /// Leg A's INVITE with `sdp` as its body (`None`: no body, a late offer).
    fn invite_from_a_with(&mut self, extra: &str, sdp: Option<&str>) {
        let body = match sdp {
            Some(b) => format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ),
            None => "Content-Length: 0\r\n\r\n".to_string(),
        };
        let t = if self.a.tcp { "TCP" } else { "UDP" };
        let port = self.a.addr.port();
        let tp = if self.a.tcp { ";transport=tcp" } else { "" };
        let text = format!(
            "INVITE sip:{PROXY_A}@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/{t} 127.0.0.1:{port};branch=z9hG4bKa1;rport\r\n\
             From: <sip:{CALLER}@127.0.0.1>;tag=fa\r\n\
             To: <sip:{PROXY_A}@127.0.0.1>\r\n\
             Call-ID: call-a\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
             Contact: <sip:{CALLER}@127.0.0.1:{port}{tp}>\r\n{extra}{body}"
        );
        let a = self.a;
        self.deliver(a, &text);
    }

    /// Places a call and returns leg B's INVITE as the trunk received it.
    fn call(&mut self) -> Sent {
        self.invite_from_a("");
        let a = self.take_a();
        assert_eq!(
            a.iter().filter_map(Sent::code).collect::<Vec<_>>(),
            vec![100]
        );
        let mut b = self.take_b();
        assert_eq!(b.len(), 1, "one INVITE to the trunk");
        b.remove(0)
    }

    /// The trunk answers a request it received with `code`, with its Contact.
    fn answer_b(&mut self, req: &Sent, code: u16, extra: &str) {
        let text = response(
            req,
            code,
            ";tag=tb",
            &format!("Contact: <sip:{CALLEE}@127.0.0.1:5070>\r\n{extra}"),
        );
        let trunk = self.trunk;
        self.deliver(trunk, &text);
    }

    /// A call answered on both legs (ACKed by A); returns leg B's INVITE.
    fn answered(&mut self) -> Sent {
        let inv = self.call();
        self.answer_b(&inv, 200, "");
        let ok = self.take_a();
        assert_eq!(
            ok.iter().filter_map(Sent::code).collect::<Vec<_>>(),
            vec![200]
        );
        let acks = self.take_b();
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].method().as_deref(), Some("ACK"));
        let ack = in_dialog_from_a(&ok[0], "ACK", 1, "z9hG4bKack1", self.a);
        let a = self.a;
        self.deliver(a, &ack);
        inv
    }
}

/// A response to `req` (its Via, From, To with `tag` added, Call-ID, CSeq).
fn response(req: &Sent, code: u16, tag: &str, extra: &str) -> String {
    let m = req.msg();
    let mut s = format!("SIP/2.0 {code} Whatever\r\n");
    for v in req.headers(HeaderName::Via) {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    let to = m.header(HeaderName::To).unwrap_or("");
    let to = if to.contains("tag=") {
        to.to_string()
    } else {
        format!("{to}{tag}")
    };
    s.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
        m.header(HeaderName::From).unwrap_or(""),
        m.header(HeaderName::CallId).unwrap_or(""),
        m.header(HeaderName::CSeq).unwrap_or(""),
    ));
    s
}

/// A request from leg A inside the dialog that maskd's answer `ok` established.
fn in_dialog_from_a(ok: &Sent, method: &str, cseq: u32, branch: &str, a: Remote) -> String {
    let t = if a.tcp { "TCP" } else { "UDP" };
    format!(
        "{method} sip:{PROXY_A}@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/{t} 127.0.0.1:{};branch={branch}\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        a.addr.port(),
        ok.header(HeaderName::From),
        ok.header(HeaderName::To),
        ok.header(HeaderName::CallId),
    )
}

/// A request from the trunk inside leg B's dialog (as the callee's UA sends it).
fn in_dialog_from_b(inv: &Sent, method: &str, cseq: u32, branch: &str) -> String {
    format!(
        "{method} sip:{PROXY_B}@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         From: {};tag=tb\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        inv.header(HeaderName::To),
        inv.header(HeaderName::From),
        inv.header(HeaderName::CallId),
    )
}

/// The caller's CANCEL of its INVITE (as `Harness::invite_from_a` sends it over UDP).
fn cancel_from_a() -> String {
    format!(
        "CANCEL sip:{PROXY_A}@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKa1;rport\r\n\
         From: <sip:{CALLER}@127.0.0.1>;tag=fa\r\nTo: <sip:{PROXY_A}@127.0.0.1>\r\n\
         Call-ID: call-a\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn codes(sent: &[Sent]) -> Vec<u16> {
    sent.iter().filter_map(Sent::code).collect()
}

fn methods(sent: &[Sent]) -> Vec<String> {
    sent.iter().filter_map(Sent::method).collect()
}

#[test]
fn a_call_rings_past_timer_b_and_is_then_answered() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.call();
    h.answer_b(&inv, 180, "");
    assert_eq!(codes(&h.take_a()), vec![180]);
    // 45 s of ringing: far past 64×T1 (32 s).
    h.advance(45_000);
    let a = h.take_a();
    assert!(
        codes(&a).is_empty(),
        "nothing final to A while B rings: {:?}",
        codes(&a)
    );
    assert!(methods(&h.take_b()).iter().all(|m| m != "CANCEL"));
    h.answer_b(&inv, 200, "");
    assert_eq!(codes(&h.take_a()), vec![200]);
    assert_eq!(h.core.outbound(), Some(ResourceStatus::InProgress));
}

#[test]
fn ring_timeout_cancels_leg_b_and_answers_408() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.call();
    h.answer_b(&inv, 180, "");
    h.take_a();
    h.advance(119_900);
    assert!(codes(&h.take_a()).is_empty());
    h.advance(200);
    assert_eq!(
        codes(&h.take_a()),
        vec![408],
        "408 to the caller at ring_timeout"
    );
    let b = h.take_b();
    let cancel = b
        .iter()
        .find(|s| s.method().as_deref() == Some("CANCEL"))
        .expect("CANCEL to leg B");
    // The CANCEL matches the INVITE (RFC 3261 §9.1).
    assert_eq!(cancel.uri(), inv.uri());
    assert_eq!(
        cancel.headers(HeaderName::Via),
        inv.headers(HeaderName::Via)
    );
    assert_eq!(cancel.header(HeaderName::CSeq), "1 CANCEL");
    assert_eq!(h.core.outbound(), Some(ResourceStatus::NoAnswer));
    // B answers the CANCEL and the INVITE (487): maskd ACKs, A hears nothing more.
    h.answer_b(cancel, 200, "");
    h.answer_b(&inv, 487, "");
    let b = h.take_b();
    assert_eq!(methods(&b), vec!["ACK"]);
    assert!(h.take_a().is_empty());
    assert_eq!(h.core.outbound(), Some(ResourceStatus::NoAnswer));
    // The call is forgotten once its transactions are done.
    h.advance(40_000);
    assert_eq!(h.b2bua.active_calls(), 0);
}

#[test]
fn a_cancelled_call_whose_200_crosses_the_cancel_is_hung_up_on_b() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.call();
    h.answer_b(&inv, 180, "");
    h.take_a();
    let cancel = cancel_from_a();
    let a = h.a;
    h.deliver(a, &cancel);
    let mut got = codes(&h.take_a());
    got.sort();
    assert_eq!(
        got,
        vec![200, 487],
        "200 for the CANCEL and 487 for the INVITE at once"
    );
    assert_eq!(methods(&h.take_b()), vec!["CANCEL"]);
    // The callee answered before it saw the CANCEL.
    h.answer_b(&inv, 200, "");
    assert_eq!(methods(&h.take_b()), vec!["ACK", "BYE"]);
    assert!(
        h.take_a().is_empty(),
        "A's INVITE has its final answer already"
    );
    assert_eq!(h.core.outbound(), Some(ResourceStatus::Canceled));
}

#[test]
fn an_unanswered_reinvite_gets_408_and_is_freed() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    h.answered();
    h.advance(40_000); // ACK and 2xx timers settle
    h.take_a();
    h.take_b();
    let base = h.b2bua.transactions();
    // A's re-INVITE: leg B answers only 100 and then nothing.
    let ok_like = Sent {
        to: h.a,
        text: format!(
            "SIP/2.0 200 OK\r\nFrom: <sip:{CALLER}@127.0.0.1>;tag=fa\r\nTo: {}\r\nCall-ID: call-a\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            h.b2bua.calls.values().next().map(|c| c.a.local_header()).unwrap_or_default()
        ),
    };
    let reinvite = in_dialog_from_a(&ok_like, "INVITE", 2, "z9hG4bKre1", h.a);
    let a = h.a;
    h.deliver(a, &reinvite);
    let b = h.take_b();
    assert_eq!(methods(&b), vec!["INVITE"]);
    h.answer_b(&b[0], 100, "");
    assert!(h.b2bua.transactions() > base);
    h.advance(31_000);
    assert!(codes(&h.take_a()).is_empty());
    h.advance(2_000);
    let got = codes(&h.take_a());
    // 408, retransmitted over UDP until A's ACK (Timer G).
    assert!(
        !got.is_empty() && got.iter().all(|c| *c == 408),
        "the sender gets 408: {got:?}"
    );
    // A ACKs the 408; then every transaction of the re-INVITE is gone.
    let ack = in_dialog_from_a(&ok_like, "ACK", 2, "z9hG4bKre1", h.a);
    h.deliver(a, &ack);
    h.advance(40_000);
    assert_eq!(h.b2bua.transactions(), base);
}

#[test]
fn tcp_leg_a_keeps_its_transport_target_and_route_set() {
    let a = Remote::tcp(addr(40123));
    let mut h = Harness::new(a, false);
    h.invite_from_a("Record-Route: <sip:edge.example.net;lr>\r\n");
    let trying = h.take_a();
    assert_eq!(codes(&trying), vec![100]);
    assert!(trying[0].to.tcp, "answers go back over the TCP connection");
    let via = trying[0].header(HeaderName::Via);
    assert!(
        via.contains("received=127.0.0.1") && via.contains("rport=40123"),
        "{via}"
    );
    let inv = h.take_b().remove(0);
    assert!(!inv.to.tcp, "leg B keeps its own transport (UDP)");
    h.answer_b(&inv, 200, "");
    let ok = h.take_a().remove(0);
    assert_eq!(ok.code(), Some(200));
    assert!(ok.to.tcp);
    assert!(
        ok.header(HeaderName::Contact).ends_with(";transport=tcp>"),
        "{}",
        ok.header(HeaderName::Contact)
    );
    assert_eq!(
        ok.headers(HeaderName::RecordRoute),
        vec!["<sip:edge.example.net;lr>"]
    );
    // B hangs up: maskd's BYE to A goes to A's Contact, through A's route set, over TCP.
    h.take_b();
    h.b2bua.stream_peer(a.addr, true);
    let trunk = h.trunk;
    h.deliver(trunk, &in_dialog_from_b(&inv, "BYE", 1, "z9hG4bKbye-b"));
    let bye = h
        .take_a()
        .into_iter()
        .find(|s| s.method().as_deref() == Some("BYE"))
        .expect("BYE to A");
    assert_eq!(
        bye.uri(),
        format!("sip:{CALLER}@127.0.0.1:40123;transport=tcp")
    );
    assert_eq!(
        bye.headers(HeaderName::Route),
        vec!["<sip:edge.example.net;lr>"]
    );
    assert!(bye.header(HeaderName::Via).starts_with("SIP/2.0/TCP"));
    assert_eq!(bye.to, a);
}

#[test]
fn leg_b_requests_go_to_the_callee_contact_through_its_route_set() {
    let mut h = Harness::new(Remote::udp(addr(5080)), true);
    let inv = h.call();
    assert!(inv.to.tcp, "leg B over TCP to the trunk");
    assert!(inv.header(HeaderName::Contact).ends_with(";transport=tcp>"));
    assert!(inv.uri().ends_with(";transport=tcp"));
    h.answer_b(
        &inv,
        200,
        "Record-Route: <sip:p2.example.net;lr>, <sip:p1.example.net;lr>\r\n",
    );
    let ack = h.take_b().remove(0);
    assert_eq!(ack.method().as_deref(), Some("ACK"));
    assert_eq!(ack.uri(), format!("sip:{CALLEE}@127.0.0.1:5070"));
    // Route set: the Record-Route of the 2xx, reversed.
    assert_eq!(
        ack.headers(HeaderName::Route),
        vec!["<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>"]
    );
}

#[test]
fn a_forged_response_from_an_untrusted_source_is_dropped() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.call();
    let forged = response(&inv, 200, ";tag=evil", "");
    h.deliver(Remote::udp(([192, 0, 2, 66], 5070).into()), &forged);
    assert!(
        h.take_a().is_empty(),
        "the call is not answered by a stranger"
    );
    assert_eq!(h.b2bua.counters.untrusted_responses, 1);
}

#[test]
fn an_unreachable_tcp_trunk_fails_the_call_at_once() {
    let mut h = Harness::new(Remote::udp(addr(5080)), true);
    h.call();
    let mut out = Vec::new();
    let trunk = h.trunk;
    h.b2bua.transport_error(trunk, h.now, &h.core, &mut out);
    h.collect(out);
    assert_eq!(codes(&h.take_a()), vec![503]);
    assert_eq!(h.core.outbound(), Some(ResourceStatus::Failed));
}

#[test]
fn a_failed_call_over_tcp_leaves_no_transaction_or_call_behind() {
    let mut h = Harness::new(Remote::tcp(addr(40200)), true);
    let inv = h.call();
    h.answer_b(&inv, 486, "");
    let busy = h.take_a();
    assert_eq!(codes(&busy), vec![486]);
    assert_eq!(methods(&h.take_b()), vec!["ACK"]);
    // A ACKs the 486 over its connection (same branch as its INVITE).
    let ack = format!(
        "ACK sip:{PROXY_A}@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:40200;branch=z9hG4bKa1;rport\r\n\
         From: <sip:{CALLER}@127.0.0.1>;tag=fa\r\nTo: {}\r\n\
         Call-ID: call-a\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        busy[0].header(HeaderName::To)
    );
    let a = h.a;
    h.deliver(a, &ack);
    h.advance(2_000);
    assert_eq!(
        h.b2bua.transactions(),
        0,
        "TCP transactions end with their ACK"
    );
    assert_eq!(h.b2bua.active_calls(), 0, "the call is swept");
}

#[test]
fn a_late_copy_of_an_answered_invite_starts_no_second_call() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.call();
    h.answer_b(&inv, 200, "");
    assert_eq!(codes(&h.take_a()), vec![200]);
    h.take_b();
    // The caller missed the 200 and sends its INVITE again.
    h.invite_from_a("");
    assert!(h.take_b().is_empty(), "no second leg B");
    assert_eq!(h.b2bua.counters.calls_started, 1);
    // The 200 keeps coming (retransmitted until the ACK).
    h.advance(600);
    assert_eq!(codes(&h.take_a()), vec![200]);
}

#[test]
fn a_cancel_before_any_provisional_waits_for_one() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.call();
    let cancel = cancel_from_a();
    let a = h.a;
    h.deliver(a, &cancel);
    let mut got = codes(&h.take_a());
    got.sort();
    assert_eq!(got, vec![200, 487]);
    // RFC 3261 §9.1: no CANCEL before leg B's first provisional answer.
    assert!(methods(&h.take_b()).iter().all(|m| m != "CANCEL"));
    h.answer_b(&inv, 180, "");
    assert_eq!(methods(&h.take_b()), vec!["CANCEL"]);
    assert!(
        h.take_a().is_empty(),
        "the 180 is not relayed to a cancelled caller"
    );
}

#[test]
fn an_answer_never_acked_ends_the_call_on_both_legs() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    let inv = h.call();
    h.answer_b(&inv, 200, "");
    h.take_a();
    h.take_b();
    // A never ACKs: the 200 is retransmitted for 64×T1, then both legs get BYE.
    h.advance(33_000);
    let a = h.take_a();
    assert!(codes(&a).iter().filter(|c| **c == 200).count() >= 5);
    // (BYE over UDP is retransmitted until answered.)
    let bye_a = methods(&a);
    assert!(
        !bye_a.is_empty() && bye_a.iter().all(|m| m == "BYE"),
        "{bye_a:?}"
    );
    let bye_b = methods(&h.take_b());
    assert!(
        !bye_b.is_empty() && bye_b.iter().all(|m| m == "BYE"),
        "{bye_b:?}"
    );
    assert_eq!(h.core.outbound(), Some(ResourceStatus::Completed));
}

#[test]
fn supported_100rel_is_not_offered_on_leg_b() {
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    h.invite_from_a("Supported: 100rel, timer\r\n");
    let inv = h.take_b().remove(0);
    assert_eq!(inv.header(HeaderName::Supported), "timer");
    let mut h = Harness::new(Remote::udp(addr(5080)), false);
    h.invite_from_a("Require: 100rel\r\n");
    assert_eq!(codes(&h.take_a()), vec![420]);
    assert!(h.take_b().is_empty());
}
