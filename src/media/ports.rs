//! The relay's port pool: even RTP ports (each with the odd RTCP port above) from
//! `media.port_range`, handed out round-robin so a port freed by one call is the last to be
//! reused (late packets of an old call do not reach a new one).

use std::collections::VecDeque;

pub struct PortPool {
    free: VecDeque<u16>,
    capacity: usize,
}

impl PortPool {
    /// Every even port `p` in `first..=last` with `p + 1 <= last`.
    pub fn new(first: u16, last: u16) -> PortPool {
        let first = first + (first & 1);
        let free: VecDeque<u16> = (first..last)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|q| q <= last))
            .collect();
        let capacity = free.len();
        PortPool { free, capacity }
    }

    /// The next free RTP port.
    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    /// A port back to the pool (to the end of the queue).
    pub fn give(&mut self, port: u16) {
        debug_assert!(!self.free.contains(&port), "port {port} returned twice");
        self.free.push_back(port);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_fit() {
        // 20007 is 20006's RTCP port; 20008 would need 20009.
        let mut p = PortPool::new(20001, 20008);
        assert_eq!(p.capacity(), 3);
        assert_eq!(p.take(), Some(20002));
        assert_eq!(p.take(), Some(20004));
        assert_eq!(p.take(), Some(20006));
        assert_eq!(p.take(), None);
        p.give(20002);
        assert_eq!(p.available(), 1);
        assert_eq!(p.take(), Some(20002));
    }

    #[test]
    fn freed_ports_go_last() {
        let mut p = PortPool::new(20000, 20009);
        let a = p.take().unwrap();
        p.give(a);
        let order: Vec<u16> = std::iter::from_fn(|| p.take()).collect();
        assert_eq!(order, vec![20002, 20004, 20006, 20008, 20000]);
    }
}
