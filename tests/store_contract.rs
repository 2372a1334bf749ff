//! The store contract (core::store::Store), one suite for every backend: what the engine
//! writes comes back after a reopen, batches become durable in order, and each read the
//! engine does not keep in memory (interactions by page, calls, the outbound and callback
//! queues, downstream ids, recordings) answers what was written. It runs against the
//! embedded SQLite store and against PostgreSQL (a throwaway cluster on loopback that
//! `scripts/test` starts; see tests/common/pg.rs).

mod common;

use std::path::Path;
use std::sync::Arc;

use maskd::core::callback::CallbackItem;
use maskd::core::engine::{Engine, EngineOptions, NewSession, ServicePatch};
use maskd::core::model::ResourceStatus;
use maskd::core::store::{
    InteractionQuery, Loaded, OutboundItem, RecordingQuery, RemoteRef, Store, WriteOp,
};
use maskd::core::{Sid, SidKind, E164};
use maskd::store::{PgStore, SqliteStore};

const T0: i64 = 1_800_000_000;

/// A store backend under contract: opens (or reopens) the store kept under `dir`.
trait Backend {
    fn open(&self, dir: &Path) -> Arc<dyn Store>;
    /// Lets go of a store before it is reopened.
    fn close(&self, store: Arc<dyn Store>);
}

struct Sqlite;

impl Backend for Sqlite {
    fn open(&self, dir: &Path) -> Arc<dyn Store> {
        Arc::new(
            SqliteStore::open(
                &dir.join("maskd.db"),
                Box::new(|e| panic!("store failed: {e}")),
            )
            .expect("open the SQLite store"),
        )
    }
    fn close(&self, store: Arc<dyn Store>) {
        drop(store);
    }
}

/// PostgreSQL: a database of its own per directory, its URL kept in the directory so that a
/// reopen finds the same database.
struct Postgres;

impl Backend for Postgres {
    fn open(&self, dir: &Path) -> Arc<dyn Store> {
        let url = common::pg_database_of(dir);
        Arc::new(
            PgStore::open(&url, 1, Box::new(|e| panic!("store failed: {e}")))
                .expect("open the PostgreSQL store"),
        )
    }
    fn close(&self, store: Arc<dyn Store>) {
        drop(store);
    }
}

/// An engine over `store`, as the daemon makes it: a shared store's is node 1 (the node the
/// PostgreSQL backend opens as), whose stamps carry it.
fn engine(store: Arc<dyn Store>) -> Engine {
    let opts = EngineOptions {
        node: store.shared().then_some(1),
        ..EngineOptions::default()
    };
    Engine::open(store, opts, T0 * 1000).expect("engine over the store")
}

fn number(n: &str) -> E164 {
    E164::parse(n).expect("a valid number")
}

/// A service with two pool numbers and one session between two people, written through the
/// engine; returns (service, session, the first participant).
fn seed(e: &Engine) -> (Sid, Sid, Sid) {
    let s = common::seed::service_with_session(
        e,
        ServicePatch {
            unique_name: Some("contract".into()),
            record: Some(true),
            ..Default::default()
        },
        ["+14155550101", "+14155550102"],
        NewSession {
            unique_name: Some("order-1".into()),
            ..Default::default()
        },
        T0,
    );
    (s.service, s.session, s.participants[0])
}

fn what_the_engine_wrote_comes_back_after_a_reopen(b: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let e = engine(store.clone());
    let (svc, session, _) = seed(&e);
    let routes_before = e.routes().len();
    let (key, d) = e.create_key("ops", "$argon2id$stand-in".into(), T0);
    d.wait_blocking().unwrap();
    let (gone, d) = e.create_key("old", "$argon2id$other".into(), T0);
    d.wait_blocking().unwrap();
    e.delete_key(gone.sid).unwrap().wait_blocking().unwrap();
    drop(e);
    b.close(store);

    let store = b.open(dir.path());
    let snap = store.load().unwrap();
    assert_eq!(
        snap.keys,
        vec![key],
        "keys come back, the deleted one does not"
    );
    assert_eq!(snap.services.len(), 1);
    assert_eq!(snap.services[0].sid, svc);
    assert_eq!(snap.numbers.len(), 2);
    assert_eq!((snap.sessions, snap.participants), (1, 2));
    let mut rows = Vec::new();
    store
        .load_rows(&mut |r| {
            rows.push(match r {
                Loaded::Session(s) => (s.sid, s.unique_name.clone()),
                Loaded::Participant(p) => (p.sid, Some(p.identifier.to_string())),
            })
        })
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.contains(&(session, Some("order-1".into()))));
    assert!(rows.iter().any(|r| r.1.as_deref() == Some("+14155551001")));
    // The engine rebuilt from it routes the same.
    let e = engine(store.clone());
    assert_eq!(e.routes().len(), routes_before);
    assert_eq!(
        e.session(session).unwrap().unique_name.as_deref(),
        Some("order-1")
    );
    assert!(snap.max_seq > 0);
    drop(e);
    b.close(store);
}

fn interactions_page_in_creation_order_and_filter_by_recipient(b: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let e = engine(store.clone());
    let (_, session, first) = seed(&e);
    let mut made = Vec::new();
    for k in 0..5 {
        let (i, _, d) = e
            .create_message_interaction(session, first, &format!("message {k}"), T0 + k)
            .unwrap();
        d.wait_blocking().unwrap();
        made.push(i);
    }
    let page = |after: u64, limit: usize| {
        store
            .interactions(InteractionQuery {
                session,
                message_participant: None,
                after_seq: after,
                before_seq: None,
                limit,
            })
            .unwrap()
    };
    let p1 = page(0, 3);
    assert_eq!(
        p1.iter().map(|i| i.sid).collect::<Vec<_>>(),
        made[..3].iter().map(|i| i.sid).collect::<Vec<_>>()
    );
    let p2 = page(p1[2].seq, 3);
    assert_eq!(p2.len(), 2);
    assert_eq!(p2[1].sid, made[4].sid);
    // Before a seq: the page just below it.
    let below = store
        .interactions(InteractionQuery {
            session,
            message_participant: None,
            after_seq: 0,
            before_seq: Some(made[2].seq),
            limit: 10,
        })
        .unwrap();
    assert_eq!(below.len(), 2);
    // Sent to the first participant: all five; to nobody else.
    let to_first = store
        .interactions(InteractionQuery {
            session,
            message_participant: Some(first),
            after_seq: 0,
            before_seq: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(to_first.len(), 5);
    let fetched = store.interaction(made[3].sid).unwrap().unwrap();
    assert_eq!(fetched.data, made[3].data);
    // Deleted: gone from the page and from a fetch.
    e.delete_interaction(made[3].sid).wait_blocking().unwrap();
    assert!(store.interaction(made[3].sid).unwrap().is_none());
    assert_eq!(page(0, 10).len(), 4);
    drop(e);
    b.close(store);
}

fn queues_and_downstream_ids_answer_what_was_written(b: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let e = engine(store.clone());
    let (_, session, first) = seed(&e);
    let (i, _, d) = e
        .create_message_interaction(session, first, "queued", T0)
        .unwrap();
    d.wait_blocking().unwrap();
    let item = |id: u64| OutboundItem {
        id,
        interaction: i.sid,
        from: number("+14155550101"),
        to: number("+14155551002"),
        via: (id == 2).then(|| "carrier-b".to_string()),
        origin: None,
        payload: vec![id as u8; 40],
        created: T0,
    };
    let callback = |id: u64| CallbackItem {
        id,
        interaction: i.sid,
        url: Some("http://127.0.0.1:9/cb".into()),
        params: None,
        outbound: Some((ResourceStatus::Sent, Some(format!("m{id}")), T0)),
        created: T0,
    };
    // Callback ids are the engine's stamps (a shared store's queue is the node's own).
    let (c1, c2) = (e.next_seq(), e.next_seq());
    let (done, durable) = maskd::core::store::durable_pair();
    store.submit(
        vec![
            WriteOp::PutOutbound(item(1)),
            WriteOp::PutOutbound(item(2)),
            WriteOp::PutOutbound(item(3)),
            WriteOp::PutRemoteRef(RemoteRef {
                peer: "carrier-b".into(),
                remote_id: "ab12".into(),
                interaction: i.sid,
                origin: None,
            }),
            WriteOp::PutCallback(callback(c1)),
            WriteOp::PutCallback(callback(c2)),
        ],
        Some(done),
    );
    durable.wait_blocking().unwrap();
    let (done, durable) = maskd::core::store::durable_pair();
    store.submit(
        vec![
            WriteOp::DeleteOutbound(2),
            WriteOp::DeleteCallback(c1),
            WriteOp::SetOutboundStatus {
                interaction: i.sid,
                status: ResourceStatus::Delivered,
                resource_sid: Some("ab12".into()),
                at: T0 + 5,
            },
        ],
        Some(done),
    );
    durable.wait_blocking().unwrap();
    assert_eq!(store.outbound_count().unwrap(), 2);
    let q = store.outbound_after(0, 10).unwrap();
    assert_eq!(q, vec![item(1), item(3)]);
    assert_eq!(store.outbound_after(1, 10).unwrap(), vec![item(3)]);
    let r = store.remote_ref("carrier-b", "ab12").unwrap().unwrap();
    assert_eq!(r.interaction, i.sid);
    assert!(store.remote_ref("carrier-a", "ab12").unwrap().is_none());
    let cbs = store.callbacks_after(0, 10).unwrap();
    assert_eq!(cbs.len(), 1);
    assert_eq!(cbs[0].id, c2);
    let moved = store.interaction(i.sid).unwrap().unwrap();
    assert_eq!(
        moved.outbound.resource_status,
        Some(ResourceStatus::Delivered)
    );
    assert_eq!(moved.outbound.resource_sid.as_deref(), Some("ab12"));
    drop(e);
    b.close(store);
}

fn calls_and_recordings_are_found_by_their_sids(b: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let e = engine(store.clone());
    let (_, session, _) = seed(&e);
    let call = Sid::generate(SidKind::Call).to_string();
    let other = Sid::generate(SidKind::Call).to_string();
    // A voice interaction naming both legs, as the B2BUA logs a call.
    let (i, _, d) = {
        let parts = e
            .list_participants(session, maskd::core::engine::Cursor::Start, 10)
            .unwrap()
            .items;
        e.create_message_interaction(session, parts[0].sid, "x", T0)
            .map(|(mut i, o, d)| {
                i.kind = maskd::core::model::InteractionType::Voice;
                i.inbound.resource_sid = Some(call.as_str().into());
                i.outbound.resource_sid = Some(other.as_str().into());
                (i, o, d)
            })
            .unwrap()
    };
    d.wait_blocking().unwrap();
    e.record(vec![WriteOp::PutInteraction(i.clone())], None)
        .wait_blocking()
        .unwrap();
    for leg in [&call, &other] {
        let found = store.call_interaction(leg).unwrap().expect("found by leg");
        assert_eq!(found.sid, i.sid);
    }
    assert!(store
        .call_interaction(&Sid::generate(SidKind::Call).to_string())
        .unwrap()
        .is_none());
    // Recordings: newest first, by call, deleted.
    let rec_dir = dir.path().join("recordings");
    std::fs::create_dir_all(&rec_dir).unwrap();
    e.set_recording(maskd::core::engine::RecordingSettings {
        dir: rec_dir,
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        public_url: "http://127.0.0.1".into(),
        clock: || T0 * 1000,
    });
    let mut sids = Vec::new();
    for (k, c) in [&call, &call, &other].iter().enumerate() {
        let (rec, _, d) = e
            .start_recording_at(session, c, (T0 + k as i64) * 1000)
            .unwrap();
        d.wait_blocking().unwrap();
        sids.push(rec.sid);
    }
    let all = store
        .recordings(&RecordingQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.sid).collect::<Vec<_>>(),
        vec![sids[2], sids[1], sids[0]]
    );
    let of_call = store
        .recordings(&RecordingQuery {
            call_sid: Some(call.clone()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(of_call.len(), 2);
    let below = store
        .recordings(&RecordingQuery {
            below_seq: Some(all[0].seq),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(below[0].sid, sids[1]);
    assert_eq!(store.recording(sids[0]).unwrap().unwrap().call_sid, call);
    e.delete_recording(sids[0])
        .unwrap()
        .expect("it existed")
        .wait_blocking()
        .unwrap();
    assert!(store.recording(sids[0]).unwrap().is_none());
    drop(e);
    b.close(store);
}

fn batches_become_durable_in_order(b: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let e = engine(store.clone());
    let (_, session, first) = seed(&e);
    // Many batches in flight at once: each completes, and all of them are there after.
    let mut pending = Vec::new();
    for k in 0..200 {
        let (_, _, d) = e
            .create_message_interaction(session, first, &format!("m{k}"), T0 + k)
            .unwrap();
        pending.push(d);
    }
    for d in pending {
        d.wait_blocking().unwrap();
    }
    drop(e);
    b.close(store);
    let store = b.open(dir.path());
    let all = store
        .interactions(InteractionQuery {
            session,
            message_participant: None,
            after_seq: 0,
            before_seq: None,
            limit: 1000,
        })
        .unwrap();
    assert_eq!(all.len(), 200);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(all[199].data.contains("m199"), "{}", all[199].data);
    b.close(store);
}

/// The report counters follow what is committed: new rows count once, rewrites of a row do
/// not count again, a status moves a message (or call) from one counter to the next, a
/// stranger's contacts count and convert when a session with them follows, a close counts
/// by its reason; and all of it is there after a reopen.
fn reports_count_what_was_committed(b: &dyn Backend) {
    use maskd::core::model::{InteractionType, Leg, SessionStatus};
    use maskd::core::reports::{pivot, ContactQuery, ReportQuery, FIELDS};
    let dir = tempfile::tempdir().unwrap();
    let store = b.open(dir.path());
    let e = engine(store.clone());
    let (svc, session, _) = seed(&e);
    let parts = e
        .list_participants(session, maskd::core::engine::Cursor::Start, 10)
        .unwrap()
        .items;
    let (a, bee) = (&parts[0], &parts[1]);
    let leg = |p: Sid, status| Leg {
        participant_sid: Some(p),
        resource_status: Some(status),
        ..Default::default()
    };
    let interaction = |kind, from: Sid, to: Sid, status| maskd::core::model::Interaction {
        sid: Sid::generate(SidKind::Interaction),
        seq: e.next_seq(),
        session_sid: session,
        service_sid: svc,
        data: "{}".into(),
        kind,
        inbound: leg(from, ResourceStatus::Received),
        outbound: leg(to, status),
        message_participant_sid: None,
        date_created: T0,
        date_updated: T0,
    };
    let write = |ops: Vec<WriteOp>| e.record(ops, None).wait_blocking().unwrap();
    // A message from a to bee: queued, rewritten, sent, delivered.
    let m = interaction(
        InteractionType::Message,
        a.sid,
        bee.sid,
        ResourceStatus::Queued,
    );
    write(vec![WriteOp::PutInteraction(m.clone())]);
    write(vec![WriteOp::PutInteraction(m.clone())]);
    // Folded midway (several nodes fold their increments now and then): counted once.
    store.fold_reports().unwrap();
    for status in [ResourceStatus::Sent, ResourceStatus::Delivered] {
        write(vec![WriteOp::SetOutboundStatus {
            interaction: m.sid,
            status,
            resource_sid: None,
            at: T0 + 5,
        }]);
    }
    // A call from bee to a: initiated, ringing, then completed after 61 s, in one batch
    // and again alone (the writer keeps a row's last version of a batch).
    let mut c = interaction(
        InteractionType::Voice,
        bee.sid,
        a.sid,
        ResourceStatus::Initiated,
    );
    let mut versions = vec![WriteOp::PutInteraction(c.clone())];
    c.outbound.resource_status = Some(ResourceStatus::Ringing);
    versions.push(WriteOp::PutInteraction(c.clone()));
    write(versions);
    c.outbound.resource_status = Some(ResourceStatus::Completed);
    c.data = r#"{"duration":"61"}"#.into();
    write(vec![WriteOp::PutInteraction(c.clone())]);
    write(vec![WriteOp::PutInteraction(c.clone())]);
    // A stranger texts a's proxy number twice and calls it once; then a session with them.
    let stranger = number("+14155559999");
    e.record_contact(a.proxy, stranger, InteractionType::Message, T0);
    e.record_contact(a.proxy, stranger, InteractionType::Message, T0 + 1);
    e.record_contact(a.proxy, stranger, InteractionType::Voice, T0 + 2);
    e.record_contact(number("+19995550000"), stranger, InteractionType::Voice, T0);
    write(Vec::new());
    let before = store
        .contacts(&ContactQuery {
            service: svc,
            proxy: None,
            offset: 0,
            limit: 10,
        })
        .unwrap();
    assert_eq!(before.len(), 1, "only a pool number's contacts: {before:?}");
    assert_eq!((before[0].messages, before[0].calls), (2, 1));
    assert_eq!((before[0].first_at, before[0].last_at), (T0, T0 + 2));
    assert_eq!(before[0].session, None);
    let (lead_session, _, d) = e
        .create_session(
            svc,
            NewSession {
                participants: ["+14155559999", "+14155551003"]
                    .iter()
                    .map(|i| maskd::core::engine::NewParticipant {
                        identifier: i.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            T0 + 10,
        )
        .unwrap();
    d.wait_blocking().unwrap();
    // The first session closes over the API.
    let (_, d) = e
        .update_session(
            session,
            maskd::core::engine::SessionPatch {
                status: Some(SessionStatus::Closed),
                ..Default::default()
            },
            T0 + 20,
        )
        .unwrap();
    d.wait_blocking().unwrap();
    store.fold_reports().unwrap();
    store.fold_reports().unwrap();
    drop(e);
    b.close(store);

    let store = b.open(dir.path());
    let day = maskd::core::datetime::format(T0)[..10].to_string();
    let rows = pivot(
        store
            .report_counts(&ReportQuery {
                service: svc,
                from_day: day.clone(),
                to_day: day.clone(),
            })
            .unwrap(),
    );
    let get = |n: Option<E164>, field: &str| {
        let i = FIELDS.iter().position(|f| *f == field).unwrap();
        rows.iter()
            .find(|r| r.number == n && r.day == day)
            .map_or(0, |r| r.values[i])
    };
    let (pa, pb) = (Some(a.proxy), Some(bee.proxy));
    assert_eq!(get(None, "sessions_created"), 2, "{rows:?}");
    assert_eq!(get(None, "sessions_closed_api"), 1);
    assert_eq!(
        (
            get(pa, "sessions_closed_api"),
            get(pb, "sessions_closed_api")
        ),
        (1, 1)
    );
    assert_eq!(get(pa, "messages_in"), 1);
    assert_eq!(get(pb, "messages_out"), 1);
    assert_eq!(get(pb, "messages_out_delivered"), 1);
    assert_eq!(
        (get(pb, "messages_out_queued"), get(pb, "messages_out_sent")),
        (0, 0),
        "a message counts under its current status only"
    );
    assert_eq!((get(pb, "calls_in"), get(pa, "calls_out")), (1, 1));
    assert_eq!(get(pb, "calls_completed"), 1);
    assert_eq!((get(pb, "call_seconds"), get(pb, "call_minutes")), (61, 2));
    assert_eq!(get(pa, "leads"), 1);
    assert_eq!(get(pa, "out_of_session_messages"), 2);
    assert_eq!(get(pa, "out_of_session_calls"), 1);
    assert_eq!(get(pa, "leads_converted"), 1);
    let after = store
        .contacts(&ContactQuery {
            service: svc,
            proxy: Some(a.proxy),
            offset: 0,
            limit: 10,
        })
        .unwrap();
    assert_eq!(after[0].session, Some(lead_session.sid));
    // After the reopen, nothing of the message is remembered: a late failure still moves it.
    let e = engine(store.clone());
    e.record(
        vec![WriteOp::SetOutboundStatus {
            interaction: m.sid,
            status: ResourceStatus::Failed,
            resource_sid: None,
            at: T0 + 3600,
        }],
        None,
    )
    .wait_blocking()
    .unwrap();
    let rows = pivot(
        store
            .report_counts(&ReportQuery {
                service: svc,
                from_day: day.clone(),
                to_day: day.clone(),
            })
            .unwrap(),
    );
    let get = |n: Option<E164>, field: &str| {
        let i = FIELDS.iter().position(|f| *f == field).unwrap();
        rows.iter()
            .find(|r| r.number == n && r.day == day)
            .map_or(0, |r| r.values[i])
    };
    assert_eq!(
        (
            get(pb, "messages_out_delivered"),
            get(pb, "messages_out_failed")
        ),
        (0, 1),
        "{rows:?}"
    );
    drop(e);
    b.close(store);
}

/// Every case of the contract, against one backend.
fn contract(b: &dyn Backend) {
    what_the_engine_wrote_comes_back_after_a_reopen(b);
    interactions_page_in_creation_order_and_filter_by_recipient(b);
    queues_and_downstream_ids_answer_what_was_written(b);
    calls_and_recordings_are_found_by_their_sids(b);
    batches_become_durable_in_order(b);
    reports_count_what_was_committed(b);
}

#[test]
fn sqlite_store_keeps_the_contract() {
    contract(&Sqlite);
}

#[test]
fn postgres_store_keeps_the_contract() {
    contract(&Postgres);
}
