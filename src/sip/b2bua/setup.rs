//! Call setup: leg A's INVITE is checked, routed (asking the out-of-session and intercept
//! callbacks when configured), and leg B's INVITE goes to the trunk; B's answers come back
//! to A in A's dialog. A provisional answer stops Timer B, so a call rings until the caller
//! cancels, the callee answers or refuses, or `ring_timeout` passes.

use super::call::{Call, CallState, Decided, Held, InviteIn, Purpose, Retransmit};
use super::dialog::{answer_vias, contact_uri, number_of, strip_tag, tag_of, token, Dialog};
use super::log::voice_interaction;
use super::{Ask, B2bua, Ctx, Incoming, Remote, Resume};
use crate::core::model::ResourceStatus;
use crate::core::store::WriteOp;
use crate::core::{Sid, SidKind, E164};
use crate::sip::message::{
    concat, decimal, parse, HeaderName, Message, Outgoing, StartLine, Transport,
};
use crate::sip::transaction::{Action, ServerTx};
use crate::sip::uri::NameAddr;

/// Headers that may pass from one leg to the other; everything else is rebuilt or dropped.
pub(super) const PASS: &[&str] = &[
    "Content-Type",
    "Allow",
    "Supported",
    "Session-Expires",
    "Min-SE",
    "Accept",
];
/// Option tags maskd lets through in Require (others: 420 Bad Extension). Not `100rel`:
/// reliable provisionals would need RSeq/RAck mapped across the legs, so maskd neither
/// requires nor offers it and leg B's 18x reach A unreliably.
const KNOWN_EXTENSIONS: &[&str] = &["timer", "replaces"];

/// Whether header `raw_name` (long or compact form) is one of the whitelisted ones, and
/// which.
pub(super) fn passes(raw_name: &str) -> Option<&'static str> {
    PASS.iter().copied().find(|p| {
        p.eq_ignore_ascii_case(raw_name)
            || HeaderName::from_name(raw_name) == HeaderName::from_name(p)
                && HeaderName::from_name(p) != HeaderName::Other
    })
}

/// A whitelisted header's value as it crosses: `100rel` taken out of Supported (maskd does
/// not relay reliable provisionals).
pub(super) fn without_100rel(name: &str, value: &str) -> String {
    if !name.eq_ignore_ascii_case("Supported") {
        return value.to_string();
    }
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("100rel"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The dialled proxy number and the caller (From, or P-Asserted-Identity when From is
/// anonymous) of an INVITE.
fn parties(m: &Message<'_>) -> Option<(E164, E164)> {
    let StartLine::Request { uri, .. } = m.start else {
        return None;
    };
    let proxy = number_of(uri)?;
    let from = m.header(HeaderName::From).unwrap_or("");
    let number =
        |v: &str| NameAddr::parse(v).and_then(|n| E164::parse(n.uri.user?.split(';').next()?).ok());
    let caller =
        number(from).or_else(|| m.header(HeaderName::PAssertedIdentity).and_then(number))?;
    Some((proxy, caller))
}

fn failure_reason(code: u16) -> &'static str {
    match code {
        486 => "Busy Here",
        487 => "Request Terminated",
        480 => "Temporarily Unavailable",
        404 => "Not Found",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Call Failed",
    }
}

impl B2bua {
    /// The driver's answer to the `Ask` with this key: the held INVITE goes on.
    pub fn resume(
        &mut self,
        key: u64,
        answer: Resume,
        now: u64,
        core: &dyn super::Core,
        out: &mut Vec<super::Datagram>,
    ) {
        let mut cx = Ctx { now, core, out };
        let Some(h) = self.held.remove(&key) else {
            return;
        };
        // Cancelled (or otherwise answered) while it waited: nothing more to do.
        let waiting = self
            .server
            .get(&(h.branch.clone(), false))
            .is_some_and(|e| {
                e.call.is_none() && e.tx.state() == crate::sip::transaction::ServerState::Proceeding
            });
        if waiting {
            if let Ok(Some((m, _))) = parse(&h.bytes, Transport::Datagram) {
                let req = Incoming {
                    src: h.src,
                    m: &m,
                    method: "INVITE",
                    branch: h.branch.clone(),
                    call_id: m.header(HeaderName::CallId).unwrap_or("").to_string(),
                };
                let mut decided = h.decided;
                match answer {
                    Resume::SessionCreated(_) => decided.out_of_session_asked = true,
                    Resume::Allow(true) => decided.intercepted = true,
                    Resume::Allow(false) => {
                        self.blocked_call(&req, decided, &mut cx);
                        self.client.settle();
                        self.server.settle();
                        return;
                    }
                }
                self.new_call(&req, decided, &mut cx);
            }
        }
        self.client.settle();
        self.server.settle();
    }

    /// Holds an INVITE for a callback: 100 Trying from its server transaction (which
    /// absorbs retransmissions), then the `Ask` for the driver.
    fn hold(
        &mut self,
        req: &Incoming,
        decided: Decided,
        ask: impl FnOnce(u64) -> Ask,
        cx: &mut Ctx,
    ) {
        self.trying(req, None, cx);
        let key = self.next;
        self.next += 1;
        self.held.insert(
            key,
            Held {
                src: req.src,
                bytes: req.m.raw.to_vec(),
                branch: req.branch.clone(),
                decided,
            },
        );
        self.asks.push(ask(key));
    }

    /// The INVITE's server transaction, created with 100 Trying sent if it does not exist
    /// yet (it does when the INVITE waited for a callback); bound to `call`.
    fn trying(&mut self, req: &Incoming, call: Option<u64>, cx: &mut Ctx) {
        let key = (req.branch.clone(), false);
        if let Some(e) = self.server.get_mut(&key) {
            e.call = call;
            return;
        }
        let mut tx = ServerTx::new(true, req.src.tcp, self.cfg.timers);
        let mut acts = Vec::new();
        let trying = self.reply(req.m, req.src, 100, "Trying", None).encode();
        tx.respond(100, trying, cx.now, &mut acts);
        self.server.insert(
            key,
            super::call::ServerEntry {
                call,
                to: req.src,
                tx,
            },
        );
        cx.send_all(req.src, acts);
    }

    /// An INVITE the intercept callback blocked: 403 on leg A, logged as a call whose
    /// outbound leg was canceled.
    fn blocked_call(&mut self, req: &Incoming, decided: Decided, cx: &mut Ctx) {
        if let Some((proxy, caller)) = parties(req.m) {
            if let Some(t) = cx.core.target(proxy, caller) {
                let mut i = voice_interaction(&t, decided.interaction, cx.now_s(), cx.core);
                i.inbound.resource_status = Some(ResourceStatus::Completed);
                i.outbound.resource_status = Some(ResourceStatus::Canceled);
                cx.core.record(
                    vec![WriteOp::PutInteraction(i)],
                    Some((t.session, cx.now_s())),
                );
            }
        }
        let r = self
            .reply(req.m, req.src, 403, "Forbidden", Some(&token()))
            .encode();
        self.server_answer(req, 403, r, cx);
    }

    fn refuse(&mut self, req: &Incoming, code: u16, reason: &str, cx: &mut Ctx) {
        let r = self.reply(req.m, req.src, code, reason, Some(&token()));
        let r = match code {
            503 => r.header("Retry-After", "5"),
            415 => r.header("Accept", "application/sdp"),
            _ => r,
        };
        self.server_answer(req, code, r.encode(), cx);
    }

    pub(super) fn new_call(&mut self, req: &Incoming, decided: Decided, cx: &mut Ctx) {
        let m = req.m;
        if m.header(HeaderName::MaxForwards)
            .is_some_and(|mf| mf.trim() == "0")
        {
            return self.refuse(req, 483, "Too Many Hops", cx);
        }
        if let Some(r) = m.header(HeaderName::Require) {
            if r.split(',').any(|t| !KNOWN_EXTENSIONS.contains(&t.trim())) {
                return self.refuse(req, 420, "Bad Extension", cx);
            }
        }
        if self.calls.len() >= self.cfg.max_calls || self.draining {
            return self.refuse(req, 503, "Service Unavailable", cx);
        }
        let Some((proxy, caller)) = parties(m) else {
            return self.refuse(req, 404, "Not Found", cx);
        };
        let Some(t) = cx.core.target(proxy, caller) else {
            if !decided.out_of_session_asked {
                cx.core.contact(proxy, caller, cx.now_s());
            }
            if !decided.out_of_session_asked && cx.core.has_out_of_session(proxy) {
                let call_sid = Sid::generate(SidKind::Call).to_string();
                let ask = |key| Ask::OutOfSession {
                    key,
                    proxy,
                    caller,
                    call_sid,
                };
                return self.hold(req, decided, ask, cx);
            }
            tracing::debug!(from = %caller.masked(), to = %proxy.masked(), "call out of session");
            return self.refuse(req, 404, "Not Found", cx);
        };
        if !t.mode.allows_voice() {
            return self.refuse(req, 403, "Forbidden", cx);
        }
        if !decided.intercepted {
            if let Some(url) = cx.core.intercept_url(t.service) {
                let mut decided = decided;
                let i = voice_interaction(&t, None, cx.now_s(), cx.core);
                decided.interaction = Some(i.sid);
                let callee = t.counterpart_real;
                let ask = |key| Ask::Intercept {
                    key,
                    url,
                    interaction: Box::new(i),
                    caller,
                    callee,
                };
                return self.hold(req, decided, ask, cx);
            }
        }
        // Where leg B goes: the callee's proxy number's carrier's trunks (none resolved yet
        // for a carrier whose trunks are hostnames: not elsewhere, where the caller ID is
        // not the carrier's).
        let Some((carrier, trunk)) = self.leg_b_route(t.counterpart_proxy) else {
            tracing::warn!("leg B's carrier has no trunk address yet (hostnames unresolved)");
            return self.refuse(req, 503, "Service Unavailable", cx);
        };
        let mf: u32 = m
            .header(HeaderName::MaxForwards)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(70);
        let id = self.next;
        self.next += 1;
        // Anchored media: A's offer gets relay ports and is rewritten for B.
        let mut media = self.new_media();
        let b_body = match (&mut media, self.media.as_deref()) {
            (Some(cm), Some(relay)) if !m.body.is_empty() => {
                match super::media::anchor(
                    relay,
                    self.cfg.media_ip,
                    id,
                    cm,
                    crate::media::Side::A,
                    m.header(HeaderName::ContentType),
                    m.body,
                ) {
                    Ok(b) => b,
                    Err(e) => {
                        if !cm.ports.is_empty() {
                            relay.release(id);
                        }
                        let (code, reason) = e.status();
                        tracing::info!(code, reason, "INVITE refused: its SDP cannot be anchored");
                        return self.refuse(req, code, reason, cx);
                    }
                }
            }
            _ => m.body.to_vec(),
        };
        // 100 Trying at once (already sent if the INVITE waited for a callback).
        self.trying(req, Some(id), cx);

        // Leg A's dialog, maskd as UAS: our URI is the dialled proxy number.
        let a_from = m.header(HeaderName::From).unwrap_or("").to_string();
        let a_to = strip_tag(m.header(HeaderName::To).unwrap_or(""));
        let a_target = contact_uri(m)
            .unwrap_or_else(|| format!("sip:{}@{}", super::dialog::user_of(&a_from), req.src.addr));
        let a = Dialog {
            call_id: req.call_id.clone(),
            local: a_to,
            local_tag: token(),
            remote: strip_tag(&a_from),
            remote_tag: tag_of(&a_from),
            cseq: 0,
            target: a_target,
            routes: m
                .header_values(HeaderName::RecordRoute)
                .into_iter()
                .map(str::to_string)
                .collect(),
            flow: req.src,
            peer_opened: req.src.tcp,
            user: proxy.to_string(),
        };
        let a_invite = InviteIn {
            branch: req.branch.clone(),
            vias: answer_vias(m, req.src.addr),
            from: a_from,
            record_route: m
                .headers
                .iter()
                .filter(|h| h.name == HeaderName::RecordRoute)
                .map(|h| h.value.to_string())
                .collect(),
            cseq: m.cseq().map_or(1, |c| c.0),
        };

        // Leg B from scratch: from the callee's proxy number to the callee, through the
        // carrier owning that proxy number.
        let proxy_b = t.counterpart_proxy.to_string();
        let real_b = t.counterpart_real.to_string();
        let mut b = Dialog {
            call_id: format!("{}@maskd", token()),
            local: format!("<sip:{proxy_b}@{}>", self.cfg.advertised_host),
            local_tag: token(),
            remote: String::new(),
            remote_tag: None,
            cseq: 0,
            target: String::new(),
            routes: Vec::new(),
            flow: trunk,
            peer_opened: false,
            user: proxy_b.clone(),
        };
        // Leg B carries A's Max-Forwards, decremented.
        let mut extra = vec![("Max-Forwards", mf.saturating_sub(1).to_string())];
        if self.cfg.assert_identity {
            extra.push((
                "P-Asserted-Identity",
                format!("<sip:{proxy_b}@{}>", self.cfg.advertised_host),
            ));
        }
        for h in &m.headers {
            if let Some(name) = passes(h.raw_name) {
                extra.push((name, without_100rel(name, &h.value)));
            }
        }
        if let Some(r) = m.header(HeaderName::Require) {
            extra.push(("Require", r.to_string()));
        }
        let b_branch = token();
        let invite = super::failover::leg_b_invite(
            &mut b, &real_b, &b_branch, trunk, &extra, &b_body, &self.cfg,
        );
        let b_ruri = b.target.clone();
        let b_invite_cseq = b.cseq;
        // Kept when leg B may go again: to the next trunk, or answering a challenge.
        let more = carrier.as_ref().is_some_and(|(_, order)| order.len() > 1);
        let carrier_leg = carrier
            .filter(|(c, _)| more || self.cfg.carriers.has_credentials(*c))
            .map(|(carrier, order)| {
                Box::new(super::failover::CarrierLeg {
                    real_b,
                    extra,
                    body: b_body,
                    carrier,
                    order,
                    at: 0,
                    challenges_answered: 0,
                    bye_challenged: false,
                })
            });
        self.send_leg_b_invite(id, b_branch.clone(), trunk, invite, more, cx);
        let interaction = voice_interaction(&t, decided.interaction, cx.now_s(), cx.core);
        cx.core.record(
            vec![WriteOp::PutInteraction(interaction.clone())],
            Some((t.session, cx.now_s())),
        );
        let call = Call {
            state: CallState::Setup,
            a,
            a_invite,
            ok_to_a: None,
            b,
            b_ruri,
            b_invite_branch: b_branch,
            b_invite_cseq,
            ack_to_b: None,
            interaction,
            session: t.session,
            key: (proxy, caller),
            setup_from: Some(cx.now),
            answered_at: None,
            ring_until: Some(cx.now + self.cfg.ring_timeout),
            give_up_at: None,
            cancel_pending: false,
            late_offer: m.body.is_empty(),
            media,
            carrier_leg,
        };
        self.by_a.insert(call.a.call_id.clone(), id);
        self.by_b.insert(call.b.call_id.clone(), id);
        self.calls.insert(id, Box::new(call));
        self.counters.calls_started += 1;
    }

    /// A response to leg A's INVITE, in A's dialog; answers that create the dialog carry
    /// our tag, our Contact (with A's transport) and A's Record-Route.
    pub(super) fn to_a(
        &self,
        c: &Call,
        code: u16,
        reason: &str,
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let mut r = Outgoing::response(code, reason);
        for v in &c.a_invite.vias {
            r = r.header("Via", v.clone());
        }
        if (101..300).contains(&code) {
            for rr in &c.a_invite.record_route {
                r = r.header("Record-Route", rr.clone());
            }
        }
        r = r
            .header("From", c.a_invite.from.clone())
            .header("To", c.a.local_header())
            .header("Call-ID", c.a.call_id.clone())
            .header(
                "CSeq",
                concat(&[decimal(c.a_invite.cseq.into(), &mut [0u8; 20]), " INVITE"]),
            );
        if (101..300).contains(&code) {
            r = r.header("Contact", self.cfg.contact(&c.a.user, c.a.flow));
        }
        if let Some(s) = &self.cfg.server_header {
            r = r.header("Server", s.clone());
        }
        if let Some((ct, b)) = body {
            r = r.body(Some(ct), b);
        }
        r.encode()
    }

    /// Sends `code` to leg A's INVITE through its server transaction.
    pub(super) fn answer_a(&mut self, id: u64, code: u16, bytes: Vec<u8>, cx: &mut Ctx) {
        let Some(c) = self.calls.get(&id) else { return };
        let (to, key) = (c.a.flow, (c.a_invite.branch.clone(), false));
        if let Some(e) = self.server.get_mut(&key) {
            let mut acts = Vec::new();
            e.tx.respond(code, bytes, cx.now, &mut acts);
            if (200..300).contains(&code) {
                // Accepted, it only absorbs copies of the INVITE: it does not hold the
                // call in memory (the sweep may drop it once it ends).
                e.call = None;
            }
            cx.send_all(to, acts);
        }
    }

    /// A response arrived (from a trusted source): to one of our client transactions.
    pub(super) fn on_response(&mut self, m: &Message<'_>, code: u16, src: Remote, cx: &mut Ctx) {
        let Some(branch) = super::dialog::branch_of(m) else {
            return;
        };
        let Some(mut branch) = branch.strip_prefix("z9hG4bK").map(str::to_string) else {
            return;
        };
        if m.cseq().is_some_and(|(_, method)| method == "CANCEL") {
            // A CANCEL shares its INVITE's branch; its transaction is keyed apart.
            branch.push_str("-cancel");
        }
        if self.on_abandoned_response(&branch, m, code, cx) {
            return;
        }
        let Some(entry) = self.client.get_mut(&branch) else {
            // A 2xx to one of our INVITEs after its transaction ended (a retransmission, or
            // a late answer to a re-INVITE given up on): ACK it in its dialog, with its CSeq.
            if (200..300).contains(&code) && m.cseq().is_some_and(|(_, me)| me == "INVITE") {
                self.ack_stray_2xx(m, src, cx);
            }
            return;
        };
        let (id, purpose, to) = (entry.call, entry.purpose.clone(), entry.to);
        let mut acts = Vec::new();
        entry.tx.on_response(code, cx.now, &mut acts);
        let passed_up = acts.contains(&Action::Response(code));
        let ended = acts.contains(&Action::Terminated);
        for a in &acts {
            if let Action::Transmit(d) = a {
                cx.send(to, d.clone());
            }
        }
        if ended && purpose != Purpose::Invite {
            self.client.remove(&branch);
        }
        if !passed_up {
            return;
        }
        match purpose {
            Purpose::Invite => {
                // The trunk answers: no longer given up for silence.
                if let Some(e) = self.client.get_mut(&branch) {
                    e.give_up = None;
                }
                self.on_invite_response(id, &branch, m, code, cx)
            }
            Purpose::Relay(ref r) => {
                if code >= 200 {
                    // Answered: no longer given up on.
                    if let Some(e) = self.client.get_mut(&branch) {
                        e.give_up = None;
                    }
                }
                self.relay_answer(id, &branch, r, m, code, cx)
            }
            Purpose::Probe(c, t) => {
                if code >= 200 {
                    // Answered: no longer given up for silence.
                    if let Some(e) = self.client.get_mut(&branch) {
                        e.give_up = None;
                    }
                    self.probed(c, t, Some(code));
                }
            }
            Purpose::Register(c, t) => {
                if code >= 200 {
                    self.registered(c, t, Some((m, code)), cx.now);
                }
            }
            Purpose::ByeToB if matches!(code, 401 | 407) => {
                self.answer_bye_challenge(id, m, code, cx);
            }
            Purpose::ByeToA | Purpose::ByeToB | Purpose::Cancel => {}
        }
        if ended && purpose == Purpose::Invite && (200..300).contains(&code) {
            self.client.remove(&branch);
        }
    }

    fn on_invite_response(
        &mut self,
        id: u64,
        branch: &str,
        m: &Message<'_>,
        code: u16,
        cx: &mut Ctx,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if code > 100 && code < 300 {
            if let Some(tag) = m.header(HeaderName::To).and_then(tag_of) {
                c.b.remote_tag = Some(tag);
            }
            let creates = code >= 200 || c.b.routes.is_empty();
            c.b.learn_from_response(m, creates);
        }
        let state = c.state;
        if state == CallState::Ending || state == CallState::Ended {
            // Leg A has its answer already (cancelled, timed out, shut down).
            match code {
                200..=299 => {
                    // Answered while our CANCEL crossed it: ACK, then hang up leg B.
                    self.ack_b_2xx(id, None, cx);
                    self.bye(id, false, cx);
                    self.finish_ending(id);
                }
                300..=699 => {
                    self.ack_b_failure(id, branch, m, cx);
                    self.finish_ending(id);
                }
                101..=199 => {
                    if let Some(c) = self.calls.get_mut(&id).filter(|c| c.cancel_pending) {
                        c.cancel_pending = false;
                        self.cancel_leg_b(id, cx);
                    }
                }
                _ => {}
            }
            return;
        }
        if matches!(code, 180 | 183 | 200..=299) {
            if let Some(from) = c.setup_from.take() {
                crate::metrics::get()
                    .sip_setup
                    .observe(cx.now.saturating_sub(from) as f64 / 1000.0);
            }
        }
        let mut body = m
            .header(HeaderName::ContentType)
            .filter(|_| !m.body.is_empty())
            .map(|ct| (ct.to_string(), m.body.to_vec()));
        if code < 300 && self.anchoring() {
            if let Some((ct, b)) = body.take() {
                match self.anchor_body(id, crate::media::Side::B, Some(&ct), &b) {
                    Ok(nb) => body = Some((ct, nb)),
                    Err(e) if code >= 200 => {
                        // An answer maskd cannot anchor: leg B is hung up, A gets 502.
                        tracing::warn!(reason = e.status().1, "leg B's 2xx SDP cannot be anchored");
                        self.ack_b_2xx(id, None, cx);
                        self.bye(id, false, cx);
                        let bytes = self.to_a(&self.calls[&id], 502, "Bad Gateway", None);
                        self.answer_a(id, 502, bytes, cx);
                        self.set_leg(
                            id,
                            ResourceStatus::Failed,
                            Some(ResourceStatus::Completed),
                            cx,
                        );
                        self.end_call(id);
                        return;
                    }
                    // A provisional answer goes on without the body maskd cannot anchor.
                    Err(e) => tracing::info!(reason = e.status().1, "18x SDP dropped"),
                }
            }
        }
        let body_ref = body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice()));
        match code {
            100 => {}
            101..=199 => {
                let reason = if code == 180 {
                    "Ringing"
                } else {
                    "Session Progress"
                };
                let bytes = self.to_a(&self.calls[&id], code, reason, body_ref);
                self.answer_a(id, code, bytes, cx);
                if let Some(c) = self.calls.get_mut(&id) {
                    c.state = CallState::Early;
                }
                self.set_leg(id, ResourceStatus::Ringing, None, cx);
            }
            200..=299 => {
                let bytes = self.to_a(&self.calls[&id], 200, "OK", body_ref);
                // The INVITE's transaction stays (Accepted) to absorb late copies of it.
                self.answer_a(id, 200, bytes.clone(), cx);
                // Late offer: B's 2xx carried the offer; its ACK waits for A's answer.
                let late = self.calls.get(&id).is_some_and(|c| c.late_offer) && body.is_some();
                if late {
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.ack_to_b = None;
                    }
                } else {
                    self.ack_b_2xx(id, None, cx);
                }
                self.media_answered(id, cx);
                let t1 = self.cfg.timers.t1;
                if let Some(c) = self.calls.get_mut(&id) {
                    c.state = CallState::Answered;
                    c.answered_at = Some(cx.now);
                    c.ring_until = None;
                    // Retransmitted whatever A's transport: a proxy on A's path may
                    // forward it over UDP (RFC 3261 §13.3.1.4).
                    c.ok_to_a = Some(Retransmit {
                        bytes,
                        at: cx.now + t1,
                        interval: t1,
                        give_up: cx.now + 64 * t1,
                    });
                }
                self.set_leg(
                    id,
                    ResourceStatus::InProgress,
                    Some(ResourceStatus::InProgress),
                    cx,
                );
            }
            _ => {
                self.ack_b_failure(id, branch, m, cx);
                if self.answer_invite_challenge(id, m, code, cx) || self.fail_over(id, code, cx) {
                    return;
                }
                // A challenge to maskd's own credentials (or none) is no question for the
                // caller, who cannot answer it: the trunk is unusable to maskd.
                let code = if matches!(code, 401 | 407) { 503 } else { code };
                let bytes = self.to_a(&self.calls[&id], code, failure_reason(code), None);
                self.answer_a(id, code, bytes, cx);
                let status = match code {
                    486 | 600 => ResourceStatus::Busy,
                    480 | 408 => ResourceStatus::NoAnswer,
                    487 => ResourceStatus::Canceled,
                    _ => ResourceStatus::Failed,
                };
                self.set_leg(id, status, Some(ResourceStatus::Completed), cx);
                self.end_call(id);
            }
        }
    }

    fn ack_stray_2xx(&mut self, m: &Message<'_>, src: Remote, cx: &mut Ctx) {
        let call_id = m.header(HeaderName::CallId).unwrap_or("");
        let cseq = m.cseq().map_or(1, |c| c.0);
        let (id, leg_b) = match (self.by_b.get(call_id), self.by_a.get(call_id)) {
            (Some(id), _) => (*id, true),
            (None, Some(id)) => (*id, false),
            _ => return self.ack_forgotten_2xx(src, m, cx),
        };
        self.counters.retransmissions += 1;
        let streams = &self.stream_peers;
        let Some(c) = self.calls.get(&id) else { return };
        if leg_b && cseq == c.b_invite_cseq {
            if let Some(ack) = &c.ack_to_b {
                cx.send(c.b.flow, ack.clone());
                return;
            }
            if c.late_offer && c.state == CallState::Answered {
                // B's offer awaits A's answer, which comes in A's ACK.
                return;
            }
        }
        let d = if leg_b { &c.b } else { &c.a };
        let to = d.next_hop(&|a| streams.contains(&a));
        let ack = d
            .request_with("ACK", cseq, &token(), to, &self.cfg)
            .encode();
        cx.send(to, ack);
    }

    /// ACKs leg B's 2xx (end to end, a new branch, to B's remote target), with the SDP
    /// answer of a late offer.
    pub(super) fn ack_b_2xx(&mut self, id: u64, body: Option<(&str, &[u8])>, cx: &mut Ctx) {
        let streams = &self.stream_peers;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let to = c.b.next_hop(&|a| streams.contains(&a));
        let mut ack =
            c.b.request_with("ACK", c.b_invite_cseq, &token(), to, &self.cfg);
        if let Some((ct, b)) = body {
            ack = ack.body(Some(ct), b);
        }
        let ack = ack.encode();
        cx.send(to, ack.clone());
        c.ack_to_b = Some(ack);
    }

    /// ACKs a non-2xx final answer of leg B through its INVITE transaction (same branch,
    /// same Request-URI as the INVITE, RFC 3261 §17.1.1.3).
    fn ack_b_failure(&mut self, id: u64, branch: &str, m: &Message<'_>, cx: &mut Ctx) {
        let Some(c) = self.calls.get(&id) else { return };
        let mut d = c.b.clone();
        d.target = c.b_ruri.clone();
        d.routes.clear();
        d.remote_tag = m.header(HeaderName::To).and_then(tag_of);
        let to: Remote = c.b.flow;
        // The INVITE it answers: its CSeq (a re-sent INVITE has a higher one).
        let cseq = m.cseq().map_or(c.b_invite_cseq, |c| c.0);
        let ack = d.request_with("ACK", cseq, branch, to, &self.cfg).encode();
        if let Some(e) = self.client.get_mut(branch) {
            let mut acts = Vec::new();
            e.tx.ack(ack, &mut acts);
            let to = e.to;
            // Over TCP the transaction ends with the ACK (Timer D is zero).
            if acts.contains(&Action::Terminated) {
                self.client.remove(branch);
            }
            cx.send_all(to, acts);
        }
    }
}
