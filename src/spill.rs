//! A durable queue's memory bound, sans-IO: every item is in the store; at most `cap` of
//! them are also held in memory. Past that the store is the queue, and a sweep reads it
//! back in id order once memory is half empty. The SMPP outbound queue and the status
//! callback queue both keep their bound with this one type; the caller does the store reads
//! and holds the items, this type decides what goes where and when to read.
//!
//! The order of calls for one item: [`reserve`](Spill::reserve) before its store write,
//! then [`durable`](Spill::durable) once the write is durable (or
//! [`release`](Spill::release) if it failed), and [`done`](Spill::done) when it has left the
//! queue. A sweep: [`start_sweep`](Spill::start_sweep) says whether to run one; each read
//! is framed by [`begin_read`](Spill::begin_read) and [`take`](Spill::take); after a pass
//! [`end_pass`](Spill::end_pass) says whether to read again and from where.

use std::collections::HashSet;

/// Where a new item goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A slot in memory is reserved: hand it on once durable.
    Memory,
    /// Left to the store: a sweep reads it back.
    Store,
}

/// What a sweep pass does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Stop: memory is full (a later sweep goes on) or the store is caught up.
    Stop,
    /// Read again from after this id: items were left in the store during the pass.
    From(u64),
}

#[derive(Debug)]
pub struct Spill {
    /// Ids held in memory, reserved ones included.
    ids: HashSet<u64>,
    /// Ids given a slot before their store write: handed on once durable.
    reserved: HashSet<u64>,
    cap: usize,
    /// Items were left in the store: until a sweep has read it back up to date, every new
    /// one is left there too (so older items go first).
    spilled: bool,
    sweeping: bool,
    /// The smallest id left in the store (and durable) since the sweep's pass began.
    missed_from: Option<u64>,
    /// Items waiting in the store only (for the depth gauge).
    in_store: usize,
    /// Items left to the store whose write is not durable yet (a sweep may read them
    /// before `durable`, or not): bounded by the writes in flight.
    unsent: HashSet<u64>,
    /// A read is running: ids that leave memory meanwhile are noted in `gone`, since the
    /// read may still have seen their rows.
    reading: bool,
    gone: HashSet<u64>,
}

impl Spill {
    /// An empty memory of `cap` slots (at least one). It starts spilled: what the store
    /// holds from before a restart is read back by the first sweep.
    pub fn new(cap: usize) -> Spill {
        Spill {
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

    /// `pending` items are in the store from before the start (for the gauge).
    pub fn found_at_start(&mut self, pending: u64) {
        self.in_store = usize::try_from(pending).unwrap_or(usize::MAX);
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Items held in memory.
    pub fn in_memory(&self) -> usize {
        self.ids.len()
    }

    /// Items queued in all: in memory and in the store only.
    pub fn depth(&self) -> usize {
        self.ids.len() + self.in_store
    }

    /// Whether items wait in the store (new ones are left there too until a sweep caught
    /// up).
    pub fn spilled(&self) -> bool {
        self.spilled
    }

    pub fn holds(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    /// An item about to be written: a slot in memory if there is one and nothing older
    /// waits in the store; else it is left to the store.
    pub fn reserve(&mut self, id: u64) -> Admit {
        if self.spilled || self.ids.len() >= self.cap {
            self.spilled = true;
            self.in_store += 1;
            self.unsent.insert(id);
            Admit::Store
        } else {
            self.ids.insert(id);
            self.reserved.insert(id);
            Admit::Memory
        }
    }

    /// The item's write is durable. `true`: it holds a slot, hand it on now. `false`: it
    /// was left to the store (or a sweep already read it); a sweep will see it.
    pub fn durable(&mut self, id: u64) -> bool {
        if self.reserved.remove(&id) {
            return true;
        }
        self.unsent.remove(&id);
        if self.ids.contains(&id) {
            // A sweep has read it already.
            return false;
        }
        // A sweep may also have read and finished it already (if one caught up meanwhile):
        // only the store knows, so it is left to a sweep.
        self.spilled = true;
        self.missed_from = Some(self.missed_from.map_or(id, |m| m.min(id)));
        false
    }

    /// An item already durable in the store that this queue never saw (taken over from
    /// elsewhere). `true`: it holds a slot, hand it on now. `false`: memory is full or older
    /// items wait in the store; a sweep reads it back.
    pub fn adopt(&mut self, id: u64) -> bool {
        if self.ids.contains(&id) {
            return false;
        }
        if self.spilled || self.ids.len() >= self.cap {
            self.spilled = true;
            self.in_store += 1;
            self.missed_from = Some(self.missed_from.map_or(id, |m| m.min(id)));
            return false;
        }
        self.ids.insert(id);
        true
    }

    /// The item's write failed: its slot (or its place in the count) is free again.
    pub fn release(&mut self, id: u64) {
        if self.reserved.remove(&id) {
            self.ids.remove(&id);
        } else if self.unsent.remove(&id) {
            self.in_store = self.in_store.saturating_sub(1);
        }
    }

    /// The item has left the queue (its store row is deleted): its slot is free.
    pub fn done(&mut self, id: u64) {
        self.ids.remove(&id);
        if self.reading {
            self.gone.insert(id);
        }
    }

    /// Whether a sweep should start now (items wait in the store and memory is at most
    /// half full); if so it is marked running, from the first id.
    pub fn start_sweep(&mut self) -> bool {
        if self.spilled && !self.sweeping && self.ids.len() <= self.cap / 2 {
            self.sweeping = true;
            self.missed_from = None;
            return true;
        }
        false
    }

    /// A store read of the sweep begins.
    pub fn begin_read(&mut self) {
        self.reading = true;
    }

    /// The read failed: the sweep may retry (`begin_read` again) or give up with `abort`.
    pub fn read_failed(&mut self) {
        self.reading = false;
        self.gone.clear();
    }

    /// The sweep stops without finishing (its task ended); a later one starts over.
    pub fn abort(&mut self) {
        self.reading = false;
        self.sweeping = false;
        self.gone.clear();
    }

    /// The read returned these ids, in order. Returns how many of them were looked at
    /// (the rest did not fit: memory is full) and, for each looked at, whether to take it
    /// into memory (not already held, not finished while the read ran).
    pub fn take(&mut self, ids: &[u64]) -> (usize, Vec<bool>) {
        self.reading = false;
        let gone = std::mem::take(&mut self.gone);
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            if self.ids.len() >= self.cap {
                break;
            }
            let take = !gone.contains(id) && self.ids.insert(*id);
            if take {
                self.in_store = self.in_store.saturating_sub(1);
            }
            taken.push(take);
        }
        (taken.len(), taken)
    }

    /// A pass reached the end of the table (`full`: or memory filled up first). Only a
    /// pass that missed nothing ends the spill.
    pub fn end_pass(&mut self, full: bool) -> Pass {
        if full {
            // The next sweep starts over once memory has drained.
            self.sweeping = false;
            return Pass::Stop;
        }
        match self.missed_from.take() {
            None => {
                self.sweeping = false;
                // Only the writes not yet durable may still wait in the store. While any
                // does, new items still go to the store, behind it: ending the spill now
                // would let them overtake it. Its `durable` starts the next sweep.
                self.in_store = self.unsent.iter().filter(|i| !self.ids.contains(i)).count();
                self.spilled = self.in_store > 0;
                Pass::Stop
            }
            Some(m) => Pass::From(m.saturating_sub(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store: ids written durably, minus the ones finished.
    fn sweep_all(s: &mut Spill, store: &[u64], out: &mut Vec<u64>) {
        assert!(s.start_sweep());
        let mut from = 0;
        loop {
            s.begin_read();
            let rows: Vec<u64> = store.iter().copied().filter(|i| *i > from).collect();
            let (looked, taken) = s.take(&rows);
            for (id, t) in rows.iter().zip(&taken) {
                if *t {
                    out.push(*id);
                }
            }
            match s.end_pass(looked < rows.len()) {
                Pass::Stop => return,
                Pass::From(f) => from = f,
            }
        }
    }

    #[test]
    fn memory_holds_at_most_cap_and_the_store_the_rest_in_order() {
        let mut s = Spill::new(4);
        // Starts spilled: a first sweep over an empty store ends the spill.
        let mut out = Vec::new();
        sweep_all(&mut s, &[], &mut out);
        assert!(out.is_empty());
        let mut store = Vec::new();
        let mut handed = Vec::new();
        for id in 1..=10 {
            let a = s.reserve(id);
            store.push(id);
            if s.durable(id) {
                assert_eq!(a, Admit::Memory);
                handed.push(id);
            }
        }
        assert_eq!(handed, vec![1, 2, 3, 4]);
        assert_eq!((s.in_memory(), s.depth()), (4, 10));
        // Nothing read back until memory is half empty.
        s.done(1);
        store.retain(|i| *i != 1);
        assert!(!s.start_sweep());
        s.done(2);
        store.retain(|i| *i != 2);
        sweep_all(&mut s, &store, &mut handed);
        assert_eq!(handed, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(s.in_memory(), 4);
        for id in 3..=6 {
            s.done(id);
        }
        store.retain(|i| *i > 6);
        sweep_all(&mut s, &store, &mut handed);
        assert_eq!(handed, (1..=10).collect::<Vec<_>>());
        assert_eq!(s.depth(), 4);
        // Caught up: new items get slots again.
        for id in 7..=10 {
            s.done(id);
        }
        assert_eq!(s.reserve(11), Admit::Memory);
    }

    #[test]
    fn an_adopted_item_takes_a_slot_or_is_read_back_by_a_sweep() {
        let mut s = Spill::new(2);
        sweep_all(&mut s, &[], &mut Vec::new());
        assert!(s.adopt(100), "room: held now");
        assert!(!s.adopt(100), "held already");
        assert!(s.adopt(101));
        // Memory full: left to the store, and a sweep reads it back once there is room.
        assert!(!s.adopt(102));
        assert!(s.spilled());
        assert_eq!(s.reserve(3), Admit::Store, "behind the adopted one");
        s.durable(3);
        s.done(100);
        s.done(101);
        let mut out = Vec::new();
        sweep_all(&mut s, &[3, 102], &mut out);
        assert_eq!(out, vec![3, 102]);
        assert!(!s.spilled());
    }

    #[test]
    fn an_item_finished_while_a_read_ran_is_not_taken_again() {
        let mut s = Spill::new(2);
        let _ = s.start_sweep();
        s.begin_read();
        let _ = s.take(&[]);
        assert_eq!(s.end_pass(false), Pass::Stop);
        for id in 1..=3 {
            s.reserve(id);
            s.durable(id);
        }
        // 3 was left to the store; memory drains while a read is running and sees 1 too.
        s.done(1);
        assert!(s.start_sweep());
        s.begin_read();
        s.done(2);
        let (looked, taken) = s.take(&[2, 3]);
        assert_eq!((looked, taken), (2, vec![false, true]));
        assert_eq!(s.end_pass(false), Pass::Stop);
        assert_eq!((s.in_memory(), s.depth()), (1, 1));
    }

    #[test]
    fn a_write_left_to_the_store_after_a_pass_passed_it_is_read_by_another_pass() {
        let mut s = Spill::new(4);
        let _ = s.start_sweep();
        let _ = s.take(&[]);
        let _ = s.end_pass(false);
        // 1..4 fill memory, 5 is left to the store but not durable yet.
        for id in 1..=4 {
            s.reserve(id);
            s.durable(id);
        }
        s.reserve(5);
        for id in 1..=3 {
            s.done(id);
        }
        assert!(s.start_sweep());
        s.begin_read();
        let (_, taken) = s.take(&[4]);
        assert_eq!(taken, vec![false]);
        // 5 becomes durable after the read passed its place.
        assert!(!s.durable(5));
        assert_eq!(s.end_pass(false), Pass::From(4));
        s.begin_read();
        let (_, taken) = s.take(&[5]);
        assert_eq!(taken, vec![true]);
        assert_eq!(s.end_pass(false), Pass::Stop);
        assert_eq!(s.reserve(6), Admit::Memory);
    }

    #[test]
    fn a_pass_that_ends_while_a_write_to_the_store_is_pending_keeps_the_spill() {
        let mut s = Spill::new(2);
        let _ = s.start_sweep();
        let _ = s.take(&[]);
        let _ = s.end_pass(false);
        s.reserve(1);
        s.durable(1);
        s.reserve(2);
        s.durable(2);
        assert_eq!(s.reserve(3), Admit::Store); // part 1 of something, not durable yet
        s.done(1);
        s.done(2);
        assert!(s.start_sweep());
        s.begin_read();
        let _ = s.take(&[]);
        assert_eq!(s.end_pass(false), Pass::Stop);
        // Part 2 must not overtake part 1: it waits in the store behind it.
        assert_eq!(s.reserve(4), Admit::Store);
        assert!(!s.durable(3));
        assert!(!s.durable(4));
        assert!(s.start_sweep());
        s.begin_read();
        let (_, taken) = s.take(&[3, 4]);
        assert_eq!(taken, vec![true, true]);
        assert_eq!(s.end_pass(false), Pass::Stop);
        assert!(!s.spilled());
    }

    #[test]
    fn a_failed_write_frees_its_slot_or_its_count() {
        let mut s = Spill::new(1);
        let _ = s.start_sweep();
        let _ = s.take(&[]);
        let _ = s.end_pass(false);
        assert_eq!(s.reserve(1), Admit::Memory);
        assert_eq!(s.reserve(2), Admit::Store);
        assert_eq!(s.depth(), 2);
        s.release(1);
        s.release(2);
        assert_eq!(s.depth(), 0);
    }
}
