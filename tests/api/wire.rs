//! Request values outside the types of Twilio's OpenAPI file (SID patterns, `uri`,
//! `date-time`) are refused with Twilio's codes before anything is stored, and paths or
//! methods the API does not have answer Twilio error JSON.

use crate::common::*;
use crate::{create_session, setup};

/// A request and the Twilio error it must get: method, path, form, status, code.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, u64);

/// Twilio's patterns (`^XX[0-9a-fA-F]{32}$`): a malformed SID is refused with the "Invalid …
/// Sid" code for its resource (80701 for ChatInstanceSid) and never stored; a well-formed one
/// that names nothing is still a 404.
#[test]
fn sid_parameters_must_match_twilio_patterns() {
    let (_dir, d, svc) = setup();
    let spath = path_of(
        &create_session(&d, &svc, "s", "+14155551001", "+14155551002"),
        &d.base(),
    );
    let kp = d.get(&format!("{spath}/Participants")).json()["participants"][0]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let ppath = format!("{spath}/Participants/{kp}");
    let zeros = |prefix: &str| format!("{prefix}{}", "0".repeat(32));
    let (hex33, lower) = (format!("IS{}", "a".repeat(33)), zeros("is"));
    for bad in [
        "null",
        "IS123",
        &hex33,
        &lower,
        &format!("IS{}", "g".repeat(32)),
    ] {
        let form = [("UniqueName", "chat"), ("ChatInstanceSid", bad)];
        d.post("/v1/Services", &form).assert_error(400, 80701);
        d.post(&format!("/v1/Services/{svc}"), &form[1..])
            .assert_error(400, 80701);
    }
    let chat = format!("IS{}", "aB".repeat(16));
    let r = d.post(
        &format!("/v1/Services/{svc}"),
        &[("ChatInstanceSid", &chat)],
    );
    assert_eq!(r.json()["chat_instance_sid"], chat.as_str(), "{}", r.body);
    let r = d.post(&format!("/v1/Services/{svc}"), &[("ChatInstanceSid", "")]);
    assert!(r.json()["chat_instance_sid"].is_null(), "empty clears");
    for s in d.get("/v1/Services").json()["services"].as_array().unwrap() {
        assert!(s["chat_instance_sid"].is_null(), "{s}");
    }

    let empty = d.post(&format!("/v1/Services/{svc}/Sessions"), &[]);
    let epath = path_of(&empty.json(), &d.base());
    let joiner = r#"{"Identifier":"+14155551003","ProxyIdentifierSid":"PN1"}"#;
    let cases: Vec<Case> = vec![
        (
            "POST",
            format!("/v1/Services/{svc}/PhoneNumbers"),
            vec![("Sid", "PN123")],
            400,
            80407,
        ),
        (
            "POST",
            format!("{epath}/Participants"),
            vec![
                ("Identifier", "+14155551003"),
                ("ProxyIdentifierSid", "null"),
            ],
            400,
            80407,
        ),
        (
            "POST",
            format!("/v1/Services/{svc}/Sessions"),
            vec![("Participants", joiner)],
            400,
            80407,
        ),
        (
            "GET",
            format!("/v1/Services/{svc}/PhoneNumbers/PN123"),
            vec![],
            400,
            80407,
        ),
        (
            "POST",
            format!("/v1/Services/{svc}/PhoneNumbers/PN123"),
            vec![("IsReserved", "true")],
            400,
            80407,
        ),
        (
            "DELETE",
            format!("/v1/Services/{svc}/PhoneNumbers/PN123"),
            vec![],
            400,
            80407,
        ),
        (
            "GET",
            format!("/v1/Services/{svc}/PhoneNumbers/{}", zeros("PN")),
            vec![],
            404,
            20404,
        ),
        (
            "GET",
            format!("{spath}/Participants/KP123"),
            vec![],
            400,
            80405,
        ),
        (
            "DELETE",
            format!("{spath}/Participants/KP123"),
            vec![],
            400,
            80405,
        ),
        (
            "GET",
            format!("{spath}/Participants/KP123/MessageInteractions"),
            vec![],
            400,
            80405,
        ),
        (
            "POST",
            format!("{spath}/Participants/KP123/MessageInteractions"),
            vec![("Body", "hi")],
            400,
            80405,
        ),
        (
            "GET",
            format!("{spath}/Participants/{}", zeros("KP")),
            vec![],
            404,
            20404,
        ),
        (
            "GET",
            format!("{spath}/Interactions/KI123"),
            vec![],
            400,
            80403,
        ),
        (
            "DELETE",
            format!("{spath}/Interactions/KI123"),
            vec![],
            400,
            80403,
        ),
        (
            "GET",
            format!("{ppath}/MessageInteractions/KI123"),
            vec![],
            400,
            80403,
        ),
        (
            "GET",
            format!("{spath}/Interactions/{}", zeros("KI")),
            vec![],
            404,
            20404,
        ),
        // Services and Sessions are also named by UniqueName: any other text is a name.
        ("GET", "/v1/Services/KS123".to_string(), vec![], 404, 20404),
        (
            "GET",
            format!("/v1/Services/{svc}/Sessions/KC123"),
            vec![],
            404,
            80308,
        ),
    ];
    for (method, path, form, status, code) in cases {
        let r = match method {
            "POST" => d.post(&path, &form),
            "DELETE" => d.delete(&path),
            _ => d.get(&path),
        };
        assert_eq!(
            (r.status, r.json()["code"].as_u64()),
            (status, Some(code)),
            "{method} {path}: {}",
            r.body
        );
        r.assert_error(status, code);
    }
    let r = d.get(&format!("/v1/Services/{svc}/PhoneNumbers/+14155550101"));
    assert_eq!(r.status, 200, "a number names itself: {}", r.body);
    assert_eq!(
        d.get(&format!("{epath}/Participants")).json()["participants"],
        serde_json::json!([])
    );
}

/// Callback URLs and dates are echoed where Twilio's schema says `uri` and `date-time`.
#[test]
fn urls_and_dates_must_fit_twilio_formats() {
    let (_dir, d, svc) = setup();
    for bad in [
        "http://",
        "http://exa mple.com",
        "https://x/a b",
        "http://x/%zz",
        "http://x/é",
        "http://x/<a>",
        "http://[",
        "ftp://x",
    ] {
        d.post(&format!("/v1/Services/{svc}"), &[("CallbackUrl", bad)])
            .assert_error(400, 80701);
    }
    for good in [
        "https://user:pw@hooks.example.com:8443/a/b?x=1&y=%20#f",
        "http://[::1]:8080/cb",
    ] {
        let r = d.post(
            &format!("/v1/Services/{svc}"),
            &[("InterceptCallbackUrl", good)],
        );
        assert_eq!(r.json()["intercept_callback_url"], good, "{}", r.body);
    }
    for bad in ["9999-12-31T23:00:00-02:00", "1969-12-31T23:59:59Z"] {
        d.post(
            &format!("/v1/Services/{svc}/Sessions"),
            &[("DateExpiry", bad)],
        )
        .assert_error(400, 80701);
    }
}

/// A path that exists answers other methods 405 (Twilio's 20004) with `Allow`; any other path
/// 404 (20404); both as Twilio error JSON.
#[test]
fn unknown_paths_and_methods_answer_twilio_json() {
    let (_dir, d, svc) = setup();
    let auth = Some((ACCOUNT, TOKEN));
    let spath = format!("/v1/Services/{svc}/Sessions/{}", zeros_sid("KC"));
    for (method, path, allowed) in [
        ("PUT", "/v1/Services".to_string(), "GET,POST"),
        ("DELETE", "/v1/Services".to_string(), "GET,POST"),
        ("PATCH", format!("/v1/Services/{svc}"), "GET,POST,DELETE"),
        (
            "POST",
            format!("{spath}/Participants/{}", zeros_sid("KP")),
            "GET,DELETE",
        ),
        ("POST", format!("{spath}/Interactions"), "GET"),
    ] {
        let r = raw_http(d.api, method, &path, auth, None, "");
        r.assert_error(405, 20004);
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let allow = r.header("allow").unwrap_or_default().replace(' ', "");
        for m in allowed.split(',') {
            assert!(
                allow.split(',').any(|a| a == m),
                "{method} {path}: Allow {allow:?} lacks {m}"
            );
        }
    }
    for path in [
        "/".to_string(),
        "/v1/Nope".to_string(),
        "/v1/Services.json".to_string(),
        "/v1/Services/".to_string(),
        format!("/v1/Services/{svc}/ShortCodes"),
        format!("/v1/Services/{svc}/Sessions/x/Participants/y/Nope"),
    ] {
        let r = d.get(&path);
        r.assert_error(404, 20404);
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
}

fn zeros_sid(prefix: &str) -> String {
    format!("{prefix}{}", "0".repeat(32))
}
