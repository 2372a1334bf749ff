//! The writer's connection: every statement an op becomes, prepared once per connection, and
//! a group committed as one transaction whose statements are pipelined (all sent before the
//! first answer is read). A connection lost mid-group is re-opened and the whole group sent
//! again: every op is a whole-row replacement or a delete, so a group that did commit before
//! the loss commits to the same rows twice.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement};

use super::schema;
use crate::core::model::ResourceStatus;
use crate::core::sid::Sid;
use crate::core::store::{StoreError, WriteOp};
use crate::store::origin_text;
use crate::store::writer::{effective_ops_of, Job};

type Param = Box<dyn ToSql + Sync + Send>;

macro_rules! params {
    ($($v:expr),* $(,)?) => { vec![$(Box::new($v) as Param),*] };
}

/// Statements the writer prepares on every connection, by index.
#[derive(Clone, Copy)]
enum W {
    PutService,
    PutNumber,
    DeleteNumber,
    PutSession,
    PutParticipant,
    PutInteraction,
    DeleteInteraction,
    PutOutbound,
    DeleteOutbound,
    SetOutboundStatus,
    PutRemoteRef,
    PutCallback,
    DeleteCallback,
    PutRecording,
    DeleteRecording,
    // A service's rows, then a session's: what DeleteService and DeleteSession become.
    ServiceOutbound,
    ServiceRemoteRefs,
    ServiceInteractions,
    ServiceParticipants,
    ServiceSessions,
    ServiceNumbers,
    ServiceRow,
    SessionOutbound,
    SessionRemoteRefs,
    SessionInteractions,
    SessionParticipants,
    SessionRow,
    // The change log: ordered by the lock, then the rows, then the wake-up.
    ChangesLock,
    Changes,
    Notify,
    TouchSession,
    ExpireSession,
    ReleaseOutbound,
    // Route keys: a session's as its rows now say; the service's and session's removal.
    SyncKeys,
    ServiceKeys,
    SessionKeys,
}

fn sql(w: W) -> String {
    use schema::*;
    let of_service = "SELECT sid FROM interactions WHERE service_sid = $1";
    let of_session = "SELECT sid FROM interactions WHERE session_sid = $1";
    match w {
        W::PutService => upsert("services", SERVICES, &["sid"]),
        W::PutNumber => upsert("numbers", NUMBERS, &["sid"]),
        W::DeleteNumber => "DELETE FROM numbers WHERE sid = $1".into(),
        W::PutSession => upsert("sessions", SESSIONS, &["sid"]),
        W::PutParticipant => upsert("participants", PARTICIPANTS, &["sid"]),
        W::PutInteraction => upsert("interactions", INTERACTIONS, &["sid"]),
        W::DeleteInteraction => "DELETE FROM interactions WHERE sid = $1".into(),
        W::PutOutbound => upsert("outbound", OUTBOUND, &["id"]),
        W::DeleteOutbound => "DELETE FROM outbound WHERE id = $1".into(),
        W::SetOutboundStatus => "UPDATE interactions SET out_status = $2,
            out_resource_sid = COALESCE($3, out_resource_sid), date_updated = $4 WHERE sid = $1"
            .into(),
        W::PutRemoteRef => upsert("remote_refs", REMOTE_REFS, &["peer", "remote_id"]),
        W::PutCallback => upsert("callbacks", CALLBACKS, &["id"]),
        W::DeleteCallback => "DELETE FROM callbacks WHERE id = $1".into(),
        W::PutRecording => upsert("recordings", RECORDINGS, &["sid"]),
        W::DeleteRecording => "DELETE FROM recordings WHERE sid = $1".into(),
        W::ServiceOutbound => {
            format!("DELETE FROM outbound WHERE interaction_sid IN ({of_service})")
        }
        W::ServiceRemoteRefs => {
            format!("DELETE FROM remote_refs WHERE interaction_sid IN ({of_service})")
        }
        W::ServiceInteractions => "DELETE FROM interactions WHERE service_sid = $1".into(),
        W::ServiceParticipants => "DELETE FROM participants WHERE service_sid = $1".into(),
        W::ServiceSessions => "DELETE FROM sessions WHERE service_sid = $1".into(),
        W::ServiceNumbers => "DELETE FROM numbers WHERE service_sid = $1".into(),
        W::ServiceRow => "DELETE FROM services WHERE sid = $1".into(),
        W::SessionOutbound => {
            format!("DELETE FROM outbound WHERE interaction_sid IN ({of_session})")
        }
        W::SessionRemoteRefs => {
            format!("DELETE FROM remote_refs WHERE interaction_sid IN ({of_session})")
        }
        W::SessionInteractions => "DELETE FROM interactions WHERE session_sid = $1".into(),
        W::SessionParticipants => "DELETE FROM participants WHERE session_sid = $1".into(),
        W::SessionRow => "DELETE FROM sessions WHERE sid = $1".into(),
        W::ChangesLock => format!("SELECT pg_advisory_xact_lock({})", schema::CHANGES_LOCK),
        W::Changes => "INSERT INTO changes (node, kind, sid)
            SELECT $1, k, s FROM unnest($2::text[], $3::text[]) AS t(k, s)"
            .into(),
        W::Notify => format!("SELECT pg_notify('{}', $1::int::text)", schema::CHANNEL),
        W::TouchSession => crate::store::sqlite::TOUCH_SESSION.replace('?', "$"),
        W::ReleaseOutbound => {
            "UPDATE outbound SET owner = NULL, next_hop = $2 WHERE id = $1".into()
        }
        W::ExpireSession => EXPIRE_SESSION.into(),
        W::SyncKeys => SYNC_KEYS.into(),
        W::ServiceKeys => "DELETE FROM route_keys WHERE session_sid IN
            (SELECT sid FROM sessions WHERE service_sid = $1)"
            .into(),
        W::SessionKeys => "DELETE FROM route_keys WHERE session_sid = $1".into(),
    }
}

const ALL: &[W] = &[
    W::PutService,
    W::PutNumber,
    W::DeleteNumber,
    W::PutSession,
    W::PutParticipant,
    W::PutInteraction,
    W::DeleteInteraction,
    W::PutOutbound,
    W::DeleteOutbound,
    W::SetOutboundStatus,
    W::PutRemoteRef,
    W::PutCallback,
    W::DeleteCallback,
    W::PutRecording,
    W::DeleteRecording,
    W::ServiceOutbound,
    W::ServiceRemoteRefs,
    W::ServiceInteractions,
    W::ServiceParticipants,
    W::ServiceSessions,
    W::ServiceNumbers,
    W::ServiceRow,
    W::SessionOutbound,
    W::SessionRemoteRefs,
    W::SessionInteractions,
    W::SessionParticipants,
    W::SessionRow,
    W::ChangesLock,
    W::Changes,
    W::Notify,
    W::TouchSession,
    W::ExpireSession,
    W::ReleaseOutbound,
    W::SyncKeys,
    W::ServiceKeys,
    W::SessionKeys,
];

/// A close by the timer wheel, applied only while the session is still active and its
/// deadline, by the row as committed, has passed ($4 is the close time, Unix seconds).
const EXPIRE_SESSION: &str = "UPDATE sessions SET status = $2, closed_reason = $3,
    date_ended = $4, date_updated = $5
  WHERE sid = $1 AND status IN ('open', 'in-progress')
    AND (CASE WHEN date_expiry IS NOT NULL THEN date_expiry
              WHEN ttl > 0 THEN COALESCE(date_last_interaction, date_created) + ttl END) <= $4";

/// Makes `route_keys` hold exactly the keys of session $1's live participants while it is
/// active: keys it no longer uses go, the others are claimed. Answers how many it could not
/// claim because another session holds them (the unique key refuses; a claim another
/// transaction is making waits for it to end).
const SYNC_KEYS: &str = "
WITH want AS (
  SELECT p.proxy, p.identifier FROM participants p JOIN sessions s ON s.sid = p.session_sid
  WHERE s.sid = $1 AND s.status IN ('open', 'in-progress') AND p.date_deleted IS NULL),
gone AS (
  DELETE FROM route_keys r WHERE r.session_sid = $1 AND NOT EXISTS
    (SELECT 1 FROM want w WHERE w.proxy = r.proxy AND w.identifier = r.identifier)),
mine AS (
  SELECT count(*) AS n FROM route_keys r JOIN want w
    ON w.proxy = r.proxy AND w.identifier = r.identifier WHERE r.session_sid = $1),
claimed AS (
  INSERT INTO route_keys (proxy, identifier, session_sid) SELECT proxy, identifier, $1 FROM want
  ON CONFLICT (proxy, identifier) DO NOTHING RETURNING 1)
SELECT (SELECT count(*) FROM want) - (SELECT n FROM mine) - (SELECT count(*) FROM claimed)";

/// What the change log says an op changed: `(kind, sid)`, a participant being its session.
fn changed(op: &WriteOp) -> Option<(&'static str, Sid)> {
    Some(match op {
        WriteOp::PutService(v) => (KIND_SERVICE, v.sid),
        WriteOp::DeleteService(sid) => (KIND_SERVICE, *sid),
        WriteOp::PutNumber(v) => (KIND_NUMBER, v.sid),
        WriteOp::DeleteNumber(sid) => (KIND_NUMBER, *sid),
        WriteOp::PutSession(v) | WriteOp::ExpireSession(v) => (KIND_SESSION, v.sid),
        WriteOp::TouchSession {
            session,
            follow: true,
            ..
        } => (KIND_SESSION, *session),
        WriteOp::DeleteSession(sid) => (KIND_SESSION, *sid),
        WriteOp::PutParticipant(v) => (KIND_SESSION, v.session_sid),
        _ => return None,
    })
}

pub(super) const KIND_SERVICE: &str = "service";
pub(super) const KIND_NUMBER: &str = "number";
pub(super) const KIND_SESSION: &str = "session";

fn s(sid: &Sid) -> String {
    sid.to_string()
}
fn os(sid: &Option<Sid>) -> Option<String> {
    sid.as_ref().map(Sid::to_string)
}
fn st(status: &Option<ResourceStatus>) -> Option<&'static str> {
    status.map(ResourceStatus::as_str)
}
fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The statements one op becomes, in order.
fn statements(op: &WriteOp, out: &mut Vec<(W, Vec<Param>)>) {
    match op {
        WriteOp::PutService(v) => out.push((
            W::PutService,
            params![
                s(&v.sid),
                big(v.seq),
                v.unique_name.clone(),
                v.callback_url.clone(),
                big(v.default_ttl),
                v.geo_match_level.as_str(),
                v.number_selection_behavior.as_str(),
                v.intercept_callback_url.clone(),
                v.out_of_session_callback_url.clone(),
                v.chat_instance_sid.clone(),
                big(v.cooloff),
                v.date_created,
                v.date_updated,
                v.record
            ],
        )),
        WriteOp::DeleteService(sid) => {
            for w in [
                W::ServiceKeys,
                W::ServiceOutbound,
                W::ServiceRemoteRefs,
                W::ServiceInteractions,
                W::ServiceParticipants,
                W::ServiceSessions,
                W::ServiceNumbers,
                W::ServiceRow,
            ] {
                out.push((w, params![s(sid)]));
            }
        }
        WriteOp::PutNumber(v) => out.push((
            W::PutNumber,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.service_sid),
                big(v.number.as_u64()),
                v.friendly_name.clone(),
                v.is_reserved,
                v.date_created,
                v.date_updated
            ],
        )),
        WriteOp::DeleteNumber(sid) => out.push((W::DeleteNumber, params![s(sid)])),
        WriteOp::PutSession(v) => out.push((
            W::PutSession,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.service_sid),
                v.unique_name.clone(),
                v.status.as_str(),
                v.mode.as_str(),
                big(v.ttl),
                v.date_expiry,
                v.date_started,
                v.date_ended,
                v.date_last_interaction,
                v.closed_reason.as_str(),
                v.date_created,
                v.date_updated,
                v.record
            ],
        )),
        WriteOp::TouchSession { session, at, .. } => {
            out.push((W::TouchSession, params![s(session), *at]))
        }
        WriteOp::ExpireSession(v) => out.push((
            W::ExpireSession,
            params![
                s(&v.sid),
                v.status.as_str(),
                v.closed_reason.as_str(),
                v.date_ended.unwrap_or(v.date_updated),
                v.date_updated
            ],
        )),
        WriteOp::DeleteSession(sid) => {
            // The queue and receipt rows of its messages hold real numbers: they go too.
            for w in [
                W::SessionKeys,
                W::SessionOutbound,
                W::SessionRemoteRefs,
                W::SessionInteractions,
                W::SessionParticipants,
                W::SessionRow,
            ] {
                out.push((w, params![s(sid)]));
            }
        }
        WriteOp::PutParticipant(v) => out.push((
            W::PutParticipant,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.session_sid),
                s(&v.service_sid),
                big(v.identifier.as_u64()),
                v.friendly_name.clone(),
                big(v.proxy.as_u64()),
                s(&v.proxy_sid),
                v.date_deleted,
                v.date_created,
                v.date_updated
            ],
        )),
        WriteOp::PutInteraction(v) => out.push((
            W::PutInteraction,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.session_sid),
                s(&v.service_sid),
                v.data.clone(),
                v.kind.as_str(),
                os(&v.inbound.participant_sid),
                v.inbound.resource_sid.clone(),
                st(&v.inbound.resource_status),
                v.inbound.resource_type.clone(),
                v.inbound.resource_url.clone(),
                os(&v.outbound.participant_sid),
                v.outbound.resource_sid.clone(),
                st(&v.outbound.resource_status),
                v.outbound.resource_type.clone(),
                v.outbound.resource_url.clone(),
                os(&v.message_participant_sid),
                v.date_created,
                v.date_updated
            ],
        )),
        WriteOp::DeleteInteraction(sid) => out.push((W::DeleteInteraction, params![s(sid)])),
        WriteOp::PutOutbound(o) => out.push((
            W::PutOutbound,
            params![
                big(o.id),
                s(&o.interaction),
                big(o.from.as_u64()),
                big(o.to.as_u64()),
                o.via.clone(),
                o.origin.as_ref().map(origin_text),
                o.payload.clone(),
                o.created,
                // The owner, filled in by `PgWriter::statements_of`.
                0i32
            ],
        )),
        WriteOp::DeleteOutbound(id) => out.push((W::DeleteOutbound, params![big(*id)])),
        WriteOp::ReleaseOutbound { id, via } => {
            out.push((W::ReleaseOutbound, params![big(*id), via.clone()]))
        }
        WriteOp::SetOutboundStatus {
            interaction,
            status,
            resource_sid,
            at,
        } => out.push((
            W::SetOutboundStatus,
            params![s(interaction), status.as_str(), resource_sid.clone(), *at],
        )),
        WriteOp::PutRemoteRef(r) => out.push((
            W::PutRemoteRef,
            params![
                r.peer.clone(),
                r.remote_id.clone(),
                s(&r.interaction),
                r.origin.as_ref().map(origin_text)
            ],
        )),
        WriteOp::PutCallback(c) => out.push((
            W::PutCallback,
            params![
                big(c.id),
                s(&c.interaction),
                c.url.clone(),
                c.params.as_deref().map(crate::core::callback::encode),
                c.outbound.as_ref().map(|o| o.0.as_str()),
                c.outbound.as_ref().and_then(|o| o.1.clone()),
                c.outbound.as_ref().map(|o| o.2),
                c.created
            ],
        )),
        WriteOp::DeleteCallback(id) => out.push((W::DeleteCallback, params![big(*id)])),
        WriteOp::PutRecording(v) => out.push((
            W::PutRecording,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.session_sid),
                s(&v.service_sid),
                v.call_sid.clone(),
                v.status.as_str(),
                v.start_ms,
                v.duration.map(big),
                v.error_code.map(i64::from),
                v.reason.clone(),
                v.date_created,
                v.date_updated
            ],
        )),
        WriteOp::DeleteRecording(sid) => out.push((W::DeleteRecording, params![s(sid)])),
    }
}

struct Connected {
    client: Client,
    prepared: Vec<Statement>,
}

/// The writer thread's side: its own single-threaded runtime and connection.
pub(super) struct PgWriter {
    rt: tokio::runtime::Runtime,
    config: Config,
    conn: Option<Connected>,
    node: i32,
    /// Whether the server takes writes (see `Store::available`).
    up: Arc<AtomicBool>,
}

impl PgWriter {
    pub(super) fn new(
        config: Config,
        node: u16,
        up: Arc<AtomicBool>,
    ) -> Result<PgWriter, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(PgWriter {
            rt,
            config,
            conn: None,
            node: i32::from(node),
            up,
        })
    }

    /// Brings the schema up to date (see `schema::migrate`).
    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
        let config = &self.config;
        self.rt.block_on(async {
            let mut client = super::connect(config)
                .await
                .map_err(|e| StoreError::Io(super::describe_error(&e)))?;
            schema::migrate(&mut client).await
        })
    }

    /// Commits a group, re-opening a lost connection and sending the group again until the
    /// server is back (the store says it is unavailable meanwhile; what is submitted queues
    /// behind), and sending it again at once after a deadlock between nodes. An
    /// awaited job whose route keys another node's session holds is refused (its index is
    /// returned) and the group is sent again without it; another error the server gives on
    /// a live connection is not retried.
    pub(super) fn commit(&mut self, jobs: &[Job]) -> Result<Vec<usize>, StoreError> {
        let mut refused: Vec<usize> = Vec::new();
        let mut pause = Duration::from_millis(50);
        let mut deadlocks = 0;
        loop {
            let list = self.statements_of(jobs, &refused);
            let result = self
                .rt
                .block_on(attempt(&self.config, &mut self.conn, &list));
            let lost = matches!(&result, Err(e) if super::connection_lost(e))
                || self.conn.as_ref().is_none_or(|c| c.client.is_closed());
            match result {
                Ok(Outcome::Committed) => {
                    if !self.up.swap(true, Ordering::SeqCst) {
                        tracing::info!("store reachable again; writes resumed");
                    }
                    return Ok(refused);
                }
                Ok(Outcome::Refused(more)) => refused.extend(more),
                Err(e) if lost => {
                    if self.up.swap(false, Ordering::SeqCst) {
                        tracing::warn!(error = %super::describe_error(&e), "store connection lost; re-opening it (writes wait)");
                    }
                    self.conn = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) if super::retry_now(&e) && deadlocks < 20 => deadlocks += 1,
                Err(e) => return Err(StoreError::Io(super::describe_error(&e))),
            }
        }
    }

    /// The statements of every job not in `skip`, in order: each job's ops, then the sync
    /// of the route keys of each session it touched; the change log's rows last.
    fn statements_of(&self, jobs: &[Job], skip: &[usize]) -> Vec<Statement_> {
        let mut list: Vec<Statement_> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let (mut kinds, mut sids) = (Vec::new(), Vec::new());
        let mut touched: Vec<Sid> = Vec::new();
        let mut current = None;

        let flush = |list: &mut Vec<Statement_>, touched: &mut Vec<Sid>, job: Option<usize>| {
            if let Some(j) = job {
                let awaited = jobs[j].1.is_some();
                for sid in touched.drain(..) {
                    list.push((W::SyncKeys, params![s(&sid)], Some(Tag::Sync(j, awaited))));
                }
            }
        };
        for (j, op) in effective_ops_of(jobs, skip) {
            if current != Some(j) {
                flush(&mut list, &mut touched, current);
                current = Some(j);
            }
            let mut one = Vec::new();
            statements(op, &mut one);
            if let (WriteOp::PutOutbound(_), Some((_, p))) = (op, one.first_mut()) {
                // The accepting node delivers it (or lets go of it) first.
                if let Some(owner) = p.last_mut() {
                    *owner = Box::new(self.node);
                }
            }

            let tag = |w: W| match (w, op) {
                (W::ExpireSession, WriteOp::ExpireSession(v)) => Some(Tag::Expire(v.sid)),
                _ => None,
            };
            list.extend(one.into_iter().map(|(w, p)| (w, p, tag(w))));
            let session = match op {
                WriteOp::PutSession(v) | WriteOp::ExpireSession(v) => Some(v.sid),
                WriteOp::PutParticipant(v) => Some(v.session_sid),
                _ => None,
            };
            if let Some(sid) = session.filter(|sid| !touched.contains(sid)) {
                touched.push(sid);
            }
            if let Some((kind, sid)) = changed(op) {
                if seen.insert((kind, sid)) {
                    kinds.push(kind.to_string());
                    sids.push(sid.to_string());
                }
            }
        }
        flush(&mut list, &mut touched, current);
        if !kinds.is_empty() {
            // Last, so the lock is held only for the log rows and the commit.
            list.push((W::ChangesLock, Vec::new(), None));
            list.push((W::Changes, params![self.node, kinds, sids], None));
            list.push((W::Notify, params![self.node], None));
        }
        list
    }
}

/// A statement, its parameters and what its answer decides.
type Statement_ = (W, Vec<Param>, Option<Tag>);

enum Tag {
    /// A route-key sync: the job it belongs to and whether anyone awaits that job.
    Sync(usize, bool),
    /// A close by the timer wheel of this session: if the store did not take it, every
    /// node reads the session again.
    Expire(Sid),
}

enum Outcome {
    Committed,
    /// Awaited jobs whose route keys other sessions hold: rolled back, send without them.
    Refused(Vec<usize>),
}

async fn attempt(
    config: &Config,
    conn: &mut Option<Connected>,
    list: &[Statement_],
) -> Result<Outcome, tokio_postgres::Error> {
    if conn.is_none() {
        let client = super::connect(config).await?;
        let mut prepared = Vec::with_capacity(ALL.len());
        for w in ALL {
            prepared.push(client.prepare(&sql(*w)).await?);
        }
        *conn = Some(Connected { client, prepared });
    }
    let Some(c) = conn.as_mut() else {
        unreachable!("connected above")
    };
    let tx = c.client.transaction().await?;
    type Answer<'a> = std::pin::Pin<
        Box<dyn Future<Output = Result<Option<i64>, tokio_postgres::Error>> + Send + 'a>,
    >;
    // Each statement sends its request when first polled: poll them all once, in order, so
    // the whole group is on the wire before the first answer is awaited; then take the
    // answers in order.
    let mut pending: Vec<Answer<'_>> = list
        .iter()
        .map(|(w, p, sync)| {
            let stmt = &c.prepared[*w as usize];
            let tx = &tx;
            let answer: Answer<'_> = if matches!(sync, Some(Tag::Sync(..))) {
                Box::pin(async move {
                    let params: Vec<&(dyn ToSql + Sync)> = p
                        .iter()
                        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    tx.query_one(stmt, &params)
                        .await
                        .map(|r| Some(r.get::<_, i64>(0)))
                })
            } else {
                Box::pin(async move {
                    let params = p.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync));
                    tx.execute_raw(stmt, params)
                        .await
                        .map(|n| Some(i64::try_from(n).unwrap_or(i64::MAX)))
                })
            };
            answer
        })
        .collect();
    let mut early = Vec::with_capacity(pending.len());
    std::future::poll_fn(|cx| {
        for f in pending.iter_mut() {
            early.push(match f.as_mut().poll(cx) {
                std::task::Poll::Ready(r) => Some(r),
                std::task::Poll::Pending => None,
            });
        }
        std::task::Poll::Ready(())
    })
    .await;
    let mut refused = Vec::new();
    let mut reread = Vec::new();
    for ((f, done), (_, _, tag)) in pending.iter_mut().zip(early).zip(list) {
        let answer = match done {
            Some(r) => r?,
            None => f.await?,
        };
        if let (Some(Tag::Expire(sid)), Some(0)) = (tag, answer) {
            reread.push(sid.to_string());
        }
        if let (Some(Tag::Sync(job, awaited)), Some(lost)) = (tag, answer) {
            if lost > 0 && *awaited {
                if !refused.contains(job) {
                    refused.push(*job);
                }
            } else if lost > 0 {
                // Nobody waits to be told (a call's log): kept, without the keys.
                tracing::warn!("a session's route keys are held by another node's session");
            }
        }
    }
    drop(pending);
    if refused.is_empty() {
        tx.commit().await?;
        if !reread.is_empty() {
            // Another node closed these first, or activity there moved their deadline:
            // every node, this one included (node 0 is none), reads them again.
            let tx = c.client.transaction().await?;
            tx.execute(&c.prepared[W::ChangesLock as usize], &[])
                .await?;
            let kinds = vec![KIND_SESSION.to_string(); reread.len()];
            tx.execute(&c.prepared[W::Changes as usize], &[&0i32, &kinds, &reread])
                .await?;
            tx.execute(&c.prepared[W::Notify as usize], &[&0i32])
                .await?;
            tx.commit().await?;
        }
        Ok(Outcome::Committed)
    } else {
        tx.rollback().await?;
        Ok(Outcome::Refused(refused))
    }
}
