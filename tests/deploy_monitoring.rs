//! The monitoring shipped in `deploy/` (issue 16): the Prometheus alerting rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`, Debian's `prometheus`,
//! installed by scripts/test), the Grafana dashboard is well-formed, and every maskd metric a
//! panel or a rule queries is in the `/metrics` output of a daemon that has carried traffic
//! (sessions created, closed and refused for want of a number, an SMPP message with its
//! status callbacks, a carrier trunk probed).

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::hook::Hook;
use common::sip::socket;
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .current_dir(format!("{DEPLOY}/prometheus"))
        .args(args)
        .output()
        .expect("promtool is not installed: run scripts/test (it installs Debian's prometheus)")
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let out = promtool(&["check", "rules", "maskd-alerts.yml"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = promtool(&["test", "rules", "maskd-alerts.test.yml"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `expr` of the rules and the dashboard's panels.
fn queries() -> Vec<String> {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/prometheus/maskd-alerts.yml")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            out.push(r["expr"].as_str().unwrap().to_string());
        }
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/grafana/maskd-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "a dashboard worth shipping");
    for p in panels {
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} queries nothing", p["title"]);
        for t in targets {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    out
}

/// The maskd metric names in `expr`, a histogram's series named by the histogram.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("maskd_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let name = &expr[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.push(name.to_string());
        i = end;
    }
    names
}

#[test]
fn every_metric_the_dashboard_and_the_rules_query_is_exported() {
    let names: BTreeSet<String> = queries().iter().flat_map(|q| metric_names(q)).collect();
    assert!(names.len() >= 20, "{names:?}");
    let (_trunk, port) = socket();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{port}\"\n\
         carriers:\n  - name: \"alpha\"\n    numbers: [\"+14155550101\"]\n    sip:\n      trunks:\n        - address: \"127.0.0.1:{port}\"\n\
         services:\n  - unique_name: \"sms\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n\
         \x20 - unique_name: \"tiny\"\n    numbers: [\"+14155550199\"]\n",
        two_carriers("")
    );
    let d = Daemon::start_with(dir.path(), &cfg);
    let hook = Hook::start();
    let r = d.post("/v1/Services/sms", &[("CallbackUrl", &hook.url("/status"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (a_real, b_real) = ("+14155551001", "+14155552002");
    let (pa, _) = two_party_session(&d, "sms", "chat", a_real, b_real);
    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    let r = a.request(Body::SubmitSm(sm(&a_real[1..], &pa[1..], b"metrics")));
    assert_eq!(r.status, status::ESME_ROK);
    assert!(b.wait_messages(1, Duration::from_secs(10)));
    assert!(!hook.wait("/status", 1, Duration::from_secs(10)).is_empty());
    let r = d.post("/v1/Services/sms/Sessions/chat", &[("Status", "closed")]);
    assert_eq!(r.status, 200, "{}", r.body);
    // One number, one caller in two sessions: the second finds no number.
    two_party_session(&d, "tiny", "first", a_real, b_real);
    let r = d.post(
        "/v1/Services/tiny/Sessions",
        &[
            ("Participants", &format!(r#"{{"Identifier":"{a_real}"}}"#)),
            ("Participants", r#"{"Identifier":"+14155552003"}"#),
        ],
    );
    assert_ne!(r.status, 201, "{}", r.body);
    let t = Instant::now();
    let missing = loop {
        let text = d.metrics_text();
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                !text.lines().any(|l| {
                    l.strip_prefix(n.as_str()).is_some_and(|r| {
                        r.starts_with(['{', ' '])
                            || ["_bucket{", "_sum", "_count"]
                                .iter()
                                .any(|s| r.starts_with(s))
                    })
                })
            })
            .collect();
        // The trunk's health comes with its first probe's outcome (4 T1 without an answer).
        if missing.is_empty() || t.elapsed() > Duration::from_secs(15) {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}
