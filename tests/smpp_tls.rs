//! SMPP over TLS (SPEC §2.7): maskd's TLS listener with python-smpplib on Python's ssl
//! (OpenSSL) as the carrier, with and without client certificates; maskd's bind to an
//! upstream over TLS, through an OpenSSL server (tests/interop/tls_relay.py) in front of an
//! SMSC of the test's own; and the config checks of TLS settings. The PKI is made with
//! Debian's openssl; Python with smpplib comes from `MASKD_PYTHON` or `.venv` (scripts/test).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::smpp::{sm, Peer};
use common::tls::{pki, Pki, Relay};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body, Pdu};

const A: &str = "+14155551001";
const B: &str = "+14155552002";

fn services() -> &'static str {
    "services:\n  - unique_name: \"sms\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n"
}

fn tls_listener(p: &Pki, client_ca: Option<&str>) -> String {
    let mut s = format!(
        "  tls:\n    listen: \"127.0.0.1:0\"\n    cert: \"{}\"\n    key: \"{}\"\n",
        p.server_cert(),
        p.server_key()
    );
    if let Some(ca) = client_ca {
        s += &format!("    client_ca: \"{ca}\"\n");
    }
    s
}

fn smpp_tls_py(d: &Daemon, p: &Pki, pa: &str, client: bool) -> std::process::Output {
    let addr = d.ready_addr("smpp_tls");
    let mut cmd = Command::new(python());
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/smpp_tls.py"
    ))
    .args([
        "127.0.0.1",
        &addr.port().to_string(),
        &p.ca(),
        &A[1..],
        &pa[1..],
    ]);
    if client {
        cmd.args([p.client_cert(), p.client_key()]);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.output().expect("run smpp_tls.py")
}

fn counter(d: &Daemon, line: &str) -> i64 {
    d.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Carrier A binds over TLS with python-smpplib (verifying maskd's certificate) and texts
/// B's proxy number; carrier B, bound in plain text, gets it masked and answers; A gets the
/// answer over TLS. With `client_ca` set, A's bind without a client certificate fails and
/// with one succeeds. A plain bind on the TLS port gets nothing and is counted.
#[test]
fn a_carrier_binds_over_tls_and_exchanges_masked_messages() {
    let p = pki();
    for client_ca in [None, Some(p.ca())] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            "{}{}",
            two_carriers(&tls_listener(&p, client_ca.as_deref())),
            services()
        );
        let d = Daemon::start_with(dir.path(), &cfg);
        let (pa, pb) = two_party_session(&d, "sms", "chat", A, B);
        let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
        if client_ca.is_some() {
            let out = smpp_tls_py(&d, &p, &pa, false);
            assert!(!out.status.success(), "bound without a client certificate");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("bind over tls"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Carrier A runs in the background while B answers here.
        let mut cmd = Command::new(python());
        let addr = d.ready_addr("smpp_tls");
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/smpp_tls.py"
        ))
        .args([
            "127.0.0.1",
            &addr.port().to_string(),
            &p.ca(),
            &A[1..],
            &pa[1..],
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if client_ca.is_some() {
            cmd.args([p.client_cert(), p.client_key()]);
        }
        let a = cmd.spawn().expect("run smpp_tls.py");
        assert!(
            b.wait_messages(1, Duration::from_secs(20)),
            "B gets A's text"
        );
        assert_eq!(
            (
                b.messages[0].source.addr.as_str(),
                b.messages[0].dest.addr.as_str(),
                b.messages[0].short_message.as_slice()
            ),
            (&pb[1..], &B[1..], b"hello over tls".as_slice())
        );
        let r = b.request(Body::SubmitSm(sm(&B[1..], &pb[1..], b"back over tls")));
        assert_eq!(r.status, status::ESME_ROK);
        let out = a.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "smpp_tls.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(report["text"], "back over tls");
        assert_eq!(report["source"], pa[1..].to_string(), "masked as A's proxy");
        assert!(report["cipher"].as_str().unwrap().starts_with("TLSv1."));

        // Plain SMPP on the TLS port: no bind, the connection dropped, the failure counted.
        let failed = r#"maskd_tls_handshakes_failed_total{plane="smpp",side="accept"}"#;
        let before = counter(&d, failed);
        let mut plain = std::net::TcpStream::connect(addr).unwrap();
        let bind = Pdu {
            seq: 1,
            status: 0,
            body: Body::Bind(maskd::smpp::pdu::Bind {
                kind: BindKind::Transceiver,
                system_id: "carrier-a".into(),
                password: "secret-a".into(),
                system_type: String::new(),
                interface_version: 0x34,
                addr_ton: 0,
                addr_npi: 0,
                address_range: String::new(),
            }),
        };
        let mut bytes = Vec::new();
        maskd::smpp::codec::encode(&bind, &mut bytes);
        plain.write_all(&bytes).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        // At most a TLS alert record (content type 21), then the connection closes.
        assert!(
            answer.is_empty() || answer[0] == 21,
            "no SMPP in plain text: {answer:?}"
        );
        let t = std::time::Instant::now();
        while counter(&d, failed) <= before {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "failed handshake counted"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// maskd binds to an upstream over TLS: the upstream (OpenSSL) requires a client
/// certificate, maskd verifies the upstream against the CA and presents its own; the SMSC
/// behind gets maskd's bind and the masked submit_sm. An upstream whose certificate does
/// not chain to the configured CA is never bound, and the failure is counted.
#[test]
fn maskd_binds_to_an_upstream_over_tls_with_a_client_certificate() {
    let p = pki();
    let smsc = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = Relay::server(&p, smsc.local_addr().unwrap().port(), Some(p.ca()));
    let upstreams = format!(
        "  upstreams:\n\
         \x20   - name: \"smsc\"\n      address: \"127.0.0.1:{port}\"\n      system_id: \"maskd\"\n      password: \"up-pw\"\n\
         \x20     tls:\n        ca: \"{ca}\"\n        cert: \"{cert}\"\n        key: \"{key}\"\n\
         \x20   - name: \"impostor\"\n      address: \"127.0.0.1:{port}\"\n      system_id: \"maskd\"\n      password: \"up-pw\"\n\
         \x20     tls:\n        ca: \"{other}\"\n        cert: \"{cert}\"\n        key: \"{key}\"\n",
        port = relay.port,
        ca = p.ca(),
        other = p.other_ca(),
        cert = p.client_cert(),
        key = p.client_key(),
    );
    let cfg = format!(
        "smpp:\n  listen: \"127.0.0.1:0\"\n{upstreams}  accounts:\n    - system_id: \"carrier-a\"\n      password: \"secret-a\"\n  routes:\n    - prefix: \"+1415555100\"\n      via: \"carrier-a\"\n    - prefix: \"+1415555200\"\n      via: \"smsc\"\n{}",
        services()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &cfg);
    // The relay saw maskd's client certificate over TLS 1.2 or 1.3.
    let seen = relay.next();
    let seen = if seen.starts_with("handshake failed") {
        // The impostor's attempt (maskd refuses the relay's certificate) may come first.
        relay.next()
    } else {
        seen
    };
    assert!(seen.starts_with("peer carrier-a TLSv1."), "{seen}");
    let (s, _) = smsc.accept().unwrap();
    let mut link = Peer::from_stream(s);
    let bind = link.recv(Duration::from_secs(10)).expect("maskd binds");
    let Body::Bind(b) = &bind.body else {
        panic!("expected a bind, got {:?}", bind.body)
    };
    assert_eq!(
        (b.system_id.as_str(), b.password.as_str()),
        ("maskd", "up-pw")
    );
    link.send_pdu(&Pdu {
        seq: bind.seq,
        status: 0,
        body: Body::BindResp {
            kind: b.kind,
            system_id: "smsc".into(),
            tlvs: vec![],
        },
    });
    let (pa, pb) = two_party_session(&d, "sms", "chat", A, B);
    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let r = a.request(Body::SubmitSm(sm(
        &A[1..],
        &pa[1..],
        b"to the tls upstream",
    )));
    assert_eq!(r.status, status::ESME_ROK);
    assert!(
        link.wait_messages(1, Duration::from_secs(10)),
        "the SMSC gets it"
    );
    assert_eq!(
        (
            link.messages[0].source.addr.as_str(),
            link.messages[0].dest.addr.as_str()
        ),
        (&pb[1..], &B[1..])
    );
    let failed = r#"maskd_tls_handshakes_failed_total{plane="smpp",side="connect"}"#;
    let t = std::time::Instant::now();
    while counter(&d, failed) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the impostor is refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !d.metrics_text()
            .contains(r#"maskd_smpp_binds_active{peer="impostor"} 1"#),
        "never bound to the impostor"
    );
}

/// Unreadable TLS files, a key without its certificate and a bad server name are config
/// errors naming their keys (exit 64).
#[test]
fn check_config_names_bad_tls_settings() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem").display().to_string();
    let cfg = format!(
        "smpp:\n  listen: \"127.0.0.1:0\"\n  tls:\n    listen: \"127.0.0.1:0\"\n    cert: \"{missing}\"\n    key: \"{key}\"\n\
         \x20 upstreams:\n    - name: \"u1\"\n      address: \"127.0.0.1:3550\"\n      system_id: \"m\"\n      password: \"p\"\n      tls:\n        cert: \"{cert}\"\n\
         \x20   - name: \"u2\"\n      address: \"127.0.0.1:3550\"\n      system_id: \"m\"\n      password: \"p\"\n      tls:\n        server_name: \"not a name!\"\n\
         \x20   - name: \"u3\"\n      address: \"127.0.0.1:3550\"\n      system_id: \"m\"\n      password: \"p\"\n      tls:\n        ca: \"{key}\"\n",
        key = p.server_key(),
        cert = p.client_cert(),
    );
    let (code, err) = check_config(dir.path(), &cfg);
    assert_eq!(code, Some(64), "{err}");
    for (key, why) in [
        ("smpp.tls:", "missing.pem"),
        ("smpp.upstreams[0].tls:", "cert and key go together"),
        ("smpp.upstreams[1].tls.server_name:", "not a host name"),
        ("smpp.upstreams[2].tls:", "no certificate"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(key) && l.contains(why)),
            "{key} {why}: {err}"
        );
    }
}
