//! The SIP plane at its edges, end to end over loopback sockets with scripted peers:
//! ringing that outlasts `sip.ring_timeout`, an in-dialog request nobody answers, BYEs that
//! cross, a caller on TCP (its transport, remote target and route set kept), a forged
//! response from an untrusted source, and a voice plane that fails.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::sip::{answered_call, header, invite, recv_until, respond, socket};
use common::Daemon;

const CALLER: &str = "+14155551001";
const CALLEE: &str = "+14155552002";

/// A daemon whose trunk is `trunk_port` (UDP), with `sip_extra` keys, and one session
/// between CALLER and CALLEE; returns it with (P_A, P_B).
fn start(dir: &std::path::Path, trunk_port: u16, sip_extra: &str) -> (Daemon, String, String) {
    let cfg = format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{trunk_port}\"\n{sip_extra}services:\n  - unique_name: \"voice\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n"
    );
    let d = Daemon::start_with(dir, &cfg);
    let (pa, pb) = common::two_party_session(&d, "voice", "call", CALLER, CALLEE);
    (d, pa, pb)
}

fn interaction(d: &Daemon, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..250 {
        let list = d
            .get("/v1/Services/voice/Sessions/call/Interactions")
            .json();
        if let Some(i) = list["interactions"].as_array().and_then(|a| a.first()) {
            if done(i) {
                return i.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the interaction never reached the expected state");
}

/// A request from the caller inside the dialog maskd's 200 `ok` set up.
fn from_caller(method: &str, cseq: u32, branch: &str, port: u16, ok: &str, proxy: &str) -> String {
    format!(
        "{method} sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(ok, "From"),
        header(ok, "To"),
        header(ok, "Call-ID"),
    )
}

/// A request from the callee inside leg B's dialog (`inv` is leg B's INVITE).
fn from_callee(method: &str, cseq: u32, branch: &str, port: u16, inv: &str) -> String {
    format!(
        "{method} sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
         From: {};tag=far\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(inv, "To"),
        header(inv, "From"),
        header(inv, "Call-ID"),
    )
}

/// Everything `s` receives until a message starting with `marker` (which is returned last).
fn until_marker(s: &UdpSocket, marker: &str) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    for _ in 0..50 {
        let (n, _) = s.recv_from(&mut buf).expect("a message before the marker");
        let t = String::from_utf8_lossy(&buf[..n]).to_string();
        let last = t.starts_with(marker);
        got.push(t);
        if last {
            return got;
        }
    }
    panic!("no {marker}");
}

/// An OPTIONS from `s` to maskd: its 200 marks the end of what maskd sent `s` before.
fn ping(s: &UdpSocket, sip: SocketAddr, id: &str) {
    let port = s.local_addr().unwrap().port();
    let o = format!(
        "OPTIONS sip:maskd@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKping{id}\r\n\
         From: <sip:probe@127.0.0.1>;tag=p{id}\r\nTo: <sip:maskd@127.0.0.1>\r\nCall-ID: ping{id}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(o.as_bytes(), sip).unwrap();
}

#[test]
fn ringing_past_ring_timeout_cancels_leg_b_and_answers_408() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa, _) = start(dir.path(), trunk_port, "  ring_timeout: \"2s\"\n");
    let (a, a_port) = socket();
    let started = Instant::now();
    a.send_to(invite(a_port, CALLER, &pa, "ring1").as_bytes(), d.sip)
        .unwrap();
    let (inv, from) = recv_until(&trunk, "INVITE ");
    respond(&trunk, &inv, from, 180, "Ringing");
    recv_until(&a, "SIP/2.0 180");
    // Nothing more from the callee: after ring_timeout maskd cancels and answers 408.
    let (cancel, _) = recv_until(&trunk, "CANCEL ");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(header(&cancel, "Call-ID"), header(&inv, "Call-ID"));
    assert_eq!(header(&cancel, "Via"), header(&inv, "Via"));
    let (r408, _) = recv_until(&a, "SIP/2.0 408");
    assert!(header(&r408, "CSeq").ends_with("INVITE"));
    respond(&trunk, &cancel, from, 200, "OK");
    respond(&trunk, &inv, from, 487, "Request Terminated");
    let (ack, _) = recv_until(&trunk, "ACK ");
    assert_eq!(header(&ack, "CSeq"), "1 ACK");
    let i = interaction(&d, |i| i["outbound_resource_status"] == "no-answer");
    assert_eq!(i["inbound_resource_status"], "completed");
}

#[test]
fn an_unanswered_reinvite_gets_408_and_its_transactions_are_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa, _) = start(dir.path(), trunk_port, "  t1: \"100ms\"\n  t2: \"400ms\"\n");
    let (a, a_port) = socket();
    a.send_to(invite(a_port, CALLER, &pa, "re1").as_bytes(), d.sip)
        .unwrap();
    let (inv, from) = recv_until(&trunk, "INVITE ");
    respond(&trunk, &inv, from, 200, "OK");
    recv_until(&trunk, "ACK ");
    let (ok, _) = recv_until(&a, "SIP/2.0 200");
    a.send_to(
        from_caller("ACK", 1, "re1-ack", a_port, &ok, &pa).as_bytes(),
        d.sip,
    )
    .unwrap();
    let reinvite = from_caller("INVITE", 2, "re1-2", a_port, &ok, &pa);
    a.send_to(reinvite.as_bytes(), d.sip).unwrap();
    let (relayed, from) = recv_until(&trunk, "INVITE ");
    respond(&trunk, &relayed, from, 100, "Trying");
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The callee never answers it: A gets 408 within 64×T1 (6.4 s), not never.
    let (r, _) = recv_until(&a, "SIP/2.0 408");
    assert_eq!(header(&r, "CSeq"), "2 INVITE");
    let ack = from_caller("ACK", 2, "re1-2", a_port, &ok, &pa);
    a.send_to(ack.as_bytes(), d.sip).unwrap();
    // Every transaction of the re-INVITE ends (Timers I and D, bounded by 64×T1).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = d.metrics_text();
        let live = m
            .lines()
            .find(|l| l.starts_with("maskd_sip_transactions_active "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0);
        if live == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "transactions still live: {live}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn byes_that_cross_get_200_and_no_second_bye() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa, _) = start(dir.path(), trunk_port, "");
    let (a, a_port) = socket();
    let inv = answered_call(d.sip, &a, &trunk, CALLER, &pa, "glare1");
    // The callee hangs up...
    trunk
        .send_to(
            from_callee("BYE", 1, "byeb", trunk_port, &inv).as_bytes(),
            d.sip,
        )
        .unwrap();
    recv_until(&trunk, "SIP/2.0 200");
    // ...and the caller at the same moment, before it sees maskd's BYE.
    let (bye_to_a, _) = recv_until(&a, "BYE ");
    let ok = format!(
        "SIP/2.0 200 OK\r\nFrom: {}\r\nTo: {}\r\nCall-ID: glare1\r\n",
        header(&bye_to_a, "To"),
        header(&bye_to_a, "From")
    );
    a.send_to(
        from_caller("BYE", 2, "byea", a_port, &ok, &pa).as_bytes(),
        d.sip,
    )
    .unwrap();
    recv_until(&a, "SIP/2.0 200");
    // Whatever maskd sent the trunk after its 200 to B's BYE comes before this ping's 200.
    ping(&trunk, d.sip, "g1");
    let got = until_marker(&trunk, "SIP/2.0 200");
    assert!(
        got.iter().all(|m| !m.starts_with("BYE ")),
        "no second BYE to the callee: {got:?}"
    );
    let i = interaction(&d, |i| i["outbound_resource_status"] == "completed");
    assert!(i["data"].as_str().unwrap_or("").contains("duration"));
}

#[test]
fn a_forged_response_from_an_untrusted_source_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa, _) = start(
        dir.path(),
        trunk_port,
        "  trusted_cidrs: [\"127.0.0.1/32\"]\n",
    );
    let (a, a_port) = socket();
    a.send_to(invite(a_port, CALLER, &pa, "forge1").as_bytes(), d.sip)
        .unwrap();
    let (inv, from) = recv_until(&trunk, "INVITE ");
    // A stranger (127.0.0.2 is outside trusted_cidrs) answers leg B's INVITE with 200.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    respond(&stranger, &inv, d.sip, 200, "OK");
    // Then the real callee refuses: A's first final answer is that 486.
    respond(&trunk, &inv, from, 486, "Busy Here");
    let (fin, _) = recv_until(&a, "SIP/2.0 4");
    assert!(fin.starts_with("SIP/2.0 486"), "{fin}");
    let m = d.metrics_text();
    assert!(m.contains("maskd_sip_untrusted_responses_total 1"), "{m}");
}

/// Reads one SIP message from a TCP stream (headers, then Content-Length bytes).
fn read_tcp(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let len: usize = header(&head, "Content-Length").parse().unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg: Vec<u8> = buf.drain(..end + 4 + len).collect();
                return String::from_utf8_lossy(&msg).to_string();
            }
        }
        assert!(Instant::now() < deadline, "no complete message over TCP");
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "maskd closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_caller_on_tcp_keeps_its_transport_remote_target_and_route_set() {
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let (d, pa, _) = start(dir.path(), trunk_port, "");
    let mut a = TcpStream::connect(d.sip).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let local = a.local_addr().unwrap().port();
    // A listens elsewhere than its connection's source port, behind a proxy that
    // record-routes.
    let inv_a = format!(
        "INVITE sip:{pa}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bKtcp1;rport\r\n\
         Record-Route: <sip:127.0.0.1:{local};transport=tcp;lr>\r\n\
         From: <sip:{CALLER}@127.0.0.1>;tag=tt1\r\nTo: <sip:{pa}@127.0.0.1>\r\nCall-ID: tcp1\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{CALLER}@127.0.0.1:5999;transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    a.write_all(inv_a.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let trying = read_tcp(&mut a, &mut buf);
    assert!(trying.starts_with("SIP/2.0 100"), "{trying}");
    let via = header(&trying, "Via");
    assert!(
        via.contains("received=127.0.0.1") && via.contains(&format!("rport={local}")),
        "RFC 3581: {via}"
    );
    let (inv, from) = recv_until(&trunk, "INVITE ");
    respond(&trunk, &inv, from, 200, "OK");
    let ok = read_tcp(&mut a, &mut buf);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        header(&ok, "Contact").contains(";transport=tcp"),
        "maskd's Contact says TCP: {ok}"
    );
    assert!(
        header(&ok, "Record-Route").contains(";lr"),
        "Record-Route copied: {ok}"
    );
    let ack = format!(
        "ACK sip:{pa}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bKtcpack\r\n\
         From: <sip:{CALLER}@127.0.0.1>;tag=tt1\r\nTo: {}\r\nCall-ID: tcp1\r\nCSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "To")
    );
    a.write_all(ack.as_bytes()).unwrap();
    // The callee hangs up: maskd's BYE to A comes over A's connection, addressed to A's
    // Contact, through A's route set.
    trunk
        .send_to(
            from_callee("BYE", 1, "tcpbye", trunk_port, &inv).as_bytes(),
            d.sip,
        )
        .unwrap();
    let bye = read_tcp(&mut a, &mut buf);
    assert!(
        bye.starts_with(&format!(
            "BYE sip:{CALLER}@127.0.0.1:5999;transport=tcp SIP/2.0"
        )),
        "BYE to A's remote target: {bye}"
    );
    assert!(
        header(&bye, "Route").contains(&format!("127.0.0.1:{local}")),
        "{bye}"
    );
    assert!(header(&bye, "Via").starts_with("SIP/2.0/TCP"), "{bye}");
}

#[test]
fn a_failed_voice_plane_makes_maskd_exit_70() {
    let dir = tempfile::tempdir().unwrap();
    let (_trunk, trunk_port) = socket();
    let cfg = format!("sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{trunk_port}\"\n");
    let mut d = Daemon::start_env(dir.path(), &cfg, &[("MASKD_FAULT_INJECT", "sip-panic")]);
    let (s, _) = socket();
    ping(&s, d.sip, "boom");
    let st = d.wait_exit(Duration::from_secs(15)).expect("maskd exits");
    assert_eq!(
        st.code(),
        Some(70),
        "exit 70 (EX_SOFTWARE) so the service manager restarts it"
    );
    let log = d.drain_log().join("\n");
    assert!(log.contains("voice plane failed"), "{log}");
}

/// Whether maskd closes `s` within `within` (a read returns end of stream or an error).
fn closed_by_maskd(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn tcp_connections_are_capped_checked_at_accept_and_closed_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let (_trunk, trunk_port) = socket();
    let (d, _, _) = start(
        dir.path(),
        trunk_port,
        "  trusted_cidrs: [\"127.0.0.1/32\"]\n  tcp_max_connections: 2\n  tcp_idle_timeout: \"1s\"\n",
    );
    // From outside trusted_cidrs (127.0.0.2): closed at once, nothing read.
    let mut stranger = connect_from("127.0.0.2", d.sip);
    assert!(
        closed_by_maskd(&mut stranger, Duration::from_secs(5)),
        "an untrusted connection is closed at accept"
    );
    // Two trusted connections stay open; a third is closed at accept.
    let mut c1 = TcpStream::connect(d.sip).unwrap();
    let mut c2 = TcpStream::connect(d.sip).unwrap();
    // Each says something, so both are counted before the third arrives.
    for c in [&mut c1, &mut c2] {
        c.write_all(b"\r\n\r\n").unwrap();
    }
    let mut c3 = TcpStream::connect(d.sip).unwrap();
    assert!(
        closed_by_maskd(&mut c3, Duration::from_secs(5)),
        "the connection past sip.tcp_max_connections is closed"
    );
    let m = d.metrics_text();
    assert!(
        m.contains("maskd_sip_tcp_connections_refused_total{reason=\"limit\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("maskd_sip_tcp_connections_refused_total{reason=\"untrusted\"} 1"),
        "{m}"
    );
    // Silent connections that no call uses are closed after the idle timeout.
    let started = Instant::now();
    assert!(closed_by_maskd(&mut c1, Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(closed_by_maskd(&mut c2, Duration::from_secs(5)));
}

/// A TCP connection to `to` from source address `from` (any port): bound before it
/// connects, which std cannot do, so through tokio's socket.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let stream = s.connect(to).await.unwrap().into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// What arrives over TCP reaches the voice plane's thread at once (a waker datagram wakes
/// its blocking read), not at its next 50 ms tick: OPTIONS round trips over one connection
/// take a few milliseconds, where waiting for the tick would make their median ~25 ms.
#[test]
fn tcp_requests_are_answered_without_waiting_for_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let (_trunk, trunk_port) = socket();
    let (d, _, _) = start(dir.path(), trunk_port, "");
    let mut c = TcpStream::connect(d.sip).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_nodelay(true).unwrap();
    let local = c.local_addr().unwrap().port();
    let mut buf = Vec::new();
    let mut rtts = Vec::new();
    for i in 0..21 {
        let req = format!(
            "OPTIONS sip:maskd@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bKrtt{i}\r\n\
             From: <sip:rtt@127.0.0.1>;tag=r{i}\r\nTo: <sip:maskd@127.0.0.1>\r\nCall-ID: rtt{i}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let t = Instant::now();
        c.write_all(req.as_bytes()).unwrap();
        let answer = read_tcp(&mut c, &mut buf);
        rtts.push(t.elapsed());
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
        assert!(answer.contains(&format!("z9hG4bKrtt{i}")), "{answer}");
        // Apart by more than a tick, so each request finds the thread asleep.
        std::thread::sleep(Duration::from_millis(60));
    }
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    assert!(
        median < Duration::from_millis(12),
        "median {median:?} of {rtts:?}"
    );
}
