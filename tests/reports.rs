//! The Reports API (issue 16, a maskd extension): after real traffic through a daemon (SMPP
//! messages both ways and one from a stranger, a SIPp call playing 7 s of audio), the daily
//! report per proxy number agrees with the interactions the API lists, the CSV (read by
//! Python's csv module) says the same as the JSON, the contacts list the stranger, and all
//! of it reads the same after a restart. Bad parameters get Twilio-shaped errors.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::sipp::{run_call_at, udp_port};
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};
use serde_json::Value;

const FIELDS: &[&str] = &[
    "sessions_created",
    "messages_in",
    "messages_out",
    "messages_out_sent",
    "calls_in",
    "calls_out",
    "calls_completed",
    "call_seconds",
    "call_minutes",
    "out_of_session_messages",
    "leads",
    "leads_converted",
];

fn config(uas_port: u16) -> String {
    format!(
        "{}sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{uas_port}\"\n\
         services:\n  - unique_name: \"shop\"\n    numbers: [\"+14155550101\", \"+14155550102\", \"+14155550103\"]\n",
        two_carriers("")
    )
}

/// Today's rows of the daily report, keyed by phone number ("" for the service's row),
/// with the counters this test checks.
fn report(d: &Daemon) -> BTreeMap<String, BTreeMap<String, i64>> {
    let r = d.get("/v1/Services/shop/Reports/Daily?PageSize=100");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["meta"]["key"], "reports");
    let today = &maskd::core::datetime::format(maskd::clock::now_ms() / 1000)[..10];
    v["reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["date"] == today)
        .map(|row| {
            let number = row["phone_number"].as_str().unwrap_or("").to_string();
            let counts = FIELDS
                .iter()
                .map(|f| (f.to_string(), row[*f].as_i64().unwrap()))
                .collect();
            (number, counts)
        })
        .collect()
}

fn get(r: &BTreeMap<String, BTreeMap<String, i64>>, number: &str, field: &str) -> i64 {
    r.get(number).map_or(0, |c| c[field])
}

/// What the report should say, worked out from the interactions the API lists: each
/// message in on its inbound participant's proxy number and out on the outbound one's, each
/// call on the number dialled.
fn expected_from_interactions(d: &Daemon) -> BTreeMap<(String, &'static str), i64> {
    let parts = participant_sids(d);
    let list = d.get("/v1/Services/shop/Sessions/order/Interactions?PageSize=100");
    let mut want = BTreeMap::new();
    for i in list.json()["interactions"].as_array().unwrap() {
        let proxy =
            |leg: &str| parts[i[format!("{leg}_participant_sid")].as_str().unwrap()].clone();
        let mut add = |n: String, f: &'static str, v: i64| *want.entry((n, f)).or_insert(0) += v;
        match i["type"].as_str().unwrap() {
            "message" => {
                add(proxy("inbound"), "messages_in", 1);
                add(proxy("outbound"), "messages_out", 1);
            }
            "voice" => {
                add(proxy("inbound"), "calls_in", 1);
                add(proxy("outbound"), "calls_out", 1);
                if i["outbound_resource_status"] == "completed" {
                    add(proxy("inbound"), "calls_completed", 1);
                    let data: Value = serde_json::from_str(i["data"].as_str().unwrap()).unwrap();
                    let secs: i64 = data["duration"].as_str().unwrap().parse().unwrap();
                    add(proxy("inbound"), "call_seconds", secs);
                    add(proxy("inbound"), "call_minutes", (secs + 59) / 60);
                }
            }
            other => panic!("unexpected interaction type {other}"),
        }
    }
    want
}

/// Participant SID → its proxy number, for session "order".
fn participant_sids(d: &Daemon) -> BTreeMap<String, String> {
    let list = d
        .get("/v1/Services/shop/Sessions/order/Participants")
        .json();
    list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["sid"].as_str().unwrap().to_string(),
                p["proxy_identifier"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The CSV as Python's csv module reads it: its rows as JSON objects.
fn csv_rows(d: &Daemon, path: &str) -> Vec<BTreeMap<String, String>> {
    let script = r#"
import csv, io, json, sys, urllib.request, base64
url, user, token = sys.argv[1:4]
req = urllib.request.Request(url)
req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode())
with urllib.request.urlopen(req, timeout=10) as r:
    assert r.headers["Content-Type"].startswith("text/csv"), r.headers["Content-Type"]
    text = r.read().decode("utf-8")
print(json.dumps(list(csv.DictReader(io.StringIO(text, newline="")))))
"#;
    let out = Command::new(python())
        .args(["-c", script, &format!("{}{path}", d.base()), ACCOUNT, TOKEN])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_daily_report_agrees_with_the_traffic_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let uas_port = udp_port();
    let cfg = config(uas_port);
    let d = Daemon::start_with(dir.path(), &cfg);
    let (a_real, b_real) = ("+14155551001", "+14155552002");
    let (pa, pb) = two_party_session(&d, "shop", "order", a_real, b_real);

    // Messages: two from A, one from B, each delivered to the other side's carrier.
    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    for text in [&b"one"[..], b"two"] {
        let r = a.request(Body::SubmitSm(sm(&a_real[1..], &pa[1..], text)));
        assert_eq!(r.status, status::ESME_ROK);
    }
    let r = b.request(Body::SubmitSm(sm(&b_real[1..], &pb[1..], b"three")));
    assert_eq!(r.status, status::ESME_ROK);
    assert!(b.wait_messages(2, Duration::from_secs(10)));
    assert!(a.wait_messages(1, Duration::from_secs(10)));
    // A stranger texts B's proxy number: no session, a lead.
    let stranger = "+14155552999";
    let r = b.request(Body::SubmitSm(sm(&stranger[1..], &pb[1..], b"hello?")));
    assert_eq!(r.status, status::ESME_ROK);

    // A call from A (SIPp plays 7 s of audio), answered by SIPp's UAS.
    let (uac_mp, uas_mp) = (udp_port().to_string(), udp_port().to_string());
    run_call_at(
        dir.path(),
        uas_port,
        d.sip,
        false,
        "uac_pcap.xml",
        Some("builtin"),
        &pa,
        [&["-mp", &uac_mp], &["-mp", &uas_mp, "-rtp_echo"]],
    );

    // The call's end is written behind the call: wait (bounded) until the report has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = report(&d);
        if get(&r, &pa, "calls_completed") == 1 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let want = expected_from_interactions(&d);
    assert_eq!(want[&(pa.clone(), "messages_in")], 2);
    assert_eq!(want[&(pa.clone(), "calls_in")], 1);
    for ((number, field), value) in &want {
        assert_eq!(get(&r, number, field), *value, "{number} {field}: {r:?}");
    }
    assert!(
        get(&r, &pa, "call_seconds") >= 7,
        "the call lasted the 7 s played: {r:?}"
    );
    assert_eq!(get(&r, &pa, "call_minutes"), 1);
    assert_eq!(get(&r, "", "sessions_created"), 1, "{r:?}");
    assert_eq!(get(&r, &pa, "sessions_created"), 1);
    assert_eq!(get(&r, &pb, "sessions_created"), 1);
    assert_eq!(get(&r, &pb, "leads"), 1);
    assert_eq!(get(&r, &pb, "out_of_session_messages"), 1);
    assert_eq!(get(&r, &pb, "leads_converted"), 0);

    // The contacts: the stranger, on B's proxy number.
    let c = d.get("/v1/Services/shop/Reports/Contacts").json();
    let contacts = c["contacts"].as_array().unwrap();
    assert_eq!(contacts.len(), 1, "{c}");
    assert_eq!(contacts[0]["sender"], stranger);
    assert_eq!(contacts[0]["proxy_number"], pb.as_str());
    assert_eq!(contacts[0]["messages"], 1);
    assert_eq!(contacts[0]["session_sid"], Value::Null);

    // A session with the stranger follows: the lead converts.
    two_party_session(&d, "shop", "lead", stranger, "+14155551003");
    let r = report(&d);
    assert_eq!(get(&r, &pb, "leads_converted"), 1);
    assert_eq!(get(&r, "", "sessions_created"), 2);

    // The CSV says what the JSON says.
    let csv = csv_rows(&d, "/v1/Services/shop/Reports/Daily.csv");
    assert_eq!(csv.len(), r.len(), "{csv:?}");
    for row in &csv {
        let counts = &r[&row["phone_number"]];
        for f in FIELDS {
            assert_eq!(row[*f].parse::<i64>().unwrap(), counts[*f], "{f} {row:?}");
        }
    }
    let csv = csv_rows(&d, "/v1/Services/shop/Reports/Contacts?Format=csv");
    assert_eq!(csv.len(), 1);
    assert_eq!(csv[0]["sender"], stranger);
    assert!(csv[0]["session_sid"].starts_with("KC"), "{csv:?}");

    // Paged one row at a time, the same rows in the same order, and back again.
    let all = d.get("/v1/Services/shop/Reports/Daily").json()["reports"].clone();
    let mut paged = Vec::new();
    let mut next = "/v1/Services/shop/Reports/Daily?PageSize=1".to_string();
    let mut pages = Vec::new();
    for _ in 0..20 {
        let v = d.get(&next).json();
        paged.extend(v["reports"].as_array().unwrap().iter().cloned());
        pages.push(v.clone());
        match v["meta"]["next_page_url"].as_str() {
            Some(u) => next = u.strip_prefix(&d.base()).unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(Value::Array(paged), all);
    let back = pages[1]["meta"]["previous_page_url"].as_str().unwrap();
    let first = d.get(back.strip_prefix(&d.base()).unwrap()).json();
    assert_eq!(first["reports"], pages[0]["reports"]);

    // After a restart, the same.
    drop((a, b));
    drop(d);
    let d = Daemon::restart(dir.path(), &cfg);
    assert_eq!(report(&d), r);
}

#[test]
fn bad_report_parameters_get_twilio_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(udp_port()));
    for q in [
        "StartDate=yesterday",
        "StartDate=2026-01-10&EndDate=2026-01-09",
        "StartDate=2024-01-01&EndDate=2026-01-01",
        "PhoneNumber=banana",
        "Format=xml",
        "PageSize=0",
        "PageToken=PA18446744073709551615",
        "PageToken=PB99999999999",
    ] {
        d.get(&format!("/v1/Services/shop/Reports/Daily?{q}"))
            .assert_error(400, 80701);
    }
    d.get("/v1/Services/shop/Reports/Weekly")
        .assert_error(404, 20404);
    d.get("/v1/Services/KS00000000000000000000000000000000/Reports/Daily")
        .assert_error(404, 20404);
    // Empty, but a well-formed page.
    let v = d.get("/v1/Services/shop/Reports/Daily").json();
    assert_eq!(v["reports"], serde_json::json!([]));
    assert_eq!(v["meta"]["page_size"], 50);
}
