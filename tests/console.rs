//! The web console (issue 16) in a real browser: Debian's Chromium driven over WebDriver by
//! tests/interop/console_check.py (Selenium and Debian's chromedriver, which scripts/test
//! installs), after real traffic through maskd: SMPP messages both ways and one from a
//! stranger, a SIPp call playing 7 s of audio, recorded; a status callback URL that refuses
//! connections; a carrier trunk nobody answers. The script checks every page against the
//! REST API, plays the recording, closes the session, and saves screenshots (for the README)
//! under the target directory. Without Chromium, chromedriver or Selenium the test fails.
//! The console's JSON and its guards are checked here too, over plain HTTP.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::sip::socket;
use common::sipp::{run_call_at, udp_port};
use common::smpp::{sm, Peer};
use common::*;
use maskd::smpp::pdu::{status, BindKind, Body};

const A: &str = "+14155551001";
const B: &str = "+14155552002";
const STRANGER: &str = "+14155552999";

fn config(dir: &std::path::Path, uas_port: u16, dead_trunk: u16) -> String {
    format!(
        "{}sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{uas_port}\"\n\
         media:\n  port_range: \"31800-31899\"\n  recording:\n    dir: \"{rec}\"\n\
         carriers:\n  - name: \"backup\"\n    numbers: [\"+14155550199\"]\n    sip:\n      trunks:\n        - address: \"127.0.0.1:{dead_trunk}\"\n\
         services:\n  - unique_name: \"shop\"\n    numbers: [\"+14155550101\", \"+14155550102\", \"+14155550103\"]\n    record: true\n\
         \x20 - unique_name: \"spare\"\n    numbers: [\"+14155550199\"]\n",
        two_carriers(""),
        rec = dir.join("recordings").display()
    )
}

#[test]
fn the_console_shows_the_traffic_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let uas_port = udp_port();
    let (_dead, dead_port) = socket();
    let d = Daemon::start_with(dir.path(), &config(dir.path(), uas_port, dead_port));
    // Status callbacks go to a port nobody listens on: they fail, and the console says so.
    let failing = format!("http://127.0.0.1:{}/status", free_port());
    let r = d.post("/v1/Services/shop", &[("CallbackUrl", &failing)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (pa, pb) = two_party_session(&d, "shop", "order-17", A, B);
    let session = d.get("/v1/Services/shop/Sessions/order-17").json()["sid"]
        .as_str()
        .unwrap()
        .to_string();

    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    let bodies = [
        "Is the sofa still for sale?",
        "Yes, pick up Friday",
        "<b>great</b> & thanks",
    ];
    let r = a.request(Body::SubmitSm(sm(&A[1..], &pa[1..], bodies[0].as_bytes())));
    assert_eq!(r.status, status::ESME_ROK);
    assert!(b.wait_messages(1, Duration::from_secs(10)));
    let r = b.request(Body::SubmitSm(sm(&B[1..], &pb[1..], bodies[1].as_bytes())));
    assert_eq!(r.status, status::ESME_ROK);
    let r = a.request(Body::SubmitSm(sm(&A[1..], &pa[1..], bodies[2].as_bytes())));
    assert_eq!(r.status, status::ESME_ROK);
    assert!(b.wait_messages(2, Duration::from_secs(10)));
    assert!(a.wait_messages(1, Duration::from_secs(10)));
    let r = b.request(Body::SubmitSm(sm(
        &STRANGER[1..],
        &pb[1..],
        b"who is this?",
    )));
    assert_eq!(r.status, status::ESME_ROK);

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
    // The recording is finished once its row says so (bounded).
    let deadline = Instant::now() + Duration::from_secs(15);
    let acc = format!("/2010-04-01/Accounts/{ACCOUNT}/Recordings.json");
    while !d.get(&acc).json()["recordings"]
        .as_array()
        .is_some_and(|l| l.iter().any(|r| r["status"] == "completed"))
    {
        assert!(Instant::now() < deadline, "no completed recording");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The dead trunk's probes have gone unanswered by now (and the failing callbacks tried).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !d
        .metrics_text()
        .lines()
        .any(|l| l.starts_with("maskd_sip_trunk_up{") && l.ends_with(" 0"))
    {
        assert!(Instant::now() < deadline, "the dead trunk never went down");
        std::thread::sleep(Duration::from_millis(200));
    }

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let expect = serde_json::json!({
        "service": "shop",
        "session_sid": session,
        "participant": A,
        "search_digits": &A[A.len() - 4..],
        "bodies": bodies,
        "stranger": STRANGER,
        "failing_callback": failing,
        "down_trunk": format!("127.0.0.1:{dead_port}"),
    });
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/console_check.py"
        ))
        .args([&d.base(), ACCOUNT, TOKEN])
        .arg(&shots)
        .arg(expect.to_string())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the console check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "services", "service", "search", "session", "contacts", "health",
    ] {
        let f = shots.join(format!("console-{page}.png"));
        assert!(
            std::fs::metadata(&f).is_ok_and(|m| m.len() > 10_000),
            "screenshot {page}"
        );
    }
    drop((a, b));
}

#[test]
fn the_console_is_behind_the_credentials_and_guards_its_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(dir.path(), &config(dir.path(), udp_port(), udp_port()));
    two_party_session(&d, "shop", "order-1", A, B);
    // No credentials: 401 with a challenge, for the page and its data alike.
    for path in ["/console/", "/console/app.js", "/console/api/services"] {
        let r = http(d.api, "GET", path, None, None);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("www-authenticate").is_some(), "{path}");
    }
    let page = d.get("/console/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/console/app.js"));
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let js = d.get("/console/app.js");
    assert!(js
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/javascript"));
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(
            !js.body.contains(sink),
            "the page builds nodes, never HTML from data: {sink}"
        );
    }
    d.get("/console/api/services/shop/numbers?days=abc")
        .assert_error(400, 80701);
    d.get("/console/api/services/shop/numbers?days=0")
        .assert_error(400, 80701);
    // Search by number: masked unless asked.
    let found = d.get("/console/api/sessions?q=1001").json();
    let shown = found["sessions"][0]["participants"].to_string();
    assert!(
        shown.contains("+*******1001") && !shown.contains(A),
        "{shown}"
    );
    let found = d.get("/console/api/sessions?q=1001&reveal=1").json();
    assert!(found["sessions"][0]["participants"].to_string().contains(A));
    assert_eq!(
        d.get("/console/api/sessions?q=9876").json()["sessions"],
        serde_json::json!([])
    );
    // The one write wants the console's header (a form from another site cannot send it).
    let sid = found["sessions"][0]["sid"].as_str().unwrap().to_string();
    d.post(&format!("/console/api/sessions/{sid}/close"), &[])
        .assert_error(403, 20403);
    // A browser holding the credentials cannot be made to change anything from another
    // site (a form there posting to the API): refused whatever the path.
    let form = "application/x-www-form-urlencoded";
    let body = encode(&[("Status", "closed")]);
    for (name, value) in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = raw_http_with(
            d.api,
            "POST",
            "/v1/Services/shop/Sessions/order-1",
            Some((ACCOUNT, TOKEN)),
            &[(name, value)],
            Some(body.as_bytes()),
            form,
        );
        r.assert_error(403, 20403);
    }
    let open = d.get("/v1/Services/shop/Sessions/order-1").json();
    assert_eq!(open["status"], "open");
    // The API's own origin (the console) and clients that send neither header are served.
    let own = d.base();
    let r = raw_http_with(
        d.api,
        "POST",
        "/v1/Services/shop/Sessions/order-1",
        Some((ACCOUNT, TOKEN)),
        &[("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")],
        Some(encode(&[("Ttl", "600")]).as_bytes()),
        form,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}
