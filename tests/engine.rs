//! The engine against the real SQLite store, in simulated time: expiry by TTL and by
//! date_expiry with bounded lateness, re-arming after interactions, expiry across restarts,
//! and the route-key invariant under random concurrent operations (proptest).

use std::sync::Arc;

use maskd::core::engine::{
    Engine, EngineOptions, NewParticipant, NewSession, ServicePatch, SessionPatch,
};
use maskd::core::model::{ClosedReason, SessionStatus};
use maskd::core::store::Store;
use maskd::core::{CoreError, Sid, E164};
use maskd::store::SqliteStore;
use proptest::prelude::*;

const T0: i64 = 1_800_000_000; // seconds

fn open(dir: &std::path::Path, now_ms: i64) -> Arc<Engine> {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.join("m.db"), Box::new(|e| panic!("store failed: {e}"))).unwrap(),
    );
    Arc::new(
        Engine::open(
            store,
            EngineOptions {
                wheel_tick_ms: 100,
                wheel_slots: 1024,
                node: None,
            },
            now_ms,
        )
        .unwrap(),
    )
}

fn service(e: &Engine, numbers: &[&str]) -> Sid {
    let (svc, d) = e
        .create_service(
            ServicePatch {
                unique_name: Some("s".into()),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    d.wait_blocking().unwrap();
    for n in numbers {
        e.add_number(svc.sid, None, Some(n), false, None, T0)
            .unwrap()
            .1
            .wait_blocking()
            .unwrap();
    }
    svc.sid
}

fn pair(a: &str, b: &str) -> Vec<NewParticipant> {
    [a, b]
        .iter()
        .map(|i| NewParticipant {
            identifier: i.to_string(),
            ..Default::default()
        })
        .collect()
}

fn n(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

/// The console's search: by SID, by a participant's number (whole or its last digits), by
/// part of a unique name; newest first and at most the limit; and pools' use.
#[test]
fn sessions_are_found_by_sid_number_or_name_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), T0 * 1000);
    let svc = service(&e, &["+14155550101", "+14155550102", "+14155550103"]);
    let mut sids = Vec::new();
    for k in 0..5 {
        let (s, _, d) = e
            .create_session(
                svc,
                NewSession {
                    unique_name: Some(format!("Order-{k}")),
                    // A pool of three: one person in at most three sessions.
                    participants: pair(
                        &format!("+1415555100{k}"),
                        if k < 3 {
                            "+14155552002"
                        } else {
                            "+14155552009"
                        },
                    ),
                    ..Default::default()
                },
                T0 + k,
            )
            .unwrap();
        d.wait_blocking().unwrap();
        sids.push(s.sid);
    }
    let found = |q: &str, limit| -> Vec<Sid> {
        e.find_sessions(q, limit)
            .iter()
            .map(|(s, _)| s.sid)
            .collect()
    };
    assert_eq!(found(&sids[2].to_string(), 50), vec![sids[2]]);
    assert_eq!(found("+14155551003", 50), vec![sids[3]]);
    assert_eq!(found("1003", 50), vec![sids[3]], "the last four digits");
    assert_eq!(found("(415) 555-1004", 50), vec![sids[4]]);
    assert_eq!(found("2002", 50), vec![sids[2], sids[1], sids[0]]);
    assert_eq!(
        found("2002", 2),
        vec![sids[2], sids[1]],
        "newest first, bounded"
    );
    assert_eq!(
        found("order-1", 50),
        vec![sids[1]],
        "part of a name, any case"
    );
    assert_eq!(found("", 3), vec![sids[4], sids[3], sids[2]]);
    assert!(found("9999", 50).is_empty());
    assert!(
        found("123", 50).is_empty(),
        "fewer than four digits is a name"
    );
    let parts = &e.find_sessions("1001", 1)[0].1;
    assert_eq!(parts.len(), 2);
    let pools = e.pool_use();
    assert_eq!(pools.len(), 1);
    assert_eq!((pools[0].size, pools[0].active_sessions), (3, 5));
    assert!(pools[0].in_use >= 1 && pools[0].in_use <= 3);
}

#[test]
fn the_wheel_s_waker_is_told_when_its_first_timer_is_armed() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), T0 * 1000);
    let told = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    e.set_wheel_waker({
        let told = told.clone();
        std::sync::Arc::new(move || {
            told.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
    });
    let svc = service(&e, &["+14155550101", "+14155550102"]);
    assert!(e.wheel_is_empty());
    // A session with no deadline puts nothing on the wheel.
    let req = NewSession {
        participants: pair("+14155551001", "+14155551002"),
        ..Default::default()
    };
    e.create_session(svc, req, T0)
        .unwrap()
        .2
        .wait_blocking()
        .unwrap();
    assert!(e.wheel_is_empty());
    assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The first with a TTL: the waker is told once; a second one finds the wheel busy.
    for (i, a) in ["+14155551003", "+14155551005"].into_iter().enumerate() {
        let req = NewSession {
            ttl: Some(60),
            participants: pair(a, "+14155551004"),
            ..Default::default()
        };
        e.create_session(svc, req, T0)
            .unwrap()
            .2
            .wait_blocking()
            .unwrap();
        assert!(!e.wheel_is_empty());
        assert_eq!(
            told.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "session {i}"
        );
    }
    // Both close; empty again, the next armed timer tells it again.
    assert_eq!(e.expire((T0 + 61) * 1000), 2);
    assert!(e.wheel_is_empty());
    let req = NewSession {
        ttl: Some(60),
        participants: pair("+14155551007", "+14155551008"),
        ..Default::default()
    };
    e.create_session(svc, req, T0 + 62)
        .unwrap()
        .2
        .wait_blocking()
        .unwrap();
    assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn ttl_closes_within_a_second_and_interactions_rearm() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), T0 * 1000);
    let svc = service(&e, &["+14155550101"]);
    let req = NewSession {
        ttl: Some(60),
        participants: pair("+14155551001", "+14155551002"),
        ..Default::default()
    };
    let (s, parts, d) = e.create_session(svc, req, T0).unwrap();
    d.wait_blocking().unwrap();
    let route = e
        .routes()
        .resolve(parts[0].proxy, n("+14155551001"))
        .expect("routable");
    assert_eq!(route.counterpart_real, n("+14155551002"));
    assert_eq!(route.counterpart_proxy, parts[1].proxy);

    // An interaction at +30 s: the data path only stores the time.
    route.live.touch((T0 + 30) * 1000);
    // At the original deadline the wheel fires early and re-arms instead of closing.
    assert_eq!(e.expire((T0 + 60) * 1000), 0);
    assert_eq!(e.session(s.sid).unwrap().status, SessionStatus::Open);
    assert_eq!(e.expire((T0 + 89) * 1000 + 900), 0);
    // Deadline +90 s: closed at the first tick after it, well within 1 s.
    assert_eq!(e.expire((T0 + 90) * 1000 + 100), 1);
    let closed = e.session(s.sid).unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    assert_eq!(closed.closed_reason, ClosedReason::Ttl);
    assert!(
        e.routes()
            .resolve(parts[0].proxy, n("+14155551001"))
            .is_none(),
        "route keys removed at once"
    );
    assert!(e.routes().is_empty());
    e.check_invariants().unwrap();
}

#[test]
fn date_expiry_overrides_ttl_and_holds_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sid;
    {
        let e = open(dir.path(), T0 * 1000);
        let svc = service(&e, &["+14155550101"]);
        let req = NewSession {
            ttl: Some(10),
            date_expiry: Some(T0 + 3600),
            participants: pair("+14155551001", "+14155551002"),
            ..Default::default()
        };
        let (s, _, d) = e.create_session(svc, req, T0).unwrap();
        d.wait_blocking().unwrap();
        sid = s.sid;
        assert_eq!(
            e.expire((T0 + 20) * 1000),
            0,
            "ttl does not apply when date_expiry is set"
        );
        // A second session that will also have expired by the restart, by ttl.
        let (s2, _, d) = e
            .create_session(
                svc,
                NewSession {
                    ttl: Some(100),
                    participants: pair("+14155551003", "+14155551004"),
                    ..Default::default()
                },
                T0,
            )
            .unwrap();
        d.wait_blocking().unwrap();
        assert_eq!(e.session(s2.sid).unwrap().status, SessionStatus::Open);
    } // engine and store dropped: "maskd is down"
    let later = (T0 + 7200) * 1000;
    let e = open(dir.path(), later);
    assert_eq!(e.routes().len(), 4, "routes rebuilt from the store");
    assert_eq!(
        e.expire(later),
        2,
        "sessions whose time passed while down close at start"
    );
    let s = e.session(sid).unwrap();
    assert_eq!(s.closed_reason, ClosedReason::Expiry);
    assert!(e.routes().is_empty());
    drop(e);
    // The closes were persisted.
    let e = open(dir.path(), later + 1000);
    assert_eq!(e.session(sid).unwrap().status, SessionStatus::Closed);
}

#[test]
fn reopen_and_update_rearm_the_wheel() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), T0 * 1000);
    let svc = service(&e, &["+14155550101"]);
    let (s, _, d) = e
        .create_session(
            svc,
            NewSession {
                participants: pair("+14155551001", "+14155551002"),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    d.wait_blocking().unwrap();
    assert_eq!(e.stats().wheel, 0, "ttl 0 and no expiry: never expires");
    let (_, d) = e
        .update_session(
            s.sid,
            SessionPatch {
                ttl: Some(5),
                ..Default::default()
            },
            T0 + 1,
        )
        .unwrap();
    d.wait_blocking().unwrap();
    assert_eq!(e.stats().wheel, 1);
    assert_eq!(e.expire((T0 + 6) * 1000), 1);
    let (r, d) = e
        .update_session(
            s.sid,
            SessionPatch {
                status: Some(SessionStatus::InProgress),
                ..Default::default()
            },
            T0 + 100,
        )
        .unwrap();
    d.wait_blocking().unwrap();
    assert_eq!(r.status, SessionStatus::InProgress);
    assert_eq!(e.routes().len(), 2);
    assert_eq!(
        e.expire((T0 + 104) * 1000),
        0,
        "re-open restarts the ttl clock"
    );
    assert_eq!(e.expire((T0 + 105) * 1000 + 100), 1);
    match e.update_session(
        s.sid,
        SessionPatch {
            ttl: Some(1),
            ..Default::default()
        },
        T0 + 200,
    ) {
        Err(CoreError::SessionClosed) => {}
        other => panic!("expected 80607, got {other:?}"),
    }
}

#[test]
fn cooloff_keeps_a_route_key_from_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), T0 * 1000);
    let svc = service(&e, &["+14155550101"]);
    e.update_service(
        svc,
        ServicePatch {
            cooloff: Some(600),
            ..Default::default()
        },
        T0,
    )
    .unwrap()
    .1
    .wait_blocking()
    .unwrap();
    let (s, _, d) = e
        .create_session(
            svc,
            NewSession {
                participants: pair("+14155551001", "+14155551002"),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    d.wait_blocking().unwrap();
    e.update_session(
        s.sid,
        SessionPatch {
            status: Some(SessionStatus::Closed),
            ..Default::default()
        },
        T0 + 1,
    )
    .unwrap();
    // A with a stranger C: A's only number is cooling off towards B.
    let err = e.create_session(
        svc,
        NewSession {
            participants: pair("+14155551001", "+14155551003"),
            ..Default::default()
        },
        T0 + 2,
    );
    assert!(
        matches!(err, Err(CoreError::Alloc(a)) if a.code() == 80208),
        "{err:?}"
    );
    // A with B again is fine; after the cool-off anyone is.
    assert!(e
        .create_session(
            svc,
            NewSession {
                participants: pair("+14155551001", "+14155551002"),
                ..Default::default()
            },
            T0 + 3
        )
        .is_ok());
    assert!(e
        .create_session(
            svc,
            NewSession {
                participants: pair("+14155551005", "+14155551003"),
                ..Default::default()
            },
            T0 + 700
        )
        .is_ok());
    e.check_invariants().unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    Close(u8),
    Reopen(u8),
    Delete(u8),
    DropParticipant(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u8..6).prop_map(|(a, b)| Op::Create(a, b)),
        2 => any::<u8>().prop_map(Op::Close),
        2 => any::<u8>().prop_map(Op::Reopen),
        1 => any::<u8>().prop_map(Op::Delete),
        1 => any::<u8>().prop_map(Op::DropParticipant),
    ]
}

fn person(i: u8) -> String {
    format!("+1415555{:04}", 1000 + u32::from(i))
}

fn run_ops(e: &Engine, svc: Sid, ops: &[Op], t: i64) {
    let mut mine: Vec<Sid> = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        let now = t + k as i64;
        match op {
            Op::Create(a, b) => {
                if let Ok((s, _, _)) = e.create_session(
                    svc,
                    NewSession {
                        participants: pair(&person(*a), &person(*b)),
                        ..Default::default()
                    },
                    now,
                ) {
                    mine.push(s.sid);
                }
            }
            Op::Close(i) | Op::Reopen(i) | Op::Delete(i) | Op::DropParticipant(i)
                if !mine.is_empty() =>
            {
                let sid = mine[*i as usize % mine.len()];
                match op {
                    Op::Close(_) => drop(e.update_session(
                        sid,
                        SessionPatch {
                            status: Some(SessionStatus::Closed),
                            ..Default::default()
                        },
                        now,
                    )),
                    Op::Reopen(_) => drop(e.update_session(
                        sid,
                        SessionPatch {
                            status: Some(SessionStatus::InProgress),
                            ..Default::default()
                        },
                        now,
                    )),
                    Op::Delete(_) => drop(e.delete_session(sid)),
                    _ => {
                        if let Ok(page) =
                            e.list_participants(sid, maskd::core::engine::Cursor::Start, 10)
                        {
                            if let Some(p) = page.items.first() {
                                let _ = e.delete_participant(sid, p.sid, now);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Four threads hammer one small pool with creates, closes, re-opens and deletes. The
    /// route-key invariant holds throughout, the routing table agrees with the reservations,
    /// and a restart from the store rebuilds the same routes.
    #[test]
    fn route_keys_stay_unique_under_concurrency(threads in proptest::collection::vec(proptest::collection::vec(op(), 1..40), 4)) {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), T0 * 1000);
        let svc = service(&e, &["+14155550101", "+14155550102", "+14155550103"]);
        std::thread::scope(|scope| {
            for ops in &threads {
                let e = &e;
                scope.spawn(move || run_ops(e, svc, ops, T0));
            }
        });
        prop_assert!(e.check_invariants().is_ok(), "{:?}", e.check_invariants());
        let before = e.routes().len();
        // Wait until everything submitted is durable, then rebuild from the store.
        e.create_service(ServicePatch { unique_name: Some("barrier".into()), ..Default::default() }, T0).unwrap().1.wait_blocking().unwrap();
        drop(e);
        let e2 = open(dir.path(), T0 * 1000);
        prop_assert!(e2.check_invariants().is_ok(), "{:?}", e2.check_invariants());
        prop_assert_eq!(e2.routes().len(), before);
    }
}

struct Collect(std::sync::Mutex<Vec<maskd::core::engine::OutboundMessage>>);
impl maskd::core::engine::Outbox for Collect {
    fn enqueue(&self, msg: maskd::core::engine::OutboundMessage) {
        self.0.lock().unwrap().push(msg);
    }
}

#[test]
fn message_interactions_reach_the_outbox_and_survive_restart_queued() {
    let dir = tempfile::tempdir().unwrap();
    let kp;
    {
        let e = open(dir.path(), T0 * 1000);
        let svc = service(&e, &["+14155550101", "+14155550102"]);
        let (s, parts, d) = e
            .create_session(
                svc,
                NewSession {
                    participants: pair("+14155551001", "+14155551002"),
                    ..Default::default()
                },
                T0,
            )
            .unwrap();
        d.wait_blocking().unwrap();
        kp = parts[1].sid;
        let outbox = Arc::new(Collect(Default::default()));
        e.set_outbox(outbox.clone());
        let (i, msg, d) = e
            .create_message_interaction(s.sid, kp, "hello", T0 + 5)
            .unwrap();
        d.wait_blocking().unwrap();
        e.enqueue_outbound(msg);
        let got = outbox.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].interaction, i.sid);
        assert_eq!(
            got[0].from, parts[1].proxy,
            "sent from the participant's proxy number"
        );
        assert_eq!(
            got[0].to,
            n("+14155551002"),
            "to the participant's real number"
        );
        assert_eq!(got[0].body, "hello");
        assert_eq!(e.session(s.sid).unwrap().status, SessionStatus::InProgress);
        assert_eq!(
            e.session(s.sid).unwrap().date_last_interaction,
            Some(T0 + 5)
        );
    }
    // Nothing marked it sent: after a restart it is still waiting in the persistent queue.
    let e = open(dir.path(), (T0 + 60) * 1000);
    let pending = e.pending_outbound().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].participant, kp);
    assert_eq!(pending[0].body, "hello");
}

/// A call's log is written behind the call (`record_behind`, nobody waits on it) and may be
/// held back to share a commit; it still lands in order before anything awaited after it,
/// and of an interaction changed several times only the last version remains.
#[test]
fn logs_written_behind_land_in_order_before_an_awaited_write() {
    use maskd::core::model::ResourceStatus;
    use maskd::core::store::WriteOp;
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), T0 * 1000);
    let svc = service(&e, &["+14155550101", "+14155550102"]);
    let (s, parts, d) = e
        .create_session(
            svc,
            NewSession {
                participants: pair("+14155551001", "+14155551002"),
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    d.wait_blocking().unwrap();
    let (i, _, d) = e
        .create_message_interaction(s.sid, parts[1].sid, "hello", T0 + 1)
        .unwrap();
    d.wait_blocking().unwrap();
    let mut v = i.clone();
    for (k, st) in [
        ResourceStatus::Sent,
        ResourceStatus::Delivered,
        ResourceStatus::Undelivered,
    ]
    .into_iter()
    .enumerate()
    {
        v.outbound.resource_status = Some(st);
        v.date_updated = T0 + 2 + k as i64;
        e.record_behind(
            vec![WriteOp::PutInteraction(v.clone())],
            Some((s.sid, T0 + 2)),
        );
    }
    // An awaited write submitted after them: when it is durable, so are they.
    e.record(vec![], None).wait_blocking().unwrap();
    let stored = e.store().interaction(i.sid).unwrap().unwrap();
    assert_eq!(
        stored.outbound.resource_status,
        Some(ResourceStatus::Undelivered)
    );
    assert_eq!(stored, v);
    drop(e);
    // And they survive a restart as written.
    let e = open(dir.path(), (T0 + 10) * 1000);
    assert_eq!(e.store().interaction(i.sid).unwrap().unwrap(), v);
    assert_eq!(
        e.session(s.sid).unwrap().date_last_interaction,
        Some(T0 + 2)
    );
}
