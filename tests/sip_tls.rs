//! SIP over TLS on both legs (SPEC §2.7): the caller's carrier reaches maskd's TLS listener,
//! and leg B leaves over TLS to the callee's carrier trunk, which asks for maskd's client
//! certificate. Debian's SIPp is built without TLS, so each SIPp (plain TCP, `-t t1`) sits
//! behind an OpenSSL endpoint (tests/interop/tls_relay.py) that does the TLS: maskd's TLS is
//! verified by OpenSSL on both legs, and maskd verifies the trunk's certificate. A trunk
//! whose certificate maskd cannot verify is never sent the call.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::{pki, Pki, Relay};
use common::*;

const A: &str = "+14155551001";
const B: &str = "+14155552002";

fn sipp(args: &[&str], log: &std::path::Path) -> std::process::Child {
    Command::new("sipp")
        .args(args)
        .args([
            "-i",
            "127.0.0.1",
            "-m",
            "1",
            "-nostdin",
            "-t",
            "t1",
            "-timeout",
            "30s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
        ])
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp is not installed: run scripts/test (it installs Debian's sip-tester)")
}

fn wait(child: &mut std::process::Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        assert!(Instant::now() < deadline, "SIPp did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// maskd with a TLS listener and carrier "alpha" (owning the pool) whose one trunk is
/// `trunk` over TLS, verified against `ca`, maskd presenting the client certificate.
fn config(p: &Pki, trunk: u16, ca: &str) -> String {
    format!(
        "sip:\n  listen: \"127.0.0.1:0\"\n  tls:\n    listen: \"127.0.0.1:0\"\n    cert: \"{cert}\"\n    key: \"{key}\"\n\
         carriers:\n  - name: \"alpha\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n    sip:\n      options_interval: \"1h\"\n      tls:\n        ca: \"{ca}\"\n        cert: \"{ccert}\"\n        key: \"{ckey}\"\n      trunks:\n        - address: \"127.0.0.1:{trunk}\"\n          transport: \"tls\"\n\
         services:\n  - unique_name: \"voice\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        cert = p.server_cert(),
        key = p.server_key(),
        ccert = p.client_cert(),
        ckey = p.client_key(),
    )
}

#[test]
fn a_call_crosses_maskd_over_tls_on_both_legs() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let uas_port = free_port();
    let trunk = Relay::server(&p, uas_port, Some(p.ca()));
    let d = Daemon::start_with(dir.path(), &config(&p, trunk.port, &p.ca()));
    // maskd probes the trunk with OPTIONS at start, over TLS: the relay takes it (the
    // handshake it prints) but finds no UAS yet, so SIPp's UAS sees only the call.
    let seen = trunk.next();
    assert!(seen.starts_with("peer carrier-a TLSv1."), "{seen}");
    assert!(trunk.next().starts_with("target refused"));
    let (pa, pb) = two_party_session(&d, "voice", "call", A, B);
    let tls = d.ready_addr("sip_tls");
    let caller = Relay::client(&p.ca(), tls.port(), None);
    let (uac_log, uas_log) = (dir.path().join("uac.log"), dir.path().join("uas.log"));
    let mut uas = sipp(&["-sn", "uas", "-p", &uas_port.to_string()], &uas_log);
    std::thread::sleep(Duration::from_millis(300)); // SIPp binds its port at start
    let scen = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uac.xml");
    let target = format!("127.0.0.1:{}", caller.port);
    let mut uac = sipp(
        &[
            "-sf",
            scen,
            "-s",
            &pa,
            &target,
            "-p",
            &free_port().to_string(),
        ],
        &uac_log,
    );
    let (uac_ok, uas_ok) = (wait(&mut uac), wait(&mut uas));
    let uac_text = std::fs::read_to_string(&uac_log).unwrap_or_default();
    let uas_text = std::fs::read_to_string(&uas_log).unwrap_or_default();
    assert!(
        uac_ok && uas_ok,
        "call failed (uac {uac_ok}, uas {uas_ok})\n--- uac\n{uac_text}\n--- uas\n{uas_text}"
    );
    // OpenSSL verified maskd's certificate on leg A; on leg B it asked for maskd's client
    // certificate and got it.
    assert!(caller.next().starts_with("connected TLSv1."));
    let seen = trunk.next();
    assert!(seen.starts_with("peer carrier-a TLSv1."), "{seen}");
    // Leg B: maskd's Via and Contact say TLS, on its TLS port; the callee sees B's proxy
    // number and nothing of A.
    assert!(
        uas_text.contains(&format!("Via: SIP/2.0/TLS 127.0.0.1:{}", tls.port())),
        "{uas_text}"
    );
    assert!(
        uas_text.contains(&format!(":{};transport=tls>", tls.port())),
        "{uas_text}"
    );
    assert!(uas_text.contains(&pb[1..]), "{uas_text}");
    assert!(
        !uas_text.contains(&A[2..]),
        "nothing of A on leg B:\n{uas_text}"
    );
    // Leg A: answered, with maskd's Contact over TLS.
    assert!(uac_text.contains("SIP/2.0 200"), "{uac_text}");
    assert!(uac_text.contains(";transport=tls>"), "{uac_text}");
    let list = d
        .get("/v1/Services/voice/Sessions/call/Interactions")
        .json();
    assert_eq!(
        list["interactions"][0]["outbound_resource_status"],
        "completed"
    );
}

/// A trunk whose certificate does not chain to the carrier's CA gets no call: the handshake
/// fails (counted), and the caller is answered 503.
#[test]
fn a_trunk_maskd_cannot_verify_gets_no_call() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let uas_port = free_port();
    let trunk = Relay::server(&p, uas_port, None);
    let d = Daemon::start_with(dir.path(), &config(&p, trunk.port, &p.other_ca()));
    let (pa, _) = two_party_session(&d, "voice", "call", A, B);
    let caller = Relay::client(&p.ca(), d.ready_addr("sip_tls").port(), None);
    let uac_log = dir.path().join("uac.log");
    let scen = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uac_503.xml");
    let target = format!("127.0.0.1:{}", caller.port);
    let mut uac = sipp(
        &[
            "-sf",
            scen,
            "-s",
            &pa,
            &target,
            "-p",
            &free_port().to_string(),
        ],
        &uac_log,
    );
    wait(&mut uac);
    let uac_text = std::fs::read_to_string(&uac_log).unwrap_or_default();
    assert!(uac_text.contains("SIP/2.0 503"), "{uac_text}");
    let seen = trunk.next();
    assert!(seen.starts_with("handshake failed"), "{seen}");
    assert!(d.metrics_text().lines().any(|l| {
        l.starts_with(r#"maskd_tls_handshakes_failed_total{plane="sip",side="connect"}"#)
            && !l.ends_with(" 0")
    }));
}

/// A carrier trunk over TLS needs maskd's own TLS listener (the carrier's requests back
/// reach maskd there): without `sip.tls`, check-config names the trunk's transport (exit 64).
#[test]
fn a_tls_trunk_without_a_tls_listener_is_a_config_error() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let with_listener = config(&p, 5061, &p.ca());
    let start = with_listener.find("  tls:\n    listen").unwrap();
    let end = start + with_listener[start..].find("carriers:").unwrap();
    let without = format!("{}{}", &with_listener[..start], &with_listener[end..]);
    let (code, err) = check_config(dir.path(), &without);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("carriers[0].sip.trunks[0].transport: tls needs sip.tls"),
        "{err}"
    );
}
