//! SQLite (WAL, `synchronous=FULL`) behind `core::Store`. The group-commit writer
//! (`writer.rs`) owns the write connection: an API answer waits for one fsync shared with
//! its neighbours. Reads (interactions) use a second connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::schema::migrate;
use super::writer::{effective_ops, Job, Writer};
use super::{origin_text, parse_origin};
use crate::core::callback::CallbackItem;
use crate::core::e164::E164;
use crate::core::model::*;
use crate::core::sid::Sid;
use crate::core::store::{
    Completion, InteractionQuery, Loaded, OutboundItem, ReceiptOrigin, RecordingQuery, RemoteRef,
    Snapshot, Store, StoreError, WriteOp,
};

/// The SQLite store. Dropping it stops the writer after it has committed what was queued.
pub struct SqliteStore {
    writer: Writer,
    /// Set by `load` for the writer's report counting (`counting::SeqBound`).
    seq_bound: super::counting::SeqBound,
    reader: Mutex<Connection>,
    path: PathBuf,
}

pub(super) fn io(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Io(e.to_string()),
    }
}

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_string(), rusqlite::types::Type::Null)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, checks or creates the schema and
    /// starts the writer. `on_fatal` is called once if a commit ever fails: the engine's
    /// memory is then ahead of the store, so the daemon must stop and rebuild from disk.
    pub fn open(
        path: &Path,
        on_fatal: Box<dyn Fn(StoreError) + Send>,
    ) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path).map_err(io)?;
        configure(&conn)?;
        migrate(&mut conn)?;
        let reader = Connection::open(path).map_err(io)?;
        configure(&reader)?;
        let seq_bound = super::counting::seq_bound();
        let mut counting = super::counting::Counting::new(seq_bound.clone());
        let writer = Writer::spawn(
            move |jobs| apply(&mut conn, &mut counting, jobs).map(|()| Vec::new()),
            on_fatal,
        )?;
        Ok(SqliteStore {
            writer,
            seq_bound,
            reader: Mutex::new(reader),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting writes and waits until everything queued is committed.
    pub fn close(&self) {
        self.writer.close();
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5)).map_err(io)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(io)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(format!(
            "cannot enable WAL (journal_mode={mode})"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;",
    )
    .map_err(io)?;
    Ok(())
}

/// One group commit: the ops, the report counters they move (`counting`), one transaction.
fn apply(
    conn: &mut Connection,
    counting: &mut super::counting::Counting,
    jobs: &[Job],
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(io)?;
    let applied = (|| {
        for op in effective_ops(jobs) {
            counting.before(&tx, op)?;
            apply_op(&tx, op)?;
        }
        counting.flush(&tx)
    })();
    let result = applied.and_then(|()| tx.commit());
    if result.is_err() {
        counting.reset();
    }
    result.map_err(io)
}

fn s(sid: &Sid) -> String {
    sid.to_string()
}
fn os(sid: &Option<Sid>) -> Option<String> {
    sid.as_ref().map(Sid::to_string)
}
fn status_str(st: &Option<ResourceStatus>) -> Option<&'static str> {
    st.map(ResourceStatus::as_str)
}

fn apply_op(tx: &rusqlite::Transaction<'_>, op: &WriteOp) -> rusqlite::Result<()> {
    match op {
        WriteOp::PutService(v) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO services VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
            )?
            .execute(params![
                s(&v.sid), v.seq as i64, v.unique_name, v.callback_url, v.default_ttl as i64,
                v.geo_match_level.as_str(), v.number_selection_behavior.as_str(),
                v.intercept_callback_url, v.out_of_session_callback_url, v.chat_instance_sid,
                v.cooloff as i64, v.date_created, v.date_updated, v.record
            ])?;
        }
        WriteOp::DeleteService(sid) => {
            let k = s(sid);
            tx.execute("DELETE FROM outbound WHERE interaction_sid IN (SELECT sid FROM interactions WHERE service_sid = ?1)", [&k])?;
            tx.execute("DELETE FROM remote_refs WHERE interaction_sid IN (SELECT sid FROM interactions WHERE service_sid = ?1)", [&k])?;
            tx.execute("DELETE FROM interactions WHERE service_sid = ?1", [&k])?;
            tx.execute("DELETE FROM participants WHERE service_sid = ?1", [&k])?;
            tx.execute("DELETE FROM sessions WHERE service_sid = ?1", [&k])?;
            tx.execute("DELETE FROM numbers WHERE service_sid = ?1", [&k])?;
            tx.execute("DELETE FROM services WHERE sid = ?1", [&k])?;
            super::reports::delete_service(tx, &k)?;
        }
        WriteOp::PutContact(c) => super::reports::put_contact(tx, c)?,
        WriteOp::PutKey(k) => {
            tx.prepare_cached("INSERT OR IGNORE INTO api_keys VALUES (?1,?2,?3,?4,?5,?6)")?
                .execute(params![
                    s(&k.sid),
                    k.seq as i64,
                    k.friendly_name,
                    k.secret_hash,
                    k.date_created,
                    k.date_updated
                ])?;
        }
        WriteOp::UpdateKey {
            sid,
            friendly_name,
            at,
        } => {
            tx.execute(
                "UPDATE api_keys SET friendly_name = ?2, date_updated = ?3 WHERE sid = ?1",
                params![s(sid), friendly_name, at],
            )?;
        }
        WriteOp::DeleteKey(sid) => {
            tx.execute("DELETE FROM api_keys WHERE sid = ?1", [s(sid)])?;
        }
        WriteOp::PutNumber(v) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO numbers VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            )?
            .execute(params![
                s(&v.sid),
                v.seq as i64,
                s(&v.service_sid),
                v.number.as_u64() as i64,
                v.friendly_name,
                v.is_reserved,
                v.date_created,
                v.date_updated,
                v.carrier
            ])?;
        }
        WriteOp::DeleteNumber(sid) => {
            tx.execute("DELETE FROM numbers WHERE sid = ?1", [s(sid)])?;
        }
        // One node: what its wheel closed is closed.
        WriteOp::PutSession(v) | WriteOp::ExpireSession(v) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sessions VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
            )?
            .execute(params![
                s(&v.sid), v.seq as i64, s(&v.service_sid), v.unique_name, v.status.as_str(),
                v.mode.as_str(), v.ttl as i64, v.date_expiry, v.date_started, v.date_ended,
                v.date_last_interaction, v.closed_reason.as_str(), v.date_created, v.date_updated,
                v.record
            ])?;
        }
        // One node: nobody else could take it.
        WriteOp::ReleaseOutbound { .. } => {}
        WriteOp::TouchSession { session, at, .. } => {
            tx.prepare_cached(TOUCH_SESSION)?
                .execute(params![s(session), at])?;
        }
        WriteOp::DeleteSession(sid) => {
            let k = s(sid);
            // The queue and receipt rows of its messages hold real numbers: they go too.
            tx.execute("DELETE FROM outbound WHERE interaction_sid IN (SELECT sid FROM interactions WHERE session_sid = ?1)", [&k])?;
            tx.execute("DELETE FROM remote_refs WHERE interaction_sid IN (SELECT sid FROM interactions WHERE session_sid = ?1)", [&k])?;
            tx.execute("DELETE FROM interactions WHERE session_sid = ?1", [&k])?;
            tx.execute("DELETE FROM participants WHERE session_sid = ?1", [&k])?;
            tx.execute("DELETE FROM sessions WHERE sid = ?1", [&k])?;
        }
        WriteOp::PutParticipant(v) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO participants VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
            )?
            .execute(params![
                s(&v.sid),
                v.seq as i64,
                s(&v.session_sid),
                s(&v.service_sid),
                v.identifier.as_u64() as i64,
                v.friendly_name,
                v.proxy.as_u64() as i64,
                s(&v.proxy_sid),
                v.date_deleted,
                v.date_created,
                v.date_updated
            ])?;
        }
        WriteOp::PutInteraction(v) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO interactions VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)",
            )?
            .execute(params![
                s(&v.sid), v.seq as i64, s(&v.session_sid), s(&v.service_sid), v.data,
                v.kind.as_str(), os(&v.inbound.participant_sid), v.inbound.resource_sid,
                status_str(&v.inbound.resource_status), v.inbound.resource_type,
                v.inbound.resource_url, os(&v.outbound.participant_sid),
                v.outbound.resource_sid, status_str(&v.outbound.resource_status),
                v.outbound.resource_type, v.outbound.resource_url,
                os(&v.message_participant_sid), v.date_created, v.date_updated
            ])?;
        }
        WriteOp::DeleteInteraction(sid) => {
            tx.execute("DELETE FROM interactions WHERE sid = ?1", [s(sid)])?;
        }
        WriteOp::PutOutbound(o) => {
            tx.prepare_cached("INSERT OR REPLACE INTO outbound VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?
                .execute(params![
                    o.id as i64,
                    s(&o.interaction),
                    o.from.as_u64() as i64,
                    o.to.as_u64() as i64,
                    o.via,
                    o.origin.as_ref().map(origin_text),
                    o.payload,
                    o.created
                ])?;
        }
        WriteOp::DeleteOutbound(id) => {
            tx.prepare_cached("DELETE FROM outbound WHERE id = ?1")?
                .execute([*id as i64])?;
        }
        WriteOp::SetOutboundStatus {
            interaction,
            status,
            resource_sid,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE interactions SET out_status = ?2, out_resource_sid = COALESCE(?3, out_resource_sid),
                 date_updated = ?4 WHERE sid = ?1",
            )?
            .execute(params![s(interaction), status.as_str(), resource_sid, at])?;
        }
        WriteOp::PutCallback(c) => {
            tx.prepare_cached("INSERT OR REPLACE INTO callbacks VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?
                .execute(params![
                    c.id as i64,
                    s(&c.interaction),
                    c.url,
                    c.params.as_deref().map(crate::core::callback::encode),
                    c.outbound.as_ref().map(|o| o.0.as_str()),
                    c.outbound.as_ref().and_then(|o| o.1.clone()),
                    c.outbound.as_ref().map(|o| o.2),
                    c.created
                ])?;
        }
        WriteOp::PutRecording(v) => super::recordings::put(tx, v)?,
        WriteOp::DeleteRecording(sid) => {
            tx.prepare_cached("DELETE FROM recordings WHERE sid = ?1")?
                .execute([s(sid)])?;
        }
        WriteOp::DeleteCallback(id) => {
            tx.prepare_cached("DELETE FROM callbacks WHERE id = ?1")?
                .execute([*id as i64])?;
        }
        WriteOp::PutRemoteRef(r) => {
            tx.prepare_cached("INSERT OR REPLACE INTO remote_refs VALUES (?1,?2,?3,?4)")?
                .execute(params![
                    r.peer,
                    r.remote_id,
                    s(&r.interaction),
                    r.origin.as_ref().map(origin_text)
                ])?;
        }
    }
    Ok(())
}

/// `WriteOp::TouchSession`, in SQL both backends speak (PostgreSQL numbers its parameters
/// `$N` instead of `?N`).
pub(super) const TOUCH_SESSION: &str = "UPDATE sessions SET
    date_last_interaction = CASE WHEN date_last_interaction IS NULL OR date_last_interaction < ?2
      THEN ?2 ELSE date_last_interaction END,
    date_updated = CASE WHEN date_updated < ?2 THEN ?2 ELSE date_updated END,
    status = CASE WHEN status = 'open' THEN 'in-progress' ELSE status END
  WHERE sid = ?1";

fn origin_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<ReceiptOrigin>> {
    let text: Option<String> = row.get(i)?;
    Ok(text.as_deref().and_then(parse_origin))
}

pub(super) fn sid_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Sid> {
    // Borrowed, not copied into a String: several per row, millions of rows at start-up.
    let text = row.get_ref(i)?.as_str().map_err(|_| corrupt("sid"))?;
    Sid::parse_any(text).ok_or_else(|| corrupt("sid"))
}
fn opt_sid_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Sid>> {
    let text: Option<String> = row.get(i)?;
    text.map(|t| Sid::parse_any(&t).ok_or_else(|| corrupt("sid")))
        .transpose()
}
fn e164_col(row: &Row<'_>, i: usize) -> rusqlite::Result<E164> {
    let v: i64 = row.get(i)?;
    E164::from_u64(v as u64).ok_or_else(|| corrupt("number"))
}
pub(super) fn enum_col<T>(
    row: &Row<'_>,
    i: usize,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text = row.get_ref(i)?.as_str().map_err(|_| corrupt("enum"))?;
    parse(text).ok_or_else(|| corrupt("enum"))
}
fn opt_status(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<ResourceStatus>> {
    let text: Option<String> = row.get(i)?;
    text.map(|t| ResourceStatus::parse(&t).ok_or_else(|| corrupt("status")))
        .transpose()
}

fn interaction_row(r: &Row<'_>) -> rusqlite::Result<Interaction> {
    Ok(Interaction {
        sid: sid_col(r, 0)?,
        seq: r.get::<_, i64>(1)? as u64,
        session_sid: sid_col(r, 2)?,
        service_sid: sid_col(r, 3)?,
        data: r.get(4)?,
        kind: enum_col(r, 5, InteractionType::parse)?,
        inbound: Leg {
            participant_sid: opt_sid_col(r, 6)?,
            resource_sid: r.get(7)?,
            resource_status: opt_status(r, 8)?,
            resource_type: r.get(9)?,
            resource_url: r.get(10)?,
        },
        outbound: Leg {
            participant_sid: opt_sid_col(r, 11)?,
            resource_sid: r.get(12)?,
            resource_status: opt_status(r, 13)?,
            resource_type: r.get(14)?,
            resource_url: r.get(15)?,
        },
        message_participant_sid: opt_sid_col(r, 16)?,
        date_created: r.get(17)?,
        date_updated: r.get(18)?,
    })
}

impl Store for SqliteStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let conn = self.reader.lock();
        let mut snap = Snapshot::default();
        let mut stmt = conn
            .prepare("SELECT * FROM services ORDER BY seq")
            .map_err(io)?;
        snap.services = stmt
            .query_map([], |r| {
                Ok(Service {
                    sid: sid_col(r, 0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    unique_name: r.get(2)?,
                    callback_url: r.get(3)?,
                    default_ttl: r.get::<_, i64>(4)? as u64,
                    geo_match_level: enum_col(r, 5, GeoMatchLevel::parse)?,
                    number_selection_behavior: enum_col(r, 6, NumberSelection::parse)?,
                    intercept_callback_url: r.get(7)?,
                    out_of_session_callback_url: r.get(8)?,
                    chat_instance_sid: r.get(9)?,
                    cooloff: r.get::<_, i64>(10)? as u64,
                    date_created: r.get(11)?,
                    date_updated: r.get(12)?,
                    record: r.get(13)?,
                })
            })
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let mut stmt = conn
            .prepare("SELECT * FROM numbers ORDER BY seq")
            .map_err(io)?;
        snap.numbers = stmt
            .query_map([], |r| {
                Ok(PhoneNumber {
                    sid: sid_col(r, 0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    service_sid: sid_col(r, 2)?,
                    number: e164_col(r, 3)?,
                    friendly_name: r.get(4)?,
                    is_reserved: r.get(5)?,
                    carrier: r.get(8)?,
                    in_use: 0,
                    date_created: r.get(6)?,
                    date_updated: r.get(7)?,
                })
            })
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        snap.keys = conn
            .prepare("SELECT sid, seq, friendly_name, secret_hash, date_created, date_updated FROM api_keys ORDER BY seq")
            .map_err(io)?
            .query_map([], |r| {
                Ok(crate::core::model::ApiKey {
                    sid: sid_col(r, 0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    friendly_name: r.get(2)?,
                    secret_hash: r.get(3)?,
                    date_created: r.get(4)?,
                    date_updated: r.get(5)?,
                })
            })
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let count = |table: &str| -> Result<usize, StoreError> {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as usize)
            .map_err(io)
        };
        snap.sessions = count("sessions")?;
        snap.participants = count("participants")?;
        snap.max_seq = conn
            .query_row(
                "SELECT MAX(m) FROM (SELECT MAX(seq) m FROM services UNION ALL SELECT MAX(seq) FROM numbers
                 UNION ALL SELECT MAX(seq) FROM sessions UNION ALL SELECT MAX(seq) FROM participants
                 UNION ALL SELECT MAX(seq) FROM interactions UNION ALL SELECT MAX(id) FROM outbound
                 UNION ALL SELECT MAX(id) FROM callbacks UNION ALL SELECT MAX(seq) FROM recordings
                 UNION ALL SELECT MAX(seq) FROM api_keys)",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(io)?
            .unwrap_or(0) as u64;
        // Every interaction is stamped at or below it; the writer takes it once.
        self.seq_bound
            .store(snap.max_seq, std::sync::atomic::Ordering::Release);
        Ok(snap)
    }

    fn load_rows(&self, each: &mut dyn FnMut(Loaded)) -> Result<(), StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            // No ORDER BY: there is no index on seq, so SQLite sorted every row in a temporary
            // b-tree first; the engine keys sessions by sid and sorts participants itself.
            .prepare("SELECT * FROM sessions")
            .map_err(io)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Session {
                    sid: sid_col(r, 0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    service_sid: sid_col(r, 2)?,
                    unique_name: r.get(3)?,
                    status: enum_col(r, 4, SessionStatus::parse)?,
                    mode: enum_col(r, 5, Mode::parse)?,
                    ttl: r.get::<_, i64>(6)? as u64,
                    date_expiry: r.get(7)?,
                    date_started: r.get(8)?,
                    date_ended: r.get(9)?,
                    date_last_interaction: r.get(10)?,
                    closed_reason: enum_col(r, 11, ClosedReason::parse)?,
                    date_created: r.get(12)?,
                    date_updated: r.get(13)?,
                    record: r.get(14)?,
                })
            })
            .map_err(io)?;
        for row in rows {
            each(Loaded::Session(row.map_err(io)?));
        }
        let mut stmt = conn.prepare("SELECT * FROM participants").map_err(io)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Participant {
                    sid: sid_col(r, 0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    session_sid: sid_col(r, 2)?,
                    service_sid: sid_col(r, 3)?,
                    identifier: e164_col(r, 4)?,
                    friendly_name: r.get(5)?,
                    proxy: e164_col(r, 6)?,
                    proxy_sid: sid_col(r, 7)?,
                    date_deleted: r.get(8)?,
                    date_created: r.get(9)?,
                    date_updated: r.get(10)?,
                })
            })
            .map_err(io)?;
        for row in rows {
            each(Loaded::Participant(row.map_err(io)?));
        }
        Ok(())
    }

    fn close(&self) {
        SqliteStore::close(self);
    }

    fn submit(&self, ops: Vec<WriteOp>, done: Option<Completion>) {
        let _ = self.writer.submit(ops, done);
    }

    fn interactions(&self, q: InteractionQuery) -> Result<Vec<Interaction>, StoreError> {
        let conn = self.reader.lock();
        // A page before a stamp is the last `limit` rows under it: read descending, flip.
        let sql = if q.before_seq.is_some() {
            "SELECT * FROM interactions WHERE session_sid = ?1
             AND (?2 IS NULL OR message_participant = ?2) AND seq > ?3 AND seq < ?4
             ORDER BY seq DESC LIMIT ?5"
        } else {
            "SELECT * FROM interactions WHERE session_sid = ?1
             AND (?2 IS NULL OR message_participant = ?2) AND seq > ?3 AND seq < ?4
             ORDER BY seq LIMIT ?5"
        };
        let mut stmt = conn.prepare_cached(sql).map_err(io)?;
        let mut rows = stmt
            .query_map(
                params![
                    s(&q.session),
                    os(&q.message_participant),
                    q.after_seq as i64,
                    q.before_seq.map_or(i64::MAX, |b| b as i64),
                    q.limit as i64
                ],
                interaction_row,
            )
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        if q.before_seq.is_some() {
            rows.reverse();
        }
        Ok(rows)
    }

    fn interaction(&self, sid: Sid) -> Result<Option<Interaction>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare_cached("SELECT * FROM interactions WHERE sid = ?1")
            .map_err(io)?;
        let row = stmt
            .query_row([s(&sid)], interaction_row)
            .optional()
            .map_err(io)?;
        Ok(row)
    }

    fn call_interaction(&self, call_sid: &str) -> Result<Option<Interaction>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT * FROM interactions WHERE type = 'voice' AND in_resource_sid = ?1
                 UNION ALL
                 SELECT * FROM interactions WHERE type = 'voice' AND out_resource_sid = ?1
                 LIMIT 1",
            )
            .map_err(io)?;
        let row = stmt
            .query_row([call_sid], interaction_row)
            .optional()
            .map_err(io)?;
        Ok(row)
    }

    fn queued_messages(&self) -> Result<Vec<Interaction>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare(
                "SELECT * FROM interactions WHERE out_status = 'queued' AND message_participant IS NOT NULL
                 AND sid NOT IN (SELECT interaction_sid FROM outbound) ORDER BY seq",
            )
            .map_err(io)?;
        let rows = stmt
            .query_map([], interaction_row)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        Ok(rows)
    }

    fn outbound_after(&self, after: u64, limit: usize) -> Result<Vec<OutboundItem>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare_cached("SELECT * FROM outbound WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(io)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map([after, limit], |r| {
                Ok(OutboundItem {
                    id: r.get::<_, i64>(0)? as u64,
                    interaction: sid_col(r, 1)?,
                    from: e164_col(r, 2)?,
                    to: e164_col(r, 3)?,
                    via: r.get(4)?,
                    origin: origin_col(r, 5)?,
                    payload: r.get(6)?,
                    created: r.get(7)?,
                })
            })
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        Ok(rows)
    }

    fn outbound_count(&self) -> Result<u64, StoreError> {
        let conn = self.reader.lock();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM outbound", [], |r| r.get(0))
            .map_err(io)?;
        Ok(n.max(0) as u64)
    }

    fn callbacks_after(&self, after: u64, limit: usize) -> Result<Vec<CallbackItem>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare_cached("SELECT * FROM callbacks WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(io)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map([after, limit], |r| {
                let out_status: Option<String> = r.get(4)?;
                let outbound = match out_status {
                    Some(st) => Some((
                        ResourceStatus::parse(&st)
                            .ok_or_else(|| corrupt("callbacks.out_status"))?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, i64>(6)?,
                    )),
                    None => None,
                };
                Ok(CallbackItem {
                    id: r.get::<_, i64>(0)? as u64,
                    interaction: sid_col(r, 1)?,
                    url: r.get(2)?,
                    params: r
                        .get::<_, Option<String>>(3)?
                        .map(|p| crate::core::callback::decode(&p)),
                    outbound,
                    created: r.get(7)?,
                })
            })
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        Ok(rows)
    }

    fn recording(&self, sid: Sid) -> Result<Option<Recording>, StoreError> {
        super::recordings::fetch(&self.reader.lock(), sid).map_err(io)
    }

    fn recordings(&self, q: &RecordingQuery) -> Result<Vec<Recording>, StoreError> {
        super::recordings::query(&self.reader.lock(), q).map_err(io)
    }

    fn report_counts(
        &self,
        q: &crate::core::reports::ReportQuery,
    ) -> Result<Vec<crate::core::reports::ReportCount>, StoreError> {
        super::reports::counts(&self.reader.lock(), q).map_err(io)
    }

    fn contacts(
        &self,
        q: &crate::core::reports::ContactQuery,
    ) -> Result<Vec<crate::core::reports::Contact>, StoreError> {
        super::reports::contacts(&self.reader.lock(), q).map_err(io)
    }

    fn remote_ref(&self, peer: &str, remote_id: &str) -> Result<Option<RemoteRef>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn
            .prepare_cached("SELECT * FROM remote_refs WHERE peer = ?1 AND remote_id = ?2")
            .map_err(io)?;
        let row = stmt
            .query_row([peer, remote_id], |r| {
                Ok(RemoteRef {
                    peer: r.get(0)?,
                    remote_id: r.get(1)?,
                    interaction: sid_col(r, 2)?,
                    origin: origin_col(r, 3)?,
                })
            })
            .optional()
            .map_err(io)?;
        Ok(row)
    }
}
