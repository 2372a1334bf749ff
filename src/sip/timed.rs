//! A map of transactions with their deadlines filed by time, so the timer tick looks only
//! at the transactions that are due instead of at every live one (~30,000 at 1,000 calls/s,
//! since UDP non-INVITE server transactions absorb retransmissions for 32 s).
//!
//! Every mutable access or insertion marks its key; `settle` then files each marked entry
//! under its current deadline. Deadlines are filed in buckets of `GRAIN` ms (a wheel kept in
//! a small ordered map: filing is a push onto a bucket's list, the tick takes whole buckets),
//! which replaced a binary heap whose sift through ~200,000 entries missed the cache on every
//! pop. Filed entries are checked when they come due, so stale ones (the entry was removed
//! or its deadline moved) cost one lookup and are dropped.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Width of a bucket of deadlines (ms): the voice plane ticks every 50 ms.
const GRAIN: u64 = 50;

pub trait Deadline {
    /// When this entry next needs `on_timer`, if ever.
    fn deadline(&self) -> Option<u64>;
}

pub struct Timed<K, V> {
    map: HashMap<K, V, foldhash::fast::RandomState>,
    /// Bucket (deadline / GRAIN) → (deadline, key) filed there.
    wheel: BTreeMap<u64, Vec<(u64, K)>>,
    touched: Vec<K>,
}

impl<K: Hash + Eq + Ord + Clone, V: Deadline> Default for Timed<K, V> {
    fn default() -> Self {
        Timed {
            map: HashMap::default(),
            wheel: BTreeMap::new(),
            touched: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Ord + Clone, V: Deadline> Timed<K, V> {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let v = self.map.get_mut(k)?;
        self.touched.push(k.to_owned());
        Some(v)
    }

    pub fn insert(&mut self, k: K, v: V) {
        self.touched.push(k.clone());
        self.map.insert(k, v);
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    /// Records the deadline of every entry touched since the last call.
    pub fn settle(&mut self) {
        self.touched.sort_unstable();
        self.touched.dedup();
        for k in self.touched.drain(..) {
            if let Some(t) = self.map.get(&k).and_then(V::deadline) {
                self.wheel.entry(t / GRAIN).or_default().push((t, k));
            }
        }
    }

    /// The keys of the entries due at `now`, each once.
    pub fn due(&mut self, now: u64) -> Vec<K> {
        let mut out = Vec::new();
        let mut later = Vec::new();
        while let Some(entry) = self.wheel.first_entry() {
            if *entry.key() > now / GRAIN {
                break;
            }
            for (t, k) in entry.remove() {
                if t > now {
                    // Same bucket, later within it.
                    later.push((t, k));
                    continue;
                }
                match self.map.get(&k).and_then(V::deadline) {
                    Some(d) if d <= now => out.push(k),
                    // Moved later without a `settle` in between: keep watching it.
                    Some(d) => later.push((d, k)),
                    None => {}
                }
            }
        }
        for (t, k) in later {
            self.wheel.entry(t / GRAIN).or_default().push((t, k));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The earliest a filed deadline can come due (the start of its bucket; a stale entry
    /// counts, it is dropped when its bucket is taken), `None` with nothing filed; `Some(0)`
    /// while entries touched since the last `settle` are not filed yet (their deadlines are
    /// unknown here until then).
    pub fn next_due(&self) -> Option<u64> {
        if !self.touched.is_empty() {
            return Some(0);
        }
        self.wheel.keys().next().map(|b| b * GRAIN)
    }

    /// Gives memory back after a burst: once the map or the touched list use less than a
    /// quarter of what they hold, they shrink to twice their length (the wheel's buckets go
    /// as they come due).
    pub fn compact(&mut self) {
        compact_map(&mut self.map);
        if wasteful(self.touched.len(), self.touched.capacity()) {
            self.touched.shrink_to(self.touched.len() * 2);
        }
    }

    /// Filed entries, live or stale.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.wheel.values().map(Vec::len).sum()
    }
}

/// Whether a collection of `len` entries holding room for `capacity` should shrink: above a
/// floor (small tables are not worth the churn) and less than a quarter used.
fn wasteful(len: usize, capacity: usize) -> bool {
    capacity > 1024 && len * 4 < capacity
}

/// Shrinks a map that is less than a quarter used to twice its length.
pub fn compact_map<K: Hash + Eq, V, S: std::hash::BuildHasher>(m: &mut HashMap<K, V, S>) {
    if wasteful(m.len(), m.capacity()) {
        m.shrink_to(m.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(Option<u64>);
    impl Deadline for E {
        fn deadline(&self) -> Option<u64> {
            self.0
        }
    }

    #[test]
    fn only_due_entries_come_out_and_stale_ones_are_dropped() {
        let mut t: Timed<u32, E> = Timed::default();
        t.insert(1, E(Some(100)));
        t.insert(2, E(Some(50)));
        t.insert(3, E(None));
        t.settle();
        assert_eq!(t.due(49), Vec::<u32>::new());
        assert_eq!(t.due(60), vec![2]);
        // 1 moves later through get_mut; the old filed entry is stale.
        t.get_mut(&1).unwrap().0 = Some(200);
        t.settle();
        assert_eq!(t.due(150), Vec::<u32>::new());
        assert_eq!(
            t.due(200),
            vec![1],
            "once, though two filed entries led to it"
        );
        // A removed entry never comes out.
        t.insert(4, E(Some(300)));
        t.settle();
        t.remove(&4);
        assert_eq!(t.due(1_000), Vec::<u32>::new());
        assert_eq!(t.pending(), 0, "due entries leave the wheel");
        // Two deadlines in one bucket: each comes out at its own time, not the bucket's.
        t.insert(5, E(Some(1_210)));
        t.insert(6, E(Some(1_240)));
        t.settle();
        assert_eq!(t.due(1_209), Vec::<u32>::new());
        assert_eq!(t.due(1_230), vec![5]);
        assert_eq!(t.due(1_239), Vec::<u32>::new());
        assert_eq!(t.due(1_240), vec![6]);
    }

    #[test]
    fn the_next_due_time_is_the_earliest_bucket_once_settled() {
        let mut t: Timed<u32, E> = Timed::default();
        assert_eq!(t.next_due(), None, "nothing filed");
        t.insert(1, E(Some(1_230)));
        t.insert(2, E(Some(5_000)));
        t.insert(3, E(None));
        assert_eq!(t.next_due(), Some(0), "touched, not yet filed: unknown");
        t.settle();
        assert_eq!(t.next_due(), Some(1_200), "1's bucket");
        assert_eq!(t.due(1_230), vec![1]);
        t.remove(&1);
        assert_eq!(t.next_due(), Some(5_000));
        // Removed: the stale entry still counts until its bucket is taken.
        t.remove(&2);
        assert_eq!(t.next_due(), Some(5_000));
        assert_eq!(t.due(5_000), Vec::<u32>::new());
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn a_burst_gives_its_memory_back_once_over() {
        let mut t: Timed<u32, E> = Timed::default();
        for k in 0..20_000 {
            t.insert(k, E(Some(u64::from(k))));
        }
        t.settle();
        let peak = t.map.capacity();
        assert!(peak >= 20_000);
        t.compact();
        assert_eq!(t.map.capacity(), peak, "a full table keeps its room");
        let due = t.due(19_989);
        for k in &due {
            t.remove(k);
        }
        assert_eq!(t.len(), 10);
        t.compact();
        assert!(t.map.capacity() < 1024, "{}", t.map.capacity());
        assert_eq!(t.pending(), 10, "only what is not yet due is still filed");
        assert_eq!(t.due(u64::MAX).len(), 10, "what is left still comes due");
    }

    #[test]
    fn a_deadline_moved_without_settle_is_still_honoured() {
        let mut t: Timed<u32, E> = Timed::default();
        t.insert(1, E(Some(10)));
        t.settle();
        // Changed behind the map's back (no get_mut): found when the old entry comes due.
        t.map.get_mut(&1).unwrap().0 = Some(30);
        assert_eq!(t.due(20), Vec::<u32>::new());
        assert_eq!(t.due(30), vec![1]);
    }
}
