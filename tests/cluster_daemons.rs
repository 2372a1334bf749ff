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

use common::hook::{Hook, Reply, Request};
use common::smpp::{sm, Peer};
use common::{encode, http, pg, Daemon, ACCOUNT, TOKEN};
use maskd::smpp::pdu::{status, BindKind, Body};
use maskd::smpp::receipt;

const SERVICES: &str = "services:
  - unique_name: \"pool\"
    numbers: [\"+14155550101\", \"+14155550102\", \"+14155550103\"]
";

/// A daemon on `url` as node `node`.
fn node(dir: &Path, url: &str, node: u16) -> Daemon {
    node_with(dir, url, node, SERVICES)
}

fn node_with(dir: &Path, url: &str, node: u16, services: &str) -> Daemon {
    pg::node(dir, url, node, services)
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

/// Sets the service's status callback URL on `on` and waits (bounded) until `other` has
/// followed it.
fn callback_url(on: &Daemon, other: &Daemon, url: &str) {
    let r = on.post("/v1/Services/sms", &[("CallbackUrl", url)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let t = Instant::now();
    while other.get("/v1/Services/sms").json()["callback_url"] != url {
        assert!(t.elapsed() < Duration::from_secs(5), "node 2 follows");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Per interaction, the outbound statuses its callbacks carried, in arrival order, repeats
/// (retries) folded.
fn statuses_by_interaction(got: &[Request]) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in got {
        let list = by
            .entry(r.param("interactionSid").unwrap().to_string())
            .or_default();
        let st = r.param("outboundResourceStatus").unwrap().to_string();
        if list.last() != Some(&st) {
            list.push(st);
        }
    }
    by
}

fn counter(d: &Daemon, name: &str) -> i64 {
    d.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
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
    loop {
        let (s1, s2) = (states(&n1), states(&n2));
        if s1 == s2 {
            break;
        }
        if t.elapsed() > Duration::from_secs(5) {
            let only = |a: &[(String, String)], b: &[(String, String)]| {
                a.iter()
                    .filter(|x| !b.contains(x))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let stored = pg::run_on(
                &url,
                "SELECT sid || ' ' || status || ' ' || seq FROM sessions ORDER BY sid",
            );
            panic!(
                "the nodes never agreed: only on node 1 {:?}, only on node 2 {:?}; stored {stored:?}",
                only(&s1, &s2),
                only(&s2, &s1)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Carrier A binds to node 1 only, carrier B to node 2 only: A's message, accepted on node 1
/// (`ESME_ROK` once durable in PostgreSQL), is let go by node 1 (no link to B there) and
/// delivered by node 2; B's acceptance there, final delivery, becomes maskd's DELIVRD receipt
/// to A, which node 2 lets go and node 1 delivers.
/// Two nodes started at once with the same config: one loads the store and creates the
/// config's service and numbers, the other waits its turn and finds them. One service, each
/// number once, both nodes serving it.
#[test]
fn nodes_started_at_once_create_their_configs_services_once() {
    let url = pg::fresh_database("startup");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let starts: Vec<_> = [(d1.path().to_owned(), 1), (d2.path().to_owned(), 2)]
        .into_iter()
        .map(|(dir, id)| {
            let url = url.clone();
            std::thread::spawn(move || node(&dir, &url, id))
        })
        .collect();
    let nodes: Vec<Daemon> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        pg::run_on(&url, "SELECT count(*) FROM services"),
        vec![Some("1".into())]
    );
    assert_eq!(
        pg::run_on(&url, "SELECT count(*) FROM numbers"),
        vec![Some("3".into())]
    );
    let sids: Vec<String> = nodes
        .iter()
        .map(|n| {
            n.get("/v1/Services/pool").json()["sid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(sids[0], sids[1]);
}

#[test]
fn a_message_accepted_on_one_node_is_delivered_by_the_node_bound_to_its_next_hop() {
    let url = pg::fresh_database("sms");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = format!(
        "{}services:\n  - unique_name: \"sms\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        common::two_carriers("")
    );
    let n1 = node_with(d1.path(), &url, 1, &config);
    let n2 = node_with(d2.path(), &url, 2, &config);
    let (a_real, b_real) = ("+14155551001", "+14155552002");
    let (pa, pb) = common::two_party_session(&n1, "sms", "chat", a_real, b_real);
    let mut a = Peer::bound(n1.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut b = Peer::bound(n2.smpp, BindKind::Transceiver, "carrier-b", "secret-b");

    // Node 2 routes the session (followed) before A writes; not needed for delivery, but
    // it is what a node answering B would need.
    let t = Instant::now();
    while n2.get("/v1/Services/sms/Sessions/chat").status != 200 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut m = sm(&a_real[1..], &pa[1..], b"Hello B, from node 1");
    m.registered_delivery = 1;
    let r = a.request(Body::SubmitSm(m));
    assert_eq!(r.status, status::ESME_ROK);
    let maskd_id = match &r.body {
        Body::SubmitSmResp { message_id } => message_id.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        b.wait_messages(1, Duration::from_secs(10)),
        "delivered by node 2"
    );
    assert_eq!(
        (
            b.messages[0].source.addr.as_str(),
            b.messages[0].dest.addr.as_str()
        ),
        (&pb[1..], &b_real[1..])
    );
    assert_eq!(b.messages[0].short_message, b"Hello B, from node 1");
    if !a.wait_messages(1, Duration::from_secs(10)) {
        let m = |d: &Daemon| {
            d.metrics_text()
                .lines()
                .filter(|l| {
                    l.contains("handed_off") || l.contains("claimed") || l.contains("queue")
                })
                .map(String::from)
                .collect::<Vec<_>>()
        };
        panic!(
            "A got no receipt on node 1: node 1 {:?} node 2 {:?} queue {:?}",
            m(&n1),
            m(&n2),
            pg::run_on(&url, "SELECT id || ' ' || COALESCE(owner::text, '-') || ' ' || COALESCE(via, '-') FROM outbound")
        );
    }
    let parsed = receipt::parse(&a.messages[0]).expect("a readable receipt");
    assert_eq!(
        (parsed.message_id.as_str(), parsed.stat.as_str()),
        (maskd_id.as_str(), "DELIVRD")
    );
    assert_eq!(counter(&n1, "maskd_smpp_handed_off_total"), 1);
    assert_eq!(counter(&n2, "maskd_smpp_claimed_total"), 1);
    assert_eq!(
        counter(&n2, "maskd_smpp_handed_off_total"),
        1,
        "the receipt"
    );
    assert_eq!(counter(&n1, "maskd_smpp_claimed_total"), 1);
    // Nothing left in the shared queue, and each message went out once.
    assert_eq!(
        pg::run_on(&url, "SELECT count(*) FROM outbound"),
        vec![Some("0".into())]
    );
    assert!(!b.wait_messages(2, Duration::from_millis(500)));
}

/// One interaction's status callbacks made on two nodes go out in order: node 1 makes
/// "queued" (it accepted the message), node 2 "delivered" (it delivered it, bound to the
/// next hop). While node 1's callback is refused (500) and retried, node 2 holds its own
/// back; once node 1's is taken, node 2's follows.
#[test]
fn an_interactions_callbacks_made_on_two_nodes_arrive_in_order() {
    let url = pg::fresh_database("cb_order");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = format!(
        "{}services:\n  - unique_name: \"sms\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        common::two_carriers("")
    );
    // Neither node may be taken for gone here, however busy the machine.
    let n1 = pg::node_with_timeout(d1.path(), &url, 1, &config, "30s");
    let n2 = pg::node_with_timeout(d2.path(), &url, 2, &config, "30s");
    let hook = Hook::start();
    callback_url(&n1, &n2, &hook.url("/status"));
    hook.reply("/status", Reply::Status(500));
    let (a_real, b_real) = ("+14155551001", "+14155552002");
    let (pa, _) = common::two_party_session(&n1, "sms", "chat", a_real, b_real);
    let mut a = Peer::bound(n1.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let mut b = Peer::bound(n2.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    let r = a.request(Body::SubmitSm(sm(&a_real[1..], &pa[1..], b"in order")));
    assert_eq!(r.status, status::ESME_ROK);
    assert!(
        b.wait_messages(1, Duration::from_secs(10)),
        "node 2 delivers"
    );
    // Node 1's "queued" refused twice (the first try, and its retry 2 s later): node 2 has
    // made its "delivered" by then, and holds it back.
    let refused = hook.wait("/status", 2, Duration::from_secs(30));
    assert_eq!(refused.len(), 2);
    let t = Instant::now();
    while counter(&n2, "maskd_callbacks_held_back_total") == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "node 2 holds its callback back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    hook.reply("/status", Reply::Status(200));
    let got = hook.wait_for("/status", Duration::from_secs(40), |got| {
        got.iter()
            .any(|r| r.param("outboundResourceStatus") == Some("delivered"))
    });
    let by = statuses_by_interaction(&got);
    assert_eq!(by.len(), 1, "{by:?}");
    assert_eq!(
        by.values().next().unwrap(),
        &["queued", "delivered"],
        "node 2's callback only after node 1's: {got:#?}"
    );
    let accepted: Vec<&Request> = got.iter().filter(|r| r.answered == Some(200)).collect();
    assert_eq!(accepted.len(), 2, "each once");
    assert_eq!(
        hook.wait("/status", got.len() + 1, Duration::from_millis(500))
            .len(),
        got.len(),
        "nothing more"
    );
}

/// Node 1 accepts messages (ESME_ROK: durable) whose next hop is bound nowhere, and is
/// killed (-9) before it lets go of them or of their status callbacks (refused so far).
/// Node 2, bound to the next hop, takes both over once node 1 has been silent for
/// `store.node_timeout` (8 s here): it delivers each message once and sends each callback
/// once, node 1's "queued" before its own "delivered"; the API on node 2 carries on
/// meanwhile.
#[test]
fn what_a_killed_node_acknowledged_is_delivered_by_the_other() {
    let url = pg::fresh_database("killed");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = format!(
        "{}services:\n  - unique_name: \"sms\"\n    numbers: [\"+14155550101\", \"+14155550102\"]\n",
        common::two_carriers("")
    );
    // Long enough that a busy machine does not make node 1 look gone before it is killed.
    let mut n1 = pg::node_with_timeout(d1.path(), &url, 1, &config, "8s");
    let n2 = pg::node_with_timeout(d2.path(), &url, 2, &config, "8s");
    let hook = Hook::start();
    callback_url(&n1, &n2, &hook.url("/status"));
    hook.reply("/status", Reply::Status(500));
    let (a_real, b_real) = ("+14155551001", "+14155552002");
    let (pa, _) = common::two_party_session(&n1, "sms", "chat", a_real, b_real);
    let mut a = Peer::bound(n1.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    for k in 0..5 {
        let text = format!("acknowledged {k}");
        let r = a.request(Body::SubmitSm(sm(&a_real[1..], &pa[1..], text.as_bytes())));
        assert_eq!(r.status, status::ESME_ROK);
    }
    // Node 1 has tried each "queued" callback once.
    assert_eq!(hook.wait("/status", 5, Duration::from_secs(30)).len(), 5);
    n1.kill9();
    let killed = Instant::now();
    hook.reply("/status", Reply::Status(200));
    // The API on node 2 carries on.
    let r = n2.post(
        "/v1/Services/sms/Sessions",
        &[("Participants", r#"{"Identifier":"+14155551003"}"#)],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let mut b = Peer::bound(n2.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    assert!(
        b.wait_messages(5, Duration::from_secs(30)),
        "node 2 delivers them"
    );
    assert!(
        killed.elapsed() >= Duration::from_secs(6),
        "not before node 1 is gone"
    );
    let mut texts: Vec<String> = b
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.short_message).into_owned())
        .collect();
    texts.sort();
    let want: Vec<String> = (0..5).map(|k| format!("acknowledged {k}")).collect();
    assert_eq!(texts, want);
    assert!(!b.wait_messages(6, Duration::from_millis(500)), "each once");

    // Each message's two callbacks, each once, in order.
    let accepted = |got: &[Request]| -> Vec<Request> {
        got.iter()
            .filter(|r| r.answered == Some(200))
            .cloned()
            .collect()
    };
    let got = hook.wait_for("/status", Duration::from_secs(40), |got| {
        accepted(got).len() >= 10
    });
    let ok = accepted(&got);
    let by = statuses_by_interaction(&ok);
    assert_eq!(by.len(), 5, "{by:?}");
    for (sid, statuses) in &by {
        assert_eq!(statuses, &["queued", "delivered"], "{sid}: {ok:#?}");
    }
    assert_eq!(ok.len(), 10, "each once: {by:?}");
    assert_eq!(counter(&n2, "maskd_callbacks_claimed_total"), 5);
    assert_eq!(
        hook.wait("/status", got.len() + 1, Duration::from_millis(500))
            .len(),
        got.len(),
        "nothing more"
    );
}
