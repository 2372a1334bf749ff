//! In-dialog requests (re-INVITE, UPDATE, INFO, …) bridged across: rebuilt in the other
//! leg's dialog, with only the whitelisted headers and the body crossing; the other leg's
//! final answer goes back to the sender, and a request nobody answers gets 408 and is freed.

use super::call::{CallState, NewClient, Purpose, Relayed, ServerEntry};
use super::dialog::{answer_vias, token};
use super::media::{is_sdp, Side};
use super::setup::passes;
use super::{B2bua, Ctx, Incoming, Remote};
use crate::sip::message::{HeaderName, Message, Outgoing};
use crate::sip::transaction::{Action, ServerTx};

impl B2bua {
    /// Relays an in-dialog request to the other leg, rebuilt in that leg's dialog.
    pub(super) fn relay_in_dialog(&mut self, req: &Incoming, cx: &mut Ctx) {
        let m = req.m;
        let method = req.method;
        let invite = method == "INVITE";
        let found = match (self.by_a.get(&req.call_id), self.by_b.get(&req.call_id)) {
            (Some(id), _) => Some((*id, true)),
            (None, Some(id)) => Some((*id, false)),
            _ => None,
        };
        let live = found.filter(|(id, _)| {
            self.calls
                .get(id)
                .is_some_and(|c| c.state != CallState::Ended && c.state != CallState::Ending)
        });
        let Some((id, from_a)) = live else {
            return self.no_such_call(req, cx);
        };
        // An offer or answer inside the dialog: anchored like the first.
        let mut body = m.body.to_vec();
        if self.anchoring() && !m.body.is_empty() && matches!(method, "INVITE" | "UPDATE" | "PRACK")
        {
            let side = if from_a { Side::A } else { Side::B };
            match self.anchor_body(id, side, m.header(HeaderName::ContentType), m.body) {
                Ok(b) => body = b,
                Err(e) => {
                    let (code, reason) = e.status();
                    let mut r = self.reply(m, req.src, code, reason, None);
                    match code {
                        415 => r = r.header("Accept", "application/sdp"),
                        // Ports may be free again soon, as for a new call.
                        503 => r = r.header("Retry-After", "5"),
                        _ => {}
                    }
                    return self.server_answer(req, code, r.encode(), cx);
                }
            }
        }
        let branch = token();
        // Towards a carrier that may challenge it: kept to go again with credentials.
        let challengeable = from_a && self.leg_b_credentials(id).is_some();
        let streams = &self.stream_peers;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        // Our Contact towards the requester: the proxy number it knows, its transport.
        let requester = if from_a { &c.a } else { &c.b };
        let contact = self.cfg.contact(&requester.user, requester.flow);
        let other = if from_a { &mut c.b } else { &mut c.a };
        let to = other.next_hop(&|a| streams.contains(&a));
        let mut out_req = other.request(method, &branch, to, &self.cfg);
        let out_cseq = other.cseq;
        let mut extra = Vec::new();
        for h in &m.headers {
            if let Some(name) = passes(h.raw_name) {
                extra.push((name, super::setup::without_100rel(name, &h.value)));
            }
        }
        out_req.headers.extend(extra.iter().cloned());
        let retry = challengeable.then(|| {
            Box::new(super::call::RelayRetry {
                method: method.to_string(),
                extra,
                body: body.clone(),
            })
        });
        out_req.body = body;
        let relayed = Relayed {
            server_key: (req.branch.clone(), false),
            reply_to: req.src,
            vias: answer_vias(m, req.src.addr),
            from: m.header(HeaderName::From).unwrap_or("").to_string(),
            to: m.header(HeaderName::To).unwrap_or("").to_string(),
            call_id: req.call_id.clone(),
            cseq: m.header(HeaderName::CSeq).unwrap_or("").to_string(),
            contact,
            invite,
            out_cseq,
            from_a,
            retry,
        };
        self.server.insert(
            (req.branch.clone(), false),
            ServerEntry {
                call: Some(id),
                to: req.src,
                tx: ServerTx::new(invite, req.src.tcp, self.cfg.timers),
            },
        );
        let n = NewClient {
            call: id,
            purpose: Purpose::Relay(Box::new(relayed)),
            to,
            invite,
            // Timer F bounds a non-INVITE; an INVITE answered only provisionally has no
            // Timer B any more: bound it the same way.
            give_up: Some(cx.now + 64 * self.cfg.timers.t1),
        };
        self.start_client(branch, out_req.encode(), n, cx);
    }

    /// The other leg answered a relayed request: pass the final answer back (body
    /// included), and ACK a re-INVITE's answer on that leg ourselves.
    pub(super) fn relay_answer(
        &mut self,
        id: u64,
        branch: &str,
        r: &Relayed,
        m: &Message<'_>,
        code: u16,
        cx: &mut Ctx,
    ) {
        if code < 200 {
            return;
        }
        if r.invite {
            // ACK the other leg's final answer to our re-INVITE: a 2xx end to end (new
            // branch, in the dialog), a failure through the transaction (same branch).
            let streams = &self.stream_peers;
            let Some(c) = self.calls.get_mut(&id) else {
                return self.relay_final(id, r, m, code, cx);
            };
            let d = if r.from_a { &mut c.b } else { &mut c.a };
            if (200..300).contains(&code) {
                if let Some(t) = super::dialog::contact_uri(m) {
                    d.target = t;
                }
                let to = d.next_hop(&|a| streams.contains(&a));
                let ack = d.request_with("ACK", r.out_cseq, &token(), to, &self.cfg);
                cx.send(to, ack.encode());
            } else if let Some(e) = self.client.get_mut(branch) {
                let to: Remote = e.to;
                let ack = d.request_with("ACK", r.out_cseq, branch, to, &self.cfg);
                let mut acts = Vec::new();
                e.tx.ack(ack.encode(), &mut acts);
                if acts.contains(&Action::Terminated) {
                    self.client.remove(branch);
                }
                cx.send_all(to, acts);
            }
        }
        if matches!(code, 401 | 407) && self.answer_relay_challenge(id, r, m, code, cx) {
            return;
        }
        self.relay_final(id, r, m, code, cx);
    }

    /// Answers the sender of a relayed request with `code` (the other leg's answer, or
    /// 408 when it never came), through the request's server transaction.
    pub(super) fn relay_final(
        &mut self,
        id: u64,
        r: &Relayed,
        m: &Message<'_>,
        code: u16,
        cx: &mut Ctx,
    ) {
        let mut body = m
            .header(HeaderName::ContentType)
            .filter(|_| !m.body.is_empty())
            .map(|ct| (ct.to_string(), m.body.to_vec()));
        if self.anchoring() && (200..300).contains(&code) {
            if let Some((ct, b)) = body.take().filter(|(ct, _)| is_sdp(ct)) {
                let side = if r.from_a { Side::B } else { Side::A };
                match self.anchor_body(id, side, Some(&ct), &b) {
                    Ok(nb) => body = Some((ct, nb)),
                    Err(e) => {
                        // An answer maskd cannot anchor leaves the sender's offer unanswered
                        // and the media unknown: as for the first answer, the call ends. The
                        // sender hears 488 for its offer, then both legs a BYE.
                        tracing::info!(
                            call = id,
                            reason = e.status().1,
                            "answer SDP unreadable: call ended"
                        );
                        self.answer_relayed(r, 488, None, cx);
                        self.end_answered(id, cx);
                        return;
                    }
                }
            }
        }
        self.answer_relayed(r, code, body, cx);
    }

    fn answer_relayed(
        &mut self,
        r: &Relayed,
        code: u16,
        body: Option<(String, Vec<u8>)>,
        cx: &mut Ctx,
    ) {
        let reason = match code {
            200..=299 => "OK",
            408 => "Request Timeout",
            481 => "Call/Transaction Does Not Exist",
            488 => "Not Acceptable Here",
            491 => "Request Pending",
            _ => "Failed",
        };
        let mut resp = Outgoing::response(code, reason);
        for v in &r.vias {
            resp = resp.header("Via", v.clone());
        }
        resp = resp
            .header("From", r.from.clone())
            .header("To", r.to.clone())
            .header("Call-ID", r.call_id.clone())
            .header("CSeq", r.cseq.clone());
        if (200..300).contains(&code) {
            resp = resp.header("Contact", r.contact.clone());
        }
        if let Some((ct, b)) = &body {
            resp = resp.body(Some(ct), b);
        }
        let bytes = resp.encode();
        if let Some(e) = self.server.get_mut(&r.server_key) {
            let mut acts = Vec::new();
            e.tx.respond(code, bytes, cx.now, &mut acts);
            let done = acts.contains(&Action::Terminated);
            cx.send_all(r.reply_to, acts);
            if done {
                self.server.remove(&r.server_key);
            }
        }
    }

    /// A relayed request got no final answer in time: its sender gets 408 (RFC 3261
    /// §16.7-style), and both transactions are freed.
    pub(super) fn relay_timed_out(&mut self, r: &Relayed, cx: &mut Ctx) {
        self.answer_relayed(r, 408, None, cx);
    }
}
