//! Several nodes: the other nodes' changes, read back from the shared store's change log,
//! applied to this node's memory (routing table, pools, timer wheel) through the same
//! helpers as local changes and start-up, and never written back.

use super::load::install;
use super::*;
use crate::core::store::Followed;

impl Engine {
    /// Starts applying the other nodes' changes as the store delivers them (nothing on a
    /// store of one node). `clock` gives the current Unix time in milliseconds.
    pub fn start_following(self: &Arc<Engine>, clock: fn() -> i64) -> Result<(), StoreError> {
        let engine = Arc::downgrade(self);
        self.store.follow(Box::new(move |changes| {
            if let Some(engine) = engine.upgrade() {
                engine.follow(changes, clock());
            }
        }))
    }

    /// Applies other nodes' changes in the order they committed. Each carries its rows as
    /// the store holds them now, so applying one twice, or late, is harmless. `now_ms` is
    /// the current time (cool-off of sessions that closed).
    pub fn follow(&self, changes: Vec<Followed>, now_ms: i64) {
        let now = now_ms.div_euclid(1000);
        let mut st = self.state.lock();
        // Every route a batch of changes moves appears to the data planes at once.
        let _batch = self.routes.batch();
        let mut wheel = self.wheel.lock();
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
                Followed::Service(sid, None) => {
                    drop(wheel);
                    self.forget_service(&mut st, sid);
                    wheel = self.wheel.lock();
                }
                Followed::Number(sid, number) => {
                    let in_use = st.numbers.get(&sid).map_or(0, |n| n.in_use);
                    if let Some(old) = st.numbers.remove(&sid) {
                        st.number_index.remove(&old.number.as_u64());
                        if let Some(pool) = st.pools.get_mut(&old.service_sid) {
                            pool.remove(&old.seq);
                        }
                    }
                    if let Some(n) = number {
                        st.observe_seq(n.seq);
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
                        self.drop_session(&mut st, sid);
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
                    install(&mut st, &self.routes, &mut wheel, sid, now);
                }
            }
        }
    }
}
