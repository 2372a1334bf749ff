//! Leg B across a carrier's trunks (SPEC §2.7): a call to the callee leaves through the
//! carrier owning the callee's proxy number (the caller ID maskd sends is only valid there),
//! by its trunks in order. While leg B has not rung, a trunk answering 503 or 408, or silent
//! (not even a 100) for four T1, gives way to the next. Numbers no carrier owns go to
//! `sip.trunk`.

use super::call::{CallState, NewClient, Purpose};
use super::dialog::{contact_uri, strip_tag, token, Dialog};
use super::{B2bua, Ctx, Remote, Settings};
use crate::core::carriers::Trunk;
use crate::core::E164;
use crate::sip::message::{HeaderName, Message, Outgoing};

/// A trunk silent this many T1 after leg B's INVITE gives way to the next one.
const SILENCE_T1: u64 = 4;

/// Leg B through a carrier: what its INVITE needs to go again, to the carrier's next trunk
/// or with credentials answering a challenge.
#[derive(Debug)]
pub(super) struct CarrierLeg {
    /// The callee's real number (the Request-URI's user).
    pub real_b: String,
    /// The headers after the dialog's own (Max-Forwards, P-Asserted-Identity, what passes
    /// from leg A), and the body.
    pub extra: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The carrier (its index), its trunks in the order leg B tries them (the ones up
    /// first; a copy, kept as they were when the call began), and the position of the one
    /// it went to last.
    pub carrier: usize,
    pub order: Vec<Trunk>,
    pub at: usize,
    /// Challenges of this trunk answered so far: a new one after an answer means the
    /// credentials are wrong, unless its nonce was only `stale` (answered once more).
    pub challenges_answered: u8,
    /// A BYE to leg B was challenged once already.
    pub bye_challenged: bool,
}

impl CarrierLeg {
    /// The trunk leg B went to last.
    pub fn trunk(&self) -> Option<&Trunk> {
        self.order.get(self.at)
    }

    /// Whether trunks are left to try after this one.
    pub fn more(&self) -> bool {
        self.at + 1 < self.order.len()
    }
}

/// Leg B's INVITE to `trunk`: the dialog pointed at it (a new CSeq), then `extra` and `body`.
pub(super) fn leg_b_invite(
    b: &mut Dialog,
    real_b: &str,
    branch: &str,
    trunk: Remote,
    extra: &[(&'static str, String)],
    body: &[u8],
    cfg: &Settings,
) -> Outgoing {
    b.target = format!("sip:{real_b}@{}{}", trunk.addr, trunk.uri_param());
    b.remote = format!("<sip:{real_b}@{}>", trunk.addr);
    b.flow = trunk;
    let mut invite = b.request("INVITE", branch, trunk, cfg);
    // The dialog writes Max-Forwards 70; leg B carries A's, decremented, in `extra`.
    invite.headers.retain(|(n, _)| *n != "Max-Forwards");
    invite.headers.extend(extra.iter().cloned());
    invite.body = body.to_vec();
    invite
}

impl B2bua {
    /// Where leg B from proxy number `proxy` goes: the carrier owning `proxy` and its
    /// trunks in the order to try them (those up first, as configured, then those down), as
    /// they are now (a copy: trunks given by hostname change as they resolve), and the first
    /// of them; no carrier and `sip.trunk` when no carrier with trunks owns it. `None`: the
    /// owner's trunks are hostnames not resolved yet.
    #[allow(clippy::type_complexity)]
    pub(super) fn leg_b_route(&self, proxy: E164) -> Option<(Option<(usize, Vec<Trunk>)>, Remote)> {
        match self.cfg.carriers.owner_tagged(proxy, &self.cfg.tags) {
            Some((i, c)) if !c.trunks.is_empty() => {
                let (mut order, down): (Vec<usize>, Vec<usize>) =
                    (0..c.trunks.len()).partition(|t| self.health.is_up(i, *t));
                order.extend(down);
                let trunks: Vec<Trunk> = order.iter().map(|t| c.trunks[*t].clone()).collect();
                let first = Remote::of_trunk(&trunks[0]);
                Some((Some((i, trunks)), first))
            }
            Some((_, c)) if !c.specs.is_empty() => None,
            _ => Some((None, self.cfg.trunk())),
        }
    }

    /// Sends leg B's INVITE of call `id` over a new client transaction; with trunks left to
    /// try, a silent trunk is given up after `SILENCE_T1` T1.
    pub(super) fn send_leg_b_invite(
        &mut self,
        id: u64,
        branch: String,
        trunk: Remote,
        invite: Outgoing,
        alternates: bool,
        cx: &mut Ctx,
    ) {
        let n = NewClient {
            call: id,
            purpose: Purpose::Invite,
            to: trunk,
            invite: true,
            give_up: alternates.then(|| cx.now + SILENCE_T1 * self.cfg.timers.t1),
        };
        self.start_client(branch, invite.encode(), n, cx);
    }

    /// Leg B's INVITE failed with `code` (503 or 408, answered or for silence) before it
    /// rang: true when it went on to the carrier's next trunk.
    pub(super) fn fail_over(&mut self, id: u64, code: u16, cx: &mut Ctx) -> bool {
        if !matches!(code, 408 | 503) {
            return false;
        }
        let cfg = &self.cfg;
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        if c.state != CallState::Setup {
            return false;
        }
        let Some(leg) = c.carrier_leg.as_mut() else {
            return false;
        };
        let carrier = cfg
            .carriers
            .list()
            .get(leg.carrier)
            .map_or("", |c| c.name.as_str());
        if !leg.more() {
            return false;
        }
        leg.at += 1;
        leg.challenges_answered = 0;
        let more = leg.more();
        let Some(next) = leg.trunk() else {
            return false;
        };
        let trunk = Remote::of_trunk(next);
        let branch = super::dialog::token();
        let invite = leg_b_invite(
            &mut c.b,
            &leg.real_b,
            &branch,
            trunk,
            &leg.extra,
            &leg.body,
            cfg,
        );
        crate::metrics::get()
            .sip_trunk_failovers
            .with_label_values(&[carrier])
            .inc();
        tracing::info!(carrier, code, next = %trunk.addr, "leg B fails over to the next trunk");
        c.b_ruri = c.b.target.clone();
        c.b_invite_branch = branch.clone();
        c.b_invite_cseq = c.b.cseq;
        self.send_leg_b_invite(id, branch, trunk, invite, more, cx);
        true
    }
}

/// An INVITE given up for silence when leg B moved on to the next trunk. The trunk may still
/// answer it late: a provisional answer gets a CANCEL, a 2xx an ACK and a BYE, so the callee
/// is never left ringing or connected behind the call that went elsewhere.
#[derive(Debug)]
pub(super) struct Abandoned {
    pub to: Remote,
    pub ruri: String,
    /// Forgotten after this (ms): 64 T1, as long as the INVITE's transaction would live.
    pub until: u64,
    pub cancelled: bool,
}

impl B2bua {
    /// Remembers the INVITE of `branch` to `to` (Request-URI `ruri`), given up for silence.
    pub(super) fn abandon(&mut self, branch: &str, to: Remote, ruri: String, now: u64) {
        let until = now + 64 * self.cfg.timers.t1;
        self.abandoned.retain(|_, a| a.until > now);
        self.abandoned.insert(
            branch.to_string(),
            Abandoned {
                to,
                ruri,
                until,
                cancelled: false,
            },
        );
    }

    /// A response to an abandoned INVITE: true when it was one (and was dealt with).
    pub(super) fn on_abandoned_response(
        &mut self,
        branch: &str,
        m: &Message<'_>,
        code: u16,
        cx: &mut Ctx,
    ) -> bool {
        let Some(a) = self.abandoned.get_mut(branch) else {
            return false;
        };
        let (to, ruri) = (a.to, a.ruri.clone());
        let header = |h: HeaderName| m.header(h).unwrap_or("").to_string();
        let cseq = m.cseq().map_or(1, |c| c.0);
        let via = |b: &str| self.cfg.via(to, b);
        let request = |method: &str, uri: &str, via: String, to_h: &str, n: u32| {
            Outgoing::request(method, uri)
                .header("Via", via)
                .header("Max-Forwards", "70")
                .header("From", header(HeaderName::From))
                .header("To", to_h.to_string())
                .header("Call-ID", header(HeaderName::CallId))
                .header("CSeq", format!("{n} {method}"))
                .encode()
        };
        match code {
            101..=199 if !a.cancelled => {
                a.cancelled = true;
                // Same branch, Request-URI and CSeq as the INVITE; To without the tag.
                let to_h = strip_tag(&header(HeaderName::To));
                let cancel = request("CANCEL", &ruri, via(branch), &to_h, cseq);
                cx.out.push(super::Datagram { to, data: cancel });
            }
            200..=299 => {
                let target = contact_uri(m).unwrap_or(ruri);
                let to_h = header(HeaderName::To);
                let ack = request("ACK", &target, via(&token()), &to_h, cseq);
                let bye = request("BYE", &target, via(&token()), &to_h, cseq + 1);
                cx.out.push(super::Datagram { to, data: ack });
                cx.out.push(super::Datagram { to, data: bye });
                tracing::info!(trunk = %to.addr, "a trunk answered after leg B moved on: hung up");
            }
            300..=699 => {
                // Its ACK (same branch): the transaction it belonged to is gone.
                let ack = request("ACK", &ruri, via(branch), &header(HeaderName::To), cseq);
                cx.out.push(super::Datagram { to, data: ack });
            }
            _ => {}
        }
        true
    }
}
