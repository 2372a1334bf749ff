//! The outbound queue's memory half. Every queued message is in the store; at most
//! `smpp.max_queued_in_memory` of them are also held in memory (in the dispatcher's channel
//! or being delivered). Past that the store is the queue, and a sweep reads it back in id
//! order as memory frees up.

use std::sync::Arc;
use std::time::Duration;

use super::SmppPlane;
use crate::core::store::OutboundItem;
use crate::spill::{Admit, Pass, Spill};

/// Rows read from the store at a time when it is read back into memory.
const SWEEP_CHUNK: usize = 1024;

/// The outbound queue's memory: the bound (`crate::spill::Spill`, shared with the status
/// callback queue) and the gauges.
pub(super) struct Held(Spill);

impl Held {
    /// An empty memory half of `cap` slots; what the store holds from before a restart is
    /// read back by a sweep.
    pub(super) fn new(cap: usize) -> Held {
        Held(Spill::new(cap))
    }

    /// `pending` messages are in the store from before the start: the sweep started next
    /// reads them back.
    pub(super) fn found_at_start(&mut self, pending: u64) {
        self.0.found_at_start(pending);
        let started = self.0.start_sweep();
        debug_assert!(started, "a new queue is spilled and empty");
    }

    /// Whether memory is full and the store is the queue.
    pub(super) fn spilled(&self) -> bool {
        self.0.spilled()
    }

    pub(super) fn gauges(&self) {
        let m = crate::metrics::get();
        m.smpp_queue_in_memory.set(self.0.in_memory() as i64);
        m.smpp_queue_depth.set(self.0.depth() as i64);
    }
}

impl SmppPlane {
    /// Gives a message about to be written to the queue in the store a slot in memory, if
    /// there is one (and nothing older waits in the store). Without one it is left to the
    /// store and a sweep. Either way [`dispatch`](Self::dispatch) or
    /// [`release`](Self::release) follows the write.
    pub(super) fn reserve(&self, id: u64) {
        let mut h = self.held.lock();
        let was_spilled = h.0.spilled();
        if h.0.reserve(id) == Admit::Store && !was_spilled {
            tracing::warn!(
                cap = h.0.cap(),
                "smpp outbound queue full in memory; the rest wait in the store"
            );
        }
        h.gauges();
    }

    /// A reserved message's store write is durable: the dispatcher gets it. One without a
    /// slot is noted for the sweep (it can only be read back now that it is durable).
    pub(super) fn dispatch(self: &Arc<Self>, item: OutboundItem) {
        let mut h = self.held.lock();
        if h.0.durable(item.id) {
            let _ = self.queue.send(item);
            return;
        }
        self.sweep_if_room(&mut h);
    }

    /// Starts a sweep when messages wait in the store and memory is at most half full.
    pub(super) fn sweep_if_room(self: &Arc<Self>, h: &mut Held) {
        if h.0.start_sweep() {
            let me = self.clone();
            tokio::spawn(async move { me.sweep().await });
        }
    }

    /// A message's store write failed (it was refused): its slot is free again.
    pub(super) fn release(self: &Arc<Self>, id: u64) {
        let mut h = self.held.lock();
        h.0.release(id);
        h.gauges();
        self.sweep_if_room(&mut h);
    }

    /// A message has left the queue (its store row is deleted): its slot is free. Once memory
    /// is half empty, what waits in the store is read back.
    pub(super) fn done(self: &Arc<Self>, id: u64) {
        let mut h = self.held.lock();
        h.0.done(id);
        h.gauges();
        self.sweep_if_room(&mut h);
    }

    /// Reads the queue in the store back into memory, in id order, skipping what memory
    /// holds, until memory is full or the store is caught up. A pass ends at the end of the
    /// table; messages left in the store while it ran are read by another pass from the
    /// smallest of their ids. Only a pass that missed nothing ends the spill.
    pub(super) async fn sweep(self: Arc<Self>) {
        let mut from = 0u64;
        loop {
            let mut cursor = from;
            let full = loop {
                self.held.lock().0.begin_read();
                let store = self.engine.store().clone();
                let after = cursor;
                let rows = match tokio::task::spawn_blocking(move || {
                    store.outbound_after(after, SWEEP_CHUNK)
                })
                .await
                {
                    Ok(Ok(rows)) => rows,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot read the smpp outbound queue");
                        self.held.lock().0.read_failed();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(_) => {
                        self.held.lock().0.abort();
                        return;
                    }
                };
                let n = rows.len();
                let ids: Vec<u64> = rows.iter().map(|r| r.id).collect();
                let mut h = self.held.lock();
                let (looked, taken) = h.0.take(&ids);
                for (item, take) in rows.into_iter().zip(taken) {
                    cursor = item.id;
                    if take {
                        let _ = self.queue.send(item);
                    }
                }
                h.gauges();
                let full = looked < n;
                if full || n < SWEEP_CHUNK {
                    break full;
                }
            };
            let mut h = self.held.lock();
            let next = h.0.end_pass(full);
            h.gauges();
            match next {
                Pass::Stop => return,
                Pass::From(m) => from = m,
            }
        }
    }
}
