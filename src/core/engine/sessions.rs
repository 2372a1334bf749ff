//! Sessions and their lifecycle: create (with number selection), update, close and re-open,
//! delete, and expiry driven by the timer wheel.

use super::*;

impl Engine {
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
            record: req.record,
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
            if let Some(r) = patch.record {
                ss.session.record = Some(r);
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

    pub(super) fn drop_session(&self, st: &mut State, sid: Sid) {
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

    pub(super) fn reopen_locked(
        &self,
        st: &mut State,
        sid: Sid,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        let parts = st.live_participants(sid);
        for p in &parts {
            let part = &st.participants[p];
            if st
                .active
                .contains_key(&RouteKey::new(part.proxy, part.identifier))
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
    pub(super) fn deactivate(&self, st: &mut State, sid: Sid) {
        let _batch = self.routes.batch();
        for p in st.live_participants(sid) {
            // A key another session has taken since (see `State::active`) keeps its route.
            if st.holds(p) {
                let part = &st.participants[&p];
                self.routes
                    .remove(&RouteKey::new(part.proxy, part.identifier));
            }
            st.unreserve(p);
        }
        if let Some(key) = st.sessions.get_mut(&sid).and_then(|s| s.timer.take()) {
            self.wheel.lock().cancel(key);
        }
    }

    pub(super) fn close_locked(
        &self,
        st: &mut State,
        sid: Sid,
        reason: ClosedReason,
        now: Timestamp,
    ) {
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

    pub(super) fn rearm(&self, st: &mut State, sid: Sid) {
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
                if wheel.len() == 1 {
                    drop(wheel);
                    self.wake_wheel();
                }
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
        // Every route closed on this tick disappears with one publish.
        let batch = self.routes.batch();
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
        drop(batch);
        let ops: Vec<WriteOp> = closed
            .iter()
            .filter_map(|s| st.session_view(*s))
            .map(WriteOp::ExpireSession)
            .collect();
        let n = ops.len();
        if n > 0 {
            self.store.submit(ops, None);
        }
        n
    }

    // ----- participants -----
}
