//! The outbound queue's memory half. Every queued message is in the store; at most
//! `smpp.max_queued_in_memory` of them are also held in memory (in the dispatcher's channel
//! or being delivered). Past that the store is the queue, and a sweep reads it back in id
//! order as memory frees up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::SmppPlane;
use crate::core::store::OutboundItem;

/// Rows read from the store at a time when it is read back into memory.
const SWEEP_CHUNK: usize = 1024;

/// The outbound queue's memory. Every queued message is in the store; at most `cap` of them
/// are also held in memory (in the dispatcher's channel or being delivered). Past that the
/// store is the queue, and a sweep reads it back in id order as memory frees up.
pub(super) struct Held {
    /// Ids held in memory, reserved ones included.
    ids: HashSet<u64>,
    /// Ids given a slot before their store write: handed to the dispatcher once durable.
    reserved: HashSet<u64>,
    cap: usize,
    /// Messages were left in the store: until a sweep has read it back up to date, every new
    /// one is left there too (so older messages go first).
    spilled: bool,
    sweeping: bool,
    /// The smallest id left in the store (and durable) since the sweep's pass began.
    missed_from: Option<u64>,
    /// Messages waiting in the store only (for the depth gauge).
    in_store: usize,
    /// Messages left to the store whose write has not been dispatched yet (a sweep may
    /// read them before their dispatch, or not): bounded by the writes in flight.
    unsent: HashSet<u64>,
    /// A sweep is reading the store: ids that leave memory meanwhile are noted in `gone`,
    /// since the read may still have seen their rows.
    reading: bool,
    gone: HashSet<u64>,
}

impl Held {
    /// An empty memory half of `cap` slots; what the store holds from before a restart is
    /// read back by a sweep.
    pub(super) fn new(cap: usize) -> Held {
        Held {
            ids: HashSet::new(),
            reserved: HashSet::new(),
            cap: cap.max(1),
            spilled: true,
            sweeping: false,
            missed_from: None,
            in_store: 0,
            unsent: HashSet::new(),
            reading: false,
            gone: HashSet::new(),
        }
    }

    /// `pending` messages are in the store from before the start: a sweep (started next)
    /// reads them back.
    pub(super) fn found_at_start(&mut self, pending: u64) {
        self.in_store = usize::try_from(pending).unwrap_or(usize::MAX);
        self.sweeping = true;
        self.missed_from = None;
    }

    pub(super) fn gauges(&self) {
        let m = crate::metrics::get();
        m.smpp_queue_in_memory.set(self.ids.len() as i64);
        m.smpp_queue_depth
            .set((self.ids.len() + self.in_store) as i64);
    }
}

impl SmppPlane {
    /// Gives a message about to be written to the queue in the store a slot in memory, if
    /// there is one (and nothing older waits in the store). Without one it is left to the
    /// store and a sweep. Either way [`dispatch`](Self::dispatch) or
    /// [`release`](Self::release) follows the write.
    pub(super) fn reserve(&self, id: u64) {
        let mut h = self.held.lock();
        if h.spilled || h.ids.len() >= h.cap {
            if !h.spilled {
                tracing::warn!(
                    cap = h.cap,
                    "smpp outbound queue full in memory; the rest wait in the store"
                );
            }
            h.spilled = true;
            h.in_store += 1;
            h.unsent.insert(id);
        } else {
            h.ids.insert(id);
            h.reserved.insert(id);
        }
        h.gauges();
    }

    /// A reserved message's store write is durable: the dispatcher gets it. One without a
    /// slot is noted for the sweep (it can only be read back now that it is durable).
    pub(super) fn dispatch(self: &Arc<Self>, item: OutboundItem) {
        let mut h = self.held.lock();
        if h.reserved.remove(&item.id) {
            let _ = self.queue.send(item);
            return;
        }
        h.unsent.remove(&item.id);
        if h.ids.contains(&item.id) {
            // A sweep has read it already.
            return;
        }
        // A sweep may also have read and delivered it already (if one caught up meanwhile):
        // only the store knows, so it is left to a sweep.
        h.spilled = true;
        h.missed_from = Some(h.missed_from.map_or(item.id, |m| m.min(item.id)));
        self.sweep_if_room(&mut h);
    }

    /// Starts a sweep when messages wait in the store and memory is at most half full.
    pub(super) fn sweep_if_room(self: &Arc<Self>, h: &mut Held) {
        if h.spilled && !h.sweeping && h.ids.len() <= h.cap / 2 {
            h.sweeping = true;
            // A sweep starts from the first id: it reads everything durable by now.
            h.missed_from = None;
            let me = self.clone();
            tokio::spawn(async move { me.sweep().await });
        }
    }

    /// A message's store write failed (it was refused): its slot is free again.
    pub(super) fn release(self: &Arc<Self>, id: u64) {
        let mut h = self.held.lock();
        if h.reserved.remove(&id) {
            h.ids.remove(&id);
        } else if h.unsent.remove(&id) {
            h.in_store = h.in_store.saturating_sub(1);
        }
        h.gauges();
        self.sweep_if_room(&mut h);
    }

    /// A message has left the queue (its store row is deleted): its slot is free. Once memory
    /// is half empty, what waits in the store is read back.
    pub(super) fn done(self: &Arc<Self>, id: u64) {
        let mut h = self.held.lock();
        h.ids.remove(&id);
        if h.reading {
            h.gone.insert(id);
        }
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
                self.held.lock().reading = true;
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
                        self.held.lock().reading = false;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(_) => {
                        let mut h = self.held.lock();
                        h.reading = false;
                        h.sweeping = false;
                        return;
                    }
                };
                let n = rows.len();
                let mut h = self.held.lock();
                h.reading = false;
                let gone = std::mem::take(&mut h.gone);
                let mut full = false;
                for item in rows {
                    if h.ids.len() >= h.cap {
                        full = true;
                        break;
                    }
                    cursor = item.id;
                    // Delivered while the read ran: its row is deleted by now.
                    if gone.contains(&item.id) {
                        continue;
                    }
                    if h.ids.insert(item.id) {
                        h.in_store = h.in_store.saturating_sub(1);
                        let _ = self.queue.send(item);
                    }
                }
                h.gauges();
                if full || n < SWEEP_CHUNK {
                    break full;
                }
            };
            let mut h = self.held.lock();
            if full {
                // The next sweep starts over once memory has drained.
                h.sweeping = false;
                return;
            }
            match h.missed_from.take() {
                None => {
                    h.spilled = false;
                    h.sweeping = false;
                    // Only the writes not yet dispatched may still wait in the store.
                    h.in_store = h.unsent.iter().filter(|i| !h.ids.contains(i)).count();
                    h.gauges();
                    return;
                }
                Some(m) => from = m.saturating_sub(1),
            }
        }
    }
}
