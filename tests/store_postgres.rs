//! What PostgreSQL adds to the store contract (tests/store_contract.rs runs that against it):
//! versioned migrations taken once when nodes start together and a newer schema refused;
//! the writer and the reader re-open a connection the server dropped and lose nothing;
//! `store.url` in the daemon: the API's writes survive kill -9 there, a bad URL is exit 64
//! naming the key, an unreachable server exit 74 naming the target without the password.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg;
use maskd::core::engine::{Engine, EngineOptions, NewSession, ServicePatch};
use maskd::core::store::{InteractionQuery, Store, StoreError};
use maskd::store::PgStore;

const T0: i64 = 1_800_000_000;

fn open(url: &str) -> Arc<PgStore> {
    Arc::new(PgStore::open(url, 1, Box::new(|e| panic!("store failed: {e}"))).expect("open"))
}

#[test]
fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let url = pg::fresh_database("migrate");
    let stores: Vec<_> = (1..=4)
        .map(|node| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url, node, Box::new(|_| {})).map(drop))
        })
        .collect();
    for s in stores {
        s.join().unwrap().expect("every node opens the store");
    }
    let versions = pg::run_on(
        &url,
        "SELECT version FROM schema_migrations ORDER BY version",
    );
    let expected: Vec<_> = (1..=maskd::store::postgres::SCHEMA_VERSION)
        .map(|v| Some(v.to_string()))
        .collect();
    assert_eq!(versions, expected, "one row per version");

    pg::run_on(&url, "INSERT INTO schema_migrations (version) VALUES (99)");
    match PgStore::open(&url, 1, Box::new(|_| {})) {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("99"), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a schema newer than this maskd was accepted"),
    }
}

/// Ends every connection maskd has open to `url`'s database (as a failover or a restart
/// of the server would).
fn drop_connections(url: &str) -> usize {
    let db = url.rsplit('/').next().unwrap();
    pg::admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{db}' AND application_name = 'maskd'"
    ))
    .len()
}

#[test]
fn writer_and_reader_reopen_a_dropped_connection_and_lose_nothing() {
    let url = pg::fresh_database("reconnect");
    let store = open(&url);
    let opts = EngineOptions {
        node: Some(1),
        ..EngineOptions::default()
    };
    let e = Engine::open(store.clone(), opts, T0 * 1000).unwrap();
    let s = common::seed::service_with_session(
        &e,
        ServicePatch {
            unique_name: Some("reconnect".into()),
            ..Default::default()
        },
        ["+14155550101", "+14155550102"],
        NewSession::default(),
        T0,
    );
    let (_, _, d) = e
        .create_message_interaction(s.session, s.participants[0], "before", T0)
        .unwrap();
    d.wait_blocking().unwrap();
    let page = |store: &PgStore| {
        store
            .interactions(InteractionQuery {
                session: s.session,
                message_participant: None,
                after_seq: 0,
                before_seq: None,
                limit: 100,
            })
            .unwrap()
    };
    assert_eq!(page(&store).len(), 1);

    assert_eq!(
        drop_connections(&url),
        3,
        "the writer's, the reader's and the follower's"
    );
    // Both sides notice on their next use and re-open; nothing acknowledged is lost.
    let (_, _, d) = e
        .create_message_interaction(s.session, s.participants[0], "after", T0 + 1)
        .unwrap();
    d.wait_blocking().expect("the write after the drop commits");
    assert_eq!(page(&store).len(), 2, "the reader re-opened");

    // Dropped again while a burst is in flight: every batch still completes.
    let mut pending = Vec::new();
    for k in 0..50 {
        if k == 25 {
            drop_connections(&url);
        }
        let (_, _, d) = e
            .create_message_interaction(s.session, s.participants[0], &format!("b{k}"), T0 + 2)
            .unwrap();
        pending.push(d);
    }
    for d in pending {
        d.wait_blocking().unwrap();
    }
    drop(e);
    store.close();
    let store = open(&url);
    let rows = page(&store);
    assert_eq!(rows.len(), 52);
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
}

fn maskd_run(cfg: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_maskd"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a daemon that starts instead of failing is killed and the test fails.
    let until = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            child.kill().unwrap();
            panic!("maskd kept running on a store it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn store_url_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::config_yaml(dir.path(), common::free_port(), common::free_port(), "");
    let start = base.find("store:").unwrap();
    let end = start + base[start..].find("\ntimer_tick").unwrap();
    let with_store = |store: &str| {
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, format!("{}{store}{}", &base[..start], &base[end..])).unwrap();
        path
    };
    for (store, says) in [
        ("store:\n  url: \"mysql://x@127.0.0.1/db\"", "store.url"),
        ("store:\n  url: \"postgres://\"", "store.url"),
        (
            "store:\n  path: \"x.db\"\n  url: \"postgres://u@127.0.0.1/db\"",
            "store.url",
        ),
        ("store: {}", "store.path"),
    ] {
        let out = maskd_run(&with_store(store));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{store}: {err}");
        assert!(err.contains(says), "{store}: {err}");
    }
    // Nobody listens on this port: exit 74, the target named, the password never.
    let port = common::free_port();
    let out = maskd_run(&with_store(&format!(
        "store:\n  url: \"postgres://maskd:hunter2@127.0.0.1:{port}/maskd?connect_timeout=2\""
    )));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("maskd: store ")
            && l.contains(&format!("postgres://maskd@127.0.0.1:{port}/maskd"))),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn the_daemon_on_postgres_keeps_what_the_api_acknowledged_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::pg_database_of(dir.path());
    let services =
        "services:\n  - unique_name: \"pg\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n";
    let edit = |cfg: &str| {
        let start = cfg.find("store:").unwrap();
        let end = start + cfg[start..].find("\ntimer_tick").unwrap();
        format!("{}store:\n  url: \"{url}\"{}", &cfg[..start], &cfg[end..])
    };
    let mut d = common::Daemon::start_edited(dir.path(), services, edit);
    let svc = d.get("/v1/Services/pg").json()["sid"]
        .as_str()
        .expect("the configured service")
        .to_string();
    let (pa, pb) = common::two_party_session(&d, &svc, "order-7", "+15005550001", "+15005550002");
    let r = d.post(
        &format!(
            "/v1/Services/{svc}/Sessions/order-7/Participants/{}/MessageInteractions",
            {
                let parts = d
                    .get(&format!("/v1/Services/{svc}/Sessions/order-7/Participants"))
                    .json();
                parts["participants"][0]["sid"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        ),
        &[("Body", "hello from the API")],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    d.kill9();

    // Nothing of it lives in the directory but the URL: it is all in PostgreSQL.
    let sessions = pg::run_on(&url, "SELECT unique_name FROM sessions");
    assert_eq!(sessions, vec![Some("order-7".to_string())]);

    let d = common::Daemon::start_edited(dir.path(), services, edit);
    let s = d.get(&format!("/v1/Services/{svc}/Sessions/order-7"));
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(
        s.json()["status"],
        "in-progress",
        "a message was sent in it"
    );
    let pairs = common::participant_pairs(&d, &svc, "order-7");
    let proxies: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(proxies, vec![pa.as_str(), pb.as_str()]);
    let list = d
        .get(&format!("/v1/Services/{svc}/Sessions/order-7/Interactions"))
        .json();
    assert_eq!(list["interactions"].as_array().unwrap().len(), 1);
    assert!(list["interactions"][0]["data"]
        .as_str()
        .unwrap()
        .contains("hello from the API"));
}
