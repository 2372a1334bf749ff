//! The clock, a leaf: wall-clock milliseconds since the Unix epoch, and a monotonic
//! millisecond clock anchored to the wall clock at its start (protocol state machines are
//! given its readings; a wall-clock step back never moves their time backwards). Only the
//! drivers (`net/`, `app`) read it; the sans-IO cores are passed the time.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A monotonic clock in milliseconds, starting at the wall-clock time it was made.
#[derive(Clone, Copy, Debug)]
pub struct Millis {
    base: u64,
    start: Instant,
}

impl Millis {
    pub fn start() -> Millis {
        Millis {
            base: now_ms().max(0) as u64,
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> u64 {
        self.base + self.start.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_from_the_wall_clock() {
        let c = Millis::start();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!((a as i64 - now_ms()).abs() < 1_000);
    }
}
