//! The API over HTTPS (issue 18): Twilio's Python library against a test CA, plain HTTP on
//! the port refused (the failed handshake counted), the certificate read again on SIGHUP
//! without dropping an open connection (tests/interop/api_tls.py); check-config names bad
//! files and an http:// public_url.

mod common;

use std::process::Command;

use common::tls::pki;
use common::*;

#[test]
fn https_with_twilios_library_plain_refused_and_a_reload_on_sighup() {
    let p = pki();
    let (new_cert, new_key) = p.another_server("server2", "maskd reloaded");
    // maskd reads the files at these paths; the test replaces them before the SIGHUP.
    let (cert, key) = (p.path("api.pem"), p.path("api.key"));
    std::fs::copy(p.server_cert(), &cert).unwrap();
    std::fs::copy(p.server_key(), &key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let d = Daemon::start_edited(
        dir.path(),
        "services:\n  - unique_name: \"shop\"\n    numbers: [\"+14155550101\"]\n",
        move |text: &str| {
            text.replacen("public_url: \"http://", "public_url: \"https://", 1)
                .replacen(
                    "api:\n",
                    &format!("api:\n  tls:\n    cert: \"{c}\"\n    key: \"{k}\"\n"),
                    1,
                )
        },
    );
    let base = format!("https://{}", d.api);
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/api_tls.py"
        ))
        .args([&base, ACCOUNT, TOKEN, &p.ca()])
        .arg(&cert)
        .arg(&key)
        .args([&new_cert, &new_key, &d.pid().to_string()])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let failed = d
        .metrics_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("maskd_tls_handshakes_failed_total{plane=\"api\",side=\"accept\"} ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(
        failed >= 1.0,
        "the plain HTTP attempt is a failed handshake"
    );
}

#[test]
fn check_config_names_bad_api_tls() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!(
                "  tls:\n    cert: \"{}\"\n    key: \"/nonexistent.key\"\n",
                p.server_cert()
            ),
            "api.tls",
        ),
        (
            format!(
                "  tls:\n    cert: \"{}\"\n    key: \"{}\"\n",
                p.server_cert(),
                p.server_key()
            ),
            "api.public_url",
        ),
    ];
    for (keys, named) in cases {
        let path = dir.path().join("c.yaml");
        let text = config_yaml(dir.path(), free_port(), free_port(), "").replacen(
            "api:\n",
            &format!("api:\n{keys}"),
            1,
        );
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_maskd"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains(named), "{named}: {err}");
    }
}
