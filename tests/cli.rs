//! The command line contract (SPEC §5.1): check-config, exit 64 on a bad config before any
//! port is bound, one-line errors for a busy port or an unusable store, SIGTERM exits 0.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::*;

fn maskd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(args)
        .output()
        .unwrap()
}

fn write_config(dir: &std::path::Path, api: u16, metrics: u16, extra: &str) -> String {
    let p = dir.join("c.yaml");
    std::fs::write(&p, config_yaml(dir, api, metrics, extra)).unwrap();
    p.display().to_string()
}

#[test]
fn shipped_config_checks_clean() {
    let out = maskd(&[
        "check-config",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_config_exits_64_naming_every_key_and_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (api, metrics) = (free_port(), free_port());
    let cfg = write_config(
        dir.path(),
        api,
        metrics,
        "webhooks:\n  timeout: \"soon\"\n  intercept_on_error: \"maybe\"\n",
    );
    for cmd in ["check-config", "run"] {
        let out = maskd(&[cmd, "--config", &cfg]);
        assert_eq!(out.status.code(), Some(64), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("webhooks.timeout"), "{err}");
        assert!(err.contains("webhooks.intercept_on_error"), "{err}");
    }
    // Nothing was bound: the ports are still free.
    TcpListener::bind(("127.0.0.1", api)).expect("api port untouched");
    TcpListener::bind(("127.0.0.1", metrics)).expect("metrics port untouched");

    let cfg = write_config(
        dir.path(),
        api,
        metrics,
        "sip:\n  listen: \"127.0.0.1:5060\"\n  trunks: []\n",
    );
    let out = maskd(&["check-config", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sip.trunks"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = maskd(&["run", "--config", "/nonexistent/maskd.yaml"]);
    assert_eq!(out.status.code(), Some(64));
    let out = maskd(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn busy_port_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = taken.local_addr().unwrap().port();
    let cfg = write_config(dir.path(), api, free_port(), "");
    let out = maskd(&["run", "--config", &cfg]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("maskd: "))
        .expect("an error line");
    assert!(
        line.contains("api.listen")
            && line.contains(&api.to_string())
            && line.contains("cannot listen"),
        "{line}"
    );
}

#[test]
fn corrupt_or_unwritable_store_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("maskd.db"), vec![0x42u8; 8192]).unwrap();
    let cfg = write_config(dir.path(), free_port(), free_port(), "");
    let out = maskd(&["run", "--config", &cfg]);
    assert_eq!(out.status.code(), Some(74));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("maskd: store ") && l.contains("maskd.db")),
        "{err}"
    );

    // A store path under a file cannot be created.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let cfg_text = config_yaml(dir.path(), free_port(), free_port(), "").replace(
        &dir.path().join("maskd.db").display().to_string(),
        &blocker.join("sub/maskd.db").display().to_string(),
    );
    let cfg = dir.path().join("c2.yaml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let out = maskd(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(74),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    assert_eq!(d.post("/v1/Services", &[("UniqueName", "t")]).status, 201);
    let st = d.terminate();
    assert!(st.success(), "{st:?}");
    let log = d.drain_log();
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
    // And the service is still there after restart.
    let d2 = Daemon::restart(dir.path(), "");
    assert_eq!(d2.get("/v1/Services/t").status, 200);
}

/// Every `fixtures/config/bad-*.yaml` fails `check-config` with exit 64 and names each key
/// its `# expect:` lines list; every other fixture passes.
#[test]
fn config_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let out = maskd(&["check-config", "--config", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        if name.starts_with("bad-") {
            assert_eq!(out.status.code(), Some(64), "{name}: {err}");
            let expected: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# expect: "))
                .collect();
            assert!(!expected.is_empty(), "{name} has no # expect: line");
            for key in expected {
                assert!(
                    err.lines().any(
                        |l| l.contains(&format!(": {key}:")) || l.contains(&format!("{key}: "))
                    ),
                    "{name}: no error names {key}:\n{err}"
                );
            }
        } else {
            assert!(out.status.success(), "{name}: {err}");
        }
        seen += 1;
    }
    assert!(seen >= 5);
}
