//! Following the other nodes: a connection of its own LISTENs on the change log's channel
//! and holds this node's advisory lock (two running nodes never share a `node_id`). On each
//! wake-up, and every second regardless, it reads the log past the last sequence applied,
//! fetches the current rows of what other nodes changed in one consistent snapshot and
//! hands them to the engine, which leaves alone the rows this node has changed since (they
//! are read again once its writes are committed: see `local`). After a lost connection it re-opens, re-LISTENs and catches up
//! from the same sequence, so no change is missed; a node whose sequence fell behind the
//! pruned horizon cannot catch up and reports it (the daemon restarts and reloads).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use super::local::LocalWrites;
use super::ops::{KIND_KEY, KIND_NUMBER, KIND_SERVICE, KIND_SESSION};
use super::read;
use super::schema::{self, select, API_KEYS, NUMBERS, PARTICIPANTS, SERVICES, SESSIONS};
use crate::core::model::{Participant, Session};
use crate::core::sid::Sid;
use crate::core::store::{FollowFn, Followed, StoreError};

/// Log rows read per round.
const ROUND: i64 = 5000;
/// How often the log is read without a wake-up (a lost NOTIFY costs at most this).
const POLL: Duration = Duration::from_secs(1);
/// Rows older than this are pruned; a node away longer reloads.
const RETENTION: &str = "1 hour";

/// A connection that LISTENs and holds the node's lock, with its wake-ups.
pub(super) struct Listener {
    client: Client,
    wake: tokio::sync::mpsc::UnboundedReceiver<()>,
}

/// Opens the listening connection: takes `node`'s lock (refusing a node id another running
/// node holds) and LISTENs.
pub(super) async fn listen(config: &Config, node: u16) -> Result<Listener, StoreError> {
    let io = |e: tokio_postgres::Error| StoreError::Io(super::describe_error(&e));
    let (client, mut connection) = config.connect(NoTls).await.map_err(io)?;
    let (tx, wake) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(_)) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %super::describe_error(&e), "follow connection closed");
                    break;
                }
            }
        }
    });
    let held: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&schema::NODE_LOCK_CLASS, &i32::from(node)],
        )
        .await
        .map_err(io)?
        .get(0);
    if !held {
        return Err(StoreError::Io(format!(
            "store.node_id {node} is in use by another running node"
        )));
    }
    client
        .batch_execute(&format!("LISTEN {}", schema::CHANNEL))
        .await
        .map_err(io)?;
    alive(&client, node).await.map_err(io)?;
    Ok(Listener { client, wake })
}

/// Records that `node` runs (see `PgStore::open_with`).
async fn alive(client: &Client, node: u16) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO nodes VALUES ($1, now()) ON CONFLICT (node) DO UPDATE SET seen_at = now()",
            &[&i32::from(node)],
        )
        .await
        .map(drop)
}

/// The highest sequence in the log: where a node that has just loaded starts following.
pub(super) async fn head(client: &Client) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM changes", &[])
        .await
        .map(|r| r.get(0))
}

/// What a node's following needs.
pub(super) struct Following {
    pub(super) config: Config,
    pub(super) node: u16,
    /// Hands the other nodes' changes to the engine.
    pub(super) apply: FollowFn,
    /// This node's own writes of followed rows.
    pub(super) local: Arc<LocalWrites>,
    /// Told when this node can no longer catch up.
    pub(super) on_fatal: Arc<dyn Fn(StoreError) + Send + Sync>,
    /// Kept up to date as the store's health probe.
    pub(super) up: Arc<AtomicBool>,
    /// How often the node records that it runs.
    pub(super) alive_every: Duration,
}

/// Runs until the runtime stops: applies other nodes' changes after `from`.
pub(super) async fn run(f: Following, mut listener: Option<Listener>, mut from: i64) {
    let Following {
        config,
        node,
        apply,
        local,
        on_fatal,
        up,
        alive_every,
    } = f;
    let apply = Arc::new(apply);
    let mut pause = Duration::from_millis(100);
    let mut last_prune = tokio::time::Instant::now();
    let mut last_alive = tokio::time::Instant::now();
    loop {
        let mut l = match listener.take() {
            Some(l) => l,
            None => match listen(&config, node).await {
                Ok(l) => l,
                Err(e) => {
                    // Also the store's health probe: the writer learns only when it writes.
                    up.store(false, Ordering::SeqCst);
                    tracing::warn!(error = %e, "cannot follow the other nodes yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        };
        pause = Duration::from_millis(100);
        loop {
            match catch_up(&l.client, node, &mut from, &apply, &local).await {
                Ok(Some(behind)) => {
                    on_fatal(StoreError::Io(format!(
                        "this node applied the change log up to {from} but it was pruned \
                         up to {behind}: restart to reload"
                    )));
                    return;
                }
                Ok(None) => up.store(true, Ordering::SeqCst),
                Err(e) => {
                    up.store(false, Ordering::SeqCst);
                    tracing::warn!(error = %super::describe_error(&e), "following the other nodes failed; re-opening");
                    break;
                }
            }
            if last_alive.elapsed() > alive_every {
                last_alive = tokio::time::Instant::now();
                if let Err(e) = alive(&l.client, node).await {
                    tracing::warn!(error = %super::describe_error(&e), "cannot record this node as running");
                }
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = tokio::time::Instant::now();
                let _ = l
                    .client
                    .batch_execute(&format!(
                        "WITH d AS (DELETE FROM changes WHERE at < now() - interval '{RETENTION}'
                           RETURNING seq)
                         UPDATE change_horizon SET pruned =
                           GREATEST(pruned, (SELECT COALESCE(MAX(seq), 0) FROM d))"
                    ))
                    .await;
                // The report counters' deltas, folded (`reports`).
                if let Err(e) = l.client.batch_execute(&super::reports::compact_sql()).await {
                    tracing::warn!(error = %super::describe_error(&e), "cannot fold the report counters");
                    let _ = l.client.batch_execute("ROLLBACK").await;
                }
            }
            if l.client.is_closed() {
                break;
            }
            tokio::select! {
                w = l.wake.recv() => {
                    if w.is_none() {
                        break;
                    }
                    // Several wake-ups waiting are one read.
                    while l.wake.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// A row this node changed while another node's change of it was read is read again once
/// this node's write is committed: waiting for that at most this long,
const SETTLE_WAIT: Duration = Duration::from_secs(2);
/// a session at most this many times before it is read under the engine's lock instead,
const SESSION_ROUNDS: u32 = 3;
/// and a service or number at most this many times (then this node's newer write stands).
const MAX_ROUNDS: u32 = 20;

/// Applies every other node's change after `from`; `Some(horizon)` if the log no longer
/// holds them all.
async fn catch_up(
    client: &Client,
    node: u16,
    from: &mut i64,
    apply: &Arc<FollowFn>,
    local: &LocalWrites,
) -> Result<Option<i64>, tokio_postgres::Error> {
    loop {
        let rows = client
            .query(
                "SELECT seq, node, kind, sid FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&*from, &ROUND],
            )
            .await?;
        let horizon: i64 = client
            .query_one("SELECT pruned FROM change_horizon", &[])
            .await?
            .get(0);
        if horizon > *from {
            return Ok(Some(horizon));
        }
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        let last: i64 = last.get(0);
        let (mut services, mut numbers, mut sessions) = (Vec::new(), Vec::new(), Vec::new());
        let mut keys = Vec::new();
        let mut reread = Vec::new();
        let mut seen = HashSet::new();
        for r in &rows {
            let writer: i32 = r.get(1);
            if writer == i32::from(node) {
                continue;
            }
            let (kind, sid): (&str, &str) = (r.get(2), r.get(3));
            let Some(sid) = Sid::parse_any(sid) else {
                continue;
            };
            if writer == 0 {
                // Every node reads these again itself (see `Followed::Reread`).
                if !reread.contains(&sid) {
                    reread.push(sid);
                }
                continue;
            }
            if !seen.insert((kind.to_string(), sid)) {
                continue;
            }
            match kind {
                KIND_SERVICE => services.push(sid),
                KIND_NUMBER => numbers.push(sid),
                KIND_SESSION => sessions.push(sid),
                KIND_KEY => keys.push(sid),
                _ => {}
            }
        }
        let mut round = 0;
        while !(services.is_empty() && numbers.is_empty() && sessions.is_empty() && keys.is_empty())
        {
            round += 1;
            // Held until the rows are installed.
            let mark = local.mark();
            let followed = fetch(client, &services, &numbers, &sessions, &keys, true).await?;
            // The engine's lock may be held by one of its rare reads through this runtime
            // (`Followed::Reread`, a refused change): applying waits off its thread.
            let apply = apply.clone();
            let epoch = mark.epoch;
            let left = tokio::task::spawn_blocking(move || apply(followed, epoch))
                .await
                .unwrap_or_default();
            drop(mark);
            // Rows this node changed meanwhile: read again once its writes are committed.
            let sids: Vec<Sid> = left.iter().map(Followed::sid).collect();
            local.wait_settled(&sids, SETTLE_WAIT).await;
            (services, numbers, sessions) = (Vec::new(), Vec::new(), Vec::new());
            keys = Vec::new();
            for f in left {
                match f {
                    Followed::Service(sid, _) => services.push(sid),
                    Followed::Number(sid, _) => numbers.push(sid),
                    Followed::Key(sid, _) => keys.push(sid),
                    // A session this node keeps changing: read under the engine's lock,
                    // behind its writes.
                    Followed::Session(sid, _) if round >= SESSION_ROUNDS => {
                        if !reread.contains(&sid) {
                            reread.push(sid);
                        }
                    }
                    Followed::Session(sid, _) => sessions.push(sid),
                    Followed::Reread(_) => {}
                }
            }
            if round >= MAX_ROUNDS
                && !(services.is_empty() && numbers.is_empty() && keys.is_empty())
            {
                tracing::warn!(
                    services = services.len(),
                    numbers = numbers.len(),
                    "rows this node keeps changing left as this node has them"
                );
                break;
            }
        }
        if !reread.is_empty() {
            // The engine reads them through this runtime (blocking): off its thread.
            let rereads: Vec<Followed> = reread.into_iter().map(Followed::Reread).collect();
            let apply = apply.clone();
            let _ = tokio::task::spawn_blocking(move || apply(rereads, 0)).await;
        }
        *from = last;
        if (rows.len() as i64) < ROUND {
            return Ok(None);
        }
    }
}

/// The current rows of what changed, with `snapshot` read in one snapshot (on a connection
/// nobody else uses): services first, then numbers, then sessions with their participants
/// (the order the engine applies them in).
async fn fetch(
    client: &Client,
    services: &[Sid],
    numbers: &[Sid],
    sessions: &[Sid],
    keys: &[Sid],
    snapshot: bool,
) -> Result<Vec<Followed>, tokio_postgres::Error> {
    let text = |v: &[Sid]| v.iter().map(Sid::to_string).collect::<Vec<_>>();
    if snapshot {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
    }
    let result = async {
        let mut out = Vec::new();
        let by_sid = format!("{} WHERE sid = ANY($1)", select("services", SERVICES));
        let mut found: HashMap<Sid, _> = HashMap::new();
        for r in client.query(by_sid.as_str(), &[&text(services)]).await? {
            if let Ok(s) = read::service(&r) {
                found.insert(s.sid, s);
            }
        }
        out.extend(
            services
                .iter()
                .map(|sid| Followed::Service(*sid, found.remove(sid))),
        );
        let by_sid = format!("{} WHERE sid = ANY($1)", select("numbers", NUMBERS));
        let mut found: HashMap<Sid, _> = HashMap::new();
        for r in client.query(by_sid.as_str(), &[&text(numbers)]).await? {
            if let Ok(n) = read::number(&r) {
                found.insert(n.sid, n);
            }
        }
        out.extend(
            numbers
                .iter()
                .map(|sid| Followed::Number(*sid, found.remove(sid))),
        );
        if !keys.is_empty() {
            let by_sid = format!("{} WHERE sid = ANY($1)", select("api_keys", API_KEYS));
            let mut found: HashMap<Sid, _> = HashMap::new();
            for r in client.query(by_sid.as_str(), &[&text(keys)]).await? {
                if let Ok(k) = read::key(&r) {
                    found.insert(k.sid, k);
                }
            }
            out.extend(
                keys.iter()
                    .map(|sid| Followed::Key(*sid, found.remove(sid))),
            );
        }
        let by_sid = format!("{} WHERE sid = ANY($1)", select("sessions", SESSIONS));
        let mut found: HashMap<Sid, _> = HashMap::new();
        for r in client.query(by_sid.as_str(), &[&text(sessions)]).await? {
            if let Ok(s) = read::session(&r) {
                found.insert(s.sid, (s, Vec::new()));
            }
        }
        let of = format!(
            "{} WHERE session_sid = ANY($1)",
            select("participants", PARTICIPANTS)
        );
        for r in client.query(of.as_str(), &[&text(sessions)]).await? {
            if let Ok(p) = read::participant(&r) {
                if let Some(entry) = found.get_mut(&p.session_sid) {
                    entry.1.push(p);
                }
            }
        }
        out.extend(
            sessions
                .iter()
                .map(|sid| Followed::Session(*sid, found.remove(sid))),
        );
        Ok(out)
    }
    .await;
    if snapshot {
        client.batch_execute("COMMIT").await?;
    }
    result
}

/// One session and its participants as committed, read in one snapshot.
pub(super) async fn session_rows(
    client: &Client,
    sid: Sid,
) -> Result<Option<(Session, Vec<Participant>)>, tokio_postgres::Error> {
    // On the shared reader connection: no transaction of its own (others' reads interleave);
    // a participant written between the two reads is followed in a moment anyway.
    let followed = fetch(client, &[], &[], &[sid], &[], false).await?;
    Ok(followed.into_iter().find_map(|f| match f {
        Followed::Session(_, rows) => rows,
        _ => None,
    }))
}
