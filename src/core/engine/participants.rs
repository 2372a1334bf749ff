//! Participants: add (selecting a proxy number and reserving its route key), list, fetch,
//! and soft delete.

use super::*;

impl Engine {
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

    pub(super) fn add_participant_locked(
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
        let backlogs = self.backlogs.lock();
        let pool: Vec<Candidate> = st.pools[&service]
            .values()
            .map(|s| {
                let n = &st.numbers[s];
                Candidate {
                    sid: n.sid,
                    number: n.number,
                    reserved: n.is_reserved,
                    in_use: n.in_use,
                    backlog: backlogs.get(&n.number.as_u64()).copied().unwrap_or(0),
                }
            })
            .collect();
        drop(backlogs);
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
            let _batch = self.routes.batch();
            for p in st.live_participants(session) {
                if st.holds(p) {
                    let q = &st.participants[&p];
                    self.routes.remove(&RouteKey::new(q.proxy, q.identifier));
                }
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
}
