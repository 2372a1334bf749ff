//! The relay's port pool: even RTP ports (each with the odd RTCP port above) from
//! `media.port_range`.
//!
//! A port's sockets stay open once bound: when its call ends they stay, idle, on the relay
//! thread that had them (their packets drained and dropped), and the pool remembers which
//! thread that is, so a later call given the port costs no system call. A port is reused
//! only after [`QUIET_MS`] idle while unbound ports remain, so late packets of an old call
//! do not reach a new one; the oldest idle port goes first. A call's ports all live on one
//! thread, so a call takes only ports that are unbound or idle on its thread.

use std::collections::VecDeque;

/// How long a released port rests before another call is given it (while the range has
/// ports never bound or closed, and when it has none, the longest-idle port goes anyway).
pub const QUIET_MS: u64 = 2_000;

pub struct PortPool {
    first: u16,
    /// Ports with no open socket, in the order they were freed.
    unbound: VecDeque<u16>,
    /// Ports whose sockets are open and idle, with when they were freed (oldest first).
    idle: VecDeque<(u16, u64)>,
    /// Per pair (`(port - first) / 2`): the relay thread whose sockets hold it, if bound.
    owner: Vec<Option<u16>>,
    capacity: usize,
    bound: usize,
}

/// A port taken from the pool, and the thread whose idle sockets already hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub port: u16,
    pub bound_on: Option<usize>,
}

impl PortPool {
    /// Every even port `p` in `first..=last` with `p + 1 <= last`.
    pub fn new(first: u16, last: u16) -> PortPool {
        let first = first + (first & 1);
        let unbound: VecDeque<u16> = (first..last)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|q| q <= last))
            .collect();
        let capacity = unbound.len();
        PortPool {
            first,
            unbound,
            idle: VecDeque::new(),
            owner: vec![None; capacity],
            capacity,
            bound: 0,
        }
    }

    fn slot(&self, port: u16) -> usize {
        usize::from(port.saturating_sub(self.first) / 2)
    }

    fn owner_of(&self, port: u16) -> Option<usize> {
        self.owner
            .get(self.slot(port))
            .copied()
            .flatten()
            .map(usize::from)
    }

    /// The oldest idle port a call on `thread` (any, if `None`) can use, freed at or before
    /// `until`.
    fn idle_for(&self, thread: Option<usize>, until: u64) -> Option<usize> {
        self.idle
            .iter()
            .take_while(|(_, at)| *at <= until)
            .position(|&(p, _)| thread.is_none_or(|t| self.owner_of(p) == Some(t)))
    }

    fn take_idle(&mut self, i: usize) -> Option<Taken> {
        let (port, _) = self.idle.remove(i)?;
        Some(Taken {
            port,
            bound_on: self.owner_of(port),
        })
    }

    /// A free port for a call on `thread` (any thread if `None`) at `now`: an idle port
    /// that has rested [`QUIET_MS`], else an unbound one (if `may_bind`), else the
    /// longest-idle one.
    pub fn take(&mut self, thread: Option<usize>, now: u64, may_bind: bool) -> Option<Taken> {
        if let Some(i) = self.idle_for(thread, now.saturating_sub(QUIET_MS)) {
            return self.take_idle(i);
        }
        if may_bind {
            if let Some(port) = self.unbound.pop_front() {
                return Some(Taken {
                    port,
                    bound_on: None,
                });
            }
        }
        let i = self.idle_for(thread, u64::MAX)?;
        self.take_idle(i)
    }

    /// A port back to the pool at `now`; `bound_on` is the thread whose idle sockets now
    /// hold it, `None` if its sockets were closed.
    pub fn give(&mut self, port: u16, bound_on: Option<usize>, now: u64) {
        debug_assert!(
            !self.unbound.contains(&port) && !self.idle.iter().any(|(p, _)| *p == port),
            "port {port} returned twice"
        );
        let slot = self.slot(port);
        if let Some(o) = self.owner.get_mut(slot) {
            match (o.is_some(), bound_on.is_some()) {
                (false, true) => self.bound += 1,
                (true, false) => self.bound -= 1,
                _ => {}
            }
            *o = bound_on.and_then(|t| u16::try_from(t).ok());
        }
        match bound_on {
            Some(_) => self.idle.push_back((port, now)),
            None => self.unbound.push_back(port),
        }
    }

    /// Ports never bound (or closed), which any thread can take.
    pub fn unbound(&self) -> usize {
        self.unbound.len()
    }

    /// The thread holding the most idle ports, and how many: where a new call that needs
    /// more ports than are unbound should go, so its ports can all live on one thread.
    pub fn most_idle(&self) -> Option<(usize, usize)> {
        let mut counts: Vec<usize> = Vec::new();
        for &(p, _) in &self.idle {
            if let Some(t) = self.owner_of(p) {
                if counts.len() <= t {
                    counts.resize(t + 1, 0);
                }
                counts[t] += 1;
            }
        }
        counts
            .iter()
            .enumerate()
            .max_by_key(|&(t, n)| (*n, std::cmp::Reverse(t)))
            .map(|(t, n)| (t, *n))
    }

    pub fn available(&self) -> usize {
        self.unbound.len() + self.idle.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ports whose sockets are open (in use or idle on a relay thread).
    pub fn bound(&self) -> usize {
        self.bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut PortPool, now: u64) -> Vec<u16> {
        std::iter::from_fn(|| p.take(None, now, true).map(|t| t.port)).collect()
    }

    #[test]
    fn pairs_are_even_and_fit() {
        // 20007 is 20006's RTCP port; 20008 would need 20009.
        let mut p = PortPool::new(20001, 20008);
        assert_eq!(p.capacity(), 3);
        assert_eq!(drain(&mut p, 0), vec![20002, 20004, 20006]);
        p.give(20002, None, 0);
        assert_eq!(p.available(), 1);
        assert_eq!(drain(&mut p, 0), vec![20002]);
    }

    #[test]
    fn closed_ports_go_last() {
        let mut p = PortPool::new(20000, 20009);
        let a = p.take(None, 0, true).unwrap();
        p.give(a.port, None, 0);
        assert_eq!(drain(&mut p, 0), vec![20002, 20004, 20006, 20008, 20000]);
    }

    #[test]
    fn an_idle_port_is_reused_after_its_quiet_time_and_before_if_nothing_else_is_left() {
        let mut p = PortPool::new(20000, 20005);
        let a = p.take(None, 0, true).unwrap();
        p.give(a.port, Some(0), 1_000);
        assert_eq!(p.bound(), 1);
        // Still resting: a port never used goes first.
        let b = p.take(Some(0), 1_500, true).unwrap();
        assert_eq!(b.bound_on, None);
        assert_ne!(b.port, a.port);
        // Rested: reused, on its thread, without binding.
        let again = p.take(Some(0), 1_000 + QUIET_MS, true).unwrap();
        assert_eq!(
            again,
            Taken {
                port: a.port,
                bound_on: Some(0)
            }
        );
        p.give(again.port, Some(0), 5_000);
        // Not rested, but binding is not possible (no file descriptors): taken anyway.
        assert_eq!(p.take(Some(0), 5_001, false).map(|t| t.port), Some(a.port));
    }

    #[test]
    fn a_port_bound_on_another_thread_is_passed_over_not_lost() {
        let mut p = PortPool::new(20000, 20005);
        drain(&mut p, 0);
        p.give(20000, Some(1), 0);
        p.give(20002, Some(0), 0);
        p.give(20004, None, 0);
        assert_eq!(p.bound(), 2);
        let now = QUIET_MS;
        // A call on thread 0 skips 20000 (thread 1's sockets) and reuses its own 20002.
        assert_eq!(
            p.take(Some(0), now, true),
            Some(Taken {
                port: 20002,
                bound_on: Some(0)
            })
        );
        // Then an unbound one; thread 1's port is never handed to thread 0.
        assert_eq!(p.take(Some(0), now, true).map(|t| t.bound_on), Some(None));
        assert_eq!(p.take(Some(0), now, true), None);
        // A new call takes it, with its thread.
        assert_eq!(
            p.take(None, now, true),
            Some(Taken {
                port: 20000,
                bound_on: Some(1)
            })
        );
        // Closing its sockets unbinds it.
        p.give(20000, None, now);
        assert_eq!(p.bound(), 1);
    }

    #[test]
    fn the_thread_with_the_most_idle_ports_is_found() {
        let mut p = PortPool::new(20000, 20009);
        assert_eq!(p.most_idle(), None);
        drain(&mut p, 0);
        p.give(20000, Some(1), 0);
        p.give(20002, Some(0), 0);
        p.give(20004, Some(1), 0);
        p.give(20006, None, 0);
        assert_eq!(p.most_idle(), Some((1, 2)));
        assert_eq!(p.unbound(), 1);
    }
}
