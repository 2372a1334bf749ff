//! Two maskd daemons on one PostgreSQL (SPEC §2.6), driven over their REST APIs as an app
//! would: overlapping session creates, closes and participant deletes on both at once
//! against a small pool never leave one route key with two active sessions (checked in the
//! database afterwards), every answer is one a single node gives, and both nodes end up
//! routing the same sessions.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{encode, http, pg, Daemon, ACCOUNT, TOKEN};

const SERVICES: &str = "services:
  - unique_name: \"pool\"
    numbers: [\"+14155550101\", \"+14155550102\", \"+14155550103\"]
";

/// A daemon on `url` as node `node`.
fn node(dir: &Path, url: &str, node: u16) -> Daemon {
    let edit = |cfg: &str| {
        let start = cfg.find("store:").unwrap();
        let end = start + cfg[start..].find("\ntimer_tick").unwrap();
        format!(
            "{}store:\n  url: \"{url}\"\n  node_id: {node}{}",
            &cfg[..start],
            &cfg[end..]
        )
    };
    Daemon::start_edited(dir, SERVICES, edit)
}

fn post(api: SocketAddr, path: &str, form: &[(&str, &str)]) -> common::Resp {
    http(
        api,
        "POST",
        path,
        Some((ACCOUNT, TOKEN)),
        Some(&encode(form)),
    )
}

fn delete(api: SocketAddr, path: &str) -> common::Resp {
    http(api, "DELETE", path, Some((ACCOUNT, TOKEN)), None)
}

/// Route keys held by more than one active session's live participants, in the database.
fn doubled_keys(url: &str) -> Vec<Option<String>> {
    pg::run_on(
        url,
        "SELECT p.proxy || '/' || p.identifier FROM participants p
         JOIN sessions s ON s.sid = p.session_sid
         WHERE s.status IN ('open', 'in-progress') AND p.date_deleted IS NULL
         GROUP BY p.proxy, p.identifier HAVING count(*) > 1",
    )
}

#[test]
fn two_nodes_never_give_one_route_key_to_two_sessions() {
    let url = pg::fresh_database("alloc");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n1 = node(d1.path(), &url, 1);
    let n2 = node(d2.path(), &url, 2);
    let svc = n1.get("/v1/Services/pool").json()["sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        n2.get("/v1/Services/pool").json()["sid"].as_str(),
        Some(svc.as_str()),
        "one service, whichever node made it"
    );
    let people: Vec<String> = (0..6).map(|k| format!("+1500555000{k}")).collect();
    let apis = [n1.api, n2.api];
    let started = Instant::now();
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let (svc, people) = (svc.clone(), people.clone());
            let api = apis[(w % 2) as usize];
            std::thread::spawn(move || {
                let mut tally: BTreeMap<String, u32> = BTreeMap::new();
                let mut mine: Vec<String> = Vec::new();
                let mut x = w.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut next = |n: usize| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % n as u64) as usize
                };
                for _ in 0..40 {
                    let (a, b) = (next(people.len()), next(people.len() - 1));
                    let b = if b >= a { b + 1 } else { b };
                    let pa = format!(r#"{{"Identifier":"{}"}}"#, people[a]);
                    let pb = format!(r#"{{"Identifier":"{}"}}"#, people[b]);
                    let r = post(
                        api,
                        &format!("/v1/Services/{svc}/Sessions"),
                        &[("Participants", &pa), ("Participants", &pb)],
                    );
                    let code = match r.status {
                        201 => {
                            mine.push(r.json()["sid"].as_str().unwrap().to_string());
                            "201".to_string()
                        }
                        s => format!("{s}/{}", r.json()["code"]),
                    };
                    *tally.entry(code).or_default() += 1;
                    // Now and then one of this worker's sessions ends, or loses a participant.
                    match (next(4), mine.is_empty()) {
                        (0, false) => {
                            let s = mine.remove(next(mine.len()));
                            let r = post(
                                api,
                                &format!("/v1/Services/{svc}/Sessions/{s}"),
                                &[("Status", "closed")],
                            );
                            *tally.entry(format!("close {}", r.status)).or_default() += 1;
                        }
                        (1, false) => {
                            let s = mine.remove(next(mine.len()));
                            let parts = http(
                                api,
                                "GET",
                                &format!("/v1/Services/{svc}/Sessions/{s}/Participants"),
                                Some((ACCOUNT, TOKEN)),
                                None,
                            )
                            .json();
                            let p = parts["participants"][0]["sid"]
                                .as_str()
                                .unwrap()
                                .to_string();
                            let r = delete(
                                api,
                                &format!("/v1/Services/{svc}/Sessions/{s}/Participants/{p}"),
                            );
                            *tally.entry(format!("delete {}", r.status)).or_default() += 1;
                        }
                        _ => {}
                    }
                }
                tally
            })
        })
        .collect();
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    for w in workers {
        for (k, v) in w.join().unwrap() {
            *tally.entry(k).or_default() += v;
        }
    }
    eprintln!("answers in {:?}: {tally:?}", started.elapsed());
    assert!(tally.get("201").copied().unwrap_or(0) > 10, "{tally:?}");
    for (answer, n) in &tally {
        assert!(
            answer == "201"
                || answer.starts_with("400/")
                || answer == "close 200"
                || answer == "delete 204",
            "{n} × {answer}: not what a single node answers ({tally:?})"
        );
    }
    assert_eq!(doubled_keys(&url), Vec::<Option<String>>::new());
    // route_keys holds exactly the active sessions' live keys.
    let stray = pg::run_on(
        &url,
        "SELECT count(*) FROM (
           (SELECT proxy, identifier FROM route_keys
            EXCEPT SELECT p.proxy, p.identifier FROM participants p
              JOIN sessions s ON s.sid = p.session_sid
              WHERE s.status IN ('open', 'in-progress') AND p.date_deleted IS NULL)
           UNION ALL
           (SELECT p.proxy, p.identifier FROM participants p
              JOIN sessions s ON s.sid = p.session_sid
              WHERE s.status IN ('open', 'in-progress') AND p.date_deleted IS NULL
            EXCEPT SELECT proxy, identifier FROM route_keys)) d",
    );
    assert_eq!(stray, vec![Some("0".to_string())]);

    // Both nodes end up with the same sessions in the same states.
    let states = |d: &Daemon| {
        let list = d
            .get(&format!("/v1/Services/{svc}/Sessions?PageSize=1000"))
            .json();
        let mut v: Vec<(String, String)> = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["sid"].as_str().unwrap().to_string(),
                    s["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let t = Instant::now();
    while states(&n1) != states(&n2) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the nodes never agreed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
