//! The writer's connection: a group committed as one transaction whose statements
//! (`ops.rs`) are pipelined (all sent before the first answer is read). A connection lost
//! mid-group is re-opened and the whole group sent again: every op is a whole-row
//! replacement, a delete or a merge, so a group that did commit before the loss commits to
//! the same rows twice.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement};

use super::ops::{changed, s, sql, statements, Param, ALL, KIND_SESSION, W};
use super::schema;
use crate::core::sid::Sid;
use crate::core::store::{StoreError, WriteOp};
use crate::store::writer::{effective_ops_of, Job};

macro_rules! params {
    ($($v:expr),* $(,)?) => { vec![$(Box::new($v) as Param),*] };
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
            if let (WriteOp::PutOutbound(_) | WriteOp::PutCallback(_), Some((_, p))) =
                (op, one.first_mut())
            {
                // The node that made it delivers it (or lets go of it) first.
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
    let c = match conn {
        Some(c) => c,
        None => {
            let client = super::connect(config).await?;
            let mut prepared = Vec::with_capacity(ALL.len());
            for w in ALL {
                prepared.push(client.prepare(&sql(*w)).await?);
            }
            conn.insert(Connected { client, prepared })
        }
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
