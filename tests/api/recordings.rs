//! The 2010-04-01 Recording resource, end to end: recordings seeded through the engine on
//! the daemon's store before it starts (one left in progress, as a crash leaves it, which
//! the start-up repairs), then read, downloaded and deleted over HTTP; and Twilio's Python
//! library driving the same through `tests/interop/recordings_flow.py`.

use super::common::recordings::{seed, seed_with, CALL_A, CALL_B, CALL_C};
use super::common::*;

fn start() -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    // The daemon's public URL is only known once it picks its port: seed with a placeholder
    // base (the callback URL is not checked here).
    let media = seed(dir.path(), "http://127.0.0.1");
    let d = Daemon::start_with(dir.path(), &media);
    (dir, d)
}

fn acc(path: &str) -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}{path}")
}

#[test]
fn recordings_read_download_and_delete_in_twilios_2010_shape() {
    let (dir, d) = start();
    let r = d.get(&acc("/Recordings.json"));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let recs = j["recordings"].as_array().unwrap();
    assert_eq!(recs.len(), 3);
    for k in [
        "first_page_uri",
        "next_page_uri",
        "previous_page_uri",
        "page",
        "page_size",
        "start",
        "end",
        "uri",
    ] {
        assert!(j.get(k).is_some(), "envelope lacks {k}: {j}");
    }
    assert_eq!(j["end"], 2);
    // Newest first: the one a crash left, now repaired at start.
    let newest = &recs[0];
    assert_eq!(newest["call_sid"], CALL_B);
    assert_eq!(newest["status"], "completed", "{newest}");
    assert_eq!(newest["duration"], "3");
    let sid = recs[1]["sid"].as_str().unwrap().to_string();
    for (k, v) in [
        ("account_sid", serde_json::json!(ACCOUNT)),
        ("api_version", "2010-04-01".into()),
        ("call_sid", CALL_A.into()),
        ("conference_sid", serde_json::Value::Null),
        ("duration", "2".into()),
        ("price", serde_json::Value::Null),
        ("price_unit", "USD".into()),
        ("status", "completed".into()),
        ("channels", 2.into()),
        ("source", "Trunking".into()),
        ("error_code", serde_json::Value::Null),
        ("encryption_details", serde_json::Value::Null),
        ("track", "both".into()),
        ("start_time", "Fri, 15 Jan 2027 08:00:10 +0000".into()),
        ("uri", acc(&format!("/Recordings/{sid}.json")).into()),
    ] {
        assert_eq!(recs[1][k], v, "{k}: {}", recs[1]);
    }
    assert_eq!(
        recs[1]["media_url"],
        format!("{}{}", d.base(), acc(&format!("/Recordings/{sid}")))
    );

    // Paging, one at a time, through next_page_uri.
    let mut seen = Vec::new();
    let mut next = Some(acc("/Recordings.json?PageSize=1"));
    while let Some(uri) = next {
        let j = d.get(&uri).json();
        seen.extend(
            j["recordings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["sid"].clone()),
        );
        next = j["next_page_uri"].as_str().map(str::to_string);
        assert!(seen.len() <= 3);
    }
    assert_eq!(seen.len(), 3);

    // Filters.
    let by_call = d
        .get(&acc(&format!("/Recordings.json?CallSid={CALL_A}")))
        .json();
    assert_eq!(by_call["recordings"].as_array().unwrap().len(), 2);
    let call = d
        .get(&acc(&format!("/Calls/{CALL_B}/Recordings.json")))
        .json();
    assert_eq!(call["recordings"].as_array().unwrap().len(), 1);
    let day = d
        .get(&acc("/Recordings.json?DateCreated=2027-01-15"))
        .json();
    assert_eq!(day["recordings"].as_array().unwrap().len(), 3);
    let before = d
        .get(&acc("/Recordings.json?DateCreated%3C=2027-01-14"))
        .json();
    assert_eq!(before["recordings"].as_array().unwrap().len(), 0);

    // Fetch, media, errors.
    let one = d.get(&acc(&format!("/Recordings/{sid}.json")));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["sid"], sid.as_str());
    for path in [
        format!("/Recordings/{sid}.wav"),
        format!("/Recordings/{sid}"),
    ] {
        let w = d.get(&acc(&path));
        assert_eq!(w.status, 200, "{path}");
        assert_eq!(w.header("content-type"), Some("audio/x-wav"));
        assert!(w.body.starts_with("RIFF"));
    }
    d.get(&acc(&format!("/Recordings/{sid}.mp3")))
        .assert_error(404, 20404);
    d.get(&format!(
        "/2010-04-01/Accounts/ACffffffffffffffffffffffffffffffff/Recordings/{sid}.json"
    ))
    .assert_error(404, 20404);
    let r = http(d.api, "GET", &acc("/Recordings.json"), None, None);
    r.assert_error(401, 20003);

    // Under its call: found only there (the sid belongs to CALL_A).
    let under = |call: &str| acc(&format!("/Calls/{call}/Recordings/{sid}.json"));
    let one = d.get(&under(CALL_A));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["sid"], sid.as_str());
    assert_eq!(
        d.get(&acc(&format!("/Calls/{CALL_A}/Recordings/{sid}.wav")))
            .status,
        200
    );
    d.get(&under(CALL_B)).assert_error(404, 20404);
    d.delete(&under(CALL_B)).assert_error(404, 20404);

    // Delete: row and file.
    let file = dir.path().join("recordings").join(format!("{sid}.wav"));
    assert!(file.exists());
    assert_eq!(
        d.delete(&acc(&format!("/Recordings/{sid}.json"))).status,
        204
    );
    assert!(!file.exists());
    d.get(&acc(&format!("/Recordings/{sid}.json")))
        .assert_error(404, 20404);
    d.delete(&acc(&format!("/Recordings/{sid}.json")))
        .assert_error(404, 20404);

    // The other recording of CALL_A, deleted under its call.
    let left = d
        .get(&acc(&format!("/Calls/{CALL_A}/Recordings.json")))
        .json();
    let other = left["recordings"][0]["sid"].as_str().unwrap().to_string();
    let under = acc(&format!("/Calls/{CALL_A}/Recordings/{other}.json"));
    assert_eq!(d.delete(&under).status, 204);
    d.get(&under).assert_error(404, 20404);
    let left = d
        .get(&acc(&format!("/Calls/{CALL_A}/Recordings.json")))
        .json();
    assert_eq!(left["recordings"].as_array().unwrap().len(), 0);
}

#[test]
fn an_absent_recording_is_listed_but_has_no_audio() {
    let dir = tempfile::tempdir().unwrap();
    let media = seed_with(dir.path(), "http://127.0.0.1", true);
    let d = Daemon::start_with(dir.path(), &media);
    let list = d
        .get(&acc(&format!("/Calls/{CALL_C}/Recordings.json")))
        .json();
    let rec = &list["recordings"][0];
    assert_eq!(rec["status"], "absent", "{rec}");
    assert_eq!(rec["error_code"], 16601, "{rec}");
    let sid = rec["sid"].as_str().unwrap();
    // The part-written file stays on disk, but it is not served as the recording's audio.
    assert!(dir
        .path()
        .join("recordings")
        .join(format!("{sid}.wav"))
        .exists());
    for path in [
        format!("/Recordings/{sid}.wav"),
        format!("/Recordings/{sid}"),
    ] {
        d.get(&acc(&path)).assert_error(404, 20404);
    }
}

#[test]
fn twilio_python_reads_and_deletes_recordings() {
    let py = python();
    let (_dir, d) = start();
    let out = std::process::Command::new(py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/recordings_flow.py"
        ))
        .args([&d.base(), ACCOUNT, TOKEN, CALL_A])
        .output()
        .expect("run recordings_flow.py");
    assert!(
        out.status.success(),
        "recordings_flow.py failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
