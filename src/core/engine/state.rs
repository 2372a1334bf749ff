//! The engine's in-memory state under its one lock: services, pools, sessions, participants,
//! the active route keys and the selection history; the helpers that keep them in step.

use super::*;

pub(super) struct SessionState {
    pub(super) session: Session,
    /// Participants in creation order, deleted ones included.
    pub(super) participants: Vec<Sid>,
    pub(super) live: Arc<SessionLive>,
    pub(super) timer: Option<TimerKey>,
    /// When other nodes last heard of this session's activity (Unix seconds).
    pub(super) told_at: Timestamp,
}

/// The per-session and per-route-key maps (a million entries and more): foldhash, randomly
/// seeded per map, instead of SipHash, which was 6 % of start-up at 200k sessions. Their keys
/// are SIDs maskd made and numbers from authenticated API clients.
pub(super) type Big<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Bits of a `seq` that name the node that made it (see `State::node`).
pub const NODE_BITS: u32 = 10;

#[derive(Default)]
pub(super) struct State {
    pub(super) seq: u64,
    /// This node's number when several share the store: every `seq` it makes carries it in
    /// its low `NODE_BITS`, so no two nodes make the same one.
    pub(super) node: Option<u16>,
    pub(super) services: HashMap<Sid, Service>,
    pub(super) service_names: HashMap<String, Sid>,
    pub(super) service_order: BTreeMap<u64, Sid>,
    pub(super) numbers: HashMap<Sid, PhoneNumber>,
    pub(super) number_index: HashMap<u64, Sid>,
    pub(super) pools: HashMap<Sid, BTreeMap<u64, Sid>>,
    /// Boxed: a hash table is at most 7/8 full and often half, and empty slots of inline
    /// 200-byte values were a third of the memory (and start-up time) at 1M sessions.
    pub(super) sessions: Big<Sid, Box<SessionState>>,
    pub(super) session_names: HashMap<(Sid, String), Sid>,
    pub(super) service_sessions: Big<Sid, BTreeMap<u64, Sid>>,
    pub(super) participants: Big<Sid, Box<Participant>>,
    /// Route keys reserved by active sessions: `(proxy, identifier)` → the session. Several
    /// nodes: for a moment two sessions can claim one key here (this node's, before the
    /// store refuses it, and another node's, followed); the later claim holds it, and
    /// letting go of a key is only the holder's.
    pub(super) active: Big<RouteKey, Sid>,
    /// Recency of `(proxy, identifier)` assignments, as `seq`.
    pub(super) used: Big<RouteKey, u64>,
    /// `(identifier, counterpart)` → the proxy the identifier last had with them.
    pub(super) with: Big<(u64, u64), E164>,
    /// Cooling route keys: the counterpart they may still go to, and until when (s).
    pub(super) cooling: HashMap<RouteKey, (u64, Timestamp)>,
    /// API keys, and their creation order (the listing's).
    pub(super) keys: HashMap<Sid, ApiKey>,
    pub(super) key_order: BTreeMap<u64, Sid>,
}

pub(super) struct HistoryView<'a> {
    pub(super) st: &'a State,
    pub(super) now: Timestamp,
}

impl History for HistoryView<'_> {
    fn is_active(&self, proxy: E164, identifier: E164) -> bool {
        self.st
            .active
            .contains_key(&RouteKey::new(proxy, identifier))
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

impl State {
    /// A creation stamp: larger than every stamp this node made or saw (a Lamport clock
    /// when several nodes share the store), and unique across nodes.
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq = match self.node {
            None => self.seq + 1,
            Some(node) => (((self.seq >> NODE_BITS) + 1) << NODE_BITS) | u64::from(node),
        };
        self.seq
    }

    /// Another node's stamp: the next one made here sorts after it.
    pub(super) fn observe_seq(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    pub(super) fn resolve_service(&self, sid_or_name: &str) -> Result<Sid, CoreError> {
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

    pub(super) fn resolve_session(
        &self,
        service: Sid,
        sid_or_name: &str,
    ) -> Result<Sid, CoreError> {
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

    pub(super) fn resolve_number(
        &self,
        service: Sid,
        sid_or_number: &str,
    ) -> Result<Sid, CoreError> {
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

    pub(super) fn session_view(&self, sid: Sid) -> Option<Session> {
        self.sessions.get(&sid).map(|ss| ss.session.clone())
    }

    pub(super) fn live_participants(&self, session: Sid) -> Vec<Sid> {
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
    pub(super) fn insert_session(&mut self, session: Session) {
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
                told_at: last,
            }),
        );
    }

    pub(super) fn remove_session(&mut self, sid: Sid) {
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

    pub(super) fn reserve(&mut self, participant: Sid) {
        let p = &self.participants[&participant];
        let (key, number, session) = (
            RouteKey::new(p.proxy, p.identifier),
            p.proxy.as_u64(),
            p.session_sid,
        );
        if self.active.insert(key, session).is_none() {
            if let Some(n) = self
                .number_index
                .get(&number)
                .and_then(|s| self.numbers.get_mut(s))
            {
                n.in_use += 1;
            }
        }
    }

    /// Whether `participant`'s route key is held by its own session.
    pub(super) fn holds(&self, participant: Sid) -> bool {
        self.participants.get(&participant).is_some_and(|p| {
            self.active.get(&RouteKey::new(p.proxy, p.identifier)) == Some(&p.session_sid)
        })
    }

    pub(super) fn unreserve(&mut self, participant: Sid) {
        if !self.holds(participant) {
            return;
        }
        let p = &self.participants[&participant];
        let (key, number) = (RouteKey::new(p.proxy, p.identifier), p.proxy.as_u64());
        self.active.remove(&key);
        if let Some(n) = self
            .number_index
            .get(&number)
            .and_then(|s| self.numbers.get_mut(s))
        {
            n.in_use = n.in_use.saturating_sub(1);
        }
    }

    /// Undoes `add_participant_locked` for a create that failed part-way.
    pub(super) fn release_participant(&mut self, participant: Sid) {
        self.unreserve(participant);
        if let Some(p) = self.participants.remove(&participant) {
            if let Some(ss) = self.sessions.get_mut(&p.session_sid) {
                ss.participants.retain(|s| *s != participant);
            }
        }
    }

    /// Records who had which number (and with whom) for stickiness.
    pub(super) fn commit_history(&mut self, session: Sid) {
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

    pub(super) fn set_status(&mut self, sid: Sid, status: SessionStatus) {
        if let Some(ss) = self.sessions.get_mut(&sid) {
            ss.session.status = status;
        }
    }

    /// An interaction: the TTL clock restarts and an open session becomes in-progress.
    /// Returns whether other nodes need to hear of it: the status changed, or the session
    /// has a TTL whose deadline they last heard of a second or more ago (a node whose wheel
    /// fires on an older deadline is refused by the store and reads the session again, so
    /// they need not hear of every message).
    pub(super) fn touch_session(&mut self, sid: Sid, now: Timestamp) -> bool {
        let Some(ss) = self.sessions.get_mut(&sid) else {
            return false;
        };
        ss.live.touch(ms(now));
        ss.session.date_last_interaction = Some(now);
        ss.session.date_updated = now;
        let mut tell = false;
        if ss.session.status == SessionStatus::Open {
            ss.session.status = SessionStatus::InProgress;
            tell = true;
        }
        if ss.session.ttl > 0 && now - ss.told_at >= 1 {
            tell = true;
        }
        if tell {
            ss.told_at = now;
        }
        tell
    }
}
