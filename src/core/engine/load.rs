//! Start-up: the engine rebuilt from the store (services, numbers, sessions and participants
//! streamed in, the routing table and the timer wheel filled).

use super::*;

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
            node: opts.node,
            ..State::default()
        };
        for s in snap.services {
            st.service_names.insert(s.unique_name.clone(), s.sid);
            st.service_order.insert(s.seq, s.sid);
            st.pools.entry(s.sid).or_default();
            st.service_sessions.entry(s.sid).or_default();
            st.services.insert(s.sid, s);
        }
        for k in snap.keys {
            st.key_order.insert(k.seq, k.sid);
            st.keys.insert(k.sid, k);
        }
        let tags = Arc::new(crate::core::carriers::CarrierTags::default());
        for n in snap.numbers {
            st.number_index.insert(n.number.as_u64(), n.sid);
            st.pools
                .entry(n.service_sid)
                .or_default()
                .insert(n.seq, n.sid);
            tags.set(n.number, n.carrier.as_deref());
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
        // The whole table is published once, when the load is done.
        let batch = routes.batch();
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
            install(&mut st, &routes, &mut wheel, sid, now);
        }
        drop(batch);
        Ok(Engine {
            state: Mutex::new(st),
            routes,
            wheel: Mutex::new(wheel),
            wheel_waker: Mutex::new(None),
            store,
            outbox: Mutex::new(None),
            callbacks: Mutex::new(None),
            recording: Mutex::new(None),
            misses: Mutex::new(HashMap::new()),
            backlogs: Mutex::new(HashMap::new()),
            tags,
            carrier_names: Mutex::new(Vec::new()),
        })
    }
}

/// Puts a session whose rows are in the tables (its participants listed in creation order)
/// to work: stickiness history, and if it is active its route keys reserved and published
/// and its deadline armed; if it closed within its service's cool-off, its keys cooling.
/// Start-up does this for every session; following another node, for each one it changed.
pub(super) fn install(
    st: &mut State,
    routes: &RoutingTable,
    wheel: &mut TimerWheel<Sid>,
    sid: Sid,
    now: Timestamp,
) {
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
            st.active.insert(key, sid);
            if let Some(n) = pn.and_then(|pn| st.numbers.get_mut(&pn)) {
                n.in_use += 1;
            }
        }
        publish_routes(st, routes, sid);
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
