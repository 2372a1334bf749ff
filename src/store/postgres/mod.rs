//! PostgreSQL behind `core::Store` (`store.url: postgres://…`), for several nodes sharing one
//! database. Writes go through the shared group-commit writer (`../writer.rs`), whose thread
//! owns a connection and a single-threaded runtime (`write.rs`). Reads run on a second
//! connection owned by a reader thread with its own runtime: a read, called from any thread
//! (a tokio worker included), is handed to that runtime and waited for, so no runtime is
//! ever entered from inside another. Both connections are re-opened when lost and their
//! statements prepared again.

mod follow;
mod local;
mod ops;
mod read;
mod reader;
mod reports;
mod schema;
mod startup;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row};

use super::writer::Writer;
use crate::core::callback::CallbackItem;
use crate::core::model::{Interaction, Recording};
use crate::core::sid::Sid;
use crate::core::store::{
    Completion, FollowFn, InteractionQuery, Loaded, OutboundItem, RecordingQuery, RemoteRef,
    Snapshot, Store, StoreError, WriteOp,
};
pub use schema::SCHEMA_VERSION;
use schema::*;

type Param = Box<dyn ToSql + Sync + Send>;

use reader::{Reader, Sql, R};

/// `store.node_timeout`'s default: longer than any pause a running node makes in recording
/// that it runs.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// An error's text for logs and answers: the server's message and code when it gave one.
pub(super) fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Whether `e` means the connection is gone (the server shut it down or restarts, the
/// socket failed, a connect failed): worth a new connection, unlike an error in a query.
pub(super) fn connection_lost(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        // 08: connection exception; 57: operator intervention (admin or crash shutdown,
        // cannot connect now).
        Some(db) => matches!(&db.code().code()[..2], "08" | "57"),
        None => true,
    }
}

/// Whether `e` is a deadlock or serialization failure between nodes' transactions: the
/// server rolled back; sending the same work again is right.
pub(super) fn retry_now(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(db.code().code(), "40P01" | "40001"))
}

/// The URL's target without its password, for logs and error messages.
pub fn describe_url(url: &str) -> String {
    match Config::from_str(url) {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .unwrap_or_default();
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "postgres://{}@{host}:{port}/{}",
                c.get_user().unwrap_or(""),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "postgres://(unreadable URL)".into(),
    }
}

/// Parses `store.url`; the error says what is wrong without echoing a password.
pub fn parse_url(url: &str) -> Result<Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".into());
    }
    let mut c = Config::from_str(url).map_err(|e| format!("is not a PostgreSQL URL: {e}"))?;
    if c.get_hosts().is_empty() {
        return Err("names no host".into());
    }
    // A dead peer is noticed within a minute even when no query is in flight, and a
    // connection attempt does not hang.
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(5));
    }
    c.keepalives(true)
        .keepalives_idle(Duration::from_secs(15))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    if c.get_application_name().is_none() {
        c.application_name("maskd");
    }
    Ok(c)
}

/// Opens a connection and drives it on the current runtime.
async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %describe_error(&e), "store connection closed");
        }
    });
    Ok(client)
}

/// The PostgreSQL store. Dropping it stops the writer after it has committed what was
/// queued, then the reader.
pub struct PgStore {
    writer: Writer,
    /// This node's writes of followed rows, for following (see `local`).
    local: Arc<local::LocalWrites>,
    reader: Arc<Reader>,
    node: u16,
    /// The listening connection, from `open` until `follow` takes it.
    listener: Mutex<Option<follow::Listener>>,
    /// The change log's head when `load` began: following starts after it.
    follow_from: std::sync::atomic::AtomicI64,
    on_fatal: Arc<dyn Fn(StoreError) + Send + Sync>,
    /// Whether the server takes writes (the writer and the follower keep it).
    up: Arc<std::sync::atomic::AtomicBool>,
    /// A node silent this long is gone: the others claim its queued messages.
    node_timeout: Duration,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    reader_thread: Mutex<Option<JoinHandle<()>>>,
    target: String,
}

impl PgStore {
    /// Connects to `url`, migrates the schema and starts the writer and the reader, as node
    /// `node` (unique among the running nodes: another node holding it is refused).
    /// `on_fatal` is called once if a commit fails for good (see `Writer::spawn`) or this
    /// node can no longer follow the others.
    pub fn open(
        url: &str,
        node: u16,
        on_fatal: Box<dyn Fn(StoreError) + Send>,
    ) -> Result<PgStore, StoreError> {
        PgStore::open_with(url, node, NODE_TIMEOUT, on_fatal)
    }

    /// `open`, with how long a node may be silent before the others take over its queued
    /// messages (`store.node_timeout`; it records that it runs a third as often).
    pub fn open_with(
        url: &str,
        node: u16,
        node_timeout: Duration,
        on_fatal: Box<dyn Fn(StoreError) + Send>,
    ) -> Result<PgStore, StoreError> {
        let config = parse_url(url).map_err(|e| StoreError::Io(format!("store.url {e}")))?;
        let fatal = Arc::new(Mutex::new(on_fatal));
        let for_writer = fatal.clone();
        let on_fatal: Arc<dyn Fn(StoreError) + Send + Sync> = Arc::new(move |e| (fatal.lock())(e));
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut writer = write::PgWriter::new(config.clone(), node, up.clone())?;
        writer.migrate()?;
        let local = Arc::new(local::LocalWrites::default());
        let settled = local.clone();
        let writer = Writer::spawn(
            move |jobs| {
                let result = writer.commit(jobs);
                settled.done(jobs.iter().map(|(ops, _)| ops.as_slice()));
                result
            },
            Box::new(move |e| (for_writer.lock())(e)),
        )?
        .with_availability(up.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let reader = Arc::new(Reader {
            handle: rt.handle().clone(),
            node,
            config,
            conn: tokio::sync::Mutex::new(None),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("maskd-store-read".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                })
            })
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let store = PgStore {
            writer,
            local,
            reader,
            node,
            listener: Mutex::new(None),
            follow_from: std::sync::atomic::AtomicI64::new(0),
            on_fatal,
            up,
            node_timeout,
            stop: Mutex::new(Some(stop)),
            reader_thread: Mutex::new(Some(thread)),
            target: describe_url(url),
        };
        // Fail at open, not at the first read, when the reads cannot be prepared or the
        // node id is taken.
        store.rows(Sql::Prepared(R::OutboundCount), Vec::new())?;
        let config = store.reader.config.clone();
        let listener = store.on_reader(async move { follow::listen(&config, node).await })??;
        *store.listener.lock() = Some(listener);
        Ok(store)
    }

    /// Runs `fut` on the reader's runtime and waits for it.
    fn on_reader<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.reader.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| StoreError::Closed)
    }

    /// Where this store is, without a password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Stops accepting writes, waits until everything queued is committed, then stops the
    /// reader.
    pub fn close(&self) {
        self.writer.close();
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.reader_thread.lock().take() {
            let _ = t.join();
        }
    }

    /// Runs a read on the reader's runtime and waits for its rows.
    fn rows(&self, sql: Sql, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        let reader = self.reader.clone();
        self.on_reader(async move { reader.query(&sql, &params).await })?
            .map_err(|e| {
                if connection_lost(&e) {
                    StoreError::Unavailable(describe_error(&e))
                } else {
                    StoreError::Io(describe_error(&e))
                }
            })
    }

    fn rows_as<T>(
        &self,
        sql: Sql,
        params: Vec<Param>,
        decode: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.rows(sql, params)?.iter().map(decode).collect()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn p<T: ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
}

impl Store for PgStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        // The log's head first: whatever commits while the rest is read is applied again
        // when following starts (applying a change twice is harmless).
        let reader = self.reader.clone();
        let head = self
            .on_reader(async move {
                let c = reader.connection().await?;
                follow::head(&c.client).await
            })?
            .map_err(|e| StoreError::Io(describe_error(&e)))?;
        self.follow_from
            .store(head, std::sync::atomic::Ordering::SeqCst);
        let mut snap = Snapshot {
            services: self.rows_as(
                Sql::Text(format!("{} ORDER BY seq", select("services", SERVICES))),
                Vec::new(),
                read::service,
            )?,
            numbers: self.rows_as(
                Sql::Text(format!("{} ORDER BY seq", select("numbers", NUMBERS))),
                Vec::new(),
                read::number,
            )?,
            keys: self.rows_as(
                Sql::Text(format!("{} ORDER BY seq", select("api_keys", API_KEYS))),
                Vec::new(),
                read::key,
            )?,
            ..Snapshot::default()
        };
        let counts = self.rows(
            Sql::Text(
                "SELECT (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM participants),
                 GREATEST((SELECT MAX(seq) FROM services), (SELECT MAX(seq) FROM numbers),
                   (SELECT MAX(seq) FROM sessions), (SELECT MAX(seq) FROM participants),
                   (SELECT MAX(seq) FROM interactions), (SELECT MAX(id) FROM outbound),
                   (SELECT MAX(id) FROM callbacks), (SELECT MAX(seq) FROM recordings),
                   (SELECT MAX(seq) FROM api_keys))"
                    .into(),
            ),
            Vec::new(),
        )?;
        let row = counts
            .first()
            .ok_or_else(|| StoreError::Corrupt("no counts".into()))?;
        let n = |i: usize| -> Result<u64, StoreError> {
            let v: Option<i64> = row
                .try_get(i)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(v.unwrap_or(0).max(0) as u64)
        };
        snap.sessions = n(0)? as usize;
        snap.participants = n(1)? as usize;
        snap.max_seq = n(2)?;
        Ok(snap)
    }

    fn load_rows(&self, each: &mut dyn FnMut(Loaded)) -> Result<(), StoreError> {
        // Streamed from the reader's runtime through a bounded channel: a million rows are
        // never all in memory at once.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Loaded, StoreError>>(4096);
        let reader = self.reader.clone();
        self.reader.handle.spawn(async move {
            use futures_util::{pin_mut, TryStreamExt};
            let stream_all = async {
                let c = reader.connection().await?;
                for (table, cols) in [("sessions", SESSIONS), ("participants", PARTICIPANTS)] {
                    let rows = c
                        .client
                        .query_raw(select(table, cols).as_str(), std::iter::empty::<i64>())
                        .await?;
                    pin_mut!(rows);
                    while let Some(row) = rows.try_next().await? {
                        let item = if table == "sessions" {
                            read::session(&row).map(Loaded::Session)
                        } else {
                            read::participant(&row).map(Loaded::Participant)
                        };
                        // The blocking send waits for the engine: fine on this thread, which
                        // serves nothing else while the store loads.
                        let stop = item.is_err();
                        if tx.send(item).is_err() || stop {
                            return Ok(());
                        }
                    }
                }
                Ok::<(), tokio_postgres::Error>(())
            };
            if let Err(e) = stream_all.await {
                let _ = tx.send(Err(StoreError::Io(describe_error(&e))));
            }
        });
        for item in rx {
            each(item?);
        }
        Ok(())
    }

    fn close(&self) {
        PgStore::close(self);
    }

    fn shared(&self) -> bool {
        true
    }

    fn available(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn session_rows(
        &self,
        sid: Sid,
    ) -> Result<
        Option<(
            crate::core::model::Session,
            Vec<crate::core::model::Participant>,
        )>,
        StoreError,
    > {
        let reader = self.reader.clone();
        let rows = self.on_reader(async move {
            let c = reader.connection().await?;
            follow::session_rows(&c.client, sid).await
        })?;
        rows.map_err(|e| StoreError::Io(describe_error(&e)))
    }

    fn claim_outbound(
        &self,
        peers: &[String],
        limit: usize,
    ) -> Result<Vec<OutboundItem>, StoreError> {
        // Unclaimed messages for these peers, and those of nodes silent for longer than a
        // node runs without its store, oldest first; a message another node is claiming
        // is skipped.
        let sql = format!(
            "UPDATE outbound SET owner = $1 WHERE id IN (
               SELECT id FROM outbound
               WHERE (owner IS NULL AND next_hop = ANY($2))
                  OR (owner IS NOT NULL AND owner <> $1 AND owner NOT IN (
                      SELECT node FROM nodes
                      WHERE seen_at > now() - interval '1 millisecond' * {gone_ms}))
               ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {cols}",
            cols = OUTBOUND.join(", "),
            gone_ms = self.node_timeout.as_millis()
        );
        let mut items = self.rows_as(
            Sql::Text(sql),
            vec![
                p(i32::from(self.node)),
                p(peers.to_vec()),
                p(big(limit as u64)),
            ],
            read::outbound,
        )?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    fn callbacks_before(&self, id: u64) -> Result<Option<(bool, Vec<(u64, bool)>)>, StoreError> {
        let rows = self.rows(Sql::Prepared(R::CallbacksBefore), vec![p(big(id))])?;
        let mut before = Vec::with_capacity(rows.len());
        let mut still_mine = None;
        for r in &rows {
            let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt(e.to_string());
            let me: bool = r.try_get(0).map_err(corrupt)?;
            still_mine = Some(me);
            let id: Option<i64> = r.try_get(1).map_err(corrupt)?;
            let mine: Option<bool> = r.try_get(2).map_err(corrupt)?;
            if let (Some(id), Some(mine)) = (id, mine) {
                before.push((id as u64, mine));
            }
        }
        Ok(still_mine.map(|me| (me, before)))
    }

    fn claim_callbacks(&self, limit: usize) -> Result<Vec<CallbackItem>, StoreError> {
        // The callbacks of nodes silent for longer than a node runs without its store, in
        // the order the store took them; one another node is claiming is skipped.
        let sql = format!(
            "UPDATE callbacks SET owner = $1 WHERE id IN (
               SELECT id FROM callbacks
               WHERE COALESCE(owner, (id & 1023)::int) <> $1
                 AND COALESCE(owner, (id & 1023)::int) NOT IN (
                 SELECT node FROM nodes
                 WHERE seen_at > now() - interval '1 millisecond' * {gone_ms})
               ORDER BY pos LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING {cols}, pos",
            cols = CALLBACKS.join(", "),
            gone_ms = self.node_timeout.as_millis()
        );
        let rows = self.rows(
            Sql::Text(sql),
            vec![p(i32::from(self.node)), p(big(limit as u64))],
        )?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let pos: i64 = r
                .try_get(CALLBACKS.len())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.push((pos, read::callback(r)?));
        }
        items.sort_by_key(|(pos, _)| *pos);
        Ok(items.into_iter().map(|(_, i)| i).collect())
    }

    fn startup_lock(&self) -> Result<Option<Box<dyn std::any::Any + Send>>, StoreError> {
        let lock = startup::take(self.reader.config.clone())?;
        Ok(Some(Box::new(lock)))
    }

    fn route_owner(
        &self,
        proxy: crate::core::E164,
        identifier: crate::core::E164,
    ) -> Result<Option<Sid>, StoreError> {
        let rows = self.rows(
            Sql::Text(
                "SELECT session_sid FROM route_keys WHERE proxy = $1 AND identifier = $2".into(),
            ),
            vec![p(big(proxy.as_u64())), p(big(identifier.as_u64()))],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.try_get::<_, &str>(0).ok())
            .and_then(Sid::parse_any))
    }

    fn written_here_since(&self, sid: Sid, mark: u64) -> bool {
        self.local.newer_here(sid, mark)
    }

    fn follow(&self, apply: FollowFn) -> Result<(), StoreError> {
        let listener = self.listener.lock().take();
        let from = self.follow_from.load(std::sync::atomic::Ordering::SeqCst);
        let following = follow::Following {
            config: self.reader.config.clone(),
            node: self.node,
            apply,
            local: self.local.clone(),
            on_fatal: self.on_fatal.clone(),
            up: self.up.clone(),
            alive_every: (self.node_timeout / 3).min(Duration::from_secs(5)),
        };
        self.reader
            .handle
            .spawn(follow::run(following, listener, from));
        Ok(())
    }

    fn submit(&self, ops: Vec<WriteOp>, done: Option<Completion>) {
        // Announced before the writer can commit it (see `local`).
        let rows = self.local.submitted(&ops);
        if !self.writer.submit(ops, done) {
            self.local.abandoned(&rows);
        }
    }

    fn interactions(&self, q: InteractionQuery) -> Result<Vec<Interaction>, StoreError> {
        let read = if q.before_seq.is_some() {
            R::InteractionsDescending
        } else {
            R::InteractionsAscending
        };
        let mut rows = self.rows_as(
            Sql::Prepared(read),
            vec![
                p(q.session.to_string()),
                p(q.message_participant.map(|s| s.to_string())),
                p(big(q.after_seq)),
                p(q.before_seq.map_or(i64::MAX, big)),
                p(big(q.limit as u64)),
            ],
            read::interaction,
        )?;
        if q.before_seq.is_some() {
            rows.reverse();
        }
        Ok(rows)
    }

    fn interaction(&self, sid: Sid) -> Result<Option<Interaction>, StoreError> {
        let rows = self.rows_as(
            Sql::Prepared(R::Interaction),
            vec![p(sid.to_string())],
            read::interaction,
        )?;
        Ok(rows.into_iter().next())
    }

    fn call_interaction(&self, call_sid: &str) -> Result<Option<Interaction>, StoreError> {
        let rows = self.rows_as(
            Sql::Prepared(R::CallInteraction),
            vec![p(call_sid.to_string())],
            read::interaction,
        )?;
        Ok(rows.into_iter().next())
    }

    fn queued_messages(&self) -> Result<Vec<Interaction>, StoreError> {
        self.rows_as(
            Sql::Prepared(R::QueuedMessages),
            Vec::new(),
            read::interaction,
        )
    }

    fn outbound_after(&self, after: u64, limit: usize) -> Result<Vec<OutboundItem>, StoreError> {
        self.rows_as(
            Sql::Prepared(R::OutboundAfter),
            vec![p(big(after)), p(big(limit as u64))],
            read::outbound,
        )
    }

    fn outbound_count(&self) -> Result<u64, StoreError> {
        let rows = self.rows(Sql::Prepared(R::OutboundCount), Vec::new())?;
        let n: i64 = rows
            .first()
            .and_then(|r| r.try_get(0).ok())
            .ok_or_else(|| StoreError::Corrupt("COUNT(*) gave no row".into()))?;
        Ok(n.max(0) as u64)
    }

    fn remote_ref(&self, peer: &str, remote_id: &str) -> Result<Option<RemoteRef>, StoreError> {
        let rows = self.rows_as(
            Sql::Prepared(R::RemoteRef),
            vec![p(peer.to_string()), p(remote_id.to_string())],
            read::remote_ref,
        )?;
        Ok(rows.into_iter().next())
    }

    fn callbacks_after(&self, after: u64, limit: usize) -> Result<Vec<CallbackItem>, StoreError> {
        self.rows_as(
            Sql::Prepared(R::CallbacksAfter),
            vec![p(big(after)), p(big(limit as u64))],
            read::callback,
        )
    }

    fn recording(&self, sid: Sid) -> Result<Option<Recording>, StoreError> {
        let rows = self.rows_as(
            Sql::Prepared(R::Recording),
            vec![p(sid.to_string())],
            read::recording,
        )?;
        Ok(rows.into_iter().next())
    }

    fn report_counts(
        &self,
        q: &crate::core::reports::ReportQuery,
    ) -> Result<Vec<crate::core::reports::ReportCount>, StoreError> {
        self.rows_as(
            Sql::Text(reports::COUNTS.into()),
            reports::query_params(q),
            reports::count,
        )
    }

    fn fold_reports(&self) -> Result<(), StoreError> {
        let reader = self.reader.clone();
        self.on_reader(async move {
            let c = reader.connection().await?;
            let r = c.client.batch_execute(&reports::compact_sql()).await;
            if r.is_err() {
                let _ = c.client.batch_execute("ROLLBACK").await;
            }
            r
        })?
        .map_err(|e| StoreError::Io(describe_error(&e)))
    }

    fn contacts(
        &self,
        q: &crate::core::reports::ContactQuery,
    ) -> Result<Vec<crate::core::reports::Contact>, StoreError> {
        self.rows_as(
            Sql::Text(reports::CONTACTS.into()),
            reports::contact_params(q),
            reports::contact,
        )
    }

    fn recordings(&self, q: &RecordingQuery) -> Result<Vec<Recording>, StoreError> {
        let mut sql = format!("{} WHERE true", select("recordings", RECORDINGS));
        let mut args: Vec<Param> = Vec::new();
        let mut cond = |clause: &str, v: Param| {
            args.push(v);
            sql.push_str(&format!(" AND {clause} ${}", args.len()));
        };
        if let Some(c) = &q.call_sid {
            cond("call_sid =", p(c.clone()));
        }
        if let Some(sid) = q.session {
            cond("session_sid =", p(sid.to_string()));
        }
        if let Some(s) = q.status {
            cond("status =", p(s.as_str()));
        }
        if let Some(t) = q.created_from {
            cond("date_created >=", p(t));
        }
        if let Some(t) = q.created_before {
            cond("date_created <", p(t));
        }
        if let Some(t) = q.started_before_ms {
            cond("start_ms <", p(t));
        }
        if let Some(s) = q.below_seq {
            cond("seq <", p(big(s)));
        }
        if let Some(s) = q.above_seq {
            cond("seq >", p(big(s)));
        }
        if q.made_here {
            // Stamps carry their node in their low bits (`core::engine::NODE_BITS`).
            cond(
                &format!("(seq & {}) =", (1i64 << crate::core::engine::NODE_BITS) - 1),
                p(i64::from(self.node)),
            );
        }
        let ascending = q.above_seq.is_some() && q.below_seq.is_none();
        sql.push_str(if ascending {
            " ORDER BY seq ASC"
        } else {
            " ORDER BY seq DESC"
        });
        args.push(p(big(q.limit as u64)));
        sql.push_str(&format!(" LIMIT ${}", args.len()));
        let mut rows = self.rows_as(Sql::Text(sql), args, read::recording)?;
        if ascending {
            rows.reverse();
        }
        Ok(rows)
    }
}
