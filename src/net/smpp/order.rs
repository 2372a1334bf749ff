//! Keeps one bind's messages in the order the bind sent them. Each message is accepted in a
//! task of its own (its store write, and callbacks, take their time, and a window of them
//! is in flight), so acceptances finish in any order; their queue items are handed on in
//! arrival order all the same, so the parts of a concatenated message sent back to back
//! reach the next hop in the order they were sent.

use std::collections::BTreeMap;

/// Tickets handed out in arrival order; what finished is released in ticket order.
#[derive(Debug)]
pub(super) struct InOrder<T> {
    issued: u64,
    next: u64,
    finished: BTreeMap<u64, Vec<T>>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder {
            issued: 0,
            next: 0,
            finished: BTreeMap::new(),
        }
    }
}

impl<T> InOrder<T> {
    /// The next ticket, in arrival order.
    pub(super) fn ticket(&mut self) -> u64 {
        let t = self.issued;
        self.issued += 1;
        t
    }

    /// Ticket `t` is done with `items` (none when its message goes nowhere): returns what
    /// can go on now, in ticket order. Every ticket must be finished exactly once.
    pub(super) fn finish(&mut self, t: u64, items: Vec<T>) -> Vec<T> {
        self.finished.insert(t, items);
        let mut ready = Vec::new();
        while let Some(items) = self.finished.remove(&self.next) {
            ready.extend(items);
            self.next += 1;
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::InOrder;

    #[test]
    fn releases_in_ticket_order_whatever_order_tickets_finish_in() {
        let mut o = InOrder::default();
        let t: Vec<u64> = (0..4).map(|_| o.ticket()).collect();
        assert_eq!(o.finish(t[2], vec!["c"]), Vec::<&str>::new());
        assert_eq!(o.finish(t[1], vec![]), Vec::<&str>::new());
        assert_eq!(o.finish(t[0], vec!["a"]), vec!["a", "c"]);
        assert_eq!(o.finish(t[3], vec!["d", "e"]), vec!["d", "e"]);
        let t4 = o.ticket();
        assert_eq!(o.finish(t4, vec!["f"]), vec!["f"]);
        assert!(o.finished.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_finishing_order_releases_everything_in_order(
            perm in proptest::collection::vec(proptest::num::u64::ANY, 1..50)
        ) {
            let mut o = InOrder::default();
            let tickets: Vec<u64> = perm.iter().map(|_| o.ticket()).collect();
            let mut finishing: Vec<(u64, u64)> =
                perm.iter().zip(&tickets).map(|(k, t)| (*k, *t)).collect();
            finishing.sort();
            let mut out = Vec::new();
            for (_, t) in finishing {
                out.extend(o.finish(t, vec![t]));
            }
            proptest::prop_assert_eq!(out, tickets);
        }
    }
}
