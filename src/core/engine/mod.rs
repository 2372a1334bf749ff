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

mod follow;
mod interactions;
mod keys;
mod load;
mod participants;
pub mod recordings;
pub mod search;
mod services;
mod sessions;
mod state;

pub use self::keys::MAX_KEY_NAME;
pub use self::recordings::RecordingSettings;
use self::services::check_name;
pub use self::state::NODE_BITS;
use self::state::{HistoryView, State};
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
    /// Config only (`services[].record`); the API has no such field.
    pub record: Option<bool>,
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
    /// maskd extension `Record`: overrides the service's `record` for this session.
    pub record: Option<bool>,
}

#[derive(Debug, Default, Clone)]
pub struct SessionPatch {
    pub date_expiry: Option<Timestamp>,
    pub ttl: Option<u64>,
    pub status: Option<SessionStatus>,
    /// maskd extension `Record` (applies to calls answered from then on).
    pub record: Option<bool>,
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

/// Tuning the engine takes from config.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub wheel_tick_ms: u64,
    pub wheel_slots: usize,
    /// This node's number (below `2^NODE_BITS`) when several nodes share the store.
    pub node: Option<u16>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            wheel_tick_ms: 100,
            wheel_slots: 4096,
            node: None,
        }
    }
}

pub struct Engine {
    state: Mutex<State>,
    routes: RoutingTable,
    wheel: Mutex<TimerWheel<Sid>>,
    /// Told when the wheel gets its first timer: whoever drives it may sleep while it is
    /// empty (`set_wheel_waker`).
    wheel_waker: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    store: Arc<dyn Store>,
    outbox: Mutex<Option<Arc<dyn Outbox>>>,
    callbacks: Mutex<Option<Arc<dyn CallbackSink>>>,
    recording: Mutex<Option<RecordingSettings>>,
    /// Several nodes: route keys the store recently had no session for (`route_from_store`).
    misses: Mutex<HashMap<RouteKey, i64>>,
    /// Messages waiting for each number's message rate (the SMS plane reports them): the
    /// allocator gives numbers with spare rate among equals.
    backlogs: Mutex<HashMap<u64, u32>>,
    /// Pool numbers tagged with a carrier, for the planes (see `carrier_tags`).
    tags: Arc<crate::core::carriers::CarrierTags>,
    /// The configured carriers' names: a tag must name one.
    carrier_names: Mutex<Vec<String>>,
}

fn ms(t: Timestamp) -> i64 {
    t.saturating_mul(1000)
}

impl Engine {
    /// The SMS plane's word on how many messages from `number` wait for its message rate.
    pub fn set_backlog(&self, number: E164, waiting: u32) {
        let mut b = self.backlogs.lock();
        if waiting == 0 {
            b.remove(&number.as_u64());
        } else {
            b.insert(number.as_u64(), waiting);
        }
    }

    /// Pool numbers tagged with a carrier over the API, kept up to date as numbers change
    /// (here or on another node): the planes look a sender's carrier up with it.
    pub fn carrier_tags(&self) -> Arc<crate::core::carriers::CarrierTags> {
        self.tags.clone()
    }

    /// The carriers a number may be tagged with (the config's).
    pub fn set_carrier_names(&self, names: Vec<String>) {
        *self.carrier_names.lock() = names;
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

    /// Whether no session has a deadline on the wheel (nothing for `expire` to do until one
    /// is armed, which calls the waker set with `set_wheel_waker`).
    pub fn wheel_is_empty(&self) -> bool {
        self.wheel.lock().is_empty()
    }

    /// `wake` is called whenever the wheel goes from empty to holding a timer.
    pub fn set_wheel_waker(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        *self.wheel_waker.lock() = Some(wake);
    }

    /// After a timer went onto an empty wheel (called with the wheel's lock released).
    fn wake_wheel(&self) {
        let wake = self.wheel_waker.lock().clone();
        if let Some(wake) = wake {
            wake();
        }
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
                if !st.active.contains_key(&key) {
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
        // Both directions appear together.
        let _batch = routes.batch();
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
