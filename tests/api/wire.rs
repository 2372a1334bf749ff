//! Paths or methods the API does not have answer Twilio error JSON.

use crate::common::*;
use crate::setup;

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
