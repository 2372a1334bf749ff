//! SIPp (Debian's `sip-tester`) as the tests run it: one call from a UAC scenario towards
//! maskd, with a UAS (a scenario or SIPp's built-in one) as the trunk, both logs checked
//! with rsip. Without `sipp` on PATH the calling test fails (scripts/test installs it).

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn sipp() -> Command {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        ok.is_ok(),
        "sipp is not installed: run scripts/test (it installs Debian's sip-tester)"
    );
    Command::new("sipp")
}

pub fn wait(child: &mut std::process::Child, what: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        assert!(Instant::now() < deadline, "{what} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a SIPp run's standard error goes (beside its message log), so that a failed call
/// says why SIPp stopped (a port in use, a scenario error).
fn err_file(log: &std::path::Path) -> Stdio {
    std::fs::File::create(log.with_extension("stderr")).map_or_else(|_| Stdio::null(), Stdio::from)
}

/// `extra`: more SIPp arguments for the UAC and the UAS.
#[allow(clippy::too_many_arguments)]
pub fn run_call_at(
    dir: &std::path::Path,
    uas_port: u16,
    sip: std::net::SocketAddr,
    tcp: bool,
    uac: &str,
    uas: Option<&str>,
    dialled: &str,
    extra: [&[&str]; 2],
) -> (String, String) {
    let (uac_log, uas_log) = (
        dir.join(format!("{uac}.log")),
        dir.join(format!("{uac}-uas.log")),
    );
    let scen = |f: &str| format!("{}/tests/sipp/{f}", env!("CARGO_MANIFEST_DIR"));
    let mut uas_child = uas.map(|f| {
        let mut c = sipp();
        if f == "builtin" {
            c.args(["-sn", "uas"]);
        } else {
            c.args(["-sf", &scen(f)]);
        }
        c.args([
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-t",
            if tcp { "t1" } else { "u1" },
            "-timeout",
            "30s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
        ])
        .arg(&uas_log)
        .args(extra[1])
        .stdout(Stdio::null())
        .stderr(err_file(&uas_log))
        .spawn()
        .unwrap()
    });
    if uas_child.is_some() {
        std::thread::sleep(Duration::from_millis(300)); // SIPp binds its port at start
    }
    let mut uac_child = sipp()
        .args(["-sf", &scen(uac), "-s", dialled, &sip.to_string()])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &udp_port().to_string(),
            "-m",
            "1",
            "-nostdin",
            "-t",
            if tcp { "t1" } else { "u1" },
            "-timeout",
            "30s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
        ])
        .arg(&uac_log)
        .args(extra[0])
        .stdout(Stdio::null())
        .stderr(err_file(&uac_log))
        .spawn()
        .unwrap();
    let uac_ok = wait(&mut uac_child, "SIPp UAC");
    let uas_ok = uas_child.as_mut().is_none_or(|c| wait(c, "SIPp UAS"));
    let uas_text = std::fs::read_to_string(&uas_log).unwrap_or_default();
    let uac_text = std::fs::read_to_string(&uac_log).unwrap_or_default();
    let said = |log: &std::path::Path| {
        std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default()
    };
    assert!(
        uac_ok && uas_ok,
        "{uac}: call failed (uac {uac_ok}, uas {uas_ok})\n--- uac\n{uac_text}\n--- uac stderr\n{}\n--- uas\n{uas_text}\n--- uas stderr\n{}",
        said(&uac_log),
        said(&uas_log)
    );
    // rsip, an independent parser, must read every message maskd sent on either leg.
    for m in received_messages(&uac_text)
        .iter()
        .chain(&received_messages(&uas_text))
    {
        if let Err(e) = rsip::SipMessage::try_from(m.as_str()) {
            panic!("{uac}: rsip refuses what maskd sent ({e}):\n{m}");
        }
    }
    (uac_text, uas_text)
}

/// The messages maskd sent that a SIPp log shows as received, CRLF restored.
pub fn received_messages(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in log.split("-----------------------------------------------") {
        let Some(rest) = block.split_once("message received").map(|x| x.1) else {
            continue;
        };
        let Some(msg) = rest.split_once(":\n").map(|x| x.1) else {
            continue;
        };
        let text = msg.trim_start_matches('\n').replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        out.push(format!(
            "{}\r\n\r\n{}",
            head.trim_end().replace('\n', "\r\n"),
            body.trim_end_matches('\n').replace('\n', "\r\n")
                + if body.trim().is_empty() { "" } else { "\r\n" }
        ));
    }
    out
}
