//! PostgreSQL's report counters and out-of-session contacts: schema version 7, the
//! compaction of the counters' deltas, and the reads. SQL only; what each counter means is
//! `core::reports`, and SQLite's triggers (`store::reports`) count the same things.
//!
//! Several nodes commit at once, so the triggers never update a shared counter row (two
//! transactions bumping the same rows in different orders would deadlock, and every commit
//! would queue behind the busiest counter): each bump is a row appended to
//! `report_deltas`. A node folds the deltas into `report_counts` now and then, one node at a
//! time (an advisory lock) and in key order; a read adds what is not folded yet, in one
//! snapshot, so a count is never seen twice or missed.

use crate::core::e164::E164;
use crate::core::reports::{Contact, ContactQuery, ReportCount, ReportQuery};
use crate::core::sid::{Sid, SidKind};
use crate::core::store::StoreError;

/// The advisory lock the compaction holds.
const COMPACT_LOCK: i64 = 0x6d61_736b_6400_0003;

pub(super) const V7: &str = "
CREATE TABLE report_counts (
  service_sid TEXT NOT NULL, day TEXT NOT NULL, number BIGINT NOT NULL, field TEXT NOT NULL,
  value BIGINT NOT NULL, PRIMARY KEY (service_sid, day, number, field));
CREATE TABLE report_deltas (
  service_sid TEXT NOT NULL, day TEXT NOT NULL, number BIGINT NOT NULL, field TEXT NOT NULL,
  value BIGINT NOT NULL);
CREATE INDEX report_deltas_service ON report_deltas(service_sid, day);
CREATE TABLE contacts (
  service_sid TEXT NOT NULL, proxy BIGINT NOT NULL, sender BIGINT NOT NULL,
  first_at BIGINT NOT NULL, last_at BIGINT NOT NULL, messages BIGINT NOT NULL,
  calls BIGINT NOT NULL, session_sid TEXT, PRIMARY KEY (service_sid, proxy, sender));
CREATE INDEX contacts_open ON contacts(service_sid, sender) WHERE session_sid IS NULL;
CREATE INDEX contacts_recent ON contacts(service_sid, last_at);

CREATE FUNCTION maskd_bump(s TEXT, at BIGINT, n BIGINT, f TEXT, v BIGINT) RETURNS void AS $$
BEGIN
  IF n IS NOT NULL AND f IS NOT NULL AND v <> 0 THEN
    INSERT INTO report_deltas VALUES
      (s, to_char(to_timestamp(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), n, f, v);
  END IF;
END $$ LANGUAGE plpgsql;

CREATE FUNCTION maskd_count_session() RETURNS trigger AS $$
DECLARE p BIGINT; f TEXT; at BIGINT;
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM maskd_bump(NEW.service_sid, NEW.date_created, 0, 'sessions_created', 1);
  END IF;
  -- A close; a new row already closed was created and closed in one group commit.
  IF NEW.status = 'closed'
     AND (TG_OP = 'INSERT' OR OLD.status IN ('open', 'in-progress')) THEN
    f := 'sessions_closed_' || NEW.closed_reason;
    at := COALESCE(NEW.date_ended, NEW.date_updated);
    PERFORM maskd_bump(NEW.service_sid, at, 0, f, 1);
    FOR p IN SELECT DISTINCT proxy FROM participants WHERE session_sid = NEW.sid LOOP
      PERFORM maskd_bump(NEW.service_sid, at, p, f, 1);
    END LOOP;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER report_sessions AFTER INSERT OR UPDATE ON sessions
  FOR EACH ROW EXECUTE FUNCTION maskd_count_session();

CREATE FUNCTION maskd_count_participant() RETURNS trigger AS $$
BEGIN
  PERFORM maskd_bump(NEW.service_sid, NEW.date_created, NEW.proxy, 'sessions_created', 1);
  UPDATE contacts SET session_sid = NEW.session_sid
    WHERE service_sid = NEW.service_sid AND sender = NEW.identifier AND session_sid IS NULL;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER report_participants AFTER INSERT ON participants
  FOR EACH ROW EXECUTE FUNCTION maskd_count_participant();

CREATE FUNCTION maskd_count_interaction() RETURNS trigger AS $$
DECLARE inp BIGINT; outp BIGINT; old_status TEXT; secs BIGINT; kind TEXT; at BIGINT;
BEGIN
  SELECT proxy INTO inp FROM participants WHERE sid = NEW.in_participant;
  SELECT proxy INTO outp FROM participants WHERE sid = NEW.out_participant;
  at := NEW.date_created;
  IF TG_OP = 'INSERT' THEN
    IF NEW.type = 'message' THEN
      PERFORM maskd_bump(NEW.service_sid, at, inp, 'messages_in', 1);
      PERFORM maskd_bump(NEW.service_sid, at, outp, 'messages_out', 1);
    ELSIF NEW.type = 'voice' THEN
      PERFORM maskd_bump(NEW.service_sid, at, inp, 'calls_in', 1);
      PERFORM maskd_bump(NEW.service_sid, at, outp, 'calls_out', 1);
    END IF;
  ELSE
    old_status := OLD.out_status;
    IF old_status IS NOT DISTINCT FROM NEW.out_status THEN
      RETURN NULL;
    END IF;
  END IF;
  IF NEW.type = 'message' THEN
    PERFORM maskd_bump(NEW.service_sid, at, outp,
      'messages_out_' || replace(NEW.out_status, '-', '_'), 1);
    PERFORM maskd_bump(NEW.service_sid, at, outp,
      'messages_out_' || replace(old_status, '-', '_'), -1);
  ELSIF NEW.type = 'voice' THEN
    PERFORM maskd_bump(NEW.service_sid, at, inp, 'calls_' || replace(NEW.out_status, '-', '_'), 1);
    PERFORM maskd_bump(NEW.service_sid, at, inp, 'calls_' || replace(old_status, '-', '_'), -1);
    IF NEW.out_status = 'completed' THEN
      secs := COALESCE(substring(NEW.data FROM 'duration\":\"([0-9]{1,12})')::bigint, 0);
      IF secs > 0 THEN
        PERFORM maskd_bump(NEW.service_sid, at, inp, 'call_seconds', secs);
        PERFORM maskd_bump(NEW.service_sid, at, inp, 'call_minutes', (secs + 59) / 60);
      END IF;
    END IF;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER report_interactions AFTER INSERT OR UPDATE ON interactions
  FOR EACH ROW EXECUTE FUNCTION maskd_count_interaction();

CREATE FUNCTION maskd_count_contact() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM maskd_bump(NEW.service_sid, NEW.first_at, NEW.proxy, 'leads', 1);
    PERFORM maskd_bump(NEW.service_sid, NEW.first_at, NEW.proxy, 'out_of_session_messages',
      NEW.messages);
    PERFORM maskd_bump(NEW.service_sid, NEW.first_at, NEW.proxy, 'out_of_session_calls',
      NEW.calls);
  ELSE
    PERFORM maskd_bump(NEW.service_sid, NEW.last_at, NEW.proxy, 'out_of_session_messages',
      NEW.messages - OLD.messages);
    PERFORM maskd_bump(NEW.service_sid, NEW.last_at, NEW.proxy, 'out_of_session_calls',
      NEW.calls - OLD.calls);
    IF OLD.session_sid IS NULL AND NEW.session_sid IS NOT NULL THEN
      PERFORM maskd_bump(NEW.service_sid, NEW.first_at, NEW.proxy, 'leads_converted', 1);
    END IF;
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER report_contacts AFTER INSERT OR UPDATE ON contacts
  FOR EACH ROW EXECUTE FUNCTION maskd_count_contact();
";

/// The counters of what the database held before version 7 (`store::backfill`), run in
/// the migration's transaction.
pub(super) fn backfill() -> Vec<String> {
    crate::store::backfill::statements(
        |t| format!("to_char(to_timestamp({t}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        "COALESCE(substring(i.data FROM 'duration\":\"([0-9]{1,12})')::bigint, 0)",
    )
}

/// `WriteOp::PutContact`: $1 service, $2 proxy, $3 sender, $4 at, $5 messages, $6 calls.
pub(super) const PUT_CONTACT: &str =
    "INSERT INTO contacts VALUES ($1, $2, $3, $4, $4, $5, $6, NULL)
  ON CONFLICT (service_sid, proxy, sender) DO UPDATE SET
    last_at = GREATEST(contacts.last_at, excluded.last_at),
    messages = contacts.messages + excluded.messages, calls = contacts.calls + excluded.calls";

/// What goes with a deleted service ($1): the deltas before the counters, the order the
/// fold takes them in (no deadlock between the two).
pub(super) const DELETE_SERVICE: &[&str] = &[
    "DELETE FROM report_deltas WHERE service_sid = $1",
    "DELETE FROM report_counts WHERE service_sid = $1",
    "DELETE FROM contacts WHERE service_sid = $1",
];

/// Folds every committed delta into the counters, in one transaction, one node at a time: a
/// node that finds another folding skips its turn (it never waits: it is the follower).
pub(super) fn compact_sql() -> String {
    format!(
        "BEGIN;
         WITH turn AS (SELECT pg_try_advisory_xact_lock({COMPACT_LOCK}) AS mine),
         moved AS (DELETE FROM report_deltas WHERE (SELECT mine FROM turn) RETURNING *)
         INSERT INTO report_counts
           SELECT service_sid, day, number, field, SUM(value) FROM moved
           GROUP BY service_sid, day, number, field ORDER BY service_sid, day, number, field
         ON CONFLICT (service_sid, day, number, field)
           DO UPDATE SET value = report_counts.value + excluded.value;
         COMMIT;"
    )
}

/// $1 service, $2 first day, $3 last day: the counters and the deltas not folded yet.
pub(super) const COUNTS: &str = "SELECT day, number, field, SUM(value)::bigint FROM (
    SELECT day, number, field, value FROM report_counts
      WHERE service_sid = $1 AND day >= $2 AND day <= $3
    UNION ALL
    SELECT day, number, field, value FROM report_deltas
      WHERE service_sid = $1 AND day >= $2 AND day <= $3) t
  GROUP BY day, number, field";

/// $1 service, $2 proxy or NULL, $3 limit, $4 offset.
pub(super) const CONTACTS: &str = "SELECT proxy, sender, first_at, last_at, messages, calls,
    session_sid FROM contacts WHERE service_sid = $1 AND ($2::bigint IS NULL OR proxy = $2)
  ORDER BY last_at DESC, proxy, sender LIMIT $3 OFFSET $4";

pub(super) fn query_params(q: &ReportQuery) -> Vec<super::Param> {
    vec![
        Box::new(q.service.to_string()),
        Box::new(q.from_day.clone()),
        Box::new(q.to_day.clone()),
    ]
}

pub(super) fn contact_params(q: &ContactQuery) -> Vec<super::Param> {
    vec![
        Box::new(q.service.to_string()),
        Box::new(q.proxy.map(|p| p.as_u64() as i64)),
        Box::new(q.limit as i64),
        Box::new(q.offset as i64),
    ]
}

fn bad(what: &str) -> StoreError {
    StoreError::Corrupt(format!("a report row holds {what}"))
}

pub(super) fn count(r: &tokio_postgres::Row) -> Result<ReportCount, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Io(e.to_string());
    Ok(ReportCount {
        day: r.try_get(0).map_err(get)?,
        number: r.try_get::<_, i64>(1).map_err(get)? as u64,
        field: r.try_get(2).map_err(get)?,
        value: r.try_get(3).map_err(get)?,
    })
}

pub(super) fn contact(r: &tokio_postgres::Row) -> Result<Contact, StoreError> {
    let get = |e: tokio_postgres::Error| StoreError::Io(e.to_string());
    let number = |i| -> Result<E164, StoreError> {
        E164::from_u64(r.try_get::<_, i64>(i).map_err(get)? as u64)
            .ok_or_else(|| bad("no phone number"))
    };
    Ok(Contact {
        proxy: number(0)?,
        sender: number(1)?,
        first_at: r.try_get(2).map_err(get)?,
        last_at: r.try_get(3).map_err(get)?,
        messages: r.try_get::<_, i64>(4).map_err(get)? as u64,
        calls: r.try_get::<_, i64>(5).map_err(get)? as u64,
        session: r
            .try_get::<_, Option<String>>(6)
            .map_err(get)?
            .and_then(|s| Sid::parse(SidKind::Session, &s)),
    })
}
