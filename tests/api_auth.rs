//! The API's front door (issue 18): API keys driven by Twilio's Python library (made with
//! the account's token, used on the Proxy and 2010 APIs, listed without their secret,
//! deleted and refused at once; kept as argon2id hashes only, across a restart); a second
//! auth token accepted beside the first (so the first can be rotated without downtime) that
//! signs nothing; the audit log of every write, naming the credential and never a secret or
//! a whole number; check-config on the key.

mod common;

use std::time::Duration;

use common::hook::Hook;
use common::*;

const SECOND: &str = "second-token-for-rotation";

fn with_secondary(text: &str) -> String {
    text.replace(
        &format!("  auth_token: \"{TOKEN}\"\n"),
        &format!("  auth_token: \"{TOKEN}\"\n  auth_token_secondary: \"{SECOND}\"\n"),
    )
}

#[test]
fn the_secondary_token_works_signs_nothing_and_writes_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_edited(
        dir.path(),
        "services:\n  - unique_name: \"shop\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        with_secondary,
    );
    let second = Some((ACCOUNT, SECOND));
    // Reads and writes with the second token.
    let r = http(d.api, "GET", "/v1/Services/shop", second, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let hook = Hook::start();
    let body = encode(&[("CallbackUrl", &hook.url("/status"))]);
    let r = http(d.api, "POST", "/v1/Services/shop", second, Some(&body));
    assert_eq!(r.status, 200, "{}", r.body);
    // A wrong password, or the right one for another account, is refused.
    for bad in [
        (ACCOUNT, "nope"),
        ("AC00000000000000000000000000000000", SECOND),
    ] {
        let r = http(d.api, "GET", "/v1/Services/shop", Some(bad), None);
        r.assert_error(401, 20003);
    }
    // A change made with the second token: its callback is signed with the first.
    let body = encode(&[
        ("UniqueName", "order-9"),
        ("Participants", r#"{"Identifier":"+14155551001"}"#),
        ("Participants", r#"{"Identifier":"+14155552002"}"#),
    ]);
    let r = http(
        d.api,
        "POST",
        "/v1/Services/shop/Sessions",
        second,
        Some(&body),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let parts = d
        .get("/v1/Services/shop/Sessions/order-9/Participants")
        .json();
    let part = parts["participants"][0]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let body = encode(&[("Body", "hello")]);
    let path =
        format!("/v1/Services/shop/Sessions/order-9/Participants/{part}/MessageInteractions");
    let r = http(d.api, "POST", &path, second, Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
    let got = hook.wait("/status", 1, Duration::from_secs(10));
    assert!(!got.is_empty(), "a status callback");
    let url = hook.url("/status");
    let signed = got[0]
        .headers
        .get("x-twilio-signature")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        signed,
        maskd::net::webhook::signature(TOKEN, &url, &got[0].params),
        "signed with the primary token"
    );
    assert_ne!(
        signed,
        maskd::net::webhook::signature(SECOND, &url, &got[0].params)
    );

    // The audit log: each write with its credential, no secret, no whole number.
    let r = http(
        d.api,
        "DELETE",
        "/v1/Services/shop/PhoneNumbers/%2B14155550102",
        Some((ACCOUNT, TOKEN)),
        None,
    );
    assert!(
        r.status == 204 || r.status == 400 || r.status == 409,
        "{} {}",
        r.status,
        r.body
    );
    let line = d.wait_for_log("PhoneNumbers/+*******0102", Duration::from_secs(5));
    assert!(
        line.contains("api write (audit)") && line.contains("credential=auth token"),
        "{line}"
    );
    assert!(line.contains("method=DELETE"), "{line}");
    let log = d.drain_log().join("\n");
    let audited: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("api write (audit)"))
        .collect();
    assert!(
        audited
            .iter()
            .any(|l| l.contains("credential=secondary auth token")
                && l.contains("method=POST")
                && l.contains("/MessageInteractions")),
        "{audited:?}"
    );
    assert!(
        audited.iter().all(|l| !l.contains("method=GET")),
        "reads are not audited: {audited:?}"
    );
    assert!(
        !log.contains(SECOND) && !log.contains(TOKEN),
        "no secret in the log"
    );
    assert!(!log.contains("14155550102"), "no whole number in the log");
}

#[test]
fn check_config_names_a_bad_secondary_token() {
    let dir = tempfile::tempdir().unwrap();
    for (value, why) in [
        ("", "must not be empty"),
        (TOKEN, "the same as api.auth_token"),
    ] {
        let path = dir.path().join("c.yaml");
        let text = config_yaml(dir.path(), free_port(), free_port(), "").replace(
            &format!("  auth_token: \"{TOKEN}\"\n"),
            &format!("  auth_token: \"{TOKEN}\"\n  auth_token_secondary: \"{value}\"\n"),
        );
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_maskd"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(
            err.contains("api.auth_token_secondary") && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn api_keys_work_with_twilios_python_library_and_die_with_their_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let services =
        "services:\n  - unique_name: \"shop\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n";
    let mut d = Daemon::start_with(dir.path(), services);
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/keys_flow.py"
        ))
        .args([&d.base(), ACCOUNT, TOKEN, "shop"])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The audit log names the key that made the session; the secret is nowhere.
    let line = d.wait_for_log("credential=key SK", Duration::from_secs(5));
    assert!(line.contains("/Sessions"), "{line}");
    // A key made now survives a restart, stored only as its argon2id hash.
    let r = d.post(
        &format!("/2010-04-01/Accounts/{ACCOUNT}/Keys.json"),
        &[("FriendlyName", "ops")],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json();
    let (sid, secret) = (
        key["sid"].as_str().unwrap().to_string(),
        key["secret"].as_str().unwrap().to_string(),
    );
    let log = d.drain_log().join("\n");
    assert!(!log.contains(&secret), "the secret in the log");
    drop(d);
    // On SQLite, the file itself (the PostgreSQL pass stores the same rows).
    if dir.path().join("maskd.db").exists() {
        let db = std::fs::read(dir.path().join("maskd.db")).unwrap_or_default();
        let wal = std::fs::read(dir.path().join("maskd.db-wal")).unwrap_or_default();
        let stored = [db, wal].concat();
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is stored"
        );
        assert!(
            stored.windows(10).any(|w| w == b"$argon2id$"),
            "its hash is"
        );
    }
    let d = Daemon::restart(dir.path(), services);
    let r = http(
        d.api,
        "GET",
        "/v1/Services/shop",
        Some((&sid, &secret)),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http(
        d.api,
        "GET",
        "/v1/Services/shop",
        Some((&sid, "nope")),
        None,
    );
    r.assert_error(401, 20003);
}
