//! The routing table: route key `(proxy number, sender)` → where the traffic goes. A
//! concurrent map keyed by two integers (the E.164 digits), so the data planes resolve a
//! message or call with one lock-free-read lookup. The engine writes it in the same step as
//! the store; nothing else does.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::e164::E164;
use super::model::Mode;
use super::sid::Sid;

/// `(proxy number, sender's real number)`: the one key the data planes look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub proxy: u64,
    pub sender: u64,
}

impl RouteKey {
    pub fn new(proxy: E164, sender: E164) -> Self {
        RouteKey {
            proxy: proxy.as_u64(),
            sender: sender.as_u64(),
        }
    }
}

/// State shared between a session's routes and the engine: the last interaction time,
/// which the data path stores (one atomic write) and the timer wheel reads when it fires.
#[derive(Debug)]
pub struct SessionLive {
    last_activity_ms: AtomicI64,
}

impl SessionLive {
    pub fn new(last_activity_ms: i64) -> Self {
        SessionLive {
            last_activity_ms: AtomicI64::new(last_activity_ms),
        }
    }
    pub fn touch(&self, now_ms: i64) {
        self.last_activity_ms.fetch_max(now_ms, Ordering::Relaxed);
    }
    pub fn last_activity_ms(&self) -> i64 {
        self.last_activity_ms.load(Ordering::Relaxed)
    }
}

/// Where traffic on one route key goes.
#[derive(Clone, Debug)]
pub struct Route {
    pub service: Sid,
    pub session: Sid,
    /// The sender's participant.
    pub participant: Sid,
    /// The other participant: its SID, real number and proxy number.
    pub counterpart: Sid,
    pub counterpart_real: E164,
    pub counterpart_proxy: E164,
    pub mode: Mode,
    pub live: Arc<SessionLive>,
}

/// A route's plain values (no `Arc`), what a data plane needs to forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub service: Sid,
    pub session: Sid,
    pub participant: Sid,
    pub counterpart: Sid,
    pub counterpart_real: E164,
    pub counterpart_proxy: E164,
    pub mode: Mode,
}

impl From<&Route> for Target {
    fn from(r: &Route) -> Target {
        Target {
            service: r.service,
            session: r.session,
            participant: r.participant,
            counterpart: r.counterpart,
            counterpart_real: r.counterpart_real,
            counterpart_proxy: r.counterpart_proxy,
            mode: r.mode,
        }
    }
}

type Map = DashMap<RouteKey, Route, foldhash::fast::RandomState>;

/// Concurrent map from route key to route.
pub struct RoutingTable {
    map: Map,
}

impl Default for RoutingTable {
    fn default() -> Self {
        Self::new()
    }
}

impl RoutingTable {
    pub fn new() -> Self {
        RoutingTable {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        RoutingTable {
            map: DashMap::with_capacity_and_hasher(n, foldhash::fast::RandomState::default()),
        }
    }

    /// Resolves traffic that arrived on `proxy` from `sender` (a copy of the route).
    pub fn resolve(&self, proxy: E164, sender: E164) -> Option<Route> {
        self.map
            .get(&RouteKey::new(proxy, sender))
            .map(|r| r.clone())
    }

    /// Resolves and runs `f` on the route in place, without copying it: the data planes'
    /// hot path (read what the outbound leg needs, store the interaction time).
    pub fn with_route<T>(
        &self,
        proxy: E164,
        sender: E164,
        f: impl FnOnce(&Route) -> T,
    ) -> Option<T> {
        self.map.get(&RouteKey::new(proxy, sender)).map(|r| f(&r))
    }

    /// Resolves to the route's plain values.
    pub fn target(&self, proxy: E164, sender: E164) -> Option<Target> {
        self.with_route(proxy, sender, |r| Target::from(r))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Only the engine writes the table in the daemon (in the same step as the store);
    /// public for benchmarks and tools that build a table directly.
    pub fn insert(&self, key: RouteKey, route: Route) {
        self.map.insert(key, route);
    }

    pub fn remove(&self, key: &RouteKey) {
        self.map.remove(key);
    }
}
