//! SQLite's report counters and out-of-session contacts: schema version 7, whose triggers
//! count sessions, participants and contacts as the writer commits them, in the same
//! transaction (so a count is never ahead of or behind its rows, and survives restarts); the
//! contact upsert; the reads. Interactions, written many times each, are counted by the
//! writer itself (`store/counting.rs`). What each counter means is `core::reports`.
//!
//! The writer replaces rows (`INSERT OR REPLACE`), so the triggers that tell a new row from
//! a rewrite run before the insert, while the old row is still there.

use rusqlite::{params, Connection, Transaction};

use crate::core::e164::E164;
use crate::core::reports::{Contact, ContactEvent, ContactQuery, ReportCount, ReportQuery};
use crate::core::sid::{Sid, SidKind};

/// `value` added to counter `field` of `service`'s `number` (0: the service's row) on the
/// UTC day of `at`, for each row of `from` (an SQL tail: `FROM … WHERE …`, or `WHERE …`).
fn bump(service: &str, at: &str, number: &str, field: &str, value: &str, from: &str) -> String {
    format!(
        "INSERT INTO report_counts SELECT {service}, strftime('%Y-%m-%d', {at}, 'unixepoch'),
           {number}, {field}, {value} {from}
         ON CONFLICT DO UPDATE SET value = value + excluded.value;"
    )
}

/// A session's close: on the service's row and on each of its proxy numbers.
fn session_closed() -> String {
    let at = "COALESCE(NEW.date_ended, NEW.date_updated)";
    let field = "'sessions_closed_' || NEW.closed_reason";
    bump("NEW.service_sid", at, "0", field, "1", "WHERE true")
        + &bump(
            "NEW.service_sid",
            at,
            "proxy",
            field,
            "1",
            "FROM (SELECT DISTINCT proxy FROM participants WHERE session_sid = NEW.sid)
             WHERE true",
        )
}

/// Schema version 7.
pub(super) fn schema_v7() -> String {
    let exists = |table: &str| format!("EXISTS (SELECT 1 FROM {table} WHERE sid = NEW.sid");
    let backfill = super::backfill::statements(
        |t| format!("strftime('%Y-%m-%d', {t}, 'unixepoch')"),
        "(CASE WHEN json_valid(i.data)
           THEN CAST(COALESCE(json_extract(i.data, '$.duration'), 0) AS INTEGER) ELSE 0 END)",
    )
    .join(";\n");
    format!(
        "
CREATE TABLE report_counts (
  service_sid TEXT NOT NULL, day TEXT NOT NULL, number INTEGER NOT NULL, field TEXT NOT NULL,
  value INTEGER NOT NULL, PRIMARY KEY (service_sid, day, number, field)) WITHOUT ROWID;
CREATE TABLE contacts (
  service_sid TEXT NOT NULL, proxy INTEGER NOT NULL, sender INTEGER NOT NULL,
  first_at INTEGER NOT NULL, last_at INTEGER NOT NULL, messages INTEGER NOT NULL,
  calls INTEGER NOT NULL, session_sid TEXT, PRIMARY KEY (service_sid, proxy, sender))
  WITHOUT ROWID;
CREATE INDEX contacts_open ON contacts(service_sid, sender) WHERE session_sid IS NULL;
CREATE INDEX contacts_recent ON contacts(service_sid, last_at);

CREATE TRIGGER report_session_new BEFORE INSERT ON sessions
WHEN NOT {sessions}) BEGIN
  {created}
END;
-- Created and closed in one group commit (the writer keeps a row's last version).
CREATE TRIGGER report_session_new_closed BEFORE INSERT ON sessions
WHEN NEW.status = 'closed' AND NOT {sessions}) BEGIN
  {closed}
END;
-- A session closes only by a replaced row (the writer's PutSession and ExpireSession): no
-- trigger on UPDATE, which every message's touch of its session would run.
CREATE TRIGGER report_session_replaced_closed BEFORE INSERT ON sessions
WHEN NEW.status = 'closed' AND {sessions} AND status IN ('open', 'in-progress')) BEGIN
  {closed}
END;

CREATE TRIGGER report_participant_new BEFORE INSERT ON participants
WHEN NOT {participants}) BEGIN
  {participant_created}
  UPDATE contacts SET session_sid = NEW.session_sid
    WHERE service_sid = NEW.service_sid AND sender = NEW.identifier AND session_sid IS NULL;
END;

CREATE TRIGGER report_contact_new AFTER INSERT ON contacts BEGIN
  {lead}
  {oos_messages_new}
  {oos_calls_new}
END;
CREATE TRIGGER report_contact_again AFTER UPDATE ON contacts
WHEN NEW.messages > OLD.messages OR NEW.calls > OLD.calls BEGIN
  {oos_messages_more}
  {oos_calls_more}
END;
CREATE TRIGGER report_contact_followed AFTER UPDATE OF session_sid ON contacts
WHEN OLD.session_sid IS NULL AND NEW.session_sid IS NOT NULL BEGIN
  {converted}
END;
{backfill};
",
        sessions = exists("sessions"),
        participants = exists("participants"),
        created = bump(
            "NEW.service_sid",
            "NEW.date_created",
            "0",
            "'sessions_created'",
            "1",
            "WHERE true"
        ),
        closed = session_closed(),
        participant_created = bump(
            "NEW.service_sid",
            "NEW.date_created",
            "NEW.proxy",
            "'sessions_created'",
            "1",
            "WHERE true"
        ),
        lead = bump(
            "NEW.service_sid",
            "NEW.first_at",
            "NEW.proxy",
            "'leads'",
            "1",
            "WHERE true"
        ),
        oos_messages_new = bump(
            "NEW.service_sid",
            "NEW.first_at",
            "NEW.proxy",
            "'out_of_session_messages'",
            "NEW.messages",
            "WHERE NEW.messages > 0"
        ),
        oos_calls_new = bump(
            "NEW.service_sid",
            "NEW.first_at",
            "NEW.proxy",
            "'out_of_session_calls'",
            "NEW.calls",
            "WHERE NEW.calls > 0"
        ),
        oos_messages_more = bump(
            "NEW.service_sid",
            "NEW.last_at",
            "NEW.proxy",
            "'out_of_session_messages'",
            "NEW.messages - OLD.messages",
            "WHERE NEW.messages > OLD.messages"
        ),
        oos_calls_more = bump(
            "NEW.service_sid",
            "NEW.last_at",
            "NEW.proxy",
            "'out_of_session_calls'",
            "NEW.calls - OLD.calls",
            "WHERE NEW.calls > OLD.calls"
        ),
        converted = bump(
            "NEW.service_sid",
            "NEW.first_at",
            "NEW.proxy",
            "'leads_converted'",
            "1",
            "WHERE true"
        ),
    )
}

/// The writer's op: one more message or call from a stranger.
pub(super) fn put_contact(tx: &Transaction<'_>, c: &ContactEvent) -> rusqlite::Result<()> {
    let (m, k) = match c.kind {
        crate::core::model::InteractionType::Voice => (0, 1),
        _ => (1, 0),
    };
    tx.prepare_cached(
        "INSERT INTO contacts VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, NULL)
         ON CONFLICT (service_sid, proxy, sender) DO UPDATE SET
           last_at = max(last_at, excluded.last_at), messages = messages + excluded.messages,
           calls = calls + excluded.calls",
    )?
    .execute(params![
        c.service.to_string(),
        c.proxy.as_u64() as i64,
        c.sender.as_u64() as i64,
        c.at,
        m,
        k
    ])?;
    Ok(())
}

/// What goes with a deleted service.
pub(super) fn delete_service(tx: &Transaction<'_>, service: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM report_counts WHERE service_sid = ?1",
        [service],
    )?;
    tx.execute("DELETE FROM contacts WHERE service_sid = ?1", [service])?;
    Ok(())
}

pub(super) fn counts(conn: &Connection, q: &ReportQuery) -> rusqlite::Result<Vec<ReportCount>> {
    let mut st = conn.prepare_cached(
        "SELECT day, number, field, value FROM report_counts
         WHERE service_sid = ?1 AND day >= ?2 AND day <= ?3",
    )?;
    let rows = st.query_map(params![q.service.to_string(), q.from_day, q.to_day], |r| {
        Ok(ReportCount {
            day: r.get(0)?,
            number: r.get::<_, i64>(1)? as u64,
            field: r.get(2)?,
            value: r.get(3)?,
        })
    })?;
    rows.collect()
}

pub(super) fn contacts(conn: &Connection, q: &ContactQuery) -> rusqlite::Result<Vec<Contact>> {
    let mut st = conn.prepare_cached(
        "SELECT proxy, sender, first_at, last_at, messages, calls, session_sid FROM contacts
         WHERE service_sid = ?1 AND (?2 IS NULL OR proxy = ?2)
         ORDER BY last_at DESC, proxy, sender LIMIT ?3 OFFSET ?4",
    )?;
    let number = |r: &rusqlite::Row<'_>, i| -> rusqlite::Result<E164> {
        let v: i64 = r.get(i)?;
        E164::from_u64(v as u64).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Integer,
                "not a phone number".into(),
            )
        })
    };
    let rows = st.query_map(
        params![
            q.service.to_string(),
            q.proxy.map(|p| p.as_u64() as i64),
            q.limit as i64,
            q.offset as i64
        ],
        |r| {
            Ok(Contact {
                proxy: number(r, 0)?,
                sender: number(r, 1)?,
                first_at: r.get(2)?,
                last_at: r.get(3)?,
                messages: r.get::<_, i64>(4)? as u64,
                calls: r.get::<_, i64>(5)? as u64,
                session: r
                    .get::<_, Option<String>>(6)?
                    .and_then(|s| Sid::parse(SidKind::Session, &s)),
            })
        },
    )?;
    rows.collect()
}
