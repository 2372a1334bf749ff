//! Each pool's use over the last day, sampled once a minute in memory (this node's view,
//! gone at restart): the console's utilisation charts.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;

use crate::core::engine::search::PoolUse;
use crate::core::model::Timestamp;
use crate::core::Sid;

pub const EVERY: Duration = Duration::from_secs(60);
/// A day of samples.
pub const KEEP: usize = 1440;

/// (time, numbers in use, pool size).
pub type Point = (Timestamp, u64, u64);

#[derive(Default)]
pub struct History {
    samples: Mutex<HashMap<Sid, VecDeque<Point>>>,
}

impl History {
    pub fn record(&self, at: Timestamp, pools: &[PoolUse]) {
        let mut s = self.samples.lock();
        // A deleted service's samples go with it.
        s.retain(|sid, _| pools.iter().any(|p| p.service == *sid));
        for p in pools {
            let q = s.entry(p.service).or_default();
            if q.len() == KEEP {
                q.pop_front();
            }
            q.push_back((at, p.in_use, p.size));
        }
    }

    /// Oldest first.
    pub fn of(&self, service: Sid) -> Vec<Point> {
        self.samples
            .lock()
            .get(&service)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_samples_per_pool_and_deleted_pools_forgotten() {
        let h = History::default();
        let (a, b) = (
            Sid::generate(crate::core::SidKind::Service),
            Sid::generate(crate::core::SidKind::Service),
        );
        let pool = |service, in_use| PoolUse {
            service,
            unique_name: String::new(),
            size: 10,
            in_use,
            active_sessions: 0,
        };
        for t in 0..KEEP as i64 + 10 {
            h.record(t, &[pool(a, 1), pool(b, 2)]);
        }
        assert_eq!(h.of(a).len(), KEEP);
        assert_eq!(h.of(a)[0].0, 10, "the oldest went first");
        h.record(9999, &[pool(a, 3)]);
        assert!(h.of(b).is_empty());
        assert_eq!(h.of(a).last(), Some(&(9999, 3, 10)));
    }
}
