//! The SQLite schema, one step per version (`PRAGMA user_version`), and the migration that
//! moves an older database forward one step per transaction. SQL only.

use rusqlite::Connection;

use super::sqlite::io;
use crate::core::store::StoreError;

pub(super) const SCHEMA_VERSION: i64 = 8;

const SCHEMA_V1: &str = "
CREATE TABLE services (
  sid TEXT PRIMARY KEY, seq INTEGER NOT NULL, unique_name TEXT NOT NULL,
  callback_url TEXT, default_ttl INTEGER NOT NULL, geo_match_level TEXT NOT NULL,
  number_selection_behavior TEXT NOT NULL, intercept_callback_url TEXT,
  out_of_session_callback_url TEXT, chat_instance_sid TEXT, cooloff INTEGER NOT NULL,
  date_created INTEGER NOT NULL, date_updated INTEGER NOT NULL);
CREATE TABLE numbers (
  sid TEXT PRIMARY KEY, seq INTEGER NOT NULL, service_sid TEXT NOT NULL,
  number INTEGER NOT NULL UNIQUE, friendly_name TEXT NOT NULL, is_reserved INTEGER NOT NULL,
  date_created INTEGER NOT NULL, date_updated INTEGER NOT NULL);
CREATE TABLE sessions (
  sid TEXT PRIMARY KEY, seq INTEGER NOT NULL, service_sid TEXT NOT NULL, unique_name TEXT,
  status TEXT NOT NULL, mode TEXT NOT NULL, ttl INTEGER NOT NULL, date_expiry INTEGER,
  date_started INTEGER, date_ended INTEGER, date_last_interaction INTEGER,
  closed_reason TEXT NOT NULL, date_created INTEGER NOT NULL, date_updated INTEGER NOT NULL);
CREATE INDEX sessions_service ON sessions(service_sid);
CREATE TABLE participants (
  sid TEXT PRIMARY KEY, seq INTEGER NOT NULL, session_sid TEXT NOT NULL,
  service_sid TEXT NOT NULL, identifier INTEGER NOT NULL, friendly_name TEXT,
  proxy INTEGER NOT NULL, proxy_sid TEXT NOT NULL, date_deleted INTEGER,
  date_created INTEGER NOT NULL, date_updated INTEGER NOT NULL);
CREATE INDEX participants_session ON participants(session_sid);
CREATE TABLE interactions (
  sid TEXT PRIMARY KEY, seq INTEGER NOT NULL, session_sid TEXT NOT NULL,
  service_sid TEXT NOT NULL, data TEXT NOT NULL, type TEXT NOT NULL,
  in_participant TEXT, in_resource_sid TEXT, in_status TEXT, in_type TEXT, in_url TEXT,
  out_participant TEXT, out_resource_sid TEXT, out_status TEXT, out_type TEXT, out_url TEXT,
  message_participant TEXT, date_created INTEGER NOT NULL, date_updated INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE INDEX interactions_session ON interactions(session_sid, seq);
CREATE INDEX interactions_queued ON interactions(out_status) WHERE out_status = 'queued';
";

/// Version 2: the SMS plane's persistent outbound queue and downstream message ids.
const SCHEMA_V2: &str = "
CREATE TABLE outbound (
  id INTEGER PRIMARY KEY, interaction_sid TEXT NOT NULL, src INTEGER NOT NULL,
  dst INTEGER NOT NULL, via TEXT, origin TEXT, payload BLOB NOT NULL, created INTEGER NOT NULL);
CREATE TABLE remote_refs (
  peer TEXT NOT NULL, remote_id TEXT NOT NULL, interaction_sid TEXT NOT NULL, origin TEXT,
  PRIMARY KEY (peer, remote_id)) WITHOUT ROWID;
CREATE INDEX remote_refs_interaction ON remote_refs(interaction_sid);
DROP INDEX interactions_queued;
CREATE INDEX interactions_queued ON interactions(out_status)
  WHERE out_status = 'queued' AND message_participant IS NOT NULL;
";

/// v3: the status callback queue.
const SCHEMA_V3: &str = "
CREATE TABLE callbacks (
  id INTEGER PRIMARY KEY, interaction_sid TEXT NOT NULL, url TEXT, params TEXT,
  out_status TEXT, out_sid TEXT, out_at INTEGER, created INTEGER NOT NULL);
";

/// Version 4: recordings (Twilio's 2010 Recording resource), a service's `record` flag from
/// config and a session's `Record` override (NULL: the service's).
const SCHEMA_V4: &str = "
ALTER TABLE services ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN record INTEGER;
CREATE TABLE recordings (
  sid TEXT PRIMARY KEY, seq INTEGER NOT NULL, session_sid TEXT NOT NULL,
  service_sid TEXT NOT NULL, call_sid TEXT NOT NULL, status TEXT NOT NULL,
  start_ms INTEGER NOT NULL, duration INTEGER, error_code INTEGER, reason TEXT,
  date_created INTEGER NOT NULL, date_updated INTEGER NOT NULL);
CREATE INDEX recordings_seq ON recordings(seq);
CREATE INDEX recordings_call ON recordings(call_sid, seq);
CREATE INDEX recordings_status ON recordings(status) WHERE status = 'in-progress';
";

/// Version 5: a voice interaction found by either leg's call SID (the Call resource).
const SCHEMA_V5: &str = "
CREATE INDEX interactions_in_call ON interactions(in_resource_sid) WHERE type = 'voice';
CREATE INDEX interactions_out_call ON interactions(out_resource_sid) WHERE type = 'voice';
";

/// Version 6: a pool number's carrier, tagged over the API.
const SCHEMA_V6: &str = "ALTER TABLE numbers ADD COLUMN carrier TEXT;";

/// Version 8: API keys (the 2010-04-01 Key resource); the secret only as a salted hash.
const SCHEMA_V8: &str = "
CREATE TABLE api_keys (
  sid TEXT PRIMARY KEY, seq INTEGER NOT NULL, friendly_name TEXT NOT NULL,
  secret_hash TEXT NOT NULL, date_created INTEGER NOT NULL, date_updated INTEGER NOT NULL);
";

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(io)?;
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(StoreError::Corrupt(format!(
            "schema version {version} is not one this maskd knows (it knows up to {SCHEMA_VERSION})"
        )));
    }
    // Each step moves one version forward, in one transaction.
    // Version 7: the report counters and contacts (`store::reports`).
    let v7 = super::reports::schema_v7();
    let steps = [
        SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, &v7, SCHEMA_V8,
    ];
    for (i, step) in steps.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(io)?;
        tx.execute_batch(step).map_err(io)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(io)?;
        tx.commit().map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::store::Store;

    /// What a database held before the report counters is counted once by the migration
    /// to version 7, by the same rules as the live counting.
    #[test]
    fn a_version_6_database_gets_its_reports_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        let (svc, kc) = (
            "KS0123456789abcdef0123456789abcdef",
            "KC0123456789abcdef0123456789abcdef",
        );
        let (a, b) = (
            "KP0123456789abcdef0123456789abcd0a",
            "KP0123456789abcdef0123456789abcd0b",
        );
        let t = 1_800_000_000i64; // 2027-01-15
        {
            let conn = Connection::open(&path).unwrap();
            for step in [
                SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6,
            ] {
                conn.execute_batch(step).unwrap();
            }
            conn.execute_batch(&format!(
                "PRAGMA user_version = 6;
                 INSERT INTO services VALUES ('{svc}', 1, 'old', NULL, 0, 'country',
                   'prefer-sticky', NULL, NULL, NULL, 0, {t}, {t}, 0);
                 INSERT INTO sessions VALUES ('{kc}', 2, '{svc}', NULL, 'closed',
                   'voice-and-message', 0, NULL, {t}, {end}, {t}, 'api', {t}, {end}, NULL);
                 INSERT INTO participants VALUES ('{a}', 3, '{kc}', '{svc}', 14155551001, NULL,
                   14155550101, 'PN0123456789abcdef0123456789abcd01', NULL, {t}, {t});
                 INSERT INTO participants VALUES ('{b}', 4, '{kc}', '{svc}', 14155552002, NULL,
                   14155550102, 'PN0123456789abcdef0123456789abcd02', NULL, {t}, {t});
                 INSERT INTO interactions VALUES ('KI0123456789abcdef0123456789abcd01', 5, '{kc}',
                   '{svc}', '{{\"body\":\"hi\"}}', 'message', '{a}', NULL, 'received', NULL, NULL,
                   '{b}', NULL, 'delivered', NULL, NULL, NULL, {t}, {t});
                 INSERT INTO interactions VALUES ('KI0123456789abcdef0123456789abcd02', 6, '{kc}',
                   '{svc}', '{{\"duration\":\"61\"}}', 'voice', '{b}', NULL, 'completed', NULL,
                   NULL, '{a}', NULL, 'completed', NULL, NULL, NULL, {t}, {t});
                 INSERT INTO interactions VALUES ('KI0123456789abcdef0123456789abcd03', 7, '{kc}',
                   '{svc}', 'not json', 'voice', '{b}', NULL, 'completed', NULL,
                   NULL, '{a}', NULL, 'busy', NULL, NULL, NULL, {t}, {t});",
                end = t + 90_000
            ))
            .unwrap();
        }
        let store = super::super::SqliteStore::open(&path, Box::new(|e| panic!("{e}"))).unwrap();
        let q = crate::core::reports::ReportQuery {
            service: crate::core::Sid::parse_any(svc).unwrap(),
            from_day: "2027-01-01".into(),
            to_day: "2027-01-31".into(),
        };
        let rows = crate::core::reports::pivot(store.report_counts(&q).unwrap());
        let get = |day: &str, n: u64, f: &str| {
            let i = crate::core::reports::FIELDS
                .iter()
                .position(|x| *x == f)
                .unwrap();
            rows.iter()
                .find(|r| r.day == day && r.number.map_or(0, |e| e.as_u64()) == n)
                .map_or(0, |r| r.values[i])
        };
        let d = "2027-01-15";
        assert_eq!(get(d, 0, "sessions_created"), 1, "{rows:?}");
        assert_eq!(
            get("2027-01-16", 0, "sessions_closed_api"),
            1,
            "closed the next day"
        );
        assert_eq!(get("2027-01-16", 14155550101, "sessions_closed_api"), 1);
        assert_eq!(get(d, 14155550101, "sessions_created"), 1);
        assert_eq!(get(d, 14155550101, "messages_in"), 1);
        assert_eq!(get(d, 14155550102, "messages_out"), 1);
        assert_eq!(get(d, 14155550102, "messages_out_delivered"), 1);
        assert_eq!(get(d, 14155550102, "calls_in"), 2);
        assert_eq!(get(d, 14155550102, "calls_completed"), 1);
        assert_eq!(get(d, 14155550102, "calls_busy"), 1);
        assert_eq!(get(d, 14155550102, "call_seconds"), 61);
        assert_eq!(get(d, 14155550102, "call_minutes"), 2);
        assert_eq!(get(d, 14155550101, "calls_out"), 2);
        store.close();
    }

    #[test]
    fn a_version_3_database_migrates_to_4() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            for step in [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3] {
                conn.execute_batch(step).unwrap();
            }
            conn.execute_batch(
                "PRAGMA user_version = 3;
                 INSERT INTO services VALUES ('KS0123456789abcdef0123456789abcdef', 1, 'old',
                   NULL, 0, 'country', 'prefer-sticky', NULL, NULL, NULL, 0, 10, 10);
                 INSERT INTO sessions VALUES ('KC0123456789abcdef0123456789abcdef', 2,
                   'KS0123456789abcdef0123456789abcdef', NULL, 'open', 'voice-and-message', 0,
                   NULL, 10, NULL, NULL, '', 10, 10);",
            )
            .unwrap();
        }
        let store = super::super::SqliteStore::open(&path, Box::new(|e| panic!("{e}"))).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.services.len(), 1);
        assert!(!snap.services[0].record, "old services are not recorded");
        let mut sessions = Vec::new();
        store
            .load_rows(&mut |row| {
                if let crate::core::store::Loaded::Session(s) = row {
                    sessions.push(s)
                }
            })
            .unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].record, None, "no override: the service's");
        let q = crate::core::store::RecordingQuery {
            limit: 10,
            ..Default::default()
        };
        assert!(store.recordings(&q).unwrap().is_empty());
        store.close();
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
}
