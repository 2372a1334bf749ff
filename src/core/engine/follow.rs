//! Several nodes: the other nodes' changes, read back from the shared store's change log,
//! applied to this node's memory (routing table, pools, timer wheel) through the same
//! helpers as local changes and start-up, and never written back.

use super::load::install;
use super::*;
use crate::core::store::Followed;

/// How long a route key the store had no session for is not asked about again, and how many
/// such keys are remembered at most (then forgotten all at once).
const MISS_MEMORY_MS: i64 = 250;
const MISS_MEMORY_KEYS: usize = 65_536;

impl Engine {
    /// Starts applying the other nodes' changes as the store delivers them (nothing on a
    /// store of one node). `clock` gives the current Unix time in milliseconds.
    pub fn start_following(self: &Arc<Engine>, clock: fn() -> i64) -> Result<(), StoreError> {
        let engine = Arc::downgrade(self);
        self.store
            .follow(Box::new(move |changes, mark| match engine.upgrade() {
                Some(engine) => engine.follow(changes, mark, clock()),
                None => Vec::new(),
            }))
    }

    /// Applies other nodes' changes in the order they committed. Each carries its rows as
    /// the store held them after `mark`, so applying one twice, or late, is harmless; but
    /// a row this node has changed since (its write on its way or committed after the read
    /// began) is older than memory here and is left alone: returned, for the store to read
    /// it again once that write is committed. `now_ms` is the current time (cool-off of
    /// sessions that closed).
    pub fn follow(&self, changes: Vec<Followed>, mark: u64, now_ms: i64) -> Vec<Followed> {
        let mut st = self.state.lock();
        let mut rest = Vec::with_capacity(changes.len());
        let mut newer_here = Vec::new();
        for change in changes {
            match change {
                Followed::Reread(sid) => {
                    // Read under the lock, behind this node's own writes: see `reread`.
                    self.follow_locked(&mut st, std::mem::take(&mut rest), now_ms);
                    if let Err(e) = self.reread(&mut st, sid, now_ms) {
                        tracing::warn!(error = %e, "cannot read a session again");
                    }
                }
                other if self.store.written_here_since(other.sid(), mark) => newer_here.push(other),
                other => rest.push(other),
            }
        }
        self.follow_locked(&mut st, rest, now_ms);
        newer_here
    }

    fn follow_locked(&self, st: &mut State, changes: Vec<Followed>, now_ms: i64) {
        if changes.is_empty() {
            return;
        }
        let now = now_ms.div_euclid(1000);
        // Every route a batch of changes moves appears to the data planes at once.
        let _batch = self.routes.batch();
        let mut wheel = self.wheel.lock();
        let was_empty = wheel.is_empty();
        for change in changes {
            match change {
                Followed::Service(sid, Some(svc)) => {
                    st.observe_seq(svc.seq);
                    if let Some(old) = st.services.get(&sid) {
                        let (name, seq) = (old.unique_name.clone(), old.seq);
                        st.service_names.remove(&name);
                        st.service_order.remove(&seq);
                    }
                    st.service_names.insert(svc.unique_name.clone(), sid);
                    st.service_order.insert(svc.seq, sid);
                    st.pools.entry(sid).or_default();
                    st.service_sessions.entry(sid).or_default();
                    st.services.insert(sid, svc);
                }
                Followed::Key(sid, key) => {
                    if let Some(old) = st.keys.remove(&sid) {
                        st.key_order.remove(&old.seq);
                    }
                    if let Some(k) = key {
                        st.observe_seq(k.seq);
                        st.key_order.insert(k.seq, sid);
                        st.keys.insert(sid, k);
                    }
                }
                Followed::Service(sid, None) => {
                    drop(wheel);
                    self.forget_service(st, sid);
                    wheel = self.wheel.lock();
                }
                Followed::Number(sid, number) => {
                    let in_use = st.numbers.get(&sid).map_or(0, |n| n.in_use);
                    if let Some(old) = st.numbers.remove(&sid) {
                        st.number_index.remove(&old.number.as_u64());
                        self.tags.set(old.number, None);
                        if let Some(pool) = st.pools.get_mut(&old.service_sid) {
                            pool.remove(&old.seq);
                        }
                    }
                    // Its service is gone here (deleted on this node, or by a later change
                    // in this log): the number went with it.
                    if let Some(n) = number.filter(|n| st.services.contains_key(&n.service_sid)) {
                        st.observe_seq(n.seq);
                        self.tags.set(n.number, n.carrier.as_deref());
                        st.number_index.insert(n.number.as_u64(), sid);
                        st.pools
                            .entry(n.service_sid)
                            .or_default()
                            .insert(n.seq, sid);
                        st.numbers.insert(sid, PhoneNumber { in_use, ..n });
                    }
                }
                Followed::Session(sid, rows) => {
                    if st.sessions.contains_key(&sid) {
                        drop(wheel);
                        self.drop_session(st, sid);
                        wheel = self.wheel.lock();
                    }
                    let Some((session, mut parts)) = rows else {
                        continue;
                    };
                    if !st.services.contains_key(&session.service_sid) {
                        // Its service is gone (a later change in this log deletes it).
                        continue;
                    }
                    st.observe_seq(session.seq);
                    st.insert_session(session);
                    parts.sort_unstable_by_key(|p| p.seq);
                    for p in parts {
                        st.observe_seq(p.seq);
                        let key = RouteKey::new(p.proxy, p.identifier);
                        let used = st.used.entry(key).or_insert(p.seq);
                        *used = (*used).max(p.seq);
                        if let Some(ss) = st.sessions.get_mut(&sid) {
                            ss.participants.push(p.sid);
                        }
                        st.participants.insert(p.sid, Box::new(p));
                    }
                    install(st, &self.routes, &mut wheel, sid, now);
                }
                // `follow` reads these itself, before handing the rest here.
                Followed::Reread(_) => {}
            }
        }
        if was_empty && !wheel.is_empty() {
            drop(wheel);
            self.wake_wheel();
        }
    }

    /// Reads a session again from the store, with the state lock held (no change to it can
    /// slip in between) and behind every write this node has submitted (the empty awaited
    /// batch commits after them all), so memory gets what is committed, this node's own
    /// changes included. Rare (a refused change, a close the store did not take): the lock is
    /// held for a commit and a read.
    fn reread(&self, st: &mut State, sid: Sid, now_ms: i64) -> Result<(), StoreError> {
        self.submit(Vec::new()).wait_blocking()?;
        let rows = self.store.session_rows(sid)?;
        self.follow_locked(st, vec![Followed::Session(sid, rows)], now_ms);
        Ok(())
    }

    /// Several nodes: reloads a session from the store, so memory holds what is committed
    /// for it (or nothing, if nothing is).
    pub fn refresh_session(&self, sid: Sid, now_ms: i64) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        self.reread(&mut st, sid, now_ms)
    }

    /// After the store refused a change to `session` (`StoreError::Conflict`: another node's
    /// session holds one of its route keys): memory goes back to what is committed, for it
    /// and for the sessions holding the keys it wanted, so a second choice avoids them.
    pub fn settle_conflict(&self, session: Sid, now_ms: i64) -> Result<(), StoreError> {
        let keys: Vec<(E164, E164)> = {
            let st = self.state.lock();
            st.live_participants(session)
                .iter()
                .filter_map(|p| st.participants.get(p))
                .map(|p| (p.proxy, p.identifier))
                .collect()
        };
        self.refresh_session(session, now_ms)?;
        for (proxy, identifier) in keys {
            if let Some(owner) = self.store.route_owner(proxy, identifier)? {
                if owner != session {
                    self.refresh_session(owner, now_ms)?;
                }
            }
        }
        Ok(())
    }

    /// Several nodes: a route key missing here may belong to a session another node has
    /// just committed and this one has not followed yet. Asks the store; true if the key
    /// routes now. Blocks on the store: call it off the async runtime.
    pub fn route_from_store(&self, proxy: E164, sender: E164, now_ms: i64) -> bool {
        if !self.store.shared() {
            return false;
        }
        // A key the store had no session for a moment ago is not asked again at once: a
        // stranger's flood costs no query per message, and a session committed meanwhile
        // arrives by following within milliseconds anyway.
        let key = RouteKey::new(proxy, sender);
        {
            let mut misses = self.misses.lock();
            if misses
                .get(&key)
                .is_some_and(|at| now_ms - at < MISS_MEMORY_MS)
            {
                return false;
            }
            if misses.len() >= MISS_MEMORY_KEYS {
                misses.clear();
            }
        }
        match self.store.route_owner(proxy, sender) {
            Ok(Some(owner)) => {
                // One in memory already is followed (another node's) or ahead of the store
                // (this node's): only one not here yet is read.
                let known = self.state.lock().sessions.contains_key(&owner);
                if !known {
                    if let Err(e) = self.refresh_session(owner, now_ms) {
                        tracing::warn!(error = %e, "cannot read a session from the store");
                    }
                }
                self.routes.resolve(proxy, sender).is_some()
            }
            Ok(None) => {
                self.misses.lock().insert(key, now_ms);
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the store for a route");
                false
            }
        }
    }
}
