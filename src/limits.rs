//! Bounds on the connections a TCP listener holds (API, SMPP, SIP): at most so many at once
//! and so many from one source address, and what is refused counted and logged as one
//! summary line per interval instead of a line per connection (a flood would otherwise
//! write thousands of lines a second). A leaf: std, `tracing` and the metrics only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a listener logs what it refused.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

struct Held {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Refused since the last summary line, by reason, and when that line was written.
    refused: Vec<(&'static str, u64)>,
    logged_at: Option<Instant>,
}

/// One listener's bounds. Cheap to clone (shared).
#[derive(Clone)]
pub struct ConnLimits {
    listener: &'static str,
    max_total: usize,
    max_per_address: usize,
    held: Arc<Mutex<Held>>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds `max_total` connections.
    Total,
    /// The source address holds `max_per_address`.
    PerAddress,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "limit",
            Refused::PerAddress => "per_address",
        }
    }
}

/// A connection counted against its listener's bounds until dropped.
pub struct ConnGuard {
    limits: ConnLimits,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut h = self.limits.lock();
        h.total = h.total.saturating_sub(1);
        self.limits.gauge(h.total);
        if let Some(n) = h.per_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                h.per_address.remove(&self.ip);
            }
        }
    }
}

impl ConnLimits {
    pub fn new(listener: &'static str, max_total: usize, max_per_address: usize) -> ConnLimits {
        ConnLimits {
            listener,
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            held: Arc::new(Mutex::new(Held {
                total: 0,
                per_address: HashMap::new(),
                refused: Vec::new(),
                logged_at: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `ip`, or says why it is refused (counted in
    /// `maskd_connections_refused_total` and in the next summary line).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<ConnGuard, Refused> {
        let mut h = self.lock();
        let from_ip = h.per_address.get(&ip).copied().unwrap_or(0);
        let refused = if h.total >= self.max_total {
            Some(Refused::Total)
        } else if from_ip >= self.max_per_address {
            Some(Refused::PerAddress)
        } else {
            None
        };
        if let Some(why) = refused {
            self.count_refused(&mut h, why.as_str(), now);
            return Err(why);
        }
        h.total += 1;
        self.gauge(h.total);
        *h.per_address.entry(ip).or_insert(0) += 1;
        Ok(ConnGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// A connection the listener refused for a reason of its own (e.g. SMPP's cap on
    /// connections not yet bound): counted and summarised with the others.
    pub fn refused(&self, reason: &'static str, now: Instant) {
        let mut h = self.lock();
        self.count_refused(&mut h, reason, now);
    }

    fn count_refused(&self, h: &mut Held, reason: &'static str, now: Instant) {
        crate::metrics::get()
            .connections_refused
            .with_label_values(&[self.listener, reason])
            .inc();
        match h.refused.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => h.refused.push((reason, 1)),
        }
        // One line for what was refused since the last one, at most once per
        // `SUMMARY_EVERY` (the first refusal of a quiet listener is told at once).
        if h.logged_at
            .is_some_and(|t| now.duration_since(t) < SUMMARY_EVERY)
        {
            return;
        }
        let counts: Vec<String> = std::mem::take(&mut h.refused)
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        h.logged_at = Some(now);
        tracing::warn!(
            listener = self.listener,
            refused = %counts.join(" "),
            max = self.max_total,
            max_per_address = self.max_per_address,
            "connections refused (one line per {}s at most)",
            SUMMARY_EVERY.as_secs()
        );
    }

    fn gauge(&self, open: usize) {
        crate::metrics::get()
            .connections_open
            .with_label_values(&[self.listener])
            .set(open as i64);
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_by_total_and_by_address_and_releases_on_drop() {
        let l = ConnLimits::new("test", 3, 2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let t = Instant::now();
        let g1 = l.admit(a, t).unwrap();
        let _g2 = l.admit(a, t).unwrap();
        assert_eq!(l.admit(a, t).err(), Some(Refused::PerAddress));
        let _g3 = l.admit(b, t).unwrap();
        assert_eq!(l.admit(b, t).err(), Some(Refused::Total));
        drop(g1);
        assert_eq!(l.open(), 2);
        assert!(l.admit(a, t).is_ok(), "a place came back");
    }
}
