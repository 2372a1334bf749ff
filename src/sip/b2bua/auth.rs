//! Digest challenges from a carrier's trunk (RFC 3261 §22.2, RFC 8760): a 401 or 407 to leg
//! B's INVITE or BYE is answered once with the trunk's credentials (`carriers[].sip.trunks[]`
//! `username`/`password`, for its `realm` if set): the request goes again with a new CSeq and
//! an `Authorization` or `Proxy-Authorization` header. A second challenge to the answered
//! INVITE (not `stale`) means the credentials are wrong: the failure goes to the caller.

use super::call::{CallState, NewClient, Purpose, Relayed};
use super::failover::leg_b_invite;
use super::{B2bua, Ctx, Remote};
use crate::core::carriers::Credentials;
use crate::sip::digest::{self, Challenge};
use crate::sip::message::Message;

/// What answers one challenge.
pub(super) struct Answer {
    /// `Authorization` (to a 401) or `Proxy-Authorization` (to a 407).
    pub header: &'static str,
    pub challenge: Challenge,
    pub credentials: Credentials,
}

impl Answer {
    /// The header's value for a `method` request to `uri`.
    pub fn value(&self, method: &str, uri: &str) -> String {
        digest::authorization(
            &self.challenge,
            &self.credentials.username,
            &self.credentials.password,
            method,
            uri,
            &super::dialog::token(),
            1,
        )
    }
}

/// The challenge in `m` (a 401's `WWW-Authenticate`, a 407's `Proxy-Authenticate`) that
/// `credentials` can answer: the first one readable, of their realm if they name one.
fn answer(m: &Message<'_>, code: u16, credentials: &Credentials) -> Option<Answer> {
    let (asks, header) = match code {
        401 => ("WWW-Authenticate", "Authorization"),
        407 => ("Proxy-Authenticate", "Proxy-Authorization"),
        _ => return None,
    };
    let challenge = m
        .headers
        .iter()
        .filter(|h| h.raw_name.eq_ignore_ascii_case(asks))
        .filter_map(|h| digest::parse_challenge(&h.value))
        .find(|ch| credentials.realm.as_ref().is_none_or(|r| *r == ch.realm))?;
    Some(Answer {
        header,
        challenge,
        credentials: credentials.clone(),
    })
}

fn count(carrier: &str, outcome: &str) {
    crate::metrics::get()
        .sip_auth
        .with_label_values(&[carrier, outcome])
        .inc();
}

impl B2bua {
    /// The credentials of the trunk leg B of call `id` went to last, and its carrier's name.
    pub(super) fn leg_b_credentials(&self, id: u64) -> Option<(Credentials, String)> {
        let leg = self.calls.get(&id)?.carrier_leg.as_ref()?;
        let carrier = self.cfg.carriers.list().get(leg.carrier)?;
        Some((leg.trunk()?.credentials.clone()?, carrier.name.clone()))
    }

    /// Leg B's INVITE got 401 or 407 before it rang: true when it went again with
    /// credentials.
    pub(super) fn answer_invite_challenge(
        &mut self,
        id: u64,
        m: &Message<'_>,
        code: u16,
        cx: &mut Ctx,
    ) -> bool {
        if !matches!(code, 401 | 407) {
            return false;
        }
        let Some((credentials, carrier)) = self.leg_b_credentials(id) else {
            return false;
        };
        let Some(a) = answer(m, code, &credentials) else {
            tracing::warn!(%carrier, code, "leg B challenged with nothing maskd can answer");
            count(&carrier, "unanswerable");
            return false;
        };
        let cfg = &self.cfg;
        let Some(c) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some(leg) = c.carrier_leg.as_mut() else {
            return false;
        };
        // A second challenge is answered only for a stale nonce, and only once more.
        if c.state != CallState::Setup
            || leg.challenges_answered >= 2
            || (leg.challenges_answered == 1 && !a.challenge.stale)
        {
            tracing::warn!(%carrier, code, "leg B's credentials refused");
            count(&carrier, "refused");
            return false;
        }
        let Some(t) = leg.trunk() else {
            return false;
        };
        let trunk = Remote::of_trunk(t);
        let more = leg.more();
        let mut extra = leg.extra.clone();
        // The Request-URI stays: the trunk is the same.
        extra.push((a.header, a.value("INVITE", &c.b.target)));
        let branch = super::dialog::token();
        let invite = leg_b_invite(
            &mut c.b,
            &leg.real_b,
            &branch,
            trunk,
            &extra,
            &leg.body,
            cfg,
        );
        leg.challenges_answered += 1;
        c.b_ruri = c.b.target.clone();
        c.b_invite_branch = branch.clone();
        c.b_invite_cseq = c.b.cseq;
        count(&carrier, "answered");
        self.send_leg_b_invite(id, branch, trunk, invite, more, cx);
        true
    }

    /// A request relayed to leg B (a re-INVITE, UPDATE, INFO…) got 401 or 407: it goes
    /// again, once, with credentials, and its sender hears only the final answer. True when
    /// it went again.
    pub(super) fn answer_relay_challenge(
        &mut self,
        id: u64,
        r: &Relayed,
        m: &Message<'_>,
        code: u16,
        cx: &mut Ctx,
    ) -> bool {
        let Some(retry) = r.retry.as_ref().filter(|_| r.from_a) else {
            return false;
        };
        let Some((credentials, carrier)) = self.leg_b_credentials(id) else {
            return false;
        };
        let Some(a) = answer(m, code, &credentials) else {
            count(&carrier, "unanswerable");
            return false;
        };
        let streams = &self.stream_peers;
        let Some(c) = self
            .calls
            .get_mut(&id)
            .filter(|c| c.state == CallState::Answered)
        else {
            return false;
        };
        let to = c.b.next_hop(&|x| streams.contains(&x));
        let branch = super::dialog::token();
        let mut out = c.b.request(&retry.method, &branch, to, &self.cfg);
        let value = a.value(&retry.method, &c.b.target);
        out.headers.extend(retry.extra.iter().cloned());
        out = out.header(a.header, value);
        out.body = retry.body.clone();
        let relayed = Relayed {
            out_cseq: c.b.cseq,
            // Answered once: a second challenge goes to the sender.
            retry: None,
            ..r.clone()
        };
        let n = NewClient {
            call: id,
            invite: r.invite,
            purpose: Purpose::Relay(Box::new(relayed)),
            to,
            give_up: Some(cx.now + 64 * self.cfg.timers.t1),
        };
        self.start_client(branch, out.encode(), n, cx);
        count(&carrier, "answered");
        true
    }

    /// Leg B's BYE got 401 or 407: it goes again, once, with credentials.
    pub(super) fn answer_bye_challenge(
        &mut self,
        id: u64,
        m: &Message<'_>,
        code: u16,
        cx: &mut Ctx,
    ) {
        let Some((credentials, carrier)) = self.leg_b_credentials(id) else {
            return;
        };
        let Some(leg) = self.calls.get_mut(&id).and_then(|c| c.carrier_leg.as_mut()) else {
            return;
        };
        if std::mem::replace(&mut leg.bye_challenged, true) {
            tracing::warn!(%carrier, code, "leg B's BYE credentials refused");
            count(&carrier, "refused");
            return;
        }
        match answer(m, code, &credentials) {
            Some(a) => {
                count(&carrier, "answered");
                self.bye_with(id, false, Some(a), cx);
            }
            None => count(&carrier, "unanswerable"),
        }
    }
}
