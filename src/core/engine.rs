//! The engine: the one owner of control-plane state. It keeps services, pools, sessions and
//! participants in memory (rebuilt from the store at start), allocates proxy numbers, keeps
//! the routing table and the timer wheel in step, and sends every change to the store in the
//! same critical section, so the store sees changes in the order memory did. Callers get a
//! `Durable` to await before they answer. Time is passed in; the engine never reads a clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;

use super::allocator::{self, AllocError, Candidate, History};
use super::callback::CallbackItem;
use super::e164::E164;
use super::error::{CoreError, Resource};
use super::model::*;
use super::routing::{Route, RouteKey, RoutingTable, SessionLive};
use super::sid::{Sid, SidKind};
use super::store::{durable_pair, Durable, Loaded, Store, StoreError, WriteOp};
use crate::metrics;
use crate::timer::{TimerKey, TimerWheel};

/// Where a page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    Start,
    After(u64),
    Before(u64),
}

/// One page of a listing in creation order.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more_after: bool,
}

fn page_of(index: &BTreeMap<u64, Sid>, cursor: Cursor, limit: usize) -> (Vec<Sid>, bool) {
    match cursor {
        Cursor::Start | Cursor::After(_) => {
            let from = match cursor {
                Cursor::After(s) => Bound::Excluded(s),
                _ => Bound::Unbounded,
            };
            let mut v: Vec<Sid> = index
                .range((from, Bound::Unbounded))
                .take(limit + 1)
                .map(|(_, s)| *s)
                .collect();
            let more = v.len() > limit;
            v.truncate(limit);
            (v, more)
        }
        Cursor::Before(s) => {
            let mut v: Vec<Sid> = index
                .range(..s)
                .rev()
                .take(limit)
                .map(|(_, s)| *s)
                .collect();
            v.reverse();
            (v, true)
        }
    }
}

/// Service fields an app may set (create and update); `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct ServicePatch {
    pub unique_name: Option<String>,
    pub default_ttl: Option<u64>,
    pub callback_url: Option<String>,
    pub geo_match_level: Option<GeoMatchLevel>,
    pub number_selection_behavior: Option<NumberSelection>,
    pub intercept_callback_url: Option<String>,
    pub out_of_session_callback_url: Option<String>,
    pub chat_instance_sid: Option<String>,
    pub cooloff: Option<u64>,
}

/// A participant to add, as the app gave it.
#[derive(Debug, Default, Clone)]
pub struct NewParticipant {
    pub identifier: String,
    pub friendly_name: Option<String>,
    pub proxy_identifier: Option<String>,
    pub proxy_identifier_sid: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct NewSession {
    pub unique_name: Option<String>,
    pub date_expiry: Option<Timestamp>,
    pub ttl: Option<u64>,
    pub mode: Option<Mode>,
    pub status: Option<SessionStatus>,
    pub participants: Vec<NewParticipant>,
}

#[derive(Debug, Default, Clone)]
pub struct SessionPatch {
    pub date_expiry: Option<Timestamp>,
    pub ttl: Option<u64>,
    pub status: Option<SessionStatus>,
}

/// A message the API asked maskd to send; the SMS plane takes it from the outbox.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    pub interaction: Sid,
    pub session: Sid,
    pub participant: Sid,
    /// The participant's proxy number: the message comes from it.
    pub from: E164,
    /// The participant's real number.
    pub to: E164,
    pub body: String,
}

/// Where API-originated messages go once durable. The SMS plane implements it.
pub trait Outbox: Send + Sync {
    fn enqueue(&self, msg: OutboundMessage);
}

/// What the out-of-session callback needs to know (see `Engine::out_of_session`).
#[derive(Debug, Clone)]
pub struct OutOfSession {
    pub service: Sid,
    pub url: Option<String>,
    pub recent: Option<(Session, Option<Participant>, Option<Participant>)>,
}

/// Where status callbacks go once they are in the store's queue (the net layer's sender).
pub trait CallbackSink: Send + Sync {
    fn queued(&self, items: Vec<CallbackItem>);
}

/// Counts for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    pub sessions_by_status: Vec<(SessionStatus, u64)>,
    pub routes: usize,
    pub wheel: usize,
    /// `(service unique name, pool size, numbers in use)`.
    pub pools: Vec<(String, u64, u64)>,
}

struct SessionState {
    session: Session,
    /// Participants in creation order, deleted ones included.
    participants: Vec<Sid>,
    live: Arc<SessionLive>,
    timer: Option<TimerKey>,
}

/// The per-session and per-route-key maps (a million entries and more): foldhash, randomly
/// seeded per map, instead of SipHash, which was 6 % of start-up at 200k sessions. Their keys
/// are SIDs maskd made and numbers from authenticated API clients.
type Big<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct State {
    seq: u64,
    services: HashMap<Sid, Service>,
    service_names: HashMap<String, Sid>,
    service_order: BTreeMap<u64, Sid>,
    numbers: HashMap<Sid, PhoneNumber>,
    number_index: HashMap<u64, Sid>,
    pools: HashMap<Sid, BTreeMap<u64, Sid>>,
    /// Boxed: a hash table is at most 7/8 full and often half, and empty slots of inline
    /// 200-byte values were a third of the memory (and start-up time) at 1M sessions.
    sessions: Big<Sid, Box<SessionState>>,
    session_names: HashMap<(Sid, String), Sid>,
    service_sessions: Big<Sid, BTreeMap<u64, Sid>>,
    participants: Big<Sid, Box<Participant>>,
    /// Route keys reserved by active sessions: `(proxy, identifier)`.
    active: HashSet<RouteKey, foldhash::fast::RandomState>,
    /// Recency of `(proxy, identifier)` assignments, as `seq`.
    used: Big<RouteKey, u64>,
    /// `(identifier, counterpart)` → the proxy the identifier last had with them.
    with: Big<(u64, u64), E164>,
    /// Cooling route keys: the counterpart they may still go to, and until when (s).
    cooling: HashMap<RouteKey, (u64, Timestamp)>,
}

struct HistoryView<'a> {
    st: &'a State,
    now: Timestamp,
}

impl History for HistoryView<'_> {
    fn is_active(&self, proxy: E164, identifier: E164) -> bool {
        self.st.active.contains(&RouteKey::new(proxy, identifier))
    }
    fn is_cooling(&self, proxy: E164, identifier: E164, counterpart: Option<E164>) -> bool {
        match self.st.cooling.get(&RouteKey::new(proxy, identifier)) {
            Some((cp, until)) if *until > self.now => counterpart.map(E164::as_u64) != Some(*cp),
            _ => false,
        }
    }
    fn last_used(&self, proxy: E164, identifier: E164) -> Option<u64> {
        self.st.used.get(&RouteKey::new(proxy, identifier)).copied()
    }
    fn last_with(&self, identifier: E164, counterpart: E164) -> Option<E164> {
        self.st
            .with
            .get(&(identifier.as_u64(), counterpart.as_u64()))
            .copied()
    }
}

/// Tuning the engine takes from config.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub wheel_tick_ms: u64,
    pub wheel_slots: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            wheel_tick_ms: 100,
            wheel_slots: 4096,
        }
    }
}

pub struct Engine {
    state: Mutex<State>,
    routes: RoutingTable,
    wheel: Mutex<TimerWheel<Sid>>,
    store: Arc<dyn Store>,
    outbox: Mutex<Option<Arc<dyn Outbox>>>,
    callbacks: Mutex<Option<Arc<dyn CallbackSink>>>,
}

fn ms(t: Timestamp) -> i64 {
    t.saturating_mul(1000)
}

impl Engine {
    /// Rebuilds the engine from the store. `now_ms` is the current time: sessions whose time
    /// passed while maskd was down close on the first `expire`.
    pub fn open(
        store: Arc<dyn Store>,
        opts: EngineOptions,
        now_ms: i64,
    ) -> Result<Engine, StoreError> {
        let snap = store.load()?;
        let now = now_ms.div_euclid(1000);
        let mut st = State {
            seq: snap.max_seq,
            ..State::default()
        };
        for s in snap.services {
            st.service_names.insert(s.unique_name.clone(), s.sid);
            st.service_order.insert(s.seq, s.sid);
            st.pools.entry(s.sid).or_default();
            st.service_sessions.entry(s.sid).or_default();
            st.services.insert(s.sid, s);
        }
        for n in snap.numbers {
            st.number_index.insert(n.number.as_u64(), n.sid);
            st.pools
                .entry(n.service_sid)
                .or_default()
                .insert(n.seq, n.sid);
            st.numbers.insert(n.sid, PhoneNumber { in_use: 0, ..n });
        }
        // Sized once: growing these by doubling at 1M sessions copied and re-hashed every
        // table several times over (memmove and fresh-page zeroing were ~45 % of start-up).
        st.sessions.reserve(snap.sessions);
        st.participants.reserve(snap.participants);
        st.used.reserve(snap.participants);
        st.active.reserve(snap.participants);
        st.with.reserve(snap.participants);
        let routes = RoutingTable::with_capacity(snap.sessions * 2);
        // Start one tick back so deadlines that passed while maskd was down fire on the
        // first `expire(now)`.
        let start = (now_ms.max(0) as u64).saturating_sub(opts.wheel_tick_ms);
        let mut wheel = TimerWheel::new(opts.wheel_tick_ms, opts.wheel_slots, start);
        // The store decodes rows on a second thread while this one builds the tables: at a
        // million sessions each side is about half the work.
        let mut apply = |row: Loaded| match row {
            Loaded::Session(s) => st.insert_session(s),
            Loaded::Participant(p) => {
                if let Some(ss) = st.sessions.get_mut(&p.session_sid) {
                    ss.participants.push(p.sid);
                    // The latest assignment of a route key wins, whatever the row order.
                    let seq = st
                        .used
                        .entry(RouteKey::new(p.proxy, p.identifier))
                        .or_insert(p.seq);
                    *seq = (*seq).max(p.seq);
                    st.participants.insert(p.sid, Box::new(p));
                }
            }
        };
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Loaded>>(8);
            let reader = scope.spawn(|| {
                let mut batch = Vec::with_capacity(1024);
                let tx = tx;
                let r = store.load_rows(&mut |row| {
                    batch.push(row);
                    if batch.len() == 1024 {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(1024));
                        // The receiver only goes away if this thread's scope ends early.
                        let _ = tx.send(full);
                    }
                });
                let _ = tx.send(batch);
                r
            });
            for batch in rx {
                for row in batch {
                    apply(row);
                }
            }
            reader.join().unwrap_or(Err(StoreError::Closed))
        })?;
        // Rows come in no particular order: each session lists its participants by seq.
        let State {
            sessions,
            participants,
            ..
        } = &mut st;
        for ss in sessions.values_mut() {
            if ss.participants.len() > 1 {
                ss.participants
                    .sort_unstable_by_key(|p| participants[p].seq);
            }
        }
        let sids: Vec<Sid> = st.sessions.keys().copied().collect();
        for sid in sids {
            let live_parts = st.live_participants(sid);
            if let [a, b] = live_parts[..] {
                let (pa, pb) = (&st.participants[&a], &st.participants[&b]);
                let (ia, pxa, ib, pxb) = (pa.identifier, pa.proxy, pb.identifier, pb.proxy);
                st.with.insert((ia.as_u64(), ib.as_u64()), pxa);
                st.with.insert((ib.as_u64(), ia.as_u64()), pxb);
            }
            let ss = &st.sessions[&sid];
            if ss.session.status.is_active() {
                for p in &live_parts {
                    let part = &st.participants[p];
                    let key = RouteKey::new(part.proxy, part.identifier);
                    let pn = st.number_index.get(&part.proxy.as_u64()).copied();
                    st.active.insert(key);
                    if let Some(n) = pn.and_then(|pn| st.numbers.get_mut(&pn)) {
                        n.in_use += 1;
                    }
                }
                publish_routes(&st, &routes, sid);
                let ss = &st.sessions[&sid];
                if let Some((deadline, _)) = ss.session.deadline_ms(ss.live.last_activity_ms()) {
                    let key = wheel.insert(deadline.max(0) as u64, sid);
                    if let Some(ss) = st.sessions.get_mut(&sid) {
                        ss.timer = Some(key);
                    }
                }
            } else if let (Some(ended), Some(svc)) = (
                ss.session.date_ended,
                st.services.get(&ss.session.service_sid),
            ) {
                let until = ended.saturating_add(svc.cooloff as i64);
                if svc.cooloff > 0 && until > now {
                    if let [a, b] = live_parts[..] {
                        let (pa, pb) = (&st.participants[&a], &st.participants[&b]);
                        let c1 = (
                            RouteKey::new(pa.proxy, pa.identifier),
                            (pb.identifier.as_u64(), until),
                        );
                        let c2 = (
                            RouteKey::new(pb.proxy, pb.identifier),
                            (pa.identifier.as_u64(), until),
                        );
                        st.cooling.insert(c1.0, c1.1);
                        st.cooling.insert(c2.0, c2.1);
                    }
                }
            }
        }
        Ok(Engine {
            state: Mutex::new(st),
            routes,
            wheel: Mutex::new(wheel),
            store,
            outbox: Mutex::new(None),
            callbacks: Mutex::new(None),
        })
    }

    /// The routing table the data planes read.
    pub fn routes(&self) -> &RoutingTable {
        &self.routes
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn set_outbox(&self, outbox: Arc<dyn Outbox>) {
        *self.outbox.lock() = Some(outbox);
    }

    /// The out-of-session callback URL of the service owning `proxy`, if any.
    pub fn out_of_session_url(&self, proxy: E164) -> Option<String> {
        let st = self.state.lock();
        let num = st.number_index.get(&proxy.as_u64())?;
        let service = st.numbers.get(num)?.service_sid;
        st.services
            .get(&service)?
            .out_of_session_callback_url
            .clone()
    }

    /// For traffic on `proxy` from `sender` with no active session: the service that owns
    /// `proxy`, its out-of-session callback URL and the most recent session the pair had,
    /// with its inbound (the sender's) and outbound participants. `None`: not a pool number.
    pub fn out_of_session(&self, proxy: E164, sender: E164) -> Option<OutOfSession> {
        let st = self.state.lock();
        let num = st.number_index.get(&proxy.as_u64())?;
        let service_sid = st.numbers.get(num)?.service_sid;
        let service = st.services.get(&service_sid)?;
        // Newest first; the first session where the sender had this proxy number.
        let recent = st.service_sessions.get(&service_sid).and_then(|order| {
            order.values().rev().find_map(|sid| {
                let ss = st.sessions.get(sid)?;
                let parts: Vec<&Participant> = ss
                    .participants
                    .iter()
                    .filter_map(|p| st.participants.get(p).map(|b| &**b))
                    .collect();
                let me = parts
                    .iter()
                    .find(|p| p.identifier == sender && p.proxy == proxy)?;
                let other = parts.iter().find(|p| p.sid != me.sid).map(|p| (*p).clone());
                Some((ss.session.clone(), Some((*me).clone()), other))
            })
        });
        Some(OutOfSession {
            service: service_sid,
            url: service.out_of_session_callback_url.clone(),
            recent,
        })
    }

    /// Connects the status callback sender; changes made before are in the store's queue.
    pub fn set_callback_sink(&self, sink: Arc<dyn CallbackSink>) {
        *self.callbacks.lock() = Some(sink);
    }

    /// Adds a status callback to `ops` for every interaction change in them whose service
    /// has a `callback_url` (in the same batch: the change and its callback are durable
    /// together). Called under the state lock; returns the items for the sink.
    fn status_callbacks(&self, st: &mut State, ops: &mut Vec<WriteOp>) -> Vec<CallbackItem> {
        let mut items = Vec::new();
        for op in ops.iter() {
            let item = match op {
                WriteOp::PutInteraction(i) => {
                    let Some(url) = st
                        .services
                        .get(&i.service_sid)
                        .and_then(|s| s.callback_url.clone())
                    else {
                        continue;
                    };
                    CallbackItem {
                        id: 0,
                        interaction: i.sid,
                        url: Some(url),
                        params: Some(super::callback::interaction_params(i, "", true)),
                        outbound: None,
                        created: i.date_updated,
                    }
                }
                WriteOp::SetOutboundStatus {
                    interaction,
                    status,
                    resource_sid,
                    at,
                } => {
                    // Which service this interaction belongs to is read back when sent.
                    if !st.services.values().any(|s| s.callback_url.is_some()) {
                        continue;
                    }
                    CallbackItem {
                        id: 0,
                        interaction: *interaction,
                        url: None,
                        params: None,
                        outbound: Some((*status, resource_sid.clone(), *at)),
                        created: *at,
                    }
                }
                _ => continue,
            };
            items.push(item);
        }
        for it in items.iter_mut() {
            it.id = st.next_seq();
            ops.push(WriteOp::PutCallback(it.clone()));
        }
        items
    }

    fn hand_callbacks(&self, items: Vec<CallbackItem>) {
        if items.is_empty() {
            return;
        }
        let sink = self.callbacks.lock().clone();
        if let Some(s) = sink {
            s.queued(items);
        }
    }

    /// Hands a durable message to the outbox, if one is connected; otherwise it stays
    /// `queued` in the store, which is the persistent outbound queue.
    pub fn enqueue_outbound(&self, msg: OutboundMessage) {
        let outbox = self.outbox.lock().clone();
        if let Some(o) = outbox {
            o.enqueue(msg);
        }
    }

    fn submit(&self, ops: Vec<WriteOp>) -> Durable {
        let (done, durable) = durable_pair();
        self.store.submit(ops, Some(done));
        durable
    }

    // ----- services -----

    pub fn resolve_service(&self, sid_or_name: &str) -> Result<Sid, CoreError> {
        let st = self.state.lock();
        st.resolve_service(sid_or_name)
    }

    pub fn service(&self, sid: Sid) -> Result<Service, CoreError> {
        let st = self.state.lock();
        st.services
            .get(&sid)
            .cloned()
            .ok_or(CoreError::NotFound(Resource::Service))
    }

    pub fn list_services(&self, cursor: Cursor, limit: usize) -> Page<Service> {
        let st = self.state.lock();
        let (sids, more_after) = page_of(&st.service_order, cursor, limit);
        Page {
            items: sids
                .iter()
                .filter_map(|s| st.services.get(s).cloned())
                .collect(),
            more_after,
        }
    }

    pub fn create_service(
        &self,
        patch: ServicePatch,
        now: Timestamp,
    ) -> Result<(Service, Durable), CoreError> {
        let mut st = self.state.lock();
        let name = patch
            .unique_name
            .clone()
            .ok_or_else(|| CoreError::invalid("UniqueName", "is required"))?;
        check_name("UniqueName", &name)?;
        if st.service_names.contains_key(&name) {
            return Err(CoreError::ServiceNameTaken);
        }
        let seq = st.next_seq();
        let mut svc = Service {
            sid: Sid::generate(SidKind::Service),
            seq,
            unique_name: name,
            callback_url: None,
            default_ttl: 0,
            geo_match_level: GeoMatchLevel::Country,
            number_selection_behavior: NumberSelection::PreferSticky,
            intercept_callback_url: None,
            out_of_session_callback_url: None,
            chat_instance_sid: None,
            cooloff: 0,
            date_created: now,
            date_updated: now,
        };
        apply_service_patch(&mut svc, patch);
        st.service_names.insert(svc.unique_name.clone(), svc.sid);
        st.service_order.insert(seq, svc.sid);
        st.pools.insert(svc.sid, BTreeMap::new());
        st.service_sessions.insert(svc.sid, BTreeMap::new());
        st.services.insert(svc.sid, svc.clone());
        let d = self.submit(vec![WriteOp::PutService(svc.clone())]);
        Ok((svc, d))
    }

    pub fn update_service(
        &self,
        sid: Sid,
        patch: ServicePatch,
        now: Timestamp,
    ) -> Result<(Service, Durable), CoreError> {
        let mut st = self.state.lock();
        let old = st
            .services
            .get(&sid)
            .cloned()
            .ok_or(CoreError::NotFound(Resource::Service))?;
        if let Some(name) = &patch.unique_name {
            check_name("UniqueName", name)?;
            if *name != old.unique_name && st.service_names.contains_key(name) {
                return Err(CoreError::ServiceNameTaken);
            }
        }
        let mut svc = old.clone();
        apply_service_patch(&mut svc, patch);
        svc.date_updated = now;
        if svc.unique_name != old.unique_name {
            st.service_names.remove(&old.unique_name);
            st.service_names.insert(svc.unique_name.clone(), sid);
        }
        st.services.insert(sid, svc.clone());
        let d = self.submit(vec![WriteOp::PutService(svc.clone())]);
        Ok((svc, d))
    }

    /// Deletes a service with its pool, sessions, participants and interactions; the route
    /// keys of its active sessions are withdrawn at once.
    pub fn delete_service(&self, sid: Sid) -> Result<Durable, CoreError> {
        let mut st = self.state.lock();
        let svc = st
            .services
            .remove(&sid)
            .ok_or(CoreError::NotFound(Resource::Service))?;
        st.service_names.remove(&svc.unique_name);
        st.service_order.remove(&svc.seq);
        let sessions: Vec<Sid> = st
            .service_sessions
            .remove(&sid)
            .unwrap_or_default()
            .into_values()
            .collect();
        for s in sessions {
            self.drop_session(&mut st, s);
        }
        for n in st.pools.remove(&sid).unwrap_or_default().into_values() {
            if let Some(num) = st.numbers.remove(&n) {
                st.number_index.remove(&num.number.as_u64());
            }
        }
        Ok(self.submit(vec![WriteOp::DeleteService(sid)]))
    }

    /// Creates or updates a service from config, idempotently: missing numbers are added,
    /// numbers not listed are left alone (removing them could cut live sessions).
    pub fn ensure_service(
        &self,
        name: &str,
        default_ttl: u64,
        cooloff: u64,
        numbers: &[E164],
        now: Timestamp,
    ) -> Result<Durable, CoreError> {
        let existing = self.resolve_service(name).ok();
        let patch = ServicePatch {
            unique_name: Some(name.to_string()),
            default_ttl: Some(default_ttl),
            cooloff: Some(cooloff),
            ..ServicePatch::default()
        };
        let (svc, mut last) = match existing {
            Some(sid) => self.update_service(sid, patch, now)?,
            None => self.create_service(patch, now)?,
        };
        for n in numbers {
            let known = {
                let st = self.state.lock();
                st.number_index
                    .get(&n.as_u64())
                    .map(|pn| st.numbers[pn].service_sid)
            };
            match known {
                Some(s) if s == svc.sid => continue,
                Some(_) => return Err(CoreError::NumberInOtherService),
                None => {
                    last = self
                        .add_number(svc.sid, None, Some(&n.to_string()), false, now)?
                        .1
                }
            }
        }
        Ok(last)
    }

    // ----- phone numbers -----

    pub fn number(&self, service: Sid, sid_or_number: &str) -> Result<PhoneNumber, CoreError> {
        let st = self.state.lock();
        let sid = st.resolve_number(service, sid_or_number)?;
        Ok(st.numbers[&sid].clone())
    }

    pub fn list_numbers(
        &self,
        service: Sid,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<PhoneNumber>, CoreError> {
        let st = self.state.lock();
        let pool = st
            .pools
            .get(&service)
            .ok_or(CoreError::NotFound(Resource::Service))?;
        let (sids, more_after) = page_of(pool, cursor, limit);
        Ok(Page {
            items: sids.iter().map(|s| st.numbers[s].clone()).collect(),
            more_after,
        })
    }

    /// Adds a number to a service pool by `Sid` (a PN of this deployment) or `PhoneNumber`.
    pub fn add_number(
        &self,
        service: Sid,
        sid: Option<&str>,
        number: Option<&str>,
        is_reserved: bool,
        now: Timestamp,
    ) -> Result<(PhoneNumber, Durable), CoreError> {
        let mut st = self.state.lock();
        if !st.services.contains_key(&service) {
            return Err(CoreError::NotFound(Resource::Service));
        }
        let e164 = match (sid, number) {
            (_, Some(text)) => {
                E164::parse(text).map_err(|e| CoreError::invalid("PhoneNumber", e.to_string()))?
            }
            (Some(text), None) => {
                // Without a carrier account there are no IncomingPhoneNumbers to look up: a
                // PN SID can only name a number already in some pool here.
                let pn =
                    Sid::parse(SidKind::PhoneNumber, text).ok_or(CoreError::NumberSidNotFound)?;
                let n = st.numbers.get(&pn).ok_or(CoreError::NumberSidNotFound)?;
                return Err(if n.service_sid == service {
                    CoreError::NumberInService
                } else {
                    CoreError::NumberInOtherService
                });
            }
            (None, None) => {
                return Err(CoreError::invalid(
                    "PhoneNumber",
                    "Sid or PhoneNumber is required",
                ))
            }
        };
        if let Some(pn) = st.number_index.get(&e164.as_u64()) {
            return Err(if st.numbers[pn].service_sid == service {
                CoreError::NumberInService
            } else {
                CoreError::NumberInOtherService
            });
        }
        let seq = st.next_seq();
        let n = PhoneNumber {
            sid: Sid::generate(SidKind::PhoneNumber),
            seq,
            service_sid: service,
            number: e164,
            friendly_name: e164.to_string(),
            is_reserved,
            in_use: 0,
            date_created: now,
            date_updated: now,
        };
        st.number_index.insert(e164.as_u64(), n.sid);
        st.pools.entry(service).or_default().insert(seq, n.sid);
        st.numbers.insert(n.sid, n.clone());
        let d = self.submit(vec![WriteOp::PutNumber(n.clone())]);
        Ok((n, d))
    }

    pub fn update_number(
        &self,
        service: Sid,
        sid_or_number: &str,
        is_reserved: Option<bool>,
        now: Timestamp,
    ) -> Result<(PhoneNumber, Durable), CoreError> {
        let mut st = self.state.lock();
        let sid = st.resolve_number(service, sid_or_number)?;
        let n = st
            .numbers
            .get_mut(&sid)
            .ok_or(CoreError::NotFound(Resource::PhoneNumber))?;
        if let Some(r) = is_reserved {
            n.is_reserved = r;
        }
        n.date_updated = now;
        let n = n.clone();
        let d = self.submit(vec![WriteOp::PutNumber(n.clone())]);
        Ok((n, d))
    }

    pub fn delete_number(&self, service: Sid, sid_or_number: &str) -> Result<Durable, CoreError> {
        let mut st = self.state.lock();
        let sid = st.resolve_number(service, sid_or_number)?;
        if st.numbers[&sid].in_use > 0 {
            return Err(CoreError::NumberInUse);
        }
        if let Some(n) = st.numbers.remove(&sid) {
            st.number_index.remove(&n.number.as_u64());
            if let Some(pool) = st.pools.get_mut(&service) {
                pool.remove(&n.seq);
            }
        }
        Ok(self.submit(vec![WriteOp::DeleteNumber(sid)]))
    }

    // ----- sessions -----

    pub fn resolve_session(&self, service: Sid, sid_or_name: &str) -> Result<Sid, CoreError> {
        let st = self.state.lock();
        st.resolve_session(service, sid_or_name)
    }

    pub fn session(&self, sid: Sid) -> Result<Session, CoreError> {
        let st = self.state.lock();
        st.session_view(sid)
            .ok_or(CoreError::NotFound(Resource::Session))
    }

    pub fn list_sessions(
        &self,
        service: Sid,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<Session>, CoreError> {
        let st = self.state.lock();
        let index = st
            .service_sessions
            .get(&service)
            .ok_or(CoreError::NotFound(Resource::Service))?;
        let (sids, more_after) = page_of(index, cursor, limit);
        Ok(Page {
            items: sids.iter().filter_map(|s| st.session_view(*s)).collect(),
            more_after,
        })
    }

    pub fn create_session(
        &self,
        service: Sid,
        req: NewSession,
        now: Timestamp,
    ) -> Result<(Session, Vec<Participant>, Durable), CoreError> {
        let mut st = self.state.lock();
        let svc = st
            .services
            .get(&service)
            .cloned()
            .ok_or(CoreError::NotFound(Resource::Service))?;
        if let Some(name) = &req.unique_name {
            check_name("UniqueName", name)?;
            if st.session_names.contains_key(&(service, name.clone())) {
                return Err(CoreError::SessionNameTaken);
            }
        }
        if let Some(at) = req.date_expiry {
            if at <= now {
                return Err(CoreError::invalid("DateExpiry", "must be in the future"));
            }
        }
        if req.participants.len() > 2 {
            return Err(CoreError::TooManyParticipants);
        }
        let status = match req.status {
            None | Some(SessionStatus::Open) => SessionStatus::Open,
            Some(SessionStatus::InProgress) => SessionStatus::InProgress,
            Some(SessionStatus::Closed) => SessionStatus::Closed,
            Some(other) => {
                return Err(CoreError::StatusInvalid {
                    from: "none",
                    to: other.as_str(),
                })
            }
        };
        let seq = st.next_seq();
        let session = Session {
            sid: Sid::generate(SidKind::Session),
            seq,
            service_sid: service,
            unique_name: req.unique_name.clone(),
            status: if status == SessionStatus::Closed {
                SessionStatus::Open
            } else {
                status
            },
            mode: req.mode.unwrap_or(Mode::VoiceAndMessage),
            ttl: req.ttl.unwrap_or(svc.default_ttl),
            date_expiry: req.date_expiry,
            date_started: Some(now),
            date_ended: None,
            date_last_interaction: None,
            closed_reason: ClosedReason::None,
            date_created: now,
            date_updated: now,
        };
        let sid = session.sid;
        st.insert_session(session);
        let mut added = Vec::new();
        for (i, p) in req.participants.iter().enumerate() {
            // The other participant of the request is this one's counterpart, even before
            // it exists (stickiness and cool-off depend on it).
            let hint = req
                .participants
                .get(1 - i)
                .and_then(|o| E164::parse(&o.identifier).ok());
            match self.add_participant_locked(&mut st, sid, p, hint, now) {
                Ok(part) => added.push(part),
                Err(e) => {
                    // All or nothing: undo the participants and the session.
                    for part in &added {
                        st.release_participant(*part);
                    }
                    st.remove_session(sid);
                    return Err(e);
                }
            }
        }
        st.commit_history(sid);
        if status == SessionStatus::Closed {
            self.close_locked(&mut st, sid, ClosedReason::Api, now);
        } else {
            publish_routes(&st, &self.routes, sid);
            self.rearm(&mut st, sid);
        }
        let view = st
            .session_view(sid)
            .ok_or(CoreError::NotFound(Resource::Session))?;
        let parts: Vec<Participant> = added
            .iter()
            .map(|p| (*st.participants[p]).clone())
            .collect();
        let mut ops = vec![WriteOp::PutSession(view.clone())];
        ops.extend(parts.iter().cloned().map(WriteOp::PutParticipant));
        let d = self.submit(ops);
        metrics::sessions_created();
        for p in &parts {
            tracing::debug!(session = %view.sid, participant = %p.sid, identifier = %p.identifier.masked(), proxy = %p.proxy.masked(), "participant added");
        }
        Ok((view, parts, d))
    }

    pub fn update_session(
        &self,
        sid: Sid,
        patch: SessionPatch,
        now: Timestamp,
    ) -> Result<(Session, Durable), CoreError> {
        let mut st = self.state.lock();
        let current = st
            .sessions
            .get(&sid)
            .map(|s| s.session.status)
            .ok_or(CoreError::NotFound(Resource::Session))?;
        if current == SessionStatus::Closed || !current.is_active() {
            match patch.status {
                Some(SessionStatus::InProgress) if current == SessionStatus::Closed => {
                    self.reopen_locked(&mut st, sid, now)?;
                }
                _ => return Err(CoreError::SessionClosed),
            }
        } else {
            match patch.status {
                None => {}
                Some(SessionStatus::Closed) => {}
                Some(SessionStatus::InProgress) => st.set_status(sid, SessionStatus::InProgress),
                Some(SessionStatus::Open) if current == SessionStatus::Open => {}
                Some(to) => {
                    return Err(CoreError::StatusInvalid {
                        from: current.as_str(),
                        to: to.as_str(),
                    })
                }
            }
        }
        if let Some(ss) = st.sessions.get_mut(&sid) {
            if let Some(ttl) = patch.ttl {
                ss.session.ttl = ttl;
            }
            if let Some(at) = patch.date_expiry {
                ss.session.date_expiry = Some(at);
            }
            ss.session.date_updated = now;
        }
        if patch.status == Some(SessionStatus::Closed) {
            self.close_locked(&mut st, sid, ClosedReason::Api, now);
        } else {
            self.rearm(&mut st, sid);
        }
        let view = st
            .session_view(sid)
            .ok_or(CoreError::NotFound(Resource::Session))?;
        let d = self.submit(vec![WriteOp::PutSession(view.clone())]);
        Ok((view, d))
    }

    pub fn delete_session(&self, sid: Sid) -> Result<Durable, CoreError> {
        let mut st = self.state.lock();
        let service = st
            .sessions
            .get(&sid)
            .map(|s| s.session.service_sid)
            .ok_or(CoreError::NotFound(Resource::Session))?;
        self.drop_session(&mut st, sid);
        if let Some(index) = st.service_sessions.get_mut(&service) {
            index.retain(|_, s| *s != sid);
        }
        Ok(self.submit(vec![WriteOp::DeleteSession(sid)]))
    }

    fn drop_session(&self, st: &mut State, sid: Sid) {
        if st
            .sessions
            .get(&sid)
            .is_some_and(|s| s.session.status.is_active())
        {
            self.deactivate(st, sid);
        }
        if let Some(key) = st.sessions.get_mut(&sid).and_then(|s| s.timer.take()) {
            self.wheel.lock().cancel(key);
        }
        st.remove_session(sid);
    }

    fn reopen_locked(&self, st: &mut State, sid: Sid, now: Timestamp) -> Result<(), CoreError> {
        let parts = st.live_participants(sid);
        for p in &parts {
            let part = &st.participants[p];
            if st
                .active
                .contains(&RouteKey::new(part.proxy, part.identifier))
            {
                return Err(AllocError::PairInUse.into());
            }
        }
        for p in &parts {
            st.reserve(*p);
        }
        if let Some(ss) = st.sessions.get_mut(&sid) {
            ss.session.status = SessionStatus::InProgress;
            ss.session.date_ended = None;
            ss.session.closed_reason = ClosedReason::None;
            ss.live.touch(ms(now));
        }
        publish_routes(st, &self.routes, sid);
        Ok(())
    }

    /// Withdraws a session's routes and reservations and disarms its timer.
    fn deactivate(&self, st: &mut State, sid: Sid) {
        for p in st.live_participants(sid) {
            let part = &st.participants[&p];
            self.routes
                .remove(&RouteKey::new(part.proxy, part.identifier));
            st.unreserve(p);
        }
        if let Some(key) = st.sessions.get_mut(&sid).and_then(|s| s.timer.take()) {
            self.wheel.lock().cancel(key);
        }
    }

    fn close_locked(&self, st: &mut State, sid: Sid, reason: ClosedReason, now: Timestamp) {
        let Some(ss) = st.sessions.get(&sid) else {
            return;
        };
        if !ss.session.status.is_active() {
            return;
        }
        let cooloff = st
            .services
            .get(&ss.session.service_sid)
            .map_or(0, |s| s.cooloff);
        if let [a, b] = st.live_participants(sid)[..] {
            if cooloff > 0 {
                let until = now.saturating_add(cooloff as i64);
                let (pa, pb) = (st.participants[&a].clone(), st.participants[&b].clone());
                st.cooling.insert(
                    RouteKey::new(pa.proxy, pa.identifier),
                    (pb.identifier.as_u64(), until),
                );
                st.cooling.insert(
                    RouteKey::new(pb.proxy, pb.identifier),
                    (pa.identifier.as_u64(), until),
                );
            }
        }
        self.deactivate(st, sid);
        if let Some(ss) = st.sessions.get_mut(&sid) {
            ss.session.status = SessionStatus::Closed;
            ss.session.closed_reason = reason;
            ss.session.date_ended = Some(now);
            ss.session.date_updated = now;
        }
        metrics::session_closed(reason.as_str());
        tracing::debug!(session = %sid, reason = reason.as_str(), "session closed");
    }

    fn rearm(&self, st: &mut State, sid: Sid) {
        let Some(ss) = st.sessions.get_mut(&sid) else {
            return;
        };
        let mut wheel = self.wheel.lock();
        if let Some(key) = ss.timer.take() {
            wheel.cancel(key);
        }
        if ss.session.status.is_active() {
            if let Some((deadline, _)) = ss.session.deadline_ms(ss.live.last_activity_ms()) {
                ss.timer = Some(wheel.insert(deadline.max(0) as u64, sid));
            }
        }
    }

    /// Drives the timer wheel: closes every session whose deadline has passed, re-arming
    /// those whose last interaction moved their deadline. Returns how many closed.
    pub fn expire(&self, now_ms: i64) -> usize {
        // The state lock is taken first (the engine's lock order) and held while the wheel
        // fires, so no re-arm can slip in between and leave an untracked entry behind.
        let mut st = self.state.lock();
        let mut fired = Vec::new();
        self.wheel.lock().expire(now_ms.max(0) as u64, &mut fired);
        if fired.is_empty() {
            return 0;
        }
        let mut closed = Vec::new();
        for (sid, _) in fired {
            let Some(ss) = st.sessions.get_mut(&sid) else {
                continue;
            };
            ss.timer = None;
            if !ss.session.status.is_active() {
                continue;
            }
            match ss.session.deadline_ms(ss.live.last_activity_ms()) {
                Some((deadline, reason)) if deadline <= now_ms => {
                    metrics::wheel_lateness((now_ms - deadline) as f64 / 1000.0);
                    self.close_locked(&mut st, sid, reason, now_ms.div_euclid(1000));
                    closed.push(sid);
                }
                Some(_) => self.rearm(&mut st, sid),
                None => {}
            }
        }
        let ops: Vec<WriteOp> = closed
            .iter()
            .filter_map(|s| st.session_view(*s))
            .map(WriteOp::PutSession)
            .collect();
        let n = ops.len();
        if n > 0 {
            self.store.submit(ops, None);
        }
        n
    }

    // ----- participants -----

    pub fn participant(&self, session: Sid, sid: Sid) -> Result<Participant, CoreError> {
        let st = self.state.lock();
        st.participants
            .get(&sid)
            .filter(|p| p.session_sid == session)
            .map(|p| (**p).clone())
            .ok_or(CoreError::NotFound(Resource::Participant))
    }

    pub fn list_participants(
        &self,
        session: Sid,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<Participant>, CoreError> {
        let st = self.state.lock();
        let ss = st
            .sessions
            .get(&session)
            .ok_or(CoreError::NotFound(Resource::Session))?;
        let index: BTreeMap<u64, Sid> = ss
            .participants
            .iter()
            .map(|p| (st.participants[p].seq, *p))
            .collect();
        let (sids, more_after) = page_of(&index, cursor, limit);
        Ok(Page {
            items: sids.iter().map(|s| (*st.participants[s]).clone()).collect(),
            more_after,
        })
    }

    pub fn add_participant(
        &self,
        session: Sid,
        req: NewParticipant,
        now: Timestamp,
    ) -> Result<(Participant, Durable), CoreError> {
        let mut st = self.state.lock();
        let p = self.add_participant_locked(&mut st, session, &req, None, now)?;
        st.commit_history(session);
        publish_routes(&st, &self.routes, session);
        let part = (*st.participants[&p]).clone();
        tracing::debug!(session = %session, participant = %part.sid, identifier = %part.identifier.masked(), proxy = %part.proxy.masked(), "participant added");
        let d = self.submit(vec![WriteOp::PutParticipant(part.clone())]);
        Ok((part, d))
    }

    fn add_participant_locked(
        &self,
        st: &mut State,
        session: Sid,
        req: &NewParticipant,
        counterpart_hint: Option<E164>,
        now: Timestamp,
    ) -> Result<Sid, CoreError> {
        let ss = st
            .sessions
            .get(&session)
            .ok_or(CoreError::NotFound(Resource::Session))?;
        if !ss.session.status.is_active() {
            return Err(CoreError::SessionClosed);
        }
        let service = ss.session.service_sid;
        let identifier = E164::parse(&req.identifier).map_err(CoreError::InvalidIdentifier)?;
        if let Some(name) = &req.friendly_name {
            if name.chars().count() > 255 {
                return Err(CoreError::invalid(
                    "FriendlyName",
                    "must be at most 255 characters",
                ));
            }
        }
        let mut counterpart = counterpart_hint;
        let mut live = 0;
        for p in &ss.participants {
            let part = &st.participants[p];
            if part.identifier == identifier {
                return Err(if part.date_deleted.is_some() {
                    CoreError::DuplicateEntry
                } else {
                    CoreError::ParticipantInSession
                });
            }
            if part.date_deleted.is_none() {
                live += 1;
                counterpart = Some(part.identifier);
            }
        }
        if live >= 2 {
            return Err(CoreError::TooManyParticipants);
        }
        let explicit = match (&req.proxy_identifier_sid, &req.proxy_identifier) {
            (Some(text), _) => {
                let pn = Sid::parse(SidKind::PhoneNumber, text).ok_or(AllocError::NotInService)?;
                let n = st
                    .numbers
                    .get(&pn)
                    .filter(|n| n.service_sid == service)
                    .ok_or(AllocError::NotInService)?;
                Some(n.number)
            }
            (None, Some(text)) => Some(E164::parse(text).map_err(|_| AllocError::NotInService)?),
            (None, None) => None,
        };
        let svc = &st.services[&service];
        let pool: Vec<Candidate> = st.pools[&service]
            .values()
            .map(|s| {
                let n = &st.numbers[s];
                Candidate {
                    sid: n.sid,
                    number: n.number,
                    reserved: n.is_reserved,
                    in_use: n.in_use,
                }
            })
            .collect();
        let request = allocator::Request {
            identifier,
            counterpart,
            geo: svc.geo_match_level,
            behavior: svc.number_selection_behavior,
            explicit,
        };
        let picked = allocator::select(&pool, &request, &HistoryView { st, now })
            .inspect_err(|e| metrics::allocation_failed(e.code()))?;
        let seq = st.next_seq();
        let part = Participant {
            sid: Sid::generate(SidKind::Participant),
            seq,
            session_sid: session,
            service_sid: service,
            identifier,
            friendly_name: req.friendly_name.clone(),
            proxy: pool[picked].number,
            proxy_sid: pool[picked].sid,
            date_deleted: None,
            date_created: now,
            date_updated: now,
        };
        let sid = part.sid;
        st.participants.insert(sid, Box::new(part));
        if let Some(ss) = st.sessions.get_mut(&session) {
            ss.participants.push(sid);
        }
        st.reserve(sid);
        Ok(sid)
    }

    /// Soft delete: the participant stays in the session with `date_deleted`; its route keys
    /// (and its partner's, which has no counterpart any more) are withdrawn.
    pub fn delete_participant(
        &self,
        session: Sid,
        sid: Sid,
        now: Timestamp,
    ) -> Result<(Participant, Durable), CoreError> {
        let mut st = self.state.lock();
        let part = st
            .participants
            .get(&sid)
            .filter(|p| p.session_sid == session && p.date_deleted.is_none())
            .cloned()
            .ok_or(CoreError::NotFound(Resource::Participant))?;
        let active = st
            .sessions
            .get(&session)
            .is_some_and(|s| s.session.status.is_active());
        if active {
            for p in st.live_participants(session) {
                let q = &st.participants[&p];
                self.routes.remove(&RouteKey::new(q.proxy, q.identifier));
            }
            st.unreserve(sid);
        }
        let updated = {
            let p = st
                .participants
                .get_mut(&part.sid)
                .ok_or(CoreError::NotFound(Resource::Participant))?;
            p.date_deleted = Some(now);
            p.date_updated = now;
            (**p).clone()
        };
        let d = self.submit(vec![WriteOp::PutParticipant(updated.clone())]);
        Ok((updated, d))
    }

    // ----- interactions -----

    /// Records an API-originated message to `participant` with status `queued`; once the
    /// returned `Durable` resolves, pass the `OutboundMessage` to `enqueue_outbound`.
    pub fn create_message_interaction(
        &self,
        session: Sid,
        participant: Sid,
        body: &str,
        now: Timestamp,
    ) -> Result<(Interaction, OutboundMessage, Durable), CoreError> {
        let mut st = self.state.lock();
        let ss = st
            .sessions
            .get(&session)
            .ok_or(CoreError::NotFound(Resource::Session))?;
        let part = st
            .participants
            .get(&participant)
            .filter(|p| p.session_sid == session && p.date_deleted.is_none())
            .cloned()
            .ok_or(CoreError::NotFound(Resource::Participant))?;
        if !ss.session.status.is_active() {
            return Err(CoreError::SessionClosed);
        }
        if !ss.session.mode.allows_messages() {
            return Err(CoreError::MessageToVoiceOnly);
        }
        let seq = st.next_seq();
        let interaction = Interaction {
            sid: Sid::generate(SidKind::Interaction),
            seq,
            session_sid: session,
            service_sid: part.service_sid,
            data: serde_json::json!({ "body": body }).to_string(),
            kind: InteractionType::Message,
            inbound: Leg::default(),
            outbound: Leg {
                participant_sid: Some(participant),
                resource_sid: None,
                resource_status: Some(ResourceStatus::Queued),
                resource_type: Some("Message".to_string()),
                resource_url: None,
            },
            message_participant_sid: Some(participant),
            date_created: now,
            date_updated: now,
        };
        st.touch_session(session, now);
        let view = st
            .session_view(session)
            .ok_or(CoreError::NotFound(Resource::Session))?;
        let msg = OutboundMessage {
            interaction: interaction.sid,
            session,
            participant,
            from: part.proxy,
            to: part.identifier,
            body: body.to_string(),
        };
        let mut ops = vec![
            WriteOp::PutInteraction(interaction.clone()),
            WriteOp::PutSession(view),
        ];
        let items = self.status_callbacks(&mut st, &mut ops);
        let d = self.submit(ops);
        drop(st);
        self.hand_callbacks(items);
        Ok((interaction, msg, d))
    }

    pub fn delete_interaction(&self, sid: Sid) -> Durable {
        // Ordered behind every earlier write by the writer; the caller checked it exists.
        let _st = self.state.lock();
        self.submit(vec![WriteOp::DeleteInteraction(sid)])
    }

    /// Messages recorded as `queued` but not yet handed to the SMS plane (after a restart).
    pub fn pending_outbound(&self) -> Result<Vec<OutboundMessage>, StoreError> {
        let queued = self.store.queued_messages()?;
        let st = self.state.lock();
        Ok(queued
            .into_iter()
            .filter_map(|i| {
                let p = st.participants.get(&i.message_participant_sid?)?;
                let body = serde_json::from_str::<serde_json::Value>(&i.data)
                    .ok()?
                    .get("body")?
                    .as_str()?
                    .to_string();
                Some(OutboundMessage {
                    interaction: i.sid,
                    session: i.session_sid,
                    participant: p.sid,
                    from: p.proxy,
                    to: p.identifier,
                    body,
                })
            })
            .collect())
    }

    // ----- the data path -----

    /// A fresh creation stamp (interaction `seq`, outbound queue id).
    pub fn next_seq(&self) -> u64 {
        self.state.lock().next_seq()
    }

    /// Writes what a data plane recorded, in order behind every earlier change. With
    /// `touch`, the session counts an interaction now: its TTL clock restarts and an open
    /// session becomes in-progress (persisted in the same batch).
    pub fn record(&self, ops: Vec<WriteOp>, touch: Option<(Sid, Timestamp)>) -> Durable {
        let (done, durable) = durable_pair();
        self.record_with(ops, touch, Some(done));
        durable
    }

    /// `record` for a log nobody waits on (a call's interaction, written behind the call):
    /// still in order behind every earlier change, but the store may hold it back briefly to
    /// share a commit with others.
    pub fn record_behind(&self, ops: Vec<WriteOp>, touch: Option<(Sid, Timestamp)>) {
        self.record_with(ops, touch, None);
    }

    fn record_with(
        &self,
        mut ops: Vec<WriteOp>,
        touch: Option<(Sid, Timestamp)>,
        done: Option<super::store::Completion>,
    ) {
        let mut st = self.state.lock();
        if let Some((sid, now)) = touch {
            st.touch_session(sid, now);
            if let Some(view) = st.session_view(sid) {
                ops.push(WriteOp::PutSession(view));
            }
        }
        let items = self.status_callbacks(&mut st, &mut ops);
        self.store.submit(ops, done);
        drop(st);
        self.hand_callbacks(items);
    }

    pub fn stats(&self) -> Stats {
        let st = self.state.lock();
        let mut by_status: HashMap<SessionStatus, u64> = HashMap::new();
        for ss in st.sessions.values() {
            *by_status.entry(ss.session.status).or_default() += 1;
        }
        let pools = st
            .services
            .values()
            .map(|s| {
                let pool = &st.pools[&s.sid];
                let in_use = pool.values().filter(|n| st.numbers[n].in_use > 0).count() as u64;
                (s.unique_name.clone(), pool.len() as u64, in_use)
            })
            .collect();
        Stats {
            sessions_by_status: SessionStatus::ALL
                .iter()
                .map(|s| (*s, by_status.get(s).copied().unwrap_or(0)))
                .collect(),
            routes: self.routes.len(),
            wheel: self.wheel.lock().len(),
            pools,
        }
    }

    /// Checks the route-key invariant: every reserved key belongs to exactly one live
    /// participant of an active session, and every route is reserved. For tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let st = self.state.lock();
        let mut seen = HashSet::new();
        for ss in st
            .sessions
            .values()
            .filter(|s| s.session.status.is_active())
        {
            for p in st.live_participants(ss.session.sid) {
                let part = &st.participants[&p];
                let key = RouteKey::new(part.proxy, part.identifier);
                if !seen.insert(key) {
                    return Err(format!("route key of {} used twice", part.sid));
                }
                if !st.active.contains(&key) {
                    return Err(format!("route key of {} not reserved", part.sid));
                }
            }
        }
        if seen.len() != st.active.len() {
            return Err(format!(
                "{} reserved keys but {} live participants",
                st.active.len(),
                seen.len()
            ));
        }
        for n in st.numbers.values() {
            let users = seen.iter().filter(|k| k.proxy == n.number.as_u64()).count() as u32;
            if users != n.in_use {
                return Err(format!("{} in_use {} but {} users", n.sid, n.in_use, users));
            }
        }
        Ok(())
    }
}

/// Inserts both route keys of an active session with two live participants.
fn publish_routes(st: &State, routes: &RoutingTable, sid: Sid) {
    let Some(ss) = st.sessions.get(&sid) else {
        return;
    };
    if !ss.session.status.is_active() {
        return;
    }
    if let [a, b] = st.live_participants(sid)[..] {
        let (pa, pb) = (&st.participants[&a], &st.participants[&b]);
        for (me, other) in [(pa, pb), (pb, pa)] {
            routes.insert(
                RouteKey::new(me.proxy, me.identifier),
                Route {
                    service: ss.session.service_sid,
                    session: sid,
                    participant: me.sid,
                    counterpart: other.sid,
                    counterpart_real: other.identifier,
                    counterpart_proxy: other.proxy,
                    mode: ss.session.mode,
                    live: ss.live.clone(),
                },
            );
        }
    }
}

fn check_name(param: &'static str, name: &str) -> Result<(), CoreError> {
    if name.is_empty() || name.chars().count() > 191 {
        return Err(CoreError::invalid(param, "must be 1 to 191 characters"));
    }
    Ok(())
}

fn apply_service_patch(svc: &mut Service, p: ServicePatch) {
    if let Some(v) = p.unique_name {
        svc.unique_name = v;
    }
    if let Some(v) = p.default_ttl {
        svc.default_ttl = v;
    }
    let opt = |v: String| if v.is_empty() { None } else { Some(v) };
    if let Some(v) = p.callback_url {
        svc.callback_url = opt(v);
    }
    if let Some(v) = p.geo_match_level {
        svc.geo_match_level = v;
    }
    if let Some(v) = p.number_selection_behavior {
        svc.number_selection_behavior = v;
    }
    if let Some(v) = p.intercept_callback_url {
        svc.intercept_callback_url = opt(v);
    }
    if let Some(v) = p.out_of_session_callback_url {
        svc.out_of_session_callback_url = opt(v);
    }
    if let Some(v) = p.chat_instance_sid {
        svc.chat_instance_sid = opt(v);
    }
    if let Some(v) = p.cooloff {
        svc.cooloff = v;
    }
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn resolve_service(&self, sid_or_name: &str) -> Result<Sid, CoreError> {
        if let Some(sid) = Sid::parse(SidKind::Service, sid_or_name) {
            if self.services.contains_key(&sid) {
                return Ok(sid);
            }
        }
        self.service_names
            .get(sid_or_name)
            .copied()
            .ok_or(CoreError::NotFound(Resource::Service))
    }

    fn resolve_session(&self, service: Sid, sid_or_name: &str) -> Result<Sid, CoreError> {
        if let Some(sid) = Sid::parse(SidKind::Session, sid_or_name) {
            return match self.sessions.get(&sid) {
                Some(s) if s.session.service_sid == service => Ok(sid),
                _ => Err(CoreError::NotFound(Resource::Session)),
            };
        }
        self.session_names
            .get(&(service, sid_or_name.to_string()))
            .copied()
            .ok_or(CoreError::SessionNameNotFound)
    }

    fn resolve_number(&self, service: Sid, sid_or_number: &str) -> Result<Sid, CoreError> {
        let sid = match Sid::parse(SidKind::PhoneNumber, sid_or_number) {
            Some(sid) => Some(sid),
            None => E164::parse(sid_or_number)
                .ok()
                .and_then(|n| self.number_index.get(&n.as_u64()).copied()),
        };
        sid.filter(|s| {
            self.numbers
                .get(s)
                .is_some_and(|n| n.service_sid == service)
        })
        .ok_or(CoreError::NotFound(Resource::PhoneNumber))
    }

    fn session_view(&self, sid: Sid) -> Option<Session> {
        self.sessions.get(&sid).map(|ss| ss.session.clone())
    }

    fn live_participants(&self, session: Sid) -> Vec<Sid> {
        self.sessions
            .get(&session)
            .map(|ss| {
                ss.participants
                    .iter()
                    .copied()
                    .filter(|p| {
                        self.participants
                            .get(p)
                            .is_some_and(|p| p.date_deleted.is_none())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds a session to the tables (a new one, or one loaded at start); its last activity is
    /// its last interaction, else its creation.
    fn insert_session(&mut self, session: Session) {
        if let Some(name) = &session.unique_name {
            self.session_names
                .insert((session.service_sid, name.clone()), session.sid);
        }
        self.service_sessions
            .entry(session.service_sid)
            .or_default()
            .insert(session.seq, session.sid);
        let last = session
            .date_last_interaction
            .unwrap_or(session.date_created);
        let live = Arc::new(SessionLive::new(ms(last)));
        self.sessions.insert(
            session.sid,
            Box::new(SessionState {
                session,
                participants: Vec::new(),
                live,
                timer: None,
            }),
        );
    }

    fn remove_session(&mut self, sid: Sid) {
        if let Some(ss) = self.sessions.remove(&sid) {
            if let Some(name) = &ss.session.unique_name {
                self.session_names
                    .remove(&(ss.session.service_sid, name.clone()));
            }
            if let Some(index) = self.service_sessions.get_mut(&ss.session.service_sid) {
                index.remove(&ss.session.seq);
            }
            for p in ss.participants {
                self.participants.remove(&p);
            }
        }
    }

    fn reserve(&mut self, participant: Sid) {
        let p = &self.participants[&participant];
        let (key, number) = (RouteKey::new(p.proxy, p.identifier), p.proxy.as_u64());
        self.active.insert(key);
        if let Some(n) = self
            .number_index
            .get(&number)
            .and_then(|s| self.numbers.get_mut(s))
        {
            n.in_use += 1;
        }
    }

    fn unreserve(&mut self, participant: Sid) {
        let p = &self.participants[&participant];
        let (key, number) = (RouteKey::new(p.proxy, p.identifier), p.proxy.as_u64());
        if self.active.remove(&key) {
            if let Some(n) = self
                .number_index
                .get(&number)
                .and_then(|s| self.numbers.get_mut(s))
            {
                n.in_use = n.in_use.saturating_sub(1);
            }
        }
    }

    /// Undoes `add_participant_locked` for a create that failed part-way.
    fn release_participant(&mut self, participant: Sid) {
        self.unreserve(participant);
        if let Some(p) = self.participants.remove(&participant) {
            if let Some(ss) = self.sessions.get_mut(&p.session_sid) {
                ss.participants.retain(|s| *s != participant);
            }
        }
    }

    /// Records who had which number (and with whom) for stickiness.
    fn commit_history(&mut self, session: Sid) {
        let live = self.live_participants(session);
        for p in &live {
            let part = &self.participants[p];
            let (key, seq) = (RouteKey::new(part.proxy, part.identifier), part.seq);
            self.used.insert(key, seq);
        }
        if let [a, b] = live[..] {
            let (pa, pb) = (self.participants[&a].clone(), self.participants[&b].clone());
            self.with
                .insert((pa.identifier.as_u64(), pb.identifier.as_u64()), pa.proxy);
            self.with
                .insert((pb.identifier.as_u64(), pa.identifier.as_u64()), pb.proxy);
        }
    }

    fn set_status(&mut self, sid: Sid, status: SessionStatus) {
        if let Some(ss) = self.sessions.get_mut(&sid) {
            ss.session.status = status;
        }
    }

    /// An interaction: the TTL clock restarts and an open session becomes in-progress.
    fn touch_session(&mut self, sid: Sid, now: Timestamp) {
        if let Some(ss) = self.sessions.get_mut(&sid) {
            ss.live.touch(ms(now));
            ss.session.date_last_interaction = Some(now);
            ss.session.date_updated = now;
            if ss.session.status == SessionStatus::Open {
                ss.session.status = SessionStatus::InProgress;
            }
        }
    }
}
