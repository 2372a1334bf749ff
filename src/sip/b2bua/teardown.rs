//! How calls end: the caller's CANCEL, a BYE from either side (including two BYEs that
//! cross), maskd giving up on a ringing leg, a session that closes, and shutdown.

use super::call::{CallState, Held, NewClient, Purpose};
use super::dialog::{contact_uri, token};
use super::{B2bua, Ctx, Incoming, Remote};
use crate::core::model::ResourceStatus;
use crate::sip::message::{concat, decimal, parse, HeaderName, Message, Outgoing, Transport};

impl B2bua {
    pub(super) fn on_cancel(&mut self, req: &Incoming, cx: &mut Ctx) {
        let call = self
            .server
            .get(&(req.branch.clone(), false))
            .and_then(|e| e.call);
        if let Some(key) = self
            .held
            .iter()
            .find(|(_, h)| h.branch == req.branch)
            .map(|(k, _)| *k)
        {
            // Cancelled while it waited for a callback: 200 for the CANCEL, 487 for the
            // INVITE, and the callback's answer will find nothing to resume.
            if let Some(h) = self.held.remove(&key) {
                let r = self.reply(req.m, req.src, 200, "OK", None).encode();
                self.server_answer(req, 200, r, cx);
                self.answer_held(&h, 487, "Request Terminated", cx);
                return;
            }
        }
        let Some(id) = call.filter(|id| {
            self.calls
                .get(id)
                .is_some_and(|c| matches!(c.state, CallState::Setup | CallState::Early))
        }) else {
            return self.no_such_call(req, cx);
        };
        let tag = self.calls[&id].a.local_tag.clone();
        let r = self.reply(req.m, req.src, 200, "OK", Some(&tag)).encode();
        self.server_answer(req, 200, r, cx);
        self.abandon_setup(id, 487, "Request Terminated", ResourceStatus::Canceled, cx);
    }

    /// 481 for a request that names no call (or none in a state it can act on).
    pub(super) fn no_such_call(&mut self, req: &Incoming, cx: &mut Ctx) {
        let r = self
            .reply(
                req.m,
                req.src,
                481,
                "Call/Transaction Does Not Exist",
                Some(&token()),
            )
            .encode();
        self.server_answer(req, 481, r, cx);
    }

    /// Ends a call that is not answered yet: leg A gets its final answer now (`code`),
    /// leg B's INVITE is cancelled, and B's own final answer is awaited (ACKed, or a 2xx
    /// that crossed the CANCEL hung up) for at most 64×T1.
    pub(super) fn abandon_setup(
        &mut self,
        id: u64,
        code: u16,
        reason: &str,
        outbound: ResourceStatus,
        cx: &mut Ctx,
    ) {
        let Some(c) = self.calls.get(&id) else { return };
        let bytes = self.to_a(c, code, reason, None);
        self.answer_a(id, code, bytes, cx);
        self.set_leg(id, outbound, Some(ResourceStatus::Completed), cx);
        // No CANCEL before leg B's first provisional answer (RFC 3261 §9.1): it goes when
        // one comes; until then Timer B bounds the INVITE.
        let ringing = self
            .calls
            .get(&id)
            .is_some_and(|c| c.state == CallState::Early);
        if ringing {
            self.cancel_leg_b(id, cx);
        }
        let give_up = cx.now + 64 * self.cfg.timers.t1;
        if let Some(c) = self.calls.get_mut(&id) {
            c.state = CallState::Ending;
            c.ring_until = None;
            c.give_up_at = Some(give_up);
            c.cancel_pending = !ringing;
        }
    }

    /// Sends CANCEL for leg B's INVITE (same Request-URI, branch, Call-ID, From, To and
    /// CSeq number, RFC 3261 §9.1).
    pub(super) fn cancel_leg_b(&mut self, id: u64, cx: &mut Ctx) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let mut d = c.b.clone();
        d.target = c.b_ruri.clone();
        d.routes.clear();
        d.remote_tag = None;
        let to = c.b.flow;
        let cancel = d
            .request_with("CANCEL", c.b_invite_cseq, &c.b_invite_branch, to, &self.cfg)
            .encode();
        // The CANCEL shares the INVITE's branch; key it apart.
        let key = format!("{}-cancel", c.b_invite_branch);
        let n = NewClient {
            call: id,
            purpose: Purpose::Cancel,
            to,
            invite: false,
            give_up: None,
        };
        self.start_client(key, cancel, n, cx);
    }

    /// A 2xx to one of our INVITEs on leg B whose call is already forgotten (our ACK was
    /// lost and the call ended soon after): ACKed from the answer itself, so that the trunk
    /// stops sending it again (RFC 3261 §13.2.2.4). Only leg B's dialogs are recognisable
    /// as ours once the call is gone: their Call-IDs are maskd's own.
    pub(super) fn ack_forgotten_2xx(&mut self, src: Remote, m: &Message<'_>, cx: &mut Ctx) {
        let call_id = m.header(HeaderName::CallId).unwrap_or("");
        if !call_id.ends_with("@maskd") {
            return;
        }
        let Some(target) = contact_uri(m) else {
            return;
        };
        let cseq = m.cseq().map_or(1, |c| c.0);
        let mut ack = Outgoing::request("ACK", &target)
            .header("Via", self.cfg.via(src, &token()))
            .header("Max-Forwards", "70");
        // The route set is the answer's Record-Route, reversed (§12.1.2).
        for route in m.header_values(HeaderName::RecordRoute).into_iter().rev() {
            ack = ack.header("Route", route.to_string());
        }
        let ack = ack
            .header("From", m.header(HeaderName::From).unwrap_or("").to_string())
            .header("To", m.header(HeaderName::To).unwrap_or("").to_string())
            .header("Call-ID", call_id.to_string())
            .header(
                "CSeq",
                concat(&[decimal(cseq.into(), &mut [0u8; 20]), " ACK"]),
            );
        self.counters.retransmissions += 1;
        cx.send(src, ack.encode());
    }

    /// Leg B's INVITE got its final answer (or was given up) after leg A was answered.
    pub(super) fn finish_ending(&mut self, id: u64) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.give_up_at = None;
        }
        self.end_call(id);
    }

    pub(super) fn on_bye(&mut self, req: &Incoming, cx: &mut Ctx) {
        let (id, from_a) = match (self.by_a.get(&req.call_id), self.by_b.get(&req.call_id)) {
            (Some(id), _) => (*id, true),
            (None, Some(id)) => (*id, false),
            _ => {
                return self.no_such_call(req, cx);
            }
        };
        let r = self.reply(req.m, req.src, 200, "OK", None).encode();
        self.server_answer(req, 200, r, cx);
        match self.calls.get(&id).map(|c| c.state) {
            Some(CallState::Answered) => {
                self.bye(id, !from_a, cx);
                self.log_completed(id, cx);
                self.end_call(id);
            }
            Some(CallState::Setup | CallState::Early) if from_a => {
                // The caller may end an early dialog with BYE (RFC 3261 §15): as a CANCEL.
                self.abandon_setup(id, 487, "Request Terminated", ResourceStatus::Canceled, cx);
            }
            // A BYE that crossed ours (glare), or one for an early dialog of leg B (its
            // INVITE's final answer still comes): answered, nothing else.
            _ => {}
        }
    }

    /// Sends BYE on leg A (`to_a`) or leg B, in that leg's dialog, to its remote target.
    pub(super) fn bye(&mut self, id: u64, to_a: bool, cx: &mut Ctx) {
        self.bye_with(id, to_a, None, cx);
    }

    /// `bye`, answering a digest challenge to an earlier BYE (`auth`: the header to send,
    /// the challenge and the trunk's credentials).
    pub(super) fn bye_with(
        &mut self,
        id: u64,
        to_a: bool,
        auth: Option<super::auth::Answer>,
        cx: &mut Ctx,
    ) {
        let streams = &self.stream_peers;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let d = if to_a { &mut c.a } else { &mut c.b };
        let to = d.next_hop(&|a| streams.contains(&a));
        let branch = token();
        let mut bye = d.request("BYE", &branch, to, &self.cfg);
        if let Some(a) = auth {
            bye = bye.header(a.header, a.value("BYE", &d.target));
        }
        let bye = bye.encode();
        let purpose = if to_a {
            Purpose::ByeToA
        } else {
            Purpose::ByeToB
        };
        let n = NewClient {
            call: id,
            purpose,
            to,
            invite: false,
            give_up: None,
        };
        self.start_client(branch, bye, n, cx);
    }

    /// Ends every answered call whose session has closed (its route key no longer
    /// resolves to it): BYE on both legs. One lookup per answered call per tick.
    pub(super) fn end_closed_sessions(&mut self, cx: &mut Ctx) {
        if self.cfg.keep_calls_on_close {
            return;
        }
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.state == CallState::Answered
                    && cx
                        .core
                        .target(c.key.0, c.key.1)
                        .is_none_or(|t| t.session != c.session)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end_answered(id, cx);
        }
    }

    /// Ends an answered call from maskd's side: BYE on both legs, both legs completed.
    pub(super) fn end_answered(&mut self, id: u64, cx: &mut Ctx) {
        self.bye(id, false, cx);
        self.bye(id, true, cx);
        self.log_completed(id, cx);
        self.end_call(id);
    }

    /// Answers an INVITE that was held for a callback with a final `code` (503 carries
    /// Retry-After).
    pub(super) fn answer_held(&mut self, h: &Held, code: u16, reason: &str, cx: &mut Ctx) {
        let Ok(Some((inv, _))) = parse(&h.bytes, Transport::Datagram) else {
            return;
        };
        let r = self.reply(&inv, h.src, code, reason, Some(&token()));
        let bytes = if code == 503 {
            r.header("Retry-After", "5")
        } else {
            r
        }
        .encode();
        if let Some(e) = self.server.get_mut(&(h.branch.clone(), false)) {
            let mut acts = Vec::new();
            e.tx.respond(code, bytes, cx.now, &mut acts);
            cx.send_all(h.src, acts);
        }
    }

    pub(super) fn end_call(&mut self, id: u64) {
        self.release_media(id);
        if let Some(c) = self.calls.get_mut(&id) {
            c.state = CallState::Ended;
            c.ring_until = None;
            c.ok_to_a = None;
        }
        // Keep the call until its transactions are gone (the 2xx retransmission and ACKs);
        // the sweep drops ended calls with nothing left to do.
    }
}
