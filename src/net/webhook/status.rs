//! The status callback sender: a durable queue in the store, ordered per interaction (across
//! nodes too), retried with backoff, bounded in memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::{Answer, Webhooks};
use crate::core::callback::CallbackItem;
use crate::core::engine::CallbackSink;
use crate::core::store::WriteOp;
use crate::core::Sid;
use crate::spill::{Admit, Pass, Spill};

/// Status callbacks in flight at once, over all interactions.
const MAX_IN_FLIGHT: usize = 32;
/// Retries back off from 1 s, doubling, to at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A status callback that still fails after this long is dropped (logged, counted).
const GIVE_UP_AFTER_S: i64 = 24 * 3600;

/// The engine's handle for status callbacks: items go to the sender task.
pub struct StatusSink(mpsc::UnboundedSender<Vec<CallbackItem>>);

impl CallbackSink for StatusSink {
    fn queued(&self, items: Vec<CallbackItem>) {
        let _ = self.0.send(items);
    }
}

enum Done {
    /// Delivered, refused for good, or given up: leaves the queue.
    Finished,
    Retry,
    /// Several nodes: an earlier callback of its interaction waits on another node (or the
    /// store cannot say now): it tries again shortly, with no attempt counted.
    HeldBack,
    /// Several nodes: these callbacks of its interaction, held here behind it, the store
    /// took before it (claimed from a node gone silent): they go first, in this order.
    After(Vec<u64>),
    /// Several nodes: another node claimed it (this one seemed silent): it leaves this
    /// queue without being sent, and its row stays for that node.
    Elsewhere,
}

struct Queued {
    item: CallbackItem,
    attempts: u32,
}

/// Starts the status callback sender: what the store still holds from before a restart
/// first, then whatever the engine queues. Returns the sink to connect to the engine.
pub fn start_status_sender(
    wh: Arc<Webhooks>,
    stop: watch::Receiver<bool>,
    cap: usize,
) -> Arc<StatusSink> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (claimed_tx, claimed_rx) = mpsc::unbounded_channel();
    if wh.engine.store().shared() {
        tokio::spawn(claim_loop(wh.clone(), claimed_tx, stop.clone()));
    }
    // The loop starts by reading what the store still holds from before a restart.
    tokio::spawn(status_loop(wh, rx, claimed_rx, stop, cap));
    Arc::new(StatusSink(tx))
}

/// The sender's memory: per interaction its callbacks in order (only the head is ever in
/// flight), a heap of the heads that may be sent and when, and the memory bound.
struct Queues {
    by_interaction: HashMap<Sid, VecDeque<Queued>>,
    /// (when, interaction): one entry per interaction whose head is waiting to be sent.
    ready: BinaryHeap<Reverse<(Instant, Sid)>>,
    /// At most `cap` callbacks in memory; past that the store is the queue, read back in id
    /// order (the order the engine queued them in) once memory is half empty.
    spill: Spill,
    /// Callbacks a sweep read from the store before the engine's hand-over of them came
    /// (the engine submits the write, then hands the item over): that hand-over is
    /// ignored, so a callback read, sent and finished is never sent again.
    from_store: HashSet<u64>,
    /// The highest id the engine handed over: only newer ones read from the store can
    /// still have their hand-over coming (ids are handed over in the order they are made,
    /// give or take requests racing each other), so only those are remembered in
    /// `from_store`; none before the first hand-over (the store then holds what was queued
    /// before a restart, which never comes that way).
    max_handed: Option<u64>,
}

impl Queues {
    /// A callback the engine queued (its store write submitted before): held in memory if
    /// there is room, else left to the store for a sweep.
    fn push(&mut self, item: CallbackItem) {
        self.max_handed = Some(self.max_handed.map_or(item.id, |m| m.max(item.id)));
        if self.from_store.remove(&item.id) || self.spill.holds(item.id) {
            return;
        }
        let was_spilled = self.spill.spilled();
        if self.spill.reserve(item.id) == Admit::Store && !was_spilled {
            tracing::warn!(
                cap = self.spill.cap(),
                "status callback queue full in memory; the rest wait in the store"
            );
        }
        // Durable as far as a sweep is concerned: every sweep read follows a barrier that
        // waits for the writes submitted before it.
        if self.spill.durable(item.id) {
            self.hold(item);
        }
    }

    /// Puts a callback in memory behind its interaction's earlier ones.
    fn hold(&mut self, item: CallbackItem) {
        let sid = item.interaction;
        let q = self.by_interaction.entry(sid).or_default();
        q.push_back(Queued { item, attempts: 0 });
        if q.len() == 1 {
            self.ready.push(Reverse((Instant::now(), sid)));
        }
    }

    /// Takes the head of `sid` out (finished), readying the next one.
    fn pop(&mut self, sid: Sid) -> Option<Queued> {
        let q = self.by_interaction.get_mut(&sid)?;
        let h = q.pop_front()?;
        self.spill.done(h.item.id);
        if q.is_empty() {
            self.by_interaction.remove(&sid);
        } else {
            self.ready.push(Reverse((Instant::now(), sid)));
        }
        Some(h)
    }

    /// Reads the store back into memory while the bound asks for it (see `Spill`), after a
    /// barrier so that everything queued so far is durable.
    async fn sweep(&mut self, wh: &Webhooks, first_read: &mut bool) {
        if !self.spill.start_sweep() {
            return;
        }
        let mut from = 0u64;
        loop {
            let mut cursor = from;
            let full = loop {
                self.spill.begin_read();
                let store = wh.engine.store().clone();
                let after = cursor;
                let read = match wh.engine.record(vec![], None).await {
                    Ok(()) => tokio::task::spawn_blocking(move || {
                        store.callbacks_after(after, SWEEP_CHUNK)
                    })
                    .await
                    .ok(),
                    Err(_) => None,
                };
                let items = match read {
                    Some(Ok(items)) => items,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "cannot read the status callback queue");
                        self.spill.abort();
                        return;
                    }
                    None => {
                        self.spill.abort();
                        return;
                    }
                };
                let n = items.len();
                if std::mem::take(first_read) && n > 0 {
                    tracing::info!(
                        count = n,
                        "status callbacks pending from before the restart"
                    );
                }
                let ids: Vec<u64> = items.iter().map(|i| i.id).collect();
                let (looked, taken) = self.spill.take(&ids);
                for (item, take) in items.into_iter().zip(taken) {
                    cursor = item.id;
                    if take {
                        if self.max_handed.is_some_and(|m| item.id > m) {
                            self.from_store.insert(item.id);
                        }
                        self.hold(item);
                    }
                }
                let full = looked < n;
                if full || n < SWEEP_CHUNK {
                    break full;
                }
            };
            match self.spill.end_pass(full) {
                Pass::Stop => return,
                Pass::From(m) => from = m,
            }
        }
    }
}

/// Callbacks read from the store at a time when it is read back into memory.
const SWEEP_CHUNK: usize = 1024;

/// Delivers status callbacks: at most `MAX_IN_FLIGHT` at once, one per interaction, retried
/// with backoff. Memory holds at most `cap` of them; past that the store is the queue, read
/// back in id order (the order the engine queued them in) once memory is half empty.
async fn status_loop(
    wh: Arc<Webhooks>,
    mut rx: mpsc::UnboundedReceiver<Vec<CallbackItem>>,
    mut claimed: mpsc::UnboundedReceiver<Vec<CallbackItem>>,
    mut stop: watch::Receiver<bool>,
    cap: usize,
) {
    let shared = wh.engine.store().shared();
    let mut qs = Queues {
        by_interaction: HashMap::new(),
        ready: BinaryHeap::new(),
        spill: Spill::new(cap),
        from_store: HashSet::new(),
        max_handed: None,
    };
    let mut first_read = true;
    let mut in_flight = 0usize;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Sid, Done)>();
    let gauge = &crate::metrics::get().callback_queue_depth;
    loop {
        let now = Instant::now();
        while in_flight < MAX_IN_FLIGHT {
            match qs.ready.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => break,
            }
            let Some(Reverse((_, sid))) = qs.ready.pop() else {
                break;
            };
            let Some(q) = qs.by_interaction.get(&sid) else {
                continue;
            };
            let Some(head) = q.front() else {
                continue;
            };
            // Several nodes: the ones held here behind it, in case the store took one of
            // them first.
            let behind: Vec<u64> = if shared {
                q.iter().skip(1).map(|x| x.item.id).collect()
            } else {
                Vec::new()
            };
            in_flight += 1;
            let (wh, item, done) = (wh.clone(), head.item.clone(), done_tx.clone());
            tokio::spawn(async move {
                let wait = if shared {
                    held_back(&wh, &item, &behind).await
                } else {
                    None
                };
                let result = match wait {
                    Some(w) => w,
                    None => send_status(&wh, &item).await,
                };
                let _ = done.send((sid, result));
            });
        }
        // Memory at most half full and callbacks wait in the store: read them back.
        qs.sweep(&wh, &mut first_read).await;
        gauge.set(qs.spill.depth() as i64);
        let next_wake = if in_flight < MAX_IN_FLIGHT {
            qs.ready
                .peek()
                .map_or(now + Duration::from_secs(3600), |Reverse((at, _))| *at)
        } else {
            now + Duration::from_secs(3600)
        };
        tokio::select! {
            Some(items) = rx.recv() => {
                for item in items {
                    qs.push(item);
                }
            }
            Some(items) = claimed.recv() => {
                for item in items {
                    if qs.spill.adopt(item.id) {
                        qs.hold(item);
                    }
                }
            }
            Some((sid, result)) = done_rx.recv() => {
                in_flight -= 1;
                match result {
                    Done::Finished => {
                        if let Some(h) = qs.pop(sid) {
                            wh.engine.record_behind(vec![WriteOp::DeleteCallback(h.item.id)], None);
                        }
                    }
                    Done::Elsewhere => {
                        qs.pop(sid);
                    }
                    Done::HeldBack => {
                        let Some(h) = qs.by_interaction.get(&sid).and_then(|q| q.front()) else { continue };
                        let age = (crate::clock::now_ms() / 1000) - h.item.created;
                        if age > GIVE_UP_AFTER_S {
                            // An earlier callback elsewhere never went: this one is not
                            // held back for ever.
                            tracing::warn!(interaction = %h.item.interaction, "status callback held back for a day; given up");
                            crate::metrics::get().callbacks.with_label_values(&[queue_kind(&h.item), "dropped"]).inc();
                            if let Some(h) = qs.pop(sid) {
                                wh.engine.record_behind(vec![WriteOp::DeleteCallback(h.item.id)], None);
                            }
                        } else {
                            qs.ready.push(Reverse((Instant::now() + HELD_BACK_PAUSE, sid)));
                        }
                    }
                    Done::After(first) => {
                        if let Some(q) = qs.by_interaction.get_mut(&sid) {
                            let mut front = Vec::with_capacity(first.len());
                            for id in &first {
                                if let Some(k) = q.iter().position(|x| x.item.id == *id) {
                                    front.extend(q.remove(k));
                                }
                            }
                            for x in front.into_iter().rev() {
                                q.push_front(x);
                            }
                        }
                        qs.ready.push(Reverse((Instant::now(), sid)));
                    }
                    Done::Retry => {
                        let Some(h) = qs.by_interaction.get_mut(&sid).and_then(|q| q.front_mut()) else { continue };
                        h.attempts += 1;
                        let age = (crate::clock::now_ms() / 1000) - h.item.created;
                        if age > GIVE_UP_AFTER_S {
                            tracing::warn!(interaction = %h.item.interaction, attempts = h.attempts, "status callback given up");
                            crate::metrics::get().callbacks.with_label_values(&[queue_kind(&h.item), "dropped"]).inc();
                            if let Some(h) = qs.pop(sid) {
                                wh.engine.record_behind(vec![WriteOp::DeleteCallback(h.item.id)], None);
                            }
                        } else {
                            let backoff = Duration::from_secs(1 << h.attempts.min(9)).min(MAX_BACKOFF);
                            qs.ready.push(Reverse((Instant::now() + backoff, sid)));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(next_wake.into()) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The metrics label of a queued callback: an interaction's status, or a recording's
/// (queued under the recording's SID, so the two never share an order).
fn queue_kind(item: &CallbackItem) -> &'static str {
    if item.interaction.to_string().starts_with("RE") {
        "recording"
    } else {
        "status"
    }
}

/// How long a callback held back for an earlier one on another node waits to look again.
const HELD_BACK_PAUSE: Duration = Duration::from_millis(200);
/// Callbacks of nodes gone silent taken over at a time.
const CLAIM: usize = 256;

/// Several nodes: whether `item` must wait. An interaction's callbacks go in the order the
/// store took them, whichever node made them: one waits while an earlier one is another
/// node's to send, and goes behind earlier ones held here (`behind`: taken over from a node
/// gone silent after it was queued).
async fn held_back(wh: &Webhooks, item: &CallbackItem, behind: &[u64]) -> Option<Done> {
    let read = || {
        let store = wh.engine.store().clone();
        let id = item.id;
        tokio::task::spawn_blocking(move || store.callbacks_before(id))
    };
    let mut before = read().await;
    if matches!(before, Ok(Ok(None))) {
        // Handed over before its write committed: once everything submitted so far is
        // durable, it is there, or gone: claimed by another node (this one seemed
        // silent) and sent from there.
        if wh.engine.record(vec![], None).await.is_err() {
            return Some(Done::HeldBack);
        }
        before = read().await;
    }
    let before = match before {
        Ok(Ok(Some((true, before)))) => before,
        Ok(Ok(Some((false, _)) | None)) => {
            tracing::info!(interaction = %item.interaction, "status callback claimed by another node; not sent from here");
            return Some(Done::Elsewhere);
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot read a status callback's order; trying again");
            return Some(Done::HeldBack);
        }
        Err(_) => return Some(Done::HeldBack),
    };
    if before.iter().any(|(_, mine)| !mine) {
        crate::metrics::get().callbacks_held_back.inc();
        return Some(Done::HeldBack);
    }
    // Mine and not held behind it: sent already, its row's delete on its way.
    let first: Vec<u64> = before
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| behind.contains(id))
        .collect();
    (!first.is_empty()).then_some(Done::After(first))
}

/// Several nodes: takes over the status callbacks of nodes gone silent (silent for
/// `store.node_timeout`), looking every second, and hands them to the sender.
async fn claim_loop(
    wh: Arc<Webhooks>,
    tx: mpsc::UnboundedSender<Vec<CallbackItem>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let store = wh.engine.store().clone();
        let mut full = false;
        match tokio::task::spawn_blocking(move || store.claim_callbacks(CLAIM)).await {
            Ok(Ok(items)) if !items.is_empty() => {
                full = items.len() == CLAIM;
                tracing::info!(
                    count = items.len(),
                    "status callbacks taken over from a node gone silent"
                );
                crate::metrics::get()
                    .callbacks_claimed
                    .inc_by(items.len() as u64);
                if tx.send(items).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot look for status callbacks to take over")
            }
            _ => {}
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

async fn send_status(wh: &Webhooks, item: &CallbackItem) -> Done {
    let Some((url, params)) = wh.status_request(item).await else {
        // The interaction or the service's callback URL is gone: nothing to send.
        return Done::Finished;
    };
    match wh.post(queue_kind(item), &url, &params).await {
        Answer::Status(code, ..) if code == 429 || code >= 500 => Done::Retry,
        // Twilio ignores the answer: any other status means the receiver has it.
        Answer::Status(..) => Done::Finished,
        Answer::Timeout | Answer::Failed => Done::Retry,
    }
}
