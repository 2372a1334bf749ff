//! The routing table: route key `(proxy number, sender)` → where the traffic goes, keyed by
//! two integers (the E.164 digits), so the data planes resolve a message or call with one
//! lookup. The engine writes it in the same step as the store; nothing else does.
//!
//! **Reads are wait-free** (left-right: two copies of the map, readers on one, the writer
//! on the other; a lookup takes no lock, never retries and never waits for a writer). Each
//! reading thread has its own read handle (made on its first lookup, kept in a
//! thread-local). **One writer at a time** (the engine, under its state lock; a mutex here
//! too): a change goes to the writer's copy and becomes visible when it is published, at
//! once after each change or, inside [`RoutingTable::batch`], once when the batch ends.
//! **What a reader sees**: every route whole (a route is one `Arc`, put in or taken out
//! whole), as of the last publish; a batch appears all at once. When `remove` or a batch
//! returns, no lookup that starts after it sees the removed routes. Routes are shared
//! between the two copies (one allocation per route, not two).
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use left_right::{Absorb, ReadHandle, ReadHandleFactory, WriteHandle};
use parking_lot::Mutex;

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

type Map = HashMap<RouteKey, Arc<Route>, foldhash::fast::RandomState>;

/// One copy of the table.
#[derive(Default)]
pub struct Routes(Map);

/// A change, as the writer logs it: applied to one copy, then to the other.
enum Op {
    Insert(RouteKey, Arc<Route>),
    Remove(RouteKey),
    Reserve(usize),
}

impl Absorb<Op> for Routes {
    fn absorb_first(&mut self, op: &mut Op, _: &Self) {
        match op {
            Op::Insert(k, r) => {
                self.0.insert(*k, r.clone());
            }
            Op::Remove(k) => {
                self.0.remove(k);
            }
            Op::Reserve(n) => self.0.reserve(*n),
        }
    }

    fn absorb_second(&mut self, op: Op, _: &Self) {
        match op {
            Op::Insert(k, r) => {
                self.0.insert(k, r);
            }
            Op::Remove(k) => {
                self.0.remove(&k);
            }
            Op::Reserve(n) => self.0.reserve(n),
        }
    }

    fn sync_with(&mut self, first: &Self) {
        self.0.clone_from(&first.0);
    }
}

struct Writer {
    handle: WriteHandle<Routes, Op>,
    /// Open batches: while above zero, changes wait for the last one to end.
    batches: u32,
    /// Changes since the last publish.
    pending: usize,
}

/// A publish of more changes than this brings the second copy up to date at once too, so
/// a big batch (a start-up load, a mass expiry) is not replayed by the next small change.
const LARGE: usize = 1024;

impl Writer {
    fn append(&mut self, op: Op) {
        self.handle.append(op);
        self.pending += 1;
        if self.batches == 0 {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.handle.publish();
        if self.pending > LARGE {
            self.handle.publish();
        }
        self.pending = 0;
    }
}

/// Distinguishes tables in the reading threads' handle caches.
static TABLE_IDS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's read handles, one per table it has read.
    static READERS: RefCell<Vec<(u64, Rc<ReadHandle<Routes>>)>> = const { RefCell::new(Vec::new()) };
}

/// The routing table: wait-free reads, one writer (see the module's documentation).
pub struct RoutingTable {
    id: u64,
    readers: ReadHandleFactory<Routes>,
    writer: Mutex<Writer>,
}

impl Default for RoutingTable {
    fn default() -> Self {
        Self::new()
    }
}

/// While it lives, changes to its table wait to be published together (see
/// [`RoutingTable::batch`]).
pub struct Batch<'a> {
    table: &'a RoutingTable,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let mut w = self.table.writer.lock();
        w.batches -= 1;
        if w.batches == 0 {
            w.publish();
        }
    }
}

impl RoutingTable {
    pub fn new() -> Self {
        let (handle, read) = left_right::new::<Routes, Op>();
        RoutingTable {
            id: TABLE_IDS.fetch_add(1, Ordering::Relaxed),
            readers: read.factory(),
            writer: Mutex::new(Writer {
                handle,
                batches: 0,
                pending: 0,
            }),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        let t = Self::new();
        t.writer.lock().append(Op::Reserve(n));
        t
    }

    /// Runs `f` on the copy readers see, through this thread's read handle.
    fn read<T>(&self, f: impl FnOnce(&Map) -> T) -> T {
        let handle = READERS.with(|r| {
            if let Some((_, h)) = r.borrow().iter().find(|(id, _)| *id == self.id) {
                return h.clone();
            }
            let h = Rc::new(self.readers.handle());
            let mut r = r.borrow_mut();
            // Handles of tables that are gone (their writer dropped) go first.
            r.retain(|(_, h)| !h.was_dropped());
            r.push((self.id, h.clone()));
            h
        });
        let guard = handle.enter();
        match guard {
            Some(g) => f(&g.0),
            // Only once the table is dropped, which `&self` rules out.
            None => f(&Map::default()),
        }
    }

    /// Resolves traffic that arrived on `proxy` from `sender` (a copy of the route).
    pub fn resolve(&self, proxy: E164, sender: E164) -> Option<Route> {
        self.with_route(proxy, sender, Route::clone)
    }

    /// Resolves and runs `f` on the route in place, without copying it: the data planes'
    /// hot path (read what the outbound leg needs, store the interaction time).
    pub fn with_route<T>(
        &self,
        proxy: E164,
        sender: E164,
        f: impl FnOnce(&Route) -> T,
    ) -> Option<T> {
        let key = RouteKey::new(proxy, sender);
        self.read(|m| m.get(&key).map(|r| f(r)))
    }

    /// Resolves to the route's plain values.
    pub fn target(&self, proxy: E164, sender: E164) -> Option<Target> {
        self.with_route(proxy, sender, |r| Target::from(r))
    }

    /// Routes visible to readers.
    pub fn len(&self) -> usize {
        self.read(|m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Only the engine writes the table in the daemon (in the same step as the store);
    /// public for benchmarks and tools that build a table directly.
    pub fn insert(&self, key: RouteKey, route: Route) {
        self.writer.lock().append(Op::Insert(key, Arc::new(route)));
    }

    pub fn remove(&self, key: &RouteKey) {
        self.writer.lock().append(Op::Remove(*key));
    }

    /// Holds back publishing until the returned guard (and any other open batch) drops:
    /// the changes made meanwhile appear to readers at once, with one publish (a mass
    /// expiry, a start-up load, both routes of a new session).
    pub fn batch(&self) -> Batch<'_> {
        self.writer.lock().batches += 1;
        Batch { table: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sid::SidKind;
    use std::sync::atomic::AtomicBool;

    fn number(n: u64) -> E164 {
        E164::from_u64(n).expect("valid number")
    }

    /// Session `i`'s two routes, each naming the other side consistently: a reader that saw a
    /// half-made or mixed route would find `counterpart_real` not matching its key.
    fn session(i: u64) -> [(RouteKey, Route); 2] {
        let (a, b) = (number(14_150_000_000 + i), number(12_120_000_000 + i));
        let (pa, pb) = (number(13_000_000_000 + i), number(13_100_000_000 + i));
        let live = Arc::new(SessionLive::new(0));
        let session = Sid::generate(SidKind::Session);
        let (ka, kb) = (
            Sid::generate(SidKind::Participant),
            Sid::generate(SidKind::Participant),
        );
        let route = |p, o, real, proxy| Route {
            service: session,
            session,
            participant: p,
            counterpart: o,
            counterpart_real: real,
            counterpart_proxy: proxy,
            mode: Mode::VoiceAndMessage,
            live: live.clone(),
        };
        [
            (RouteKey::new(pa, a), route(ka, kb, b, pb)),
            (RouteKey::new(pb, b), route(kb, ka, a, pa)),
        ]
    }

    fn whole(key: &RouteKey, r: &Route) -> bool {
        let i = key.proxy % 1_000_000;
        r.service == r.session
            && r.counterpart_real.as_u64() % 1_000_000 == i
            && r.counterpart_proxy.as_u64() % 1_000_000 == i
            && r.participant != r.counterpart
    }

    /// Readers on other threads while one writer opens sessions (both routes in one batch)
    /// and closes them: every route a reader sees is whole, a session's two routes appear
    /// together, and once its close returned no lookup finds either route.
    #[test]
    fn readers_see_whole_routes_and_none_of_a_closed_session() {
        const SESSIONS: u64 = 20_000;
        let t = Arc::new(RoutingTable::new());
        let closed = Arc::new(AtomicU64::new(0)); // sessions 0..closed are closed
        let closing = Arc::new(AtomicU64::new(0)); // sessions closing..opened are untouched
        let opened = Arc::new(AtomicU64::new(0)); // sessions 0..opened were opened
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|seed| {
                let (t, closed, closing, opened, done) = (
                    t.clone(),
                    closed.clone(),
                    closing.clone(),
                    opened.clone(),
                    done.clone(),
                );
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
                    for _ in 0..2_000_000 {
                        if done.load(Ordering::Acquire) {
                            break;
                        }
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Read the bounds first: what they promise held before the lookup.
                        let (c, o) = (
                            closed.load(Ordering::Acquire),
                            opened.load(Ordering::Acquire),
                        );
                        if o == 0 {
                            continue;
                        }
                        let i = x % o;
                        let keys = session(i).map(|(k, _)| k);
                        let got: Vec<Option<bool>> = keys
                            .iter()
                            .map(|k| {
                                t.with_route(number(k.proxy), number(k.sender), |r| whole(k, r))
                            })
                            .collect();
                        for g in &got {
                            assert_ne!(*g, Some(false), "a half-made route for session {i}");
                        }
                        if i < c {
                            assert_eq!(got, [None, None], "closed session {i} still routed");
                        }
                        if i >= closing.load(Ordering::Acquire) {
                            // Opened before the lookups and its close not begun after them:
                            // both routes were there the whole time.
                            assert_eq!(got, [Some(true), Some(true)], "session {i}");
                        }
                        seen += got.iter().filter(|g| g.is_some()).count() as u64;
                    }
                    seen
                })
            })
            .collect();
        for i in 0..SESSIONS {
            {
                let _b = t.batch();
                for (k, r) in session(i) {
                    t.insert(k, r);
                }
            }
            opened.store(i + 1, Ordering::Release);
            // Keep about a hundred open; close the oldest.
            if i >= 100 {
                let c = i - 100;
                closing.store(c + 1, Ordering::Release);
                {
                    let _b = t.batch();
                    for (k, _) in session(c) {
                        t.remove(&k);
                    }
                }
                closed.store(c + 1, Ordering::Release);
            }
        }
        done.store(true, Ordering::Release);
        let seen: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
        assert!(seen > 0, "the readers never found a route");
        assert_eq!(t.len(), 200);
    }

    #[test]
    fn a_change_is_visible_when_it_returns_and_a_batch_all_at_once() {
        let t = RoutingTable::with_capacity(4);
        let [(ka, ra), (kb, rb)] = session(7);
        t.insert(ka, ra);
        assert!(t.target(number(ka.proxy), number(ka.sender)).is_some());
        {
            let _b = t.batch();
            t.insert(kb, rb);
            t.remove(&ka);
            // Not yet published: readers still see the table as it was.
            assert!(t.target(number(kb.proxy), number(kb.sender)).is_none());
            assert!(t.target(number(ka.proxy), number(ka.sender)).is_some());
        }
        assert!(t.target(number(kb.proxy), number(kb.sender)).is_some());
        assert!(t.target(number(ka.proxy), number(ka.sender)).is_none());
        assert_eq!(t.len(), 1);
    }
}
