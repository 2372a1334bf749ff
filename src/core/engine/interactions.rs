//! Interactions: messages created through the API, the data planes' logs (durable or written
//! behind), deletes, and outbound messages not yet queued at start.

use super::*;

impl Engine {
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
            data: serde_json::json!({ "body": body }).to_string().into(),
            kind: InteractionType::Message,
            inbound: Leg::default(),
            outbound: Leg {
                participant_sid: Some(participant),
                resource_sid: None,
                resource_status: Some(ResourceStatus::Queued),
                resource_type: Some("Message".into()),
                resource_url: None,
            },
            message_participant_sid: Some(participant),
            date_created: now,
            date_updated: now,
        };
        let follow = st.touch_session(session, now);
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
            WriteOp::TouchSession {
                session,
                at: now,
                follow,
            },
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

    /// A stranger reached `proxy` with no session (a message or a call): logged for the
    /// reports and lead attribution, behind, nobody waiting. Not a pool number: nothing.
    pub fn record_contact(&self, proxy: E164, sender: E164, kind: InteractionType, now: Timestamp) {
        let st = self.state.lock();
        let Some(service) = st
            .number_index
            .get(&proxy.as_u64())
            .and_then(|n| st.numbers.get(n))
            .map(|n| n.service_sid)
        else {
            return;
        };
        let event = crate::core::reports::ContactEvent {
            service,
            proxy,
            sender,
            kind,
            at: now,
        };
        self.store.submit(vec![WriteOp::PutContact(event)], None);
    }

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

    pub(super) fn record_with(
        &self,
        mut ops: Vec<WriteOp>,
        touch: Option<(Sid, Timestamp)>,
        done: Option<crate::core::store::Completion>,
    ) {
        let mut st = self.state.lock();
        if let Some((sid, now)) = touch {
            if st.sessions.contains_key(&sid) {
                let follow = st.touch_session(sid, now);
                ops.push(WriteOp::TouchSession {
                    session: sid,
                    at: now,
                    follow,
                });
            }
        }
        let items = self.status_callbacks(&mut st, &mut ops);
        self.store.submit(ops, done);
        drop(st);
        self.hand_callbacks(items);
    }
}
