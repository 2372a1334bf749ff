//! Interop: Twilio's own Python helper library (`twilio` from PyPI, pinned in
//! tests/interop/requirements.txt) drives the real daemon through a realistic app flow.
//! The Python with that library comes from `MASKD_PYTHON` or `./.venv/bin/python`, which
//! `scripts/test` installs. Without it this test fails: it never passes silently.

mod common;

use std::process::Command;

use common::python;

#[test]
fn twilio_python_library_app_flow() {
    let py = python();
    let check = Command::new(&py)
        .args(["-c", "import twilio"])
        .status()
        .expect("run python");
    assert!(
        check.success(),
        "{py} cannot import twilio: run scripts/test to install tests/interop/requirements.txt"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = common::Daemon::start(dir.path());
    let out = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/twilio_flow.py"
        ))
        .args([&d.base(), common::ACCOUNT, common::TOKEN])
        .output()
        .expect("run twilio_flow.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "twilio_flow.py failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "unexpected summary:\n{stdout}"
    );
}
