//! Interop: two carriers bind with python-smpplib (PyPI) and exchange masked messages through
//! a session created over the REST API; then the interaction log is checked through the API.
//! The Python with smpplib comes from `MASKD_PYTHON` or `./.venv/bin/python` (scripts/test
//! installs it); without it this test fails, it never passes silently.

mod common;

use std::process::Command;

use common::*;

fn config() -> String {
    two_carriers("")
        + r#"services:
  - unique_name: "sms"
    numbers: ["+14155550101", "+14155550102"]
"#
}

#[test]
fn smpplib_carriers_exchange_masked_messages() {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import smpplib"])
        .status()
        .expect("run python");
    assert!(
        ok.success(),
        "{py} cannot import smpplib: run scripts/test to install tests/interop/requirements.txt"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config());
    let (a, b) = ("+14155551001", "+14155552002");
    let (pa, pb) = two_party_session(&d, "sms", "chat", a, b);
    let proxy = |i: usize| [&pa, &pb][i].trim_start_matches('+').to_string();
    let out = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/smpp_flow.py"
        ))
        .args([
            "127.0.0.1",
            &d.smpp.port().to_string(),
            &a[1..],
            &b[1..],
            &proxy(0),
            &proxy(1),
        ])
        .output()
        .expect("run smpp_flow.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "smpp_flow.py failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();

    // The interaction log: GSM message delivered (carrier B's bind took it), UCS-2 reply, the two-part message
    // as one interaction, and "last"; the opt-out and the stranger's message are absent.
    let list = d.get("/v1/Services/sms/Sessions/chat/Interactions").json();
    let items = list["interactions"].as_array().unwrap();
    let bodies: Vec<String> = items
        .iter()
        .map(|i| {
            serde_json::from_str::<serde_json::Value>(i["data"].as_str().unwrap()).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        bodies,
        vec![
            "Hello B",
            "Привет, A",
            "This is a long message in two parts.",
            "last"
        ],
        "{list}"
    );
    let first = &items[0];
    assert_eq!(first["inbound_resource_sid"], report["maskd_message_id"]);
    assert_eq!(
        first["outbound_resource_status"], "delivered",
        "final delivery: {first}"
    );
    assert_eq!(first["outbound_resource_sid"], serde_json::Value::Null);
    assert_eq!(first["inbound_resource_status"], "received");
    assert_eq!(
        d.get("/v1/Services/sms/Sessions/chat").json()["status"],
        "in-progress"
    );
    let m = d.metrics_text();
    assert!(m.contains("maskd_smpp_out_of_session_total 1"), "{m}");
    assert!(m.contains("maskd_smpp_opt_out_total 1"), "{m}");
    assert!(m.contains(r#"maskd_smpp_pdus_total{command="generic_nack",direction="out",status="ESME_RINVCMDID"} 1"#), "{m}");
    assert!(m.contains(r#"maskd_smpp_pdus_total{command="bind_transceiver_resp",direction="out",status="ESME_RINVPASWD"} 1"#), "{m}");
    assert!(
        !m.contains("maskd_smpp_receipts_total{"),
        "no receipt to match: {m}"
    );
    for raw in ["4155551001", "4155552002"] {
        assert!(!m.contains(raw));
    }
}
