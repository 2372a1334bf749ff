//! Conformance: Schemathesis (PyPI, pinned in tests/interop/requirements.txt) generates valid
//! and invalid requests for every operation of Twilio's own OpenAPI description of Proxy v1,
//! and for the operations maskd serves of its 2010-04-01 Recording resource, and checks what
//! the real daemon answers: never a 5xx, every documented answer valid against Twilio's
//! response schema, documented content types, and every operation answering 2xx at least
//! once. tests/conformance/schemathesis.toml and schemathesis-recordings.toml say what runs,
//! and tests/conformance/hooks.py lists maskd's deliberate deviations from the files.
//!
//! The daemon is seeded with real SIDs (services, numbers, sessions with participants,
//! message interactions through the API; recordings on its store before it starts) that the
//! runs take as path parameters. Twilio's files are read in place from
//! `../shared/reference/twilio-oai/` (or the directory `MASKD_TWILIO_OAI` names); Python comes
//! from `MASKD_PYTHON` or `./.venv/bin/python`, which `scripts/test` installs. Without either
//! this test fails: it never passes silently. `MASKD_SCHEMATHESIS_ARGS` adds arguments to the
//! runs, e.g. `--seed 3 --max-examples 100` to look further than the fixed seed does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;

/// Examples per operation and phase; with the fixed seed the run is the same every time.
const MAX_EXAMPLES: &str = "40";
const SEED: &str = "20240612";

/// One of Twilio's OpenAPI files, read in place (or from the `MASKD_TWILIO_OAI` directory).
fn twilio_oai(file: &str) -> PathBuf {
    let dir = std::env::var_os("MASKD_TWILIO_OAI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/reference/twilio-oai"
            ))
        });
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "Twilio's OpenAPI file is not at {}: set MASKD_TWILIO_OAI to its directory",
        path.display()
    );
    path
}

fn created(r: Resp) -> String {
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["sid"].as_str().unwrap().to_string()
}

/// Seeds the daemon; returns the `MASKD_*` variables tests/conformance/schemathesis.toml
/// reads. Every operation that destroys or reshapes its target gets one of its own.
fn seed(d: &Daemon) -> Vec<(&'static str, String)> {
    let service = |name: &str| created(d.post("/v1/Services", &[("UniqueName", name)]));
    let svc = service("conformance");
    let number = |n: &str, reserved: &str| {
        created(d.post(
            &format!("/v1/Services/{svc}/PhoneNumbers"),
            &[("PhoneNumber", n), ("IsReserved", reserved)],
        ))
    };
    let pn = number("+14155550101", "false");
    number("+14155550102", "false");
    // Reserved, so automatic selection never puts them in use.
    let pn_update = number("+14155550103", "true");
    let pn_delete = number("+14155550104", "true");
    let session = |name: &str, parts: &[&str]| {
        let json: Vec<String> = parts
            .iter()
            .map(|p| format!(r#"{{"Identifier":"{p}"}}"#))
            .collect();
        let mut form = vec![("UniqueName", name)];
        form.extend(json.iter().map(|j| ("Participants", j.as_str())));
        created(d.post(&format!("/v1/Services/{svc}/Sessions"), &form))
    };
    let kc = session("main", &["+14155551001", "+14155551002"]);
    let kc_leave = session("leave", &["+14155551003", "+14155551004"]);
    let participant = |kc: &str| {
        let list = d
            .get(&format!("/v1/Services/{svc}/Sessions/{kc}/Participants"))
            .json();
        list["participants"][0]["sid"].as_str().unwrap().to_string()
    };
    let kp = participant(&kc);
    let message = || {
        created(d.post(
            &format!("/v1/Services/{svc}/Sessions/{kc}/Participants/{kp}/MessageInteractions"),
            &[("Body", "hello")],
        ))
    };
    vec![
        ("MASKD_SERVICE", svc.clone()),
        ("MASKD_SERVICE_UPDATE", service("conformance-update")),
        ("MASKD_SERVICE_DELETE", service("conformance-delete")),
        ("MASKD_NUMBER", pn),
        ("MASKD_NUMBER_UPDATE", pn_update),
        ("MASKD_NUMBER_DELETE", pn_delete),
        ("MASKD_SESSION", kc.clone()),
        ("MASKD_SESSION_UPDATE", session("update", &[])),
        ("MASKD_SESSION_DELETE", session("delete", &[])),
        ("MASKD_SESSION_EMPTY", session("empty", &[])),
        ("MASKD_SESSION_LEAVE", kc_leave.clone()),
        ("MASKD_PARTICIPANT", kp.clone()),
        ("MASKD_PARTICIPANT_LEAVE", participant(&kc_leave)),
        ("MASKD_INTERACTION", message()),
        ("MASKD_INTERACTION_DELETE", message()),
    ]
}

/// Runs Schemathesis on `spec` with `toml` against `d`, with `vars` for the file and `args`.
fn schemathesis(spec: &Path, toml: &str, d: &Daemon, vars: Vec<(&str, String)>, args: &[&str]) {
    let py = python();
    let check = Command::new(&py)
        .args(["-c", "import schemathesis; print(schemathesis.__version__)"])
        .output()
        .expect("run python");
    assert!(
        check.status.success(),
        "{py} cannot import schemathesis: run scripts/test to install tests/interop/requirements.txt"
    );
    let work = tempfile::tempdir().unwrap();
    let conformance = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance");
    let extra = std::env::var("MASKD_SCHEMATHESIS_ARGS").unwrap_or_default();
    let started = Instant::now();
    let out = Command::new(&py)
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(format!("{conformance}/{toml}"))
        .arg("run")
        .arg(spec)
        .args(["--url", &d.base()])
        .args(["--auth", &format!("{ACCOUNT}:{TOKEN}")])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        .args(["--no-color", "--output-truncate", "false"])
        .args(args)
        .args(extra.split_whitespace())
        .envs(vars)
        .env("MASKD_CONFORMANCE_HOOKS", format!("{conformance}/hooks.py"))
        // Anything the run leaves behind (Hypothesis' files) goes to the temporary directory.
        .current_dir(work.path())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis failed ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    eprintln!(
        "schemathesis passed in {:.1} s\n{stdout}",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn twilio_openapi_conformance() {
    let spec = twilio_oai("twilio_proxy_v1.json");
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let vars = seed(&d);
    schemathesis(&spec, "schemathesis.toml", &d, vars, &[]);
}

/// The operations of Twilio's 2010-04-01 Recording resource that maskd serves.
const RECORDING_OPERATIONS: [&str; 6] = [
    "ListRecording",
    "FetchRecording",
    "DeleteRecording",
    "ListCallRecording",
    "FetchCallRecording",
    "DeleteCallRecording",
];

#[test]
fn twilio_recordings_openapi_conformance() {
    let spec = twilio_oai("twilio_api_v2010_recordings_keys.json");
    let dir = tempfile::tempdir().unwrap();
    let media = common::recordings::seed(dir.path(), "http://127.0.0.1");
    let d = Daemon::start_with(dir.path(), &media);
    let list = |call: &str| -> Vec<String> {
        let r = d.get(&format!(
            "/2010-04-01/Accounts/{ACCOUNT}/Calls/{call}/Recordings.json"
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["sid"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (
        list(common::recordings::CALL_A),
        list(common::recordings::CALL_B),
    );
    assert_eq!((a.len(), b.len()), (2, 1));
    let vars = vec![
        ("MASKD_ACCOUNT", ACCOUNT.to_string()),
        ("MASKD_CALL", common::recordings::CALL_A.to_string()),
        ("MASKD_RECORDING", a[0].clone()),
        ("MASKD_RECORDING_DELETE_UNDER_CALL", a[1].clone()),
        ("MASKD_RECORDING_DELETE", b[0].clone()),
    ];
    let mut args = Vec::new();
    for op in RECORDING_OPERATIONS {
        args.extend(["--include-operation-id", op]);
    }
    schemathesis(&spec, "schemathesis-recordings.toml", &d, vars, &args);
}

/// The operations of Twilio's 2010-04-01 Key resource (all of them: maskd serves each).
const KEY_OPERATIONS: [&str; 5] = [
    "CreateNewKey",
    "ListKey",
    "FetchKey",
    "UpdateKey",
    "DeleteKey",
];

#[test]
fn twilio_keys_openapi_conformance() {
    let spec = twilio_oai("twilio_api_v2010_recordings_keys.json");
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let key = |name: &str| -> String {
        let r = d.post(
            &format!("/2010-04-01/Accounts/{ACCOUNT}/Keys.json"),
            &[("FriendlyName", name)],
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["sid"].as_str().unwrap().to_string()
    };
    let vars = vec![
        ("MASKD_ACCOUNT", ACCOUNT.to_string()),
        ("MASKD_KEY", key("kept")),
        ("MASKD_KEY_DELETE", key("deleted")),
    ];
    let mut args = Vec::new();
    for op in KEY_OPERATIONS {
        args.extend(["--include-operation-id", op]);
    }
    schemathesis(&spec, "schemathesis-keys.toml", &d, vars, &args);
}
