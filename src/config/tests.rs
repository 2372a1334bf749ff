//! The config loader's tests: the shipped file, unknown keys, each bad value named.
use super::*;

const SHIPPED: &str = include_str!("../../config.yaml");

#[test]
fn shipped_config_is_valid() {
    let v = parse(SHIPPED).unwrap().validate().unwrap();
    assert_eq!(v.api_listen.to_string(), "127.0.0.1:8080");
    assert_eq!(v.services[0].numbers.len(), 2);
}

#[test]
fn recording_a_service_needs_anchored_media() {
    let mut c = parse(SHIPPED).unwrap();
    c.services[0].record = true;
    c.media.mode = "passthrough".into();
    match c.clone().validate() {
        Err(ConfigError::Invalid(problems)) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].0, "services[0].record");
        }
        other => panic!("expected services[0].record refused, got {other:?}"),
    }
    c.media.mode = "anchor".into();
    assert!(c.validate().unwrap().services[0].record);
}

#[test]
fn unknown_keys_name_their_path() {
    let text = SHIPPED.replace("  auth_token:", "  auth_tokn: x\n  auth_token:");
    match parse(&text) {
        Err(ConfigError::Parse { key, message }) => {
            assert_eq!(key, "api.auth_tokn", "{message}");
            assert!(message.contains("unknown field"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let text = format!("{SHIPPED}\nbogus: 1\n");
    match parse(&text) {
        Err(ConfigError::Parse { key, .. }) => assert_eq!(key, "bogus"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn validation_reports_every_problem_with_its_key() {
    let text = SHIPPED
        .replace("\"127.0.0.1:8080\"", "\"nowhere\"")
        .replace("timeout: \"5s\"", "timeout: \"5 parsecs\"")
        .replace("\"+15550000002\"", "\"+1555\"");
    let err = parse(&text).unwrap().validate().unwrap_err();
    let lines = err.lines().join("\n");
    assert!(lines.contains("api.listen: \"nowhere\""), "{lines}");
    assert!(lines.contains("webhooks.timeout:"), "{lines}");
    assert!(lines.contains("services[0].numbers[1]:"), "{lines}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert!(parse_duration("30").is_err());
    assert!(parse_duration("s").is_err());
    assert!(parse_duration("3w").is_err());
    assert!(parse_duration("99999999999999999999s").is_err());
}
