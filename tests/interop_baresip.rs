//! Interop with baresip (Debian package `baresip-core`) as two real user agents on loopback:
//! UA "A" (+15551230001) dials its proxy number P_A at maskd; maskd places leg B to its
//! `sip.trunk`, where UA "B" (+15551230002) listens and answers by itself. Both send a sine
//! tone (A 440 Hz, B 660 Hz) as PCMU and dump what they decode to WAV files (module
//! `sndfile`), so the test can tell that each side heard the other.
//!
//! Each baresip is driven through its `ctrl_tcp` module (netstring-framed JSON: commands
//! `dial`, `hangup`; events `CALL_ESTABLISHED`, `CALL_CLOSED`), runs with its SIP trace on
//! (`-s`: every message sent and received, on stdout), no registrar (`regint=0`), audio
//! from `ausine`, a player that goes nowhere (`aubridge`), no video.
//!
//! Each test collects every problem it finds and fails once, listing them all with both
//! SIP traces. Without `baresip` on PATH the tests fail (scripts/test installs it).

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sip::header;
use common::*;
use serde_json::Value;

const A: &str = "+15551230001";
const B: &str = "+15551230002";
/// The tones each side sends, told apart in what the other side decoded.
const A_TONE: u32 = 440;
const B_TONE: u32 = 660;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
    fn trace(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    A,
    B,
}

fn modules_dir() -> &'static str {
    [
        "/usr/lib/baresip/modules",
        "/usr/lib/x86_64-linux-gnu/baresip/modules",
        "/usr/local/lib/baresip/modules",
    ]
    .into_iter()
    .find(|d| Path::new(d).join("ctrl_tcp.so").exists())
    .unwrap_or("/usr/lib/baresip/modules")
}

fn assert_baresip() {
    let ok = Command::new("baresip")
        .arg("-h")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        ok.is_ok(),
        "baresip is not installed: run scripts/test (it installs Debian's baresip-core)"
    );
    for m in ["ctrl_tcp", "ausine", "aubridge", "sndfile", "g711", "menu"] {
        let so = Path::new(modules_dir()).join(format!("{m}.so"));
        assert!(so.exists(), "baresip module {} is missing", so.display());
    }
}

/// A port free on loopback for UDP and TCP, with the next one free for TCP too: baresip
/// listens for SIP on UDP and TCP at `p` and for SIP over TLS at `p + 1`.
fn sip_port() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        if p < 65535
            && UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no free SIP port pair on loopback");
}

/// One SIP message from a baresip trace (`-s`).
#[derive(Debug, Clone)]
struct SipMsg {
    /// "UDP" or "TCP": the transport it went over.
    proto: String,
    src: String,
    dst: String,
    text: String,
}

impl SipMsg {
    fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
    fn is_request(&self, method: &str) -> bool {
        self.first_line().starts_with(&format!("{method} "))
    }
    fn is_response(&self) -> bool {
        self.first_line().starts_with("SIP/2.0 ")
    }
    fn request_uri(&self) -> &str {
        self.first_line().split_whitespace().nth(1).unwrap_or("")
    }
    fn head(&self) -> &str {
        self.text.split("\r\n\r\n").next().unwrap_or("")
    }
    fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
    }
    fn header(&self, name: &str) -> &str {
        header(self.head(), name)
    }
    /// The URI inside the Contact header's angle brackets.
    fn contact_uri(&self) -> &str {
        let c = self.header("Contact");
        c.split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(u, _)| u)
            .unwrap_or(c)
    }
    /// The transport named by the top Via ("UDP", "TCP").
    fn via_transport(&self) -> String {
        self.header("Via")
            .strip_prefix("SIP/2.0/")
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("")
            .to_ascii_uppercase()
    }
    fn cseq_method(&self) -> &str {
        self.header("CSeq").split_whitespace().nth(1).unwrap_or("")
    }
    fn summary(&self) -> String {
        format!(
            "{} {} -> {}: {}",
            self.proto,
            self.src,
            self.dst,
            self.first_line()
        )
    }
}

/// The messages of a baresip SIP trace: blocks "ESC[36;1m#\nPROTO SRC -> DST\nMESSAGE ESC[;m".
fn parse_trace(log: &str) -> Vec<SipMsg> {
    let mut out = Vec::new();
    for block in log.split("\x1b[36;1m#\n").skip(1) {
        let block = block.split("\x1b[;m").next().unwrap_or("");
        let Some((first, text)) = block.split_once('\n') else {
            continue;
        };
        let mut w = first.split_whitespace();
        let (Some(proto), Some(src), Some("->"), Some(dst)) =
            (w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        out.push(SipMsg {
            proto: proto.to_string(),
            src: src.to_string(),
            dst: dst.to_string(),
            text: text.to_string(),
        });
    }
    out
}

fn show(msgs: &[SipMsg]) -> String {
    msgs.iter()
        .map(|m| {
            format!(
                "## {} {} -> {}\n{}",
                m.proto,
                m.src,
                m.dst,
                m.text.trim_end()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running baresip with its control connection.
struct Ua {
    name: &'static str,
    child: Option<Child>,
    dir: PathBuf,
    sip_port: u16,
    ctl: TcpStream,
    buf: Vec<u8>,
    events: Vec<Value>,
}

impl Ua {
    /// Starts baresip for `user` in `dir` (config, accounts, trace, WAV dumps), sending a sine
    /// of `tone` Hz. Ports taken by someone else in between: retried, at most 3 times.
    fn start(name: &'static str, dir: &Path, user: &str, tone: u32) -> Ua {
        let mut why = String::new();
        for _ in 0..3 {
            match Ua::try_start(name, dir, user, tone) {
                Ok(ua) => return ua,
                Err(e) => why = e,
            }
        }
        panic!("baresip {name} did not start:\n{why}");
    }

    fn try_start(name: &'static str, dir: &Path, user: &str, tone: u32) -> Result<Ua, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("snd")).unwrap();
        let sip_port = sip_port();
        let ctrl = loop {
            let p = free_port();
            if p != sip_port && p != sip_port + 1 {
                break p;
            }
        };
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             audio_source\t\tausine,{tone}\n\
             audio_player\t\taubridge,nowhere-{name}\n\
             audio_alert\t\taubridge,nowhere-{name}\n\
             ausrc_srate\t\t48000\n\
             ausrc_channels\t\t2\n\
             video_source\t\t\n\
             module_path\t\t{modules}\n\
             module\t\t\tg711.so\n\
             module\t\t\tausine.so\n\
             module\t\t\taubridge.so\n\
             module\t\t\tsndfile.so\n\
             module\t\t\tctrl_tcp.so\n\
             module_app\t\taccount.so\n\
             module_app\t\tmenu.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctrl}\n\
             statmode_default\toff\n\
             ringback_disabled\tyes\n\
             snd_path\t\t{snd}\n",
            modules = modules_dir(),
            snd = dir.join("snd").display(),
        );
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!("<sip:{user}@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU\n"),
        )
        .unwrap();
        std::fs::write(dir.join("contacts"), "").unwrap();
        let log = File::create(dir.join("stdout.log")).unwrap();
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(dir)
            .arg("-s")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn baresip: {e}"))?;
        // The control port listens once the SIP stack is bound and the modules are loaded.
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctl = loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Err(format!(
                    "exited {st}:\n{}",
                    std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default()
                ));
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl)) {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("no control port within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        ctl.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut ua = Ua {
            name,
            child: Some(child),
            dir: dir.to_path_buf(),
            sip_port,
            ctl,
            buf: Vec::new(),
            events: Vec::new(),
        };
        // Whoever holds the control port must answer as baresip does.
        ua.send("reginfo", "");
        if ua
            .wait_for(|v| v["response"] == true, Duration::from_secs(5))
            .is_none()
        {
            ua.stop();
            return Err("no answer on the control port".into());
        }
        Ok(ua)
    }

    fn send(&mut self, command: &str, params: &str) {
        let m =
            serde_json::json!({"command": command, "params": params, "token": command}).to_string();
        let frame = format!("{}:{m},", m.len());
        let _ = self.ctl.write_all(frame.as_bytes());
    }

    /// The next netstring of the control connection, or `None` at `deadline` or its end.
    fn next_message(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(v) = self.take_netstring() {
                self.events.push(v.clone());
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.ctl.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    fn take_netstring(&mut self) -> Option<Value> {
        let colon = self.buf.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.buf[..colon]).ok()?.parse().ok()?;
        if self.buf.len() < colon + len + 2 {
            return None;
        }
        let v =
            serde_json::from_slice(&self.buf[colon + 1..colon + 1 + len]).unwrap_or(Value::Null);
        self.buf.drain(..colon + len + 2);
        Some(v)
    }

    /// The first message (seen before or arriving within `timeout`) for which `pred` holds.
    fn wait_for(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        if let Some(v) = self.events.iter().find(|v| pred(v)) {
            return Some(v.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(v) = self.next_message(deadline) {
            if pred(&v) {
                return Some(v);
            }
        }
        None
    }

    fn wait_event(&mut self, ty: &str, timeout: Duration) -> Option<Value> {
        self.wait_for(|v| v["event"] == true && v["type"] == ty, timeout)
    }

    /// The decoded-audio WAV dump (what this side heard), when there is one.
    fn decoded_wav(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.join("snd"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
    }

    /// SIGTERM (baresip ends its calls, flushes its trace and WAV files), then SIGKILL if it
    /// has not exited within 5 s.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What one side saw of the call, after both baresips exited.
struct Seen {
    name: &'static str,
    sip: SocketAddr,
    events: Vec<Value>,
    trace: Vec<SipMsg>,
    /// Decoded audio, 8 kHz mono, 16-bit.
    heard: Vec<i16>,
    log: String,
}

impl Seen {
    fn event(&self, ty: &str) -> Option<&Value> {
        self.events
            .iter()
            .find(|v| v["event"] == true && v["type"] == ty)
    }
    /// Messages this side sent: from its SIP port, or to maskd (on a connection it opened).
    fn sent(&self, maskd: SocketAddr) -> Vec<&SipMsg> {
        self.trace
            .iter()
            .filter(|m| m.src == self.sip.to_string() || m.dst == maskd.to_string())
            .collect()
    }
    fn received(&self, maskd: SocketAddr) -> Vec<&SipMsg> {
        self.trace
            .iter()
            .filter(|m| m.src != self.sip.to_string() && m.dst != maskd.to_string())
            .collect()
    }
}

struct Call {
    transport: Transport,
    hung_up_by: Side,
    _dir: tempfile::TempDir,
    d: Daemon,
    pa: String,
    pb: String,
    a: Seen,
    b: Seen,
}

impl Call {
    fn maskd(&self) -> SocketAddr {
        self.d.sip
    }
    fn traces(&self) -> String {
        format!(
            "--- SIP trace of A ({A}, {})\n{}\n--- SIP trace of B ({B}, {})\n{}",
            self.a.sip,
            show(&self.a.trace),
            self.b.sip,
            show(&self.b.trace)
        )
    }
}

/// One call from A to P_A through maskd over `transport` (both legs), answered by B, audio
/// both ways for at least a second, then hung up by `hang_up`. Every wait is bounded; what
/// did not happen in time is left for the checks to report.
fn call(transport: Transport, hang_up: Side) -> Call {
    assert_baresip();
    let dir = tempfile::tempdir().unwrap();
    let mut ub = Ua::start("b", &dir.path().join("ua-b"), B, B_TONE);
    let cfg = format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{}\"\n  transport: \"{}\"\n\
         services:\n  - unique_name: \"voice\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        ub.sip_port,
        transport.name()
    );
    let maskd_dir = dir.path().join("maskd");
    std::fs::create_dir_all(&maskd_dir).unwrap();
    let d = Daemon::start_with(&maskd_dir, &cfg);
    two_party_session(&d, "voice", "call", A, B);
    let pairs = participant_pairs(&d, "voice", "call");
    let proxy_of = |n: &str| {
        pairs
            .iter()
            .find(|(real, _)| real == n)
            .map(|(_, proxy)| proxy.clone())
            .unwrap()
    };
    let (pa, pb) = (proxy_of(A), proxy_of(B));
    let mut ua = Ua::start("a", &dir.path().join("ua-a"), A, A_TONE);

    let tail = match transport {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
    };
    ua.send("dial", &format!("sip:{pa}@{}{tail}", d.sip));
    let t = Duration::from_secs(10);
    let a_up = ua.wait_event("CALL_ESTABLISHED", t).is_some();
    let b_up = ub.wait_event("CALL_ESTABLISHED", t).is_some();
    if a_up && b_up {
        // Audio both ways: each side's decoded dump reaches a second (8 kHz, 16 bit).
        let deadline = Instant::now() + Duration::from_secs(10);
        let size = |u: &Ua| {
            u.decoded_wav()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len())
        };
        while Instant::now() < deadline && (size(&ua) < 16_044 || size(&ub) < 16_044) {
            std::thread::sleep(Duration::from_millis(50));
        }
        match hang_up {
            Side::A => ua.send("hangup", ""),
            Side::B => ub.send("hangup", ""),
        }
        ua.wait_event("CALL_CLOSED", t);
        ub.wait_event("CALL_CLOSED", t);
    }
    // Whatever else the control connections still hold (bounded), then stop both.
    let soon = Instant::now() + Duration::from_millis(300);
    while ua.next_message(soon).is_some() {}
    while ub.next_message(soon).is_some() {}
    ua.stop();
    ub.stop();
    let seen = |u: &Ua| Seen {
        name: u.name,
        sip: ([127, 0, 0, 1], u.sip_port).into(),
        events: u.events.clone(),
        trace: parse_trace(&u.log()),
        heard: u.decoded_wav().map(|p| wav_samples(&p)).unwrap_or_default(),
        log: u.log(),
    };
    let (a, b) = (seen(&ua), seen(&ub));
    Call {
        transport,
        hung_up_by: hang_up,
        _dir: dir,
        d,
        pa,
        pb,
        a,
        b,
    }
}

/// The 16-bit samples of a WAV file's data chunk (all that follows it, when its size was
/// never written).
fn wav_samples(path: &Path) -> Vec<i16> {
    let raw = std::fs::read(path).unwrap_or_default();
    let mut i = 12;
    while i + 8 <= raw.len() {
        let id = &raw[i..i + 4];
        let size = u32::from_le_bytes(raw[i + 4..i + 8].try_into().unwrap()) as usize;
        if id == b"data" {
            let end = if size == 0 || i + 8 + size > raw.len() {
                raw.len()
            } else {
                i + 8 + size
            };
            return raw[i + 8..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        i += 8 + size;
    }
    Vec::new()
}

/// The dominant frequency of 8 kHz audio: the median over its loud 100-ms windows of the
/// zero-crossing rate. `None` when no window is loud (silence).
fn tone_hz(samples: &[i16]) -> Option<u32> {
    let mut rates: Vec<u32> = samples
        .chunks_exact(800)
        .filter(|w| w.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) > 2000)
        .map(|w| {
            let ups = w.windows(2).filter(|p| p[0] < 0 && p[1] >= 0).count();
            (ups * 10) as u32
        })
        .collect();
    if rates.is_empty() {
        return None;
    }
    rates.sort_unstable();
    Some(rates[rates.len() / 2])
}

fn voice_interaction_status(d: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = d
            .get("/v1/Services/voice/Sessions/call/Interactions")
            .json();
        let status = list["interactions"][0]["outbound_resource_status"]
            .as_str()
            .unwrap_or("none")
            .to_string();
        let live = ["none", "initiated", "ringing", "in-progress"].contains(&status.as_str());
        if !live || Instant::now() >= deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything wrong with `c`: call set-up and caller ID, what crossed on each side,
/// audio, hang-up, transports and in-dialog Request-URIs.
fn problems(c: &Call) -> Vec<String> {
    let mut p = Vec::new();
    let maskd = c.maskd();
    let (a, b) = (&c.a, &c.b);
    let (a_in, b_in) = (a.received(maskd), b.received(maskd));
    let (a_out, b_out) = (a.sent(maskd), b.sent(maskd));

    // Set-up, and who B sees calling: B's proxy number, never A.
    if a.event("CALL_ESTABLISHED").is_none() {
        p.push("A: the call was never established (no CALL_ESTABLISHED)".into());
    }
    match b.event("CALL_ESTABLISHED") {
        None => p.push("B: the call was never established (no CALL_ESTABLISHED)".into()),
        Some(e) => {
            let peer = e["peeruri"].as_str().unwrap_or("");
            if !peer.starts_with(&format!("sip:{}@", c.pb)) {
                p.push(format!("B: caller is {peer:?}, not P_B {}", c.pb));
            }
        }
    }
    match b_in.iter().find(|m| m.is_request("INVITE")) {
        None => p.push("B received no INVITE".into()),
        Some(inv) => {
            if !inv.header("From").contains(&format!("sip:{}@", c.pb)) {
                p.push(format!(
                    "B: INVITE From is {:?}, not P_B",
                    inv.header("From")
                ));
            }
            if !inv.request_uri().starts_with(&format!("sip:{B}@")) {
                p.push(format!("B: INVITE Request-URI is {}", inv.request_uri()));
            }
        }
    }
    for m in &b_in {
        if m.head().contains(&A[1..]) {
            p.push(format!("B received A's number {A} in: {}", m.summary()));
        }
    }
    for m in &a_in {
        if m.head().contains(&B[1..]) || m.head().contains(&c.pb[1..]) {
            p.push(format!("A received B's number or P_B in: {}", m.summary()));
        }
    }

    // Audio both ways: each side heard the other's tone.
    for (s, want) in [(a, B_TONE), (b, A_TONE)] {
        match tone_hz(&s.heard) {
            None => p.push(format!(
                "{}: heard no audio ({} samples decoded)",
                s.name.to_uppercase(),
                s.heard.len()
            )),
            Some(hz) if hz.abs_diff(want) > want / 10 => p.push(format!(
                "{}: heard {hz} Hz, not the other side's {want} Hz",
                s.name.to_uppercase()
            )),
            Some(_) => {}
        }
    }

    // Hang-up: the BYE left one side and ended the call on the other.
    let (by, other, by_out, by_in, other_in) = match c.hung_up_by {
        Side::A => (a, b, &a_out, &a_in, &b_in),
        Side::B => (b, a, &b_out, &b_in, &a_in),
    };
    let (by_n, other_n) = (by.name.to_uppercase(), other.name.to_uppercase());
    if by.event("CALL_ESTABLISHED").is_some() && other.event("CALL_ESTABLISHED").is_some() {
        if !by_out.iter().any(|m| m.is_request("BYE")) {
            p.push(format!("{by_n} sent no BYE"));
        }
        if !by_in.iter().any(|m| {
            m.is_response() && m.cseq_method() == "BYE" && m.first_line().contains(" 200 ")
        }) {
            p.push(format!("{by_n}: its BYE got no 200 back"));
        }
        if !other_in.iter().any(|m| m.is_request("BYE")) {
            p.push(format!("{other_n} received no BYE after {by_n} hung up"));
        }
        if other.event("CALL_CLOSED").is_none() {
            p.push(format!(
                "{other_n}: the call did not end after {by_n} hung up"
            ));
        }
        let st = voice_interaction_status(&c.d);
        if st != "completed" {
            p.push(format!(
                "maskd: the voice interaction is {st:?}, not completed"
            ));
        }
    }

    for (s, sent, got) in [(a, &a_out, &a_in), (b, &b_out, &b_in)] {
        let n = s.name.to_uppercase();
        // In-dialog requests go to the remote target: this side's Contact (RFC 3261 12.2).
        let contact = sent
            .iter()
            .find(|m| {
                m.is_request("INVITE")
                    || (m.is_response()
                        && m.cseq_method() == "INVITE"
                        && !m.header("Contact").is_empty())
            })
            .map(|m| m.contact_uri().to_string())
            .unwrap_or_default();
        for m in got
            .iter()
            .filter(|m| m.is_request("ACK") || m.is_request("BYE"))
        {
            if m.request_uri() != contact {
                p.push(format!(
                    "{n}: in-dialog {} has Request-URI {}, not {n}'s Contact {contact}",
                    m.first_line().split(' ').next().unwrap_or(""),
                    m.request_uri()
                ));
            }
        }
        // Every message maskd sent went over the transport its top Via names.
        for m in got.iter() {
            if m.via_transport() != m.proto {
                p.push(format!(
                    "{n}: received over {} with top Via {}: {}",
                    m.proto,
                    m.via_transport(),
                    m.summary()
                ));
            }
        }
        if c.transport == Transport::Tcp {
            // The whole call over TCP, both directions; maskd's Contact says so.
            for m in s.trace.iter().filter(|m| m.proto != c.transport.trace()) {
                p.push(format!("{n}: not over TCP: {}", m.summary()));
            }
            for m in got.iter().filter(|m| !m.header("Contact").is_empty()) {
                if !m.contact_uri().contains("transport=tcp") {
                    p.push(format!(
                        "{n}: maskd's Contact {} lacks ;transport=tcp in: {}",
                        m.header("Contact"),
                        m.summary()
                    ));
                }
            }
        }
    }
    p
}

fn assert_no_problems(c: &Call, p: &[String]) {
    assert!(
        p.is_empty(),
        "{} call, hung up by {:?}: {} problem(s):\n  {}\n(P_A {}, P_B {}, maskd {})\n{}\n--- events of A\n{}\n--- events of B\n{}",
        c.transport.name(),
        c.hung_up_by,
        p.len(),
        p.join("\n  "),
        c.pa,
        c.pb,
        c.maskd(),
        c.traces(),
        c.a.events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
        c.b.events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
    );
}

fn check(transport: Transport, hang_up: Side) {
    let c = call(transport, hang_up);
    if c.a.trace.is_empty() || c.b.trace.is_empty() {
        panic!(
            "no SIP trace from baresip; its output:\n--- A\n{}\n--- B\n{}",
            c.a.log, c.b.log
        );
    }
    let p = problems(&c);
    assert_no_problems(&c, &p);
}

#[test]
fn baresip_udp_call_hung_up_by_caller() {
    check(Transport::Udp, Side::A);
}

#[test]
fn baresip_udp_call_hung_up_by_callee() {
    check(Transport::Udp, Side::B);
}

#[test]
fn baresip_tcp_call_hung_up_by_caller() {
    check(Transport::Tcp, Side::A);
}

#[test]
fn baresip_tcp_call_hung_up_by_callee() {
    check(Transport::Tcp, Side::B);
}

/// baresip writes its account's AOR into the SDP (`a=ssrc:... cname:sip:NUMBER@host`) and
/// sends it in every RTCP SDES packet. maskd anchors the media: the SDP each side receives
/// names maskd's ports and carries no ssrc/ICE line and no number, and the RTCP that
/// crossed had its SDES items replaced (counted by maskd).
#[test]
fn baresip_sdp_and_rtcp_carry_no_real_number_across() {
    let c = call(Transport::Udp, Side::A);
    let maskd = c.maskd();
    let mut p = Vec::new();
    for (from, to) in [(&c.a, &c.b), (&c.b, &c.a)] {
        let sent_ports: Vec<String> = from
            .sent(maskd)
            .iter()
            .flat_map(|m| m.body().lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| l.starts_with("m="))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect();
        for m in to.received(maskd) {
            for line in m.body().lines() {
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("a=ssrc")
                    || lower.starts_with("a=candidate")
                    || lower.starts_with("a=ice")
                {
                    p.push(format!("{} received {line:?} in {}", to.name, m.summary()));
                }
                if let Some(port) = line
                    .strip_prefix("m=")
                    .and_then(|l| l.split_whitespace().nth(1))
                {
                    if sent_ports.iter().any(|s| s == port) {
                        p.push(format!(
                            "{} received the other side's own RTP port {port} in {}",
                            to.name,
                            m.summary()
                        ));
                    }
                }
            }
        }
    }
    let metrics = c.d.metrics_text();
    let scrubbed: f64 = metrics
        .lines()
        .find(|l| l.starts_with("maskd_media_rtcp_items_removed_total "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    if scrubbed < 1.0 {
        p.push(format!(
            "no RTCP SDES item was replaced (maskd_media_rtcp_items_removed_total {scrubbed})"
        ));
    }
    let relayed = metrics
        .lines()
        .filter(|l| l.starts_with("maskd_media_packets_total{"))
        .count();
    if relayed < 2 {
        p.push("maskd relayed no media both ways (maskd_media_packets_total)".into());
    }
    for m in c.b.received(maskd) {
        for line in m.body().lines().filter(|l| l.contains(&A[1..])) {
            p.push(format!(
                "B received A's number in the SDP of {}: {line}",
                m.summary()
            ));
        }
    }
    for m in c.a.received(maskd) {
        for line in m.body().lines().filter(|l| l.contains(&B[1..])) {
            p.push(format!(
                "A received B's number in the SDP of {}: {line}",
                m.summary()
            ));
        }
    }
    if c.b.received(maskd).iter().all(|m| m.body().is_empty()) {
        p.push("B received no SDP at all".into());
    }
    assert_no_problems(&c, &p);
}
