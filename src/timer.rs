//! A hashed timer wheel, sans-IO: the caller passes the time in (milliseconds) and collects
//! what fired. Entries live in a slab with intrusive doubly-linked slot lists, so insert and
//! cancel are O(1) and the memory per entry is fixed. Keys carry a generation, so a stale key
//! can never cancel a reused slot. Never reads the clock.

const NIL: u32 = u32::MAX;

/// Identifies one armed entry; stale after it fires or is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

struct Entry<T> {
    deadline_tick: u64,
    value: Option<T>,
    next: u32,
    prev: u32,
    generation: u32,
    slot: u32,
}

/// The wheel. `T` is what comes back when an entry fires (e.g. a session id).
pub struct TimerWheel<T> {
    tick_ms: u64,
    mask: u64,
    slots: Vec<u32>,
    entries: Vec<Entry<T>>,
    free_head: u32,
    /// The last tick fully processed by `expire`.
    now_tick: u64,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// `tick_ms` is the resolution; `slots` is rounded up to a power of two.
    /// `start_ms` is the current time: nothing earlier than it is ever scanned.
    pub fn new(tick_ms: u64, slots: usize, start_ms: u64) -> Self {
        let tick_ms = tick_ms.max(1);
        let n = slots.max(2).next_power_of_two();
        TimerWheel {
            tick_ms,
            mask: (n - 1) as u64,
            slots: vec![NIL; n],
            entries: Vec::new(),
            free_head: NIL,
            now_tick: start_ms / tick_ms,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Bytes the wheel holds per armed entry (slab entry; slot heads are shared).
    pub const fn entry_size() -> usize {
        std::mem::size_of::<Entry<T>>()
    }

    /// Arms `value` to fire at `deadline_ms` (a deadline in the past fires on the next
    /// `expire`).
    pub fn insert(&mut self, deadline_ms: u64, value: T) -> TimerKey {
        // Round up so an entry never fires before its deadline.
        let deadline_tick = deadline_ms.div_ceil(self.tick_ms);
        let slot_tick = deadline_tick.max(self.now_tick + 1);
        let slot = (slot_tick & self.mask) as usize;
        let index = if self.free_head != NIL {
            let i = self.free_head;
            let e = &mut self.entries[i as usize];
            self.free_head = e.next;
            e.deadline_tick = deadline_tick;
            e.value = Some(value);
            e.slot = slot as u32;
            i
        } else {
            let i = self.entries.len() as u32;
            self.entries.push(Entry {
                deadline_tick,
                value: Some(value),
                next: NIL,
                prev: NIL,
                generation: 0,
                slot: slot as u32,
            });
            i
        };
        let head = self.slots[slot];
        {
            let e = &mut self.entries[index as usize];
            e.next = head;
            e.prev = NIL;
        }
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.slots[slot] = index;
        self.len += 1;
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Disarms an entry; returns its value if it was still armed.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let e = self.entries.get(key.index as usize)?;
        if e.generation != key.generation || e.value.is_none() {
            return None;
        }
        Some(self.unlink(key.index))
    }

    fn unlink(&mut self, index: u32) -> T {
        let (next, prev, slot) = {
            let e = &self.entries[index as usize];
            (e.next, e.prev, e.slot)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.slots[slot as usize] = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[index as usize];
        e.generation = e.generation.wrapping_add(1);
        e.next = self.free_head;
        e.prev = NIL;
        self.free_head = index;
        self.len -= 1;
        // Every caller passes an armed entry, which holds its value until unlinked here.
        e.value.take().expect("armed entry holds a value")
    }

    /// Fires every entry whose deadline is at or before `now_ms`, pushing `(value,
    /// deadline_ms)` onto `fired`. Scans each tick once; after a long pause it scans each
    /// slot once.
    pub fn expire(&mut self, now_ms: u64, fired: &mut Vec<(T, u64)>) {
        let target = now_ms / self.tick_ms;
        if target <= self.now_tick {
            return;
        }
        let ticks = target - self.now_tick;
        if ticks > self.mask {
            for slot in 0..self.slots.len() {
                self.fire_slot(slot, target, fired);
            }
        } else {
            for t in self.now_tick + 1..=target {
                self.fire_slot((t & self.mask) as usize, target, fired);
            }
        }
        self.now_tick = target;
    }

    fn fire_slot(&mut self, slot: usize, target: u64, fired: &mut Vec<(T, u64)>) {
        let mut cursor = self.slots[slot];
        while cursor != NIL {
            let (next, due) = {
                let e = &self.entries[cursor as usize];
                (e.next, e.deadline_tick)
            };
            if due <= target {
                let value = self.unlink(cursor);
                fired.push((value, due * self.tick_ms));
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_deadline_not_before() {
        let mut w = TimerWheel::new(100, 64, 0);
        w.insert(1_050, "a");
        let mut out = Vec::new();
        w.expire(1_000, &mut out);
        assert!(out.is_empty());
        w.expire(1_100, &mut out);
        assert_eq!(out, vec![("a", 1_100)]);
        assert!(w.is_empty());
    }

    #[test]
    fn entries_beyond_one_rotation_wait_their_round() {
        let mut w = TimerWheel::new(100, 8, 0);
        w.insert(10_000, 1u32);
        let mut out = Vec::new();
        for now in (0..10_000).step_by(100) {
            w.expire(now, &mut out);
            assert!(out.is_empty(), "fired early at {now}");
        }
        w.expire(10_000, &mut out);
        assert_eq!(out, vec![(1, 10_000)]);
    }

    #[test]
    fn past_deadlines_fire_on_next_expire_and_long_pauses_scan_everything() {
        let mut w = TimerWheel::new(100, 8, 5_000);
        w.insert(10, 'p');
        w.insert(7_000, 'q');
        w.insert(900_000, 'r');
        let mut out = Vec::new();
        w.expire(100_000, &mut out);
        out.sort();
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec!['p', 'q']);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn cancel_is_generation_checked() {
        let mut w = TimerWheel::new(100, 8, 0);
        let k1 = w.insert(500, 1);
        assert_eq!(w.cancel(k1), Some(1));
        assert_eq!(w.cancel(k1), None);
        let k2 = w.insert(500, 2); // reuses the slab slot
        assert_eq!(
            w.cancel(k1),
            None,
            "stale key must not cancel the new entry"
        );
        assert_eq!(w.len(), 1);
        let mut out = Vec::new();
        w.expire(1_000, &mut out);
        assert_eq!(out, vec![(2, 500)]);
        assert_eq!(w.cancel(k2), None);
    }

    #[test]
    fn cancel_head_and_middle_of_a_slot() {
        let mut w = TimerWheel::new(100, 8, 0);
        let a = w.insert(300, 'a');
        let b = w.insert(300, 'b');
        let c = w.insert(300, 'c');
        assert_eq!(w.cancel(c), Some('c')); // head
        assert_eq!(w.cancel(a), Some('a')); // tail
        let mut out = Vec::new();
        w.expire(300, &mut out);
        assert_eq!(out, vec![('b', 300)]);
        assert_eq!(w.cancel(b), None);
    }

    #[test]
    fn cancel_of_an_entry_placed_at_next_tick() {
        let mut w = TimerWheel::new(100, 8, 1_000);
        let k = w.insert(10, 'x'); // past: placed in the slot of tick 11, deadline tick 1
        let k2 = w.insert(10, 'y');
        assert_eq!(w.cancel(k2), Some('y'));
        assert_eq!(w.cancel(k), Some('x'));
        assert!(w.is_empty());
        let mut out = Vec::new();
        w.expire(5_000, &mut out);
        assert!(out.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn matches_a_sorted_model(ops in proptest::collection::vec((0u64..20_000, proptest::bool::ANY), 1..200)) {
            let mut w = TimerWheel::new(100, 16, 0);
            let mut model: Vec<(u64, usize, Option<TimerKey>)> = Vec::new();
            for (i, (deadline, cancel)) in ops.iter().enumerate() {
                let key = w.insert(*deadline, i);
                model.push((*deadline, i, Some(key)));
                if *cancel && i % 3 == 0 {
                    let k = model[i / 2].2.take();
                    if let Some(k) = k {
                        proptest::prop_assert_eq!(w.cancel(k), Some(i / 2));
                    }
                }
            }
            let mut out = Vec::new();
            let mut now = 0;
            while now <= 21_000 {
                let before = out.len();
                w.expire(now, &mut out);
                for (v, due) in &out[before..] {
                    let (d, _, _) = model[*v];
                    proptest::prop_assert!(d <= now, "fired before deadline");
                    proptest::prop_assert!(now < d + 200, "fired late");
                    proptest::prop_assert!(*due >= d);
                }
                now += 100;
            }
            let live = model.iter().filter(|m| m.2.is_some()).count();
            proptest::prop_assert_eq!(out.len(), live);
            proptest::prop_assert!(w.is_empty());
        }
    }
}
