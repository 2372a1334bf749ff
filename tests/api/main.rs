//! End-to-end: the real daemon on loopback, driven over HTTP. `wire` holds what is checked
//! against Twilio's wire formats: SID patterns, URI and date-time values, 404 and 405.

#[path = "../common/mod.rs"]
mod common;
mod recordings;
mod wire;

use common::*;
use serde_json::Value;

fn setup() -> (tempfile::TempDir, Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let r = d.post(
        "/v1/Services",
        &[("UniqueName", "svc"), ("DefaultTtl", "600")],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let sid = r.json()["sid"].as_str().unwrap().to_string();
    for n in ["+14155550101", "+14155550102"] {
        let r = d.post(
            &format!("/v1/Services/{sid}/PhoneNumbers"),
            &[("PhoneNumber", n)],
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    (dir, d, sid)
}

fn participants(a: &str, b: &str) -> [(&'static str, String); 2] {
    [
        ("Participants", format!(r#"{{"Identifier": "{a}"}}"#)),
        (
            "Participants",
            format!(r#"{{"identifier": "{b}", "friendlyName": "B"}}"#),
        ),
    ]
}

fn create_session(d: &Daemon, svc: &str, name: &str, a: &str, b: &str) -> Value {
    let p = participants(a, b);
    let r = d.post(
        &format!("/v1/Services/{svc}/Sessions"),
        &[("UniqueName", name), (p[0].0, &p[0].1), (p[1].0, &p[1].1)],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

#[test]
fn credentials_are_required_and_reveal_nothing() {
    let (_dir, d, svc) = setup();
    for auth in [
        None,
        Some((ACCOUNT, "wrong")),
        Some(("ACffffffffffffffffffffffffffffffff", TOKEN)),
    ] {
        let r = http(d.api, "GET", &format!("/v1/Services/{svc}"), auth, None);
        r.assert_error(401, 20003);
        assert!(!r.body.contains(&svc), "401 body leaks resource data");
        assert!(r.header("www-authenticate").is_some());
    }
    // Even unknown paths answer 401 first: nothing is learnt without credentials.
    http(d.api, "GET", "/v1/Nope", None, None).assert_error(401, 20003);
}

/// Sends GET `path` on a kept-alive connection; returns (status line, body, time taken).
fn timed_get(
    s: &mut std::net::TcpStream,
    path: &str,
    auth: Option<&str>,
) -> (String, String, std::time::Duration) {
    use std::io::{Read, Write};
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
    let t0 = std::time::Instant::now();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let (head_end, len) = loop {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&b[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + len {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&b[..n]);
    }
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.lines().next().unwrap().to_string();
    (status, text[head_end..].to_string(), took)
}

#[test]
fn unauthorized_answers_are_identical_and_take_the_same_time_whatever_was_wrong() {
    use base64::Engine as _;
    let (_dir, d, svc) = setup();
    let b64 =
        |u: &str, p: &str| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
    let mut first_wrong = TOKEN.to_string();
    first_wrong.replace_range(0..1, if TOKEN.starts_with('x') { "y" } else { "x" });
    let mut last_wrong = TOKEN.to_string();
    let n = last_wrong.len();
    last_wrong.replace_range(n - 1..n, if TOKEN.ends_with('x') { "y" } else { "x" });
    let existing = format!("/v1/Services/{svc}");
    let kinds: Vec<(&str, String, Option<String>)> = vec![
        ("no credentials", existing.clone(), None),
        (
            "unknown account",
            existing.clone(),
            Some(b64("ACffffffffffffffffffffffffffffffff", TOKEN)),
        ),
        (
            "token wrong at its first byte",
            existing.clone(),
            Some(b64(ACCOUNT, &first_wrong)),
        ),
        (
            "token wrong at its last byte",
            existing.clone(),
            Some(b64(ACCOUNT, &last_wrong)),
        ),
        (
            "a resource that does not exist",
            "/v1/Services/ZS00000000000000000000000000000000".into(),
            Some(b64(ACCOUNT, &last_wrong)),
        ),
    ];
    let mut conn = std::net::TcpStream::connect(d.api).unwrap();
    conn.set_nodelay(true).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // Interleaved rounds (the machine's noise falls on every kind alike), below the API's
    // per-client rate limit burst.
    let mut times: Vec<Vec<u128>> = vec![Vec::new(); kinds.len()];
    let mut bodies = std::collections::HashSet::new();
    for round in 0..160 {
        for (k, (_, path, auth)) in kinds.iter().enumerate() {
            let (status, body, took) = timed_get(&mut conn, path, auth.as_deref());
            assert!(status.starts_with("HTTP/1.1 401"), "{status}");
            bodies.insert(body);
            if round >= 10 {
                times[k].push(took.as_micros());
            }
        }
    }
    assert_eq!(
        bodies.len(),
        1,
        "every 401 carries the same body: {bodies:?}"
    );
    let medians: Vec<u128> = times
        .iter_mut()
        .map(|t| {
            t.sort_unstable();
            t[t.len() / 2]
        })
        .collect();
    let (lo, hi) = (
        *medians.iter().min().unwrap(),
        *medians.iter().max().unwrap(),
    );
    let report: Vec<String> = kinds
        .iter()
        .zip(&medians)
        .map(|((name, _, _), m)| format!("{name}: {m} µs"))
        .collect();
    eprintln!("median 401 time: {}", report.join(", "));
    // No kind of wrong credential (or path) is told apart by time beyond loopback noise.
    assert!(hi - lo <= 50 + lo / 4, "{}", report.join(", "));
}

#[test]
fn service_lifecycle_and_errors() {
    let (_dir, d, svc) = setup();
    let base = d.base();
    let by_name = d.get("/v1/Services/svc");
    assert_eq!(by_name.status, 200);
    let j = by_name.json();
    assert_eq!(j["sid"], svc.as_str());
    assert_eq!(j["url"], format!("{base}/v1/Services/{svc}"));
    assert_eq!(
        j["links"]["sessions"],
        format!("{base}/v1/Services/{svc}/Sessions")
    );
    assert_eq!(j["geo_match_level"], "country");
    assert_eq!(j["number_selection_behavior"], "prefer-sticky");
    assert_eq!(j["account_sid"], ACCOUNT);
    for key in [
        "chat_instance_sid",
        "callback_url",
        "intercept_callback_url",
        "out_of_session_callback_url",
    ] {
        assert!(
            j.get(key).is_some_and(Value::is_null),
            "{key} must be present and null"
        );
    }
    assert!(by_name
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    let r = d.post(
        &format!("/v1/Services/{svc}"),
        &[
            ("CallbackUrl", "https://example.com/cb"),
            ("GeoMatchLevel", "area-code"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["callback_url"], "https://example.com/cb");
    assert_eq!(r.json()["geo_match_level"], "area-code");

    d.post("/v1/Services", &[("UniqueName", "svc")])
        .assert_error(400, 80602);
    d.post("/v1/Services", &[]).assert_error(400, 80701);
    d.post(
        "/v1/Services",
        &[("UniqueName", "x"), ("GeoMatchLevel", "galaxy")],
    )
    .assert_error(400, 80701);
    d.post(
        "/v1/Services",
        &[
            ("UniqueName", "x"),
            ("CallbackUrl", &format!("{base}/v1/hook")),
        ],
    )
    .assert_error(400, 80701);
    d.get("/v1/Services/KS00000000000000000000000000000000")
        .assert_error(404, 20404);
    d.get("/v1/Services/no-such-name").assert_error(404, 20404);
    d.get(&format!("/v1/Services/{svc}/ShortCodes"))
        .assert_error(404, 20404);

    assert_eq!(d.delete(&format!("/v1/Services/{svc}")).status, 204);
    d.get(&format!("/v1/Services/{svc}"))
        .assert_error(404, 20404);
    // The name and the numbers are free again.
    let r = d.post("/v1/Services", &[("UniqueName", "svc")]);
    assert_eq!(r.status, 201);
    let again = r.json()["sid"].as_str().unwrap().to_string();
    assert_eq!(
        d.post(
            &format!("/v1/Services/{again}/PhoneNumbers"),
            &[("PhoneNumber", "+14155550101")]
        )
        .status,
        201
    );
}

#[test]
fn phone_numbers_pool_rules() {
    let (_dir, d, svc) = setup();
    let list = d.get(&format!("/v1/Services/{svc}/PhoneNumbers")).json();
    assert_eq!(list["meta"]["key"], "phone_numbers");
    let first = &list["phone_numbers"][0];
    assert_eq!(first["phone_number"], "+14155550101");
    assert_eq!(first["iso_country"], "US");
    assert_eq!(first["in_use"], 0);
    assert_eq!(first["is_reserved"], false);
    assert!(first["sid"].as_str().unwrap().starts_with("PN"));
    d.post(
        &format!("/v1/Services/{svc}/PhoneNumbers"),
        &[("PhoneNumber", "+14155550101")],
    )
    .assert_error(400, 80104);
    let other = d.post("/v1/Services", &[("UniqueName", "other")]).json()["sid"]
        .as_str()
        .unwrap()
        .to_string();
    d.post(
        &format!("/v1/Services/{other}/PhoneNumbers"),
        &[("PhoneNumber", "+14155550101")],
    )
    .assert_error(400, 80101);
    d.post(
        &format!("/v1/Services/{svc}/PhoneNumbers"),
        &[("PhoneNumber", "12")],
    )
    .assert_error(400, 80701);
    let pn = first["sid"].as_str().unwrap();
    let r = d.post(
        &format!("/v1/Services/{svc}/PhoneNumbers/{pn}"),
        &[("IsReserved", "True")],
    );
    assert_eq!(r.json()["is_reserved"], true);
    d.post(
        &format!("/v1/Services/{svc}/PhoneNumbers/{pn}"),
        &[("IsReserved", "yes")],
    )
    .assert_error(400, 80701);

    create_session(&d, &svc, "s", "+14155551001", "+14155551002");
    let used = d.get(&format!("/v1/Services/{svc}/PhoneNumbers")).json();
    let in_use: Vec<u64> = used["phone_numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["in_use"].as_u64().unwrap())
        .collect();
    assert_eq!(
        in_use,
        vec![0, 2],
        "reserved number skipped; both participants on the other"
    );
    let busy = used["phone_numbers"][1]["sid"].as_str().unwrap();
    d.delete(&format!("/v1/Services/{svc}/PhoneNumbers/{busy}"))
        .assert_error(400, 80611);
    assert_eq!(
        d.delete(&format!("/v1/Services/{svc}/PhoneNumbers/{pn}"))
            .status,
        204
    );
}

#[test]
fn sessions_participants_and_status_rules() {
    let (_dir, d, svc) = setup();
    let s = create_session(&d, &svc, "order-1", "+14155551001", "+14155551002");
    assert_eq!(s["status"], "open");
    assert_eq!(s["closed_reason"], "");
    assert_eq!(s["mode"], "voice-and-message");
    assert_eq!(s["ttl"], 600, "service default_ttl applies");
    for key in ["date_ended", "date_last_interaction", "date_expiry"] {
        assert!(s[key].is_null(), "{key}");
    }
    let kc = s["sid"].as_str().unwrap().to_string();
    let spath = format!("/v1/Services/{svc}/Sessions/{kc}");
    assert_eq!(
        d.get("/v1/Services/svc/Sessions/order-1").json()["sid"],
        kc.as_str()
    );
    d.get(&format!("/v1/Services/{svc}/Sessions/no-such"))
        .assert_error(404, 80308);

    let parts = d.get(&format!("{spath}/Participants")).json();
    let list = parts["participants"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["friendly_name"], "B");
    for p in list {
        assert!(p["proxy_identifier_sid"]
            .as_str()
            .unwrap()
            .starts_with("PN"));
        assert!(["+14155550101", "+14155550102"].contains(&p["proxy_identifier"].as_str().unwrap()));
        assert!(p["date_deleted"].is_null());
    }
    // Third participant, duplicate identifier, bad identifier.
    d.post(
        &format!("{spath}/Participants"),
        &[("Identifier", "+14155551003")],
    )
    .assert_error(400, 80609);
    let s2 = d.post(&format!("/v1/Services/{svc}/Sessions"), &[]).json();
    let s2path = path_of(&s2, &d.base());
    d.post(
        &format!("{s2path}/Participants"),
        &[("Identifier", "not-a-number")],
    )
    .assert_error(400, 80404);
    assert_eq!(
        d.post(
            &format!("{s2path}/Participants"),
            &[("Identifier", "+14155551001")]
        )
        .status,
        201
    );
    d.post(
        &format!("{s2path}/Participants"),
        &[("Identifier", "+14155551001")],
    )
    .assert_error(400, 80103);
    d.post(
        &format!("{s2path}/Participants"),
        &[
            ("Identifier", "+14155551009"),
            ("ProxyIdentifier", "+14155550199"),
        ],
    )
    .assert_error(400, 80605);
    d.post(
        &format!("/v1/Services/{svc}/Sessions"),
        &[("UniqueName", "order-1")],
    )
    .assert_error(400, 80603);
    d.post(
        &format!("/v1/Services/{svc}/Sessions"),
        &[("DateExpiry", "2001-01-01T00:00:00Z")],
    )
    .assert_error(400, 80701);
    d.post(
        &format!("/v1/Services/{svc}/Sessions"),
        &[("Participants", "{not json")],
    )
    .assert_error(400, 80701);

    // open -> in-progress is fine, in-progress -> open is not.
    assert_eq!(
        d.post(&spath, &[("Status", "in-progress")]).json()["status"],
        "in-progress"
    );
    d.post(&spath, &[("Status", "open")])
        .assert_error(400, 80608);
    // Close: reason api, numbers released.
    let closed = d.post(&spath, &[("Status", "closed")]).json();
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["closed_reason"], "api");
    assert!(closed["date_ended"].is_string());
    d.post(&spath, &[("Ttl", "5")]).assert_error(400, 80607);
    // Someone else takes A's route key with an explicit proxy; re-opening must refuse.
    let a_proxy = list[0]["proxy_identifier"].as_str().unwrap().to_string();
    let s3 = d.post(&format!("/v1/Services/{svc}/Sessions"), &[]).json();
    let s3path = path_of(&s3, &d.base());
    assert_eq!(
        d.post(
            &format!("{s3path}/Participants"),
            &[
                ("Identifier", "+14155551001"),
                ("ProxyIdentifier", &a_proxy)
            ]
        )
        .status,
        201
    );
    // s2 already holds +14155551001 on another number; the key (a_proxy, A) is now in s3.
    d.post(&spath, &[("Status", "in-progress")])
        .assert_error(400, 80604);
    assert_eq!(d.delete(&s3path).status, 204);
    let reopened = d
        .post(&spath, &[("Status", "in-progress"), ("Ttl", "900")])
        .json();
    assert_eq!(reopened["status"], "in-progress");
    assert_eq!(reopened["closed_reason"], "");
    assert_eq!(reopened["ttl"], 900);
}

#[test]
fn exclusivity_gives_each_concurrent_session_its_own_number() {
    let (_dir, d, svc) = setup();
    let mut seen = std::collections::HashSet::new();
    for i in 0..2 {
        let s = d.post(&format!("/v1/Services/{svc}/Sessions"), &[]).json();
        let p = d.post(
            &format!("{}/Participants", path_of(&s, &d.base())),
            &[("Identifier", "+14155551001")],
        );
        assert_eq!(p.status, 201, "session {i}: {}", p.body);
        assert!(seen.insert(p.json()["proxy_identifier"].as_str().unwrap().to_string()));
    }
    let s = d.post(&format!("/v1/Services/{svc}/Sessions"), &[]).json();
    d.post(
        &format!("{}/Participants", path_of(&s, &d.base())),
        &[("Identifier", "+14155551001")],
    )
    .assert_error(400, 80208);
    d.post(
        &format!("{}/Participants", path_of(&s, &d.base())),
        &[("Identifier", "+447700900123")],
    )
    .assert_error(400, 80203);
    let m = d.metrics_text();
    assert!(
        m.contains("maskd_allocations_failed_total{code=\"80208\"} 1"),
        "{m}"
    );
}

#[test]
fn paging_follows_tokens_and_caps_pages() {
    let (_dir, d, svc) = setup();
    for _ in 0..120 {
        assert_eq!(
            d.post(&format!("/v1/Services/{svc}/Sessions"), &[]).status,
            201
        );
    }
    let mut url = format!("/v1/Services/{svc}/Sessions?PageSize=50");
    let mut sids = Vec::new();
    let mut pages = 0;
    for _ in 0..10 {
        let j = d.get(&url).json();
        pages += 1;
        assert_eq!(j["meta"]["key"], "sessions");
        for s in j["sessions"].as_array().unwrap() {
            sids.push(s["sid"].as_str().unwrap().to_string());
        }
        match j["meta"]["next_page_url"].as_str() {
            Some(next) => {
                assert!(next.contains("PageToken=PA"));
                url = next.strip_prefix(&d.base()).unwrap().to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(sids.len(), 120);
    let unique: std::collections::HashSet<_> = sids.iter().collect();
    assert_eq!(unique.len(), 120, "no session twice");
    let big = d
        .get(&format!("/v1/Services/{svc}/Sessions?PageSize=1000"))
        .json();
    assert_eq!(big["sessions"].as_array().unwrap().len(), 100);
    assert_eq!(big["meta"]["page_size"], 100);
    // Previous page from the second page returns the first.
    let second = d
        .get(&format!(
            "/v1/Services/{svc}/Sessions?PageSize=50&Page=1&PageToken=PA{}",
            0
        ))
        .json();
    let prev = second["meta"]["previous_page_url"]
        .as_str()
        .unwrap()
        .strip_prefix(&d.base())
        .unwrap()
        .to_string();
    assert!(d.get(&prev).json()["sessions"].as_array().is_some());
    d.get(&format!("/v1/Services/{svc}/Sessions?PageSize=0"))
        .assert_error(400, 80701);
    d.get(&format!("/v1/Services/{svc}/Sessions?PageToken=garbage"))
        .assert_error(400, 80701);
}

#[test]
fn soft_delete_and_message_interactions() {
    let (_dir, d, svc) = setup();
    let s = create_session(&d, &svc, "chat", "+14155551001", "+14155551002");
    let spath = path_of(&s, &d.base());
    let parts = d.get(&format!("{spath}/Participants")).json();
    let kp = parts["participants"][0]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let ppath = format!("{spath}/Participants/{kp}");

    let r = d.post(
        &format!("{ppath}/MessageInteractions"),
        &[("Body", "hello")],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let mi = r.json();
    assert!(mi["sid"].as_str().unwrap().starts_with("KI"));
    assert_eq!(mi["type"], "message");
    assert_eq!(mi["outbound_resource_status"], "queued");
    assert_eq!(mi["outbound_participant_sid"], kp.as_str());
    assert_eq!(mi["participant_sid"], kp.as_str());
    assert!(mi["inbound_participant_sid"].is_null());
    let data: Value = serde_json::from_str(mi["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["body"], "hello");
    let ki = mi["sid"].as_str().unwrap();
    assert_eq!(
        d.get(&format!("{ppath}/MessageInteractions/{ki}")).status,
        200
    );
    let all = d.get(&format!("{spath}/Interactions")).json();
    assert_eq!(all["meta"]["key"], "interactions");
    assert_eq!(all["interactions"][0]["sid"], ki);
    assert_eq!(
        d.get(&format!("{ppath}/MessageInteractions")).json()["meta"]["key"],
        "interactions"
    );
    let after = d.get(&spath).json();
    assert_eq!(
        after["status"], "in-progress",
        "an interaction moves open to in-progress"
    );
    assert!(after["date_last_interaction"].is_string());
    d.post(&format!("{ppath}/MessageInteractions"), &[])
        .assert_error(400, 80701);

    // Soft delete: still listed with date_deleted, cannot be added back.
    assert_eq!(d.delete(&ppath).status, 204);
    let listed = d.get(&format!("{spath}/Participants")).json();
    assert!(listed["participants"][0]["date_deleted"].is_string());
    d.post(
        &format!("{spath}/Participants"),
        &[("Identifier", "+14155551001")],
    )
    .assert_error(400, 80612);
    d.delete(&ppath).assert_error(404, 20404);

    // Interaction delete, then cascade delete of the session.
    assert_eq!(d.delete(&format!("{spath}/Interactions/{ki}")).status, 204);
    d.get(&format!("{spath}/Interactions/{ki}"))
        .assert_error(404, 20404);
    assert_eq!(d.delete(&spath).status, 204);
    d.get(&spath).assert_error(404, 20404);
    d.get(&format!("{spath}/Participants"))
        .assert_error(404, 20404);
}

#[test]
fn bodies_are_limited_and_must_be_forms() {
    let (_dir, d, _svc) = setup();
    let huge = "UniqueName=".to_string() + &"x".repeat(200_000);
    let r = http(
        d.api,
        "POST",
        "/v1/Services",
        Some((ACCOUNT, TOKEN)),
        Some(&huge),
    );
    r.assert_error(413, 80701);
    let r = raw_http(
        d.api,
        "POST",
        "/v1/Services",
        Some((ACCOUNT, TOKEN)),
        Some(br#"{"UniqueName":"j"}"#),
        "application/json",
    );
    r.assert_error(400, 80701);
}

#[test]
fn metrics_health_and_no_numbers_in_labels() {
    let (_dir, d, svc) = setup();
    create_session(&d, &svc, "m", "+14155551001", "+14155551002");
    let _ = d.get("/v1/Services/svc");
    let m = d.metrics_text();
    assert!(m.contains(r#"maskd_api_requests_total{method="GET",route="/v1/Services/{service}",status="2xx"} 1"#), "{m}");
    assert!(m.contains(r#"maskd_sessions{status="open"} 1"#), "{m}");
    assert!(m.contains("maskd_routing_table_entries 2"), "{m}");
    assert!(m.contains(r#"maskd_pool_numbers{service="svc"} 2"#), "{m}");
    assert!(m.contains("maskd_timer_wheel_entries 1"), "{m}");
    for secret in ["4155551001", "4155551002", "4155550101", &svc[2..]] {
        assert!(!m.contains(secret), "metrics leak {secret}");
    }
    assert_eq!(http(d.metrics, "GET", "/healthz", None, None).status, 200);
    assert_eq!(http(d.metrics, "GET", "/readyz", None, None).status, 200);
}

#[test]
fn ttl_expiry_closes_through_the_running_wheel() {
    let (_dir, mut d, svc) = setup();
    let p = participants("+14155551001", "+14155551002");
    let r = d.post(
        &format!("/v1/Services/{svc}/Sessions"),
        &[("Ttl", "1"), (p[0].0, &p[0].1), (p[1].0, &p[1].1)],
    );
    let spath = path_of(&r.json(), &d.base());
    // The daemon's own clock drives the wheel; poll (bounded) until it has closed.
    let closed = (0..100)
        .find_map(|_| {
            let s = d.get(&spath).json();
            if s["status"] == "closed" {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            None
        })
        .expect("session with ttl 1 s still open after 5 s");
    assert_eq!(closed["closed_reason"], "ttl");
    let created = maskd::core::datetime::parse(closed["date_created"].as_str().unwrap()).unwrap();
    let ended = maskd::core::datetime::parse(closed["date_ended"].as_str().unwrap()).unwrap();
    assert!(
        (1..=2).contains(&(ended - created)),
        "closed {}s after creation",
        ended - created
    );
    let m = d.metrics_text();
    assert!(
        m.contains(r#"maskd_sessions_closed_total{reason="ttl"} 1"#),
        "{m}"
    );
    assert!(m.contains("maskd_routing_table_entries 0"), "{m}");
    assert!(
        m.contains("maskd_timer_wheel_lateness_seconds_count 1"),
        "{m}"
    );
    d.wait_for_log("session closed", std::time::Duration::from_secs(5));
}

#[test]
fn logs_show_numbers_only_masked() {
    let (_dir, mut d, svc) = setup();
    let s = create_session(&d, &svc, "private", "+14155551001", "+14155551002");
    let spath = path_of(&s, &d.base());
    let kp = d.get(&format!("{spath}/Participants")).json()["participants"][0]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        d.post(
            &format!("{spath}/Participants/{kp}/MessageInteractions"),
            &[("Body", "hi")]
        )
        .status,
        201
    );
    d.post(
        &format!("{spath}/Participants"),
        &[("Identifier", "+14155551003")],
    )
    .assert_error(400, 80609);
    let r = d.post(
        &format!("{spath}/Participants"),
        &[("Identifier", "+1415555100x")],
    );
    assert!(
        !r.body.contains("1415555100"),
        "error body echoes a number: {}",
        r.body
    );
    d.wait_for_log("participant added", std::time::Duration::from_secs(5));
    assert_eq!(d.post(&spath, &[("Status", "closed")]).status, 200);
    d.wait_for_log("session closed", std::time::Duration::from_secs(5));
    let log = d.lines.join("\n");
    assert!(
        log.contains("+*******1001"),
        "numbers are logged masked:\n{log}"
    );
    for raw in ["4155551001", "4155551002", "4155550101", "4155550102"] {
        assert!(!log.contains(raw), "log shows {raw} unmasked:\n{log}");
    }
}
