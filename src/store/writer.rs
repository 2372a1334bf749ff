//! The group-commit writer both backends share. One thread takes every batch waiting in its
//! queue (up to a bound), hands them to the backend's `commit` as one transaction, then
//! completes each batch's `Durable`. So an API answer waits for one commit shared with its
//! neighbours, and batches become durable in submission order. Also what a group commits:
//! a session or interaction row written several times in it only needs its last version.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::core::sid::Sid;
use crate::core::store::{Completion, StoreError, WriteOp};

/// Batches waiting for the writer; submitters block beyond this (back-pressure), but while
/// the store is unreachable a batch of call logs nobody awaits (`droppable`) is dropped and
/// counted instead, so calls go on routing from memory through a long outage.
const QUEUE_BOUND: usize = 65_536;
/// Batches folded into one transaction at most.
const GROUP_MAX: usize = 1024;
/// When nobody waits on a batch (a call's log, written behind the call), the writer keeps
/// collecting for up to this long before it commits, so that one commit serves a whole
/// burst of calls. Anything awaited (an API answer, an SMPP acknowledgement) ends the wait.
const LAZY_WINDOW: Duration = Duration::from_millis(100);

pub(super) type Job = (Vec<WriteOp>, Option<Completion>);

/// A backend's commit of a group: the indexes of the jobs it refused, or why it failed.
type Commit<'a> = &'a mut dyn FnMut(&[Job]) -> Result<Vec<usize>, StoreError>;

/// The submitting half; dropping it (or `close`) stops the thread after it has committed
/// what was queued.
pub(super) struct Writer {
    tx: Mutex<Option<SyncSender<Job>>>,
    /// Whether the store takes writes (a shared store's server can go away for a while).
    up: Option<Arc<AtomicBool>>,
    /// Set with an awaited job: ends the writer's wait for company (see `LAZY_WINDOW`).
    urgent: Arc<AtomicBool>,
    thread: std::thread::Thread,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread. `commit` applies a group in one transaction; `on_fatal` is
    /// called once if it ever fails: the engine's memory is then ahead of the store, so the
    /// daemon must stop and rebuild from the store.
    /// `commit` returns the indexes of the jobs it refused (`StoreError::Conflict`): the
    /// others are committed.
    pub(super) fn spawn(
        mut commit: impl FnMut(&[Job]) -> Result<Vec<usize>, StoreError> + Send + 'static,
        on_fatal: Box<dyn Fn(StoreError) + Send>,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_BOUND);
        let urgent = Arc::new(AtomicBool::new(false));
        let flag = urgent.clone();
        let handle = std::thread::Builder::new()
            .name("maskd-store".into())
            .spawn(move || writer_loop(rx, &flag, &mut commit, on_fatal))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            up: None,
            urgent,
            thread: handle.thread().clone(),
            handle: Mutex::new(Some(handle)),
        })
    }

    /// The store says through `up` whether it takes writes now (see `QUEUE_BOUND`).
    pub(super) fn with_availability(mut self, up: Arc<AtomicBool>) -> Writer {
        self.up = Some(up);
        self
    }

    /// Queues a job; false if it was not taken (dropped while the store is down, see
    /// `QUEUE_BOUND`, or the writer has stopped).
    pub(super) fn submit(&self, ops: Vec<WriteOp>, done: Option<Completion>) -> bool {
        let tx = self.tx.lock().clone();
        match tx {
            // A send error means the writer is gone: dropping `done` fails its waiter.
            Some(tx) => {
                let awaited = done.is_some();
                let pending = &crate::metrics::get().store_pending;
                pending.inc();
                let down = self.up.as_ref().is_some_and(|u| !u.load(Ordering::SeqCst));
                if !awaited && down && droppable(&ops) {
                    match tx.try_send((ops, done)) {
                        Err(mpsc::TrySendError::Full(_)) => {
                            pending.dec();
                            crate::metrics::get().store_dropped.inc();
                            tracing::debug!(
                                "store unreachable and its queue full: a log write dropped"
                            );
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => pending.dec(),
                        Ok(()) => return true,
                    }
                    return false;
                }
                if tx.send((ops, done)).is_err() {
                    pending.dec();
                    return false;
                }
                if awaited {
                    self.urgent.store(true, Ordering::SeqCst);
                    self.thread.unpark();
                }
                true
            }
            None => {
                drop(done);
                false
            }
        }
    }

    /// Stops accepting writes and waits until everything queued is committed.
    pub(super) fn close(&self) {
        self.tx.lock().take();
        self.thread.unpark();
        if let Some(h) = self.handle.lock().take() {
            let _ = h.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Whether a batch is only a call's log (its interaction row, a whole-row replacement that
/// the call's next write repeats, and the session's touch, a merge the next activity
/// repeats): the one kind of write given up rather than waited for when the store is down
/// and the queue full. Callbacks, queue items and session changes always wait.
fn droppable(ops: &[WriteOp]) -> bool {
    !ops.is_empty()
        && ops.iter().all(|op| {
            matches!(
                op,
                WriteOp::PutInteraction(_) | WriteOp::TouchSession { .. }
            )
        })
}

fn writer_loop(
    rx: Receiver<Job>,
    urgent: &AtomicBool,
    commit: Commit<'_>,
    on_fatal: Box<dyn Fn(StoreError) + Send>,
) {
    let mut failed = false;
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(3600)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // An awaited job sent from here on sets `urgent` after it is in the channel; one
        // sent earlier is in the channel and drained below.
        urgent.store(false, Ordering::SeqCst);
        let mut jobs = vec![first];
        drain(&rx, &mut jobs);
        if jobs.iter().all(|j| j.1.is_none()) {
            // Parked, not blocked in `recv`: lazy submitters then cost no wake-up each.
            let until = Instant::now() + LAZY_WINDOW;
            loop {
                let now = Instant::now();
                if now >= until || urgent.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::park_timeout(until - now);
            }
            drain(&rx, &mut jobs);
        }
        let n = jobs.len() as i64;
        if failed {
            crate::metrics::get().store_pending.sub(n);
            for (_, done) in jobs {
                if let Some(d) = done {
                    d.complete(Err(StoreError::Closed));
                }
            }
            continue;
        }
        let started = Instant::now();
        let ops: usize = jobs.iter().map(|j| j.0.len()).sum();
        let result = commit(&jobs);
        crate::metrics::store_batch(started.elapsed().as_secs_f64(), ops);
        let refused = match &result {
            Ok(refused) => refused.as_slice(),
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; stopping writes");
                failed = true;
                on_fatal(e.clone());
                &[]
            }
        };
        crate::metrics::get().store_pending.sub(n);
        for (k, (_, done)) in jobs.into_iter().enumerate() {
            if let Some(d) = done {
                d.complete(match &result {
                    Ok(_) if refused.contains(&k) => Err(StoreError::Conflict),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.clone()),
                });
            }
        }
    }
}

fn drain(rx: &Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < GROUP_MAX {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// The ops of a group in order, but a session or interaction row written several times in
/// it (every message touches its session; a call's interaction changes at ringing, answer
/// and hang-up) only in its last version. Rows are whole-row replacements and there are no
/// foreign keys, so the result is the same.
pub(super) fn effective_ops(jobs: &[Job]) -> Vec<&WriteOp> {
    effective_ops_of(jobs, &[])
        .into_iter()
        .map(|(_, op)| op)
        .collect()
}

/// `effective_ops` of the jobs but those in `skip`, each with its job's index.
pub(super) fn effective_ops_of<'a>(jobs: &'a [Job], skip: &[usize]) -> Vec<(usize, &'a WriteOp)> {
    let replaced = |op: &WriteOp| match op {
        WriteOp::PutSession(v) => Some((0u8, v.sid)),
        WriteOp::PutInteraction(v) => Some((1u8, v.sid)),
        _ => None,
    };
    let kept = |j: &usize| !skip.contains(j);
    let mut last_put: HashMap<(u8, Sid), (usize, usize), foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(jobs.len(), Default::default());
    for (j, (ops, _)) in jobs.iter().enumerate().filter(|(j, _)| kept(j)) {
        for (k, op) in ops.iter().enumerate() {
            if let Some(key) = replaced(op) {
                last_put.insert(key, (j, k));
            }
        }
    }
    let mut out = Vec::new();
    for (j, (ops, _)) in jobs.iter().enumerate().filter(|(j, _)| kept(j)) {
        for (k, op) in ops.iter().enumerate() {
            match replaced(op) {
                Some(key) if last_put.get(&key) != Some(&(j, k)) => {}
                _ => out.push((j, op)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While the store is unreachable, a full queue drops the writes nobody awaits (counted)
    /// instead of blocking their submitter; once the store is back, what was queued commits.
    #[test]
    fn a_full_queue_drops_unawaited_writes_only_while_the_store_is_down() {
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let committed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = committed.clone();
        let mut first = true;
        let writer = Writer::spawn(
            move |jobs: &[Job]| {
                if std::mem::take(&mut first) {
                    // The store is down: the first commit waits until it is back.
                    let _ = entered_tx.send(());
                    let _ = gate_rx.recv();
                }
                c.fetch_add(jobs.len(), Ordering::SeqCst);
                Ok(Vec::new())
            },
            Box::new(|_| {}),
        )
        .unwrap();
        let up = Arc::new(AtomicBool::new(false));
        let writer = writer.with_availability(up.clone());
        let dropped = || crate::metrics::get().store_dropped.get();
        let before = dropped();
        // One job the writer takes into its (stuck) commit.
        writer.submit(Vec::new(), None);
        entered_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let log = || {
            vec![WriteOp::TouchSession {
                session: Sid::generate(crate::core::SidKind::Session),
                at: 1,
                follow: false,
            }]
        };
        for _ in 0..QUEUE_BOUND {
            writer.submit(log(), None);
        }
        assert_eq!(dropped(), before, "room for every one of them");
        writer.submit(log(), None);
        writer.submit(log(), None);
        assert_eq!(
            dropped(),
            before + 2,
            "past the bound, call logs dropped and counted"
        );

        up.store(true, Ordering::SeqCst);
        gate_tx.send(()).unwrap();
        writer.close();
        assert_eq!(committed.load(Ordering::SeqCst), 1 + QUEUE_BOUND);
    }

    #[test]
    fn only_call_logs_are_ever_dropped() {
        let touch = WriteOp::TouchSession {
            session: Sid::generate(crate::core::SidKind::Session),
            at: 1,
            follow: false,
        };
        assert!(droppable(std::slice::from_ref(&touch)));
        assert!(!droppable(&[]));
        assert!(!droppable(&[WriteOp::DeleteCallback(1)]));
        assert!(!droppable(&[touch, WriteOp::DeleteOutbound(1)]));
    }
}
