//! PostgreSQL going away under a running node, and coming back (SPEC §2.6): the node
//! reconnects by itself; meanwhile the API refuses changes with 503 and Twilio's error
//! 20503 (reads of what memory holds go on), SMPP answers ESME_RTHROTTLED (never ESME_ROK
//! without durability), `/readyz` says the store is unreachable; afterwards what was
//! acknowledged before is delivered and new traffic is taken again. Calls of existing
//! sessions go on routing from memory meanwhile; their logs wait for the store (counted in
//! `maskd_store_pending_writes`) and are written when it is back. The test runs a
//! PostgreSQL of its own, since it stops it.

mod common;

use std::time::{Duration, Instant};

use common::pg::Cluster;
use common::sip::{answered_call, socket};
use common::smpp::{sm, Peer};
use common::Daemon;
use maskd::smpp::pdu::{status, BindKind, Body};

fn until(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn readyz(d: &Daemon) -> u16 {
    common::http(d.metrics, "GET", "/readyz", None, None).status
}

#[test]
fn a_node_rides_out_postgresql_going_away_and_coming_back() {
    let pg = Cluster::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let (trunk, trunk_port) = socket();
    let services = format!(
        "{}sip:\n  listen: \"127.0.0.1:0\"\n  trunk: \"127.0.0.1:{trunk_port}\"\nservices:\n  - unique_name: \"sms\"\n    numbers: [\"+14155550101\", \"+14155550102\", \"+14155550103\"]\n",
        common::two_carriers("")
    );
    let edit = |cfg: &str| {
        let start = cfg.find("store:").unwrap();
        let end = start + cfg[start..].find("\ntimer_tick").unwrap();
        format!("{}store:\n  url: \"{url}\"{}", &cfg[..start], &cfg[end..])
    };
    let d = Daemon::start_edited(dir.path(), &services, edit);
    let (a_real, b_real) = ("+14155551001", "+14155552002");
    let (pa, _) = common::two_party_session(&d, "sms", "chat", a_real, b_real);
    let mut a = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-a", "secret-a");
    let send = |a: &mut Peer, text: &str| {
        a.request(Body::SubmitSm(sm(&a_real[1..], &pa[1..], text.as_bytes())))
            .status
    };
    // Acknowledged before the outage; B is not bound, so it waits in the queue.
    assert_eq!(send(&mut a, "before"), status::ESME_ROK);
    assert_eq!(readyz(&d), 200);

    pg.down();
    until(
        "/readyz reports the store gone",
        Duration::from_secs(10),
        || readyz(&d) == 503,
    );
    let r = d.post(
        "/v1/Services/sms/Sessions",
        &[("Participants", r#"{"Identifier":"+14155551003"}"#)],
    );
    r.assert_error(503, 20503);
    let s = d.get("/v1/Services/sms/Sessions/chat");
    assert_eq!(s.status, 200, "what memory holds is still read: {}", s.body);
    assert_eq!(send(&mut a, "during"), status::ESME_RTHROTTLED);
    assert!(d.metrics_text().contains("maskd_store_available 0"));
    // A calls B: routed from memory at once; its log waits for the store.
    let (caller, _) = socket();
    let t = Instant::now();
    let leg_b = answered_call(d.sip, &caller, &trunk, a_real, &pa, "during-outage");
    assert!(
        leg_b.starts_with(&format!("INVITE sip:{b_real}@")),
        "{leg_b}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let pending = |d: &Daemon| -> i64 {
        d.metrics_text()
            .lines()
            .find_map(|l| {
                l.strip_prefix("maskd_store_pending_writes ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(-1)
    };
    assert!(pending(&d) > 0, "the call's log waits: {}", pending(&d));

    pg.up();
    until(
        "/readyz reports the store back",
        Duration::from_secs(20),
        || readyz(&d) == 200,
    );
    let r = d.post(
        "/v1/Services/sms/Sessions",
        &[("Participants", r#"{"Identifier":"+14155551003"}"#)],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(send(&mut a, "after"), status::ESME_ROK);
    until(
        "the waiting writes are written",
        Duration::from_secs(10),
        || pending(&d) == 0,
    );
    // The call made during the outage is in the store (the API reads interactions there).
    let list = d.get("/v1/Services/sms/Sessions/chat/Interactions").json();
    let kinds: Vec<&str> = list["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"voice"), "{kinds:?}");

    // B binds: what was acknowledged arrives, what was refused does not.
    let mut b = Peer::bound(d.smpp, BindKind::Transceiver, "carrier-b", "secret-b");
    assert!(
        b.wait_messages(2, Duration::from_secs(15)),
        "both acknowledged messages"
    );
    let mut texts: Vec<String> = b
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.short_message).into_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, ["after", "before"]);
    assert!(
        !b.wait_messages(3, Duration::from_millis(500)),
        "nothing else"
    );
}
