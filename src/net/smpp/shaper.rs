//! Per-number message rate (SPEC §2.7): a carrier lets each of its numbers send at most
//! `carriers[].mps` messages a second. A message from a number over its rate waits here (it
//! stays durable in the queue), and goes on at the number's next free slot; each number's
//! messages leave in the order they came, and other numbers' pass meanwhile. Pure: the
//! dispatcher supplies the time (ms on a monotonic clock).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::core::store::OutboundItem;
use crate::core::E164;

#[derive(Default)]
pub(super) struct Shaper {
    /// Each number's next free slot (ms).
    next_free: HashMap<E164, u64>,
    /// (when, arrival order) of every message waiting.
    due: BinaryHeap<Reverse<(u64, u64)>>,
    /// The messages waiting, by arrival order, with their label (the service's SID).
    held: HashMap<u64, (OutboundItem, String)>,
    arrivals: u64,
    /// Messages waiting, per number.
    waiting: HashMap<E164, u32>,
}

impl Shaper {
    /// When a message from `from`, held to `mps` a second, may go: `now`, or its number's
    /// next free slot. Takes that slot.
    pub fn slot(&mut self, from: E164, mps: u32, now: u64) -> u64 {
        if self.next_free.len() > 100_000 {
            // Numbers idle for a while have no slot to remember.
            self.next_free.retain(|_, t| *t > now);
        }
        // Rounded up: never more than `mps` in any second.
        let gap = 1000u64.div_ceil(u64::from(mps.max(1)));
        let t = self.next_free.entry(from).or_insert(0);
        let at = (*t).max(now);
        *t = at + gap;
        at
    }

    /// Keeps `item` until `at`; `label` names its backlog.
    pub fn hold(&mut self, at: u64, item: OutboundItem, label: String) {
        *self.waiting.entry(item.from).or_insert(0) += 1;
        self.arrivals += 1;
        self.due.push(Reverse((at, self.arrivals)));
        self.held.insert(self.arrivals, (item, label));
    }

    /// How many messages from `number` wait.
    pub fn waiting(&self, number: E164) -> u32 {
        self.waiting.get(&number).copied().unwrap_or(0)
    }

    /// When the next waiting message may go.
    pub fn next_due(&self) -> Option<u64> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// The messages whose time has come, in order, each with its label.
    pub fn take_due(&mut self, now: u64) -> Vec<(OutboundItem, String)> {
        let mut out = Vec::new();
        while let Some(Reverse((at, n))) = self.due.peek().copied() {
            if at > now {
                break;
            }
            self.due.pop();
            if let Some(x) = self.held.remove(&n) {
                if let Some(w) = self.waiting.get_mut(&x.0.from) {
                    *w -= 1;
                    if *w == 0 {
                        self.waiting.remove(&x.0.from);
                    }
                }
                out.push(x);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64, from: &str) -> OutboundItem {
        OutboundItem {
            id,
            interaction: crate::core::Sid::generate(crate::core::SidKind::Interaction),
            from: E164::parse(from).unwrap(),
            to: E164::parse("+14155552002").unwrap(),
            via: None,
            origin: None,
            payload: Vec::new(),
            created: 0,
        }
    }

    #[test]
    fn a_number_over_its_rate_waits_in_order_while_another_passes() {
        let mut s = Shaper::default();
        let (p, q) = (
            E164::parse("+14155550101").unwrap(),
            E164::parse("+14155550102").unwrap(),
        );
        // Two a second from P: the first now, then every 500 ms.
        let slots: Vec<u64> = (0..4).map(|_| s.slot(p, 2, 1_000)).collect();
        assert_eq!(slots, [1_000, 1_500, 2_000, 2_500]);
        // 3 a second: 334 ms apart, so never four within a second.
        let r = E164::parse("+14155550103").unwrap();
        let thirds: Vec<u64> = (0..4).map(|_| s.slot(r, 3, 0)).collect();
        assert_eq!(thirds, [0, 334, 668, 1_002]);
        for (k, at) in slots.iter().enumerate().skip(1) {
            s.hold(*at, item(k as u64, "+14155550101"), "svc".into());
        }
        assert_eq!(s.waiting(p), 3);
        // Q is not delayed by P's backlog.
        assert_eq!(s.slot(q, 2, 1_000), 1_000);
        assert_eq!(s.next_due(), Some(1_500));
        assert!(s.take_due(1_499).is_empty());
        let ids: Vec<u64> = s.take_due(2_000).iter().map(|(i, _)| i.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(s.waiting(p), 1);
        let ids: Vec<u64> = s.take_due(10_000).iter().map(|(i, _)| i.id).collect();
        assert_eq!(ids, [3]);
        assert_eq!(s.waiting(p), 0);
        // Idle since: the next one goes at once.
        assert_eq!(s.slot(p, 2, 10_000), 10_000);
    }
}
