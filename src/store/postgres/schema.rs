//! PostgreSQL's schema: the tables (the same columns, in the same order, as SQLite's), one
//! step per version recorded in `schema_migrations`, applied under an advisory lock so that
//! nodes starting together migrate once. SQL only.

use tokio_postgres::Client;

use crate::core::store::StoreError;

/// The advisory lock key the migration holds (any constant that is maskd's).
const MIGRATION_LOCK: i64 = 0x6d61_736b_6400_0001;

/// Columns per table, in the order every INSERT and SELECT of this backend names them.
pub(super) const SERVICES: &[&str] = &[
    "sid",
    "seq",
    "unique_name",
    "callback_url",
    "default_ttl",
    "geo_match_level",
    "number_selection_behavior",
    "intercept_callback_url",
    "out_of_session_callback_url",
    "chat_instance_sid",
    "cooloff",
    "date_created",
    "date_updated",
    "record",
];
pub(super) const NUMBERS: &[&str] = &[
    "sid",
    "seq",
    "service_sid",
    "number",
    "friendly_name",
    "is_reserved",
    "date_created",
    "date_updated",
    "carrier",
];
pub(super) const SESSIONS: &[&str] = &[
    "sid",
    "seq",
    "service_sid",
    "unique_name",
    "status",
    "mode",
    "ttl",
    "date_expiry",
    "date_started",
    "date_ended",
    "date_last_interaction",
    "closed_reason",
    "date_created",
    "date_updated",
    "record",
];
pub(super) const PARTICIPANTS: &[&str] = &[
    "sid",
    "seq",
    "session_sid",
    "service_sid",
    "identifier",
    "friendly_name",
    "proxy",
    "proxy_sid",
    "date_deleted",
    "date_created",
    "date_updated",
];
pub(super) const INTERACTIONS: &[&str] = &[
    "sid",
    "seq",
    "session_sid",
    "service_sid",
    "data",
    "type",
    "in_participant",
    "in_resource_sid",
    "in_status",
    "in_type",
    "in_url",
    "out_participant",
    "out_resource_sid",
    "out_status",
    "out_type",
    "out_url",
    "message_participant",
    "date_created",
    "date_updated",
];
pub(super) const OUTBOUND: &[&str] = &[
    "id",
    "interaction_sid",
    "src",
    "dst",
    "via",
    "origin",
    "payload",
    "created",
    "owner",
];
pub(super) const REMOTE_REFS: &[&str] = &["peer", "remote_id", "interaction_sid", "origin"];
pub(super) const CALLBACKS: &[&str] = &[
    "id",
    "interaction_sid",
    "url",
    "params",
    "out_status",
    "out_sid",
    "out_at",
    "created",
    "owner",
];
pub(super) const RECORDINGS: &[&str] = &[
    "sid",
    "seq",
    "session_sid",
    "service_sid",
    "call_sid",
    "status",
    "start_ms",
    "duration",
    "error_code",
    "reason",
    "date_created",
    "date_updated",
];

pub(super) const API_KEYS: &[&str] = &[
    "sid",
    "seq",
    "friendly_name",
    "secret_hash",
    "date_created",
    "date_updated",
];

/// Version 8: API keys (the 2010-04-01 Key resource); the secret only as a salted hash.
const V8: &str = "
CREATE TABLE api_keys (
  sid TEXT PRIMARY KEY, seq BIGINT NOT NULL, friendly_name TEXT NOT NULL,
  secret_hash TEXT NOT NULL, date_created BIGINT NOT NULL, date_updated BIGINT NOT NULL);
";

/// Version 1: everything SQLite's versions 1 to 5 hold.
const V1: &str = "
CREATE TABLE services (
  sid TEXT PRIMARY KEY, seq BIGINT NOT NULL, unique_name TEXT NOT NULL,
  callback_url TEXT, default_ttl BIGINT NOT NULL, geo_match_level TEXT NOT NULL,
  number_selection_behavior TEXT NOT NULL, intercept_callback_url TEXT,
  out_of_session_callback_url TEXT, chat_instance_sid TEXT, cooloff BIGINT NOT NULL,
  date_created BIGINT NOT NULL, date_updated BIGINT NOT NULL, record BOOLEAN NOT NULL);
CREATE TABLE numbers (
  sid TEXT PRIMARY KEY, seq BIGINT NOT NULL, service_sid TEXT NOT NULL,
  number BIGINT NOT NULL UNIQUE, friendly_name TEXT NOT NULL, is_reserved BOOLEAN NOT NULL,
  date_created BIGINT NOT NULL, date_updated BIGINT NOT NULL);
CREATE TABLE sessions (
  sid TEXT PRIMARY KEY, seq BIGINT NOT NULL, service_sid TEXT NOT NULL, unique_name TEXT,
  status TEXT NOT NULL, mode TEXT NOT NULL, ttl BIGINT NOT NULL, date_expiry BIGINT,
  date_started BIGINT, date_ended BIGINT, date_last_interaction BIGINT,
  closed_reason TEXT NOT NULL, date_created BIGINT NOT NULL, date_updated BIGINT NOT NULL,
  record BOOLEAN);
CREATE INDEX sessions_service ON sessions(service_sid);
CREATE TABLE participants (
  sid TEXT PRIMARY KEY, seq BIGINT NOT NULL, session_sid TEXT NOT NULL,
  service_sid TEXT NOT NULL, identifier BIGINT NOT NULL, friendly_name TEXT,
  proxy BIGINT NOT NULL, proxy_sid TEXT NOT NULL, date_deleted BIGINT,
  date_created BIGINT NOT NULL, date_updated BIGINT NOT NULL);
CREATE INDEX participants_session ON participants(session_sid);
CREATE INDEX participants_service ON participants(service_sid);
CREATE TABLE interactions (
  sid TEXT PRIMARY KEY, seq BIGINT NOT NULL, session_sid TEXT NOT NULL,
  service_sid TEXT NOT NULL, data TEXT NOT NULL, type TEXT NOT NULL,
  in_participant TEXT, in_resource_sid TEXT, in_status TEXT, in_type TEXT, in_url TEXT,
  out_participant TEXT, out_resource_sid TEXT, out_status TEXT, out_type TEXT, out_url TEXT,
  message_participant TEXT, date_created BIGINT NOT NULL, date_updated BIGINT NOT NULL);
CREATE INDEX interactions_session ON interactions(session_sid, seq);
CREATE INDEX interactions_service ON interactions(service_sid);
CREATE INDEX interactions_queued ON interactions(seq)
  WHERE out_status = 'queued' AND message_participant IS NOT NULL;
CREATE INDEX interactions_in_call ON interactions(in_resource_sid) WHERE type = 'voice';
CREATE INDEX interactions_out_call ON interactions(out_resource_sid) WHERE type = 'voice';
CREATE TABLE outbound (
  id BIGINT PRIMARY KEY, interaction_sid TEXT NOT NULL, src BIGINT NOT NULL,
  dst BIGINT NOT NULL, via TEXT, origin TEXT, payload BYTEA NOT NULL, created BIGINT NOT NULL);
CREATE INDEX outbound_interaction ON outbound(interaction_sid);
CREATE TABLE remote_refs (
  peer TEXT NOT NULL, remote_id TEXT NOT NULL, interaction_sid TEXT NOT NULL, origin TEXT,
  PRIMARY KEY (peer, remote_id));
CREATE INDEX remote_refs_interaction ON remote_refs(interaction_sid);
CREATE TABLE callbacks (
  id BIGINT PRIMARY KEY, interaction_sid TEXT NOT NULL, url TEXT, params TEXT,
  out_status TEXT, out_sid TEXT, out_at BIGINT, created BIGINT NOT NULL);
CREATE TABLE recordings (
  sid TEXT PRIMARY KEY, seq BIGINT NOT NULL, session_sid TEXT NOT NULL,
  service_sid TEXT NOT NULL, call_sid TEXT NOT NULL, status TEXT NOT NULL,
  start_ms BIGINT NOT NULL, duration BIGINT, error_code BIGINT, reason TEXT,
  date_created BIGINT NOT NULL, date_updated BIGINT NOT NULL);
CREATE INDEX recordings_seq ON recordings(seq);
CREATE INDEX recordings_call ON recordings(call_sid, seq);
CREATE INDEX recordings_status ON recordings(status) WHERE status = 'in-progress';
";

/// Version 2: the change log several nodes follow. One row per changed service, number or
/// session (a participant's change is its session's), numbered in commit order: writers
/// take `CHANGES_LOCK` before they insert and hold it to their commit. `change_horizon`
/// says up to where old rows were pruned: a node behind it cannot catch up and restarts.
const V2: &str = "
CREATE TABLE changes (
  seq BIGSERIAL PRIMARY KEY, node INT NOT NULL, kind TEXT NOT NULL, sid TEXT NOT NULL,
  at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX changes_at ON changes(at);
CREATE TABLE change_horizon (one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
  pruned BIGINT NOT NULL);
INSERT INTO change_horizon VALUES (true, 0);
";

/// Version 3: the route keys of active sessions, one row each: the unique key is what keeps
/// two nodes allocating at once from giving one key to two sessions. Filled from the
/// sessions already there.
const V3: &str = "
CREATE TABLE route_keys (
  proxy BIGINT NOT NULL, identifier BIGINT NOT NULL, session_sid TEXT NOT NULL,
  PRIMARY KEY (proxy, identifier));
CREATE INDEX route_keys_session ON route_keys(session_sid);
INSERT INTO route_keys
  SELECT p.proxy, p.identifier, p.session_sid FROM participants p
  JOIN sessions s ON s.sid = p.session_sid
  WHERE s.status IN ('open', 'in-progress') AND p.date_deleted IS NULL
  ON CONFLICT DO NOTHING;
";

/// Version 4: the SMS outbound queue shared by the nodes. `owner` is the node delivering a
/// message (the one that accepted it, at first); NULL once that node let go of it, having no
/// link to its next hop (`next_hop`, then set), for a node that has one to claim.
/// `nodes` has each node's last sign of life (its follower writes it every few seconds): a
/// node silent for a minute (longer than a node keeps running without its store) is gone,
/// and the others claim what it held.
const V4: &str = "
CREATE TABLE nodes (node INT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL);
ALTER TABLE outbound ADD COLUMN owner INT, ADD COLUMN next_hop TEXT;
CREATE INDEX outbound_owner ON outbound(owner, id);
CREATE INDEX outbound_unclaimed ON outbound(next_hop, id) WHERE owner IS NULL;
";

/// Version 5: status callbacks across nodes. `owner` is the node sending a callback (the
/// one that made it, until another claims it from a node gone silent); `pos` is the order
/// the store took them in: a callback made after reading another node's commit sorts after
/// that node's callbacks, so a node holds an interaction's callback back while an earlier
/// one of it waits on another node.
/// Rows already queued take `pos` in id order (each node's in the order it made them).
/// `owner` stays nullable: a node of the previous version still running during a rolling
/// upgrade inserts without it, and readers take the node in the id's low bits then
/// (`OWNER`).
const V5: &str = "
ALTER TABLE callbacks ADD COLUMN owner INT, ADD COLUMN pos BIGINT;
CREATE SEQUENCE callbacks_pos_seq OWNED BY callbacks.pos;
UPDATE callbacks c SET owner = (c.id & 1023)::int, pos = r.n
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM callbacks) r WHERE r.id = c.id;
SELECT setval('callbacks_pos_seq', COALESCE((SELECT MAX(pos) FROM callbacks), 0) + 1, false);
ALTER TABLE callbacks ALTER COLUMN pos SET DEFAULT nextval('callbacks_pos_seq'),
  ALTER COLUMN pos SET NOT NULL;
CREATE INDEX callbacks_owner ON callbacks(owner, id);
CREATE INDEX callbacks_interaction ON callbacks(interaction_sid, pos);
";

/// Version 6: a pool number's carrier, tagged over the API (NULL: its `carriers[].numbers`).
const V6: &str = "ALTER TABLE numbers ADD COLUMN carrier TEXT;";

/// A callback's owner, for rows a node of the previous version inserted without one.
pub(super) const OWNER: &str = "COALESCE(owner, (id & 1023)::int)";

/// Every step, oldest first; version N is `STEPS[N - 1]`.
const STEPS: &[&str] = &[V1, V2, V3, V4, V5, V6, super::reports::V7, V8];

/// The advisory lock a writer holds from its change-log insert to its commit, so the log's
/// sequence is in commit order (a bigserial alone is in insert order).
pub(super) const CHANGES_LOCK: i64 = 0x6d61_736b_6400_0002;
/// The class of the advisory locks that keep two running nodes from one `node_id`.
pub(super) const NODE_LOCK_CLASS: i32 = 0x6d61_736b;
/// The channel NOTIFY wakes followers on; the payload is the writing node's id.
pub(super) const CHANNEL: &str = "maskd_changes";

pub const SCHEMA_VERSION: i32 = STEPS.len() as i32;

/// Brings the database to `SCHEMA_VERSION`, one transaction per step, under an advisory
/// lock held by one node at a time. A database newer than this maskd is refused.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let io = |e: tokio_postgres::Error| StoreError::Io(super::describe_error(&e));
    loop {
        let tx = client.transaction().await.map_err(io)?;
        // The lock first: two nodes creating the table itself at once collide too.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(io)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
               version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(io)?;
        let version: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(io)?
            .get(0);
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(StoreError::Corrupt(format!(
                "schema version {version} is not one this maskd knows (it knows up to {SCHEMA_VERSION})"
            )));
        }
        if version == SCHEMA_VERSION {
            return tx.commit().await.map_err(io);
        }
        tx.batch_execute(STEPS[version as usize])
            .await
            .map_err(io)?;
        if version + 1 == 7 {
            for statement in super::reports::backfill() {
                tx.batch_execute(&statement).await.map_err(io)?;
            }
        }
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(version + 1)],
        )
        .await
        .map_err(io)?;
        tx.commit().await.map_err(io)?;
    }
}

/// `INSERT … ON CONFLICT (key) DO UPDATE` of every other column: a whole-row replacement.
pub(super) fn upsert(table: &str, cols: &[&str], key: &[&str]) -> String {
    let values: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let set: Vec<String> = cols
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
        cols.join(", "),
        values.join(", "),
        key.join(", "),
        set.join(", ")
    )
}

/// `SELECT` of every column in this backend's order.
pub(super) fn select(table: &str, cols: &[&str]) -> String {
    format!("SELECT {} FROM {table}", cols.join(", "))
}
