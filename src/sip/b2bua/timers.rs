//! What time passing does: transaction timers (retransmissions, timeouts), the call-level
//! timers (ringing too long, a cancelled INVITE's final answer never coming, the 2xx to
//! leg A retransmitted until its ACK), calls of closed sessions ended, and ended calls
//! forgotten.

use super::call::{CallState, Purpose};
use super::{B2bua, Core, Ctx, Datagram};
use crate::core::model::ResourceStatus;
use crate::sip::timed::compact_map;
use crate::sip::transaction::{Action, ClientState};

/// How often ended calls are swept from memory (ms).
const SWEEP_MS: u64 = 1_000;

impl B2bua {
    /// Drives every timer due at `now`.
    pub fn on_timer(&mut self, now: u64, core: &dyn Core, out: &mut Vec<Datagram>) {
        let mut cx = Ctx { now, core, out };
        self.probe_trunks(&mut cx);
        self.register_trunks(&mut cx);
        self.fire_transactions(&mut cx);
        self.fire_calls(&mut cx);
        self.end_closed_sessions(&mut cx);
        self.sweep(now);
        self.client.settle();
        self.server.settle();
    }

    /// The earliest `on_timer` has anything to do (ms): a transaction's deadline, a trunk's
    /// probe or registration; `now` while a call, a held INVITE or a drain is in progress
    /// (their timers are not filed), `u64::MAX` for nothing at all. The voice plane's thread
    /// sleeps until then when nothing arrives, instead of ticking with nothing to do.
    pub fn next_timer(&self, now: u64) -> u64 {
        if !self.calls.is_empty() || !self.held.is_empty() || self.draining {
            return now;
        }
        [self.client.next_due(), self.server.next_due()]
            .into_iter()
            .flatten()
            .chain([
                self.health.next_due(&self.cfg.carriers),
                self.registrations.next_due(),
            ])
            .min()
            .unwrap_or(u64::MAX)
    }

    fn fire_transactions(&mut self, cx: &mut Ctx) {
        let now = cx.now;
        let mut timed_out = Vec::new();
        let mut done = Vec::new();
        for k in self.client.due(now) {
            let Some(e) = self.client.get_mut(&k) else {
                continue;
            };
            if e.give_up.is_some_and(|t| t <= now) {
                // A relayed request the other leg never answered finally.
                timed_out.push((k.clone(), e.call, e.purpose.clone()));
                done.push(k.clone());
                continue;
            }
            if e.tx.poll_timeout().is_some_and(|t| t <= now) {
                let mut acts = Vec::new();
                e.tx.on_timer(now, &mut acts);
                for a in acts {
                    match a {
                        Action::Transmit(d) => {
                            self.counters.retransmissions += 1;
                            cx.send(e.to, d);
                        }
                        Action::Timeout => timed_out.push((k.clone(), e.call, e.purpose.clone())),
                        Action::Terminated => done.push(k.clone()),
                        _ => {}
                    }
                }
            }
        }
        for k in done {
            self.client.remove(&k);
        }
        let mut done = Vec::new();
        for k in self.server.due(now) {
            let Some(e) = self.server.get_mut(&k) else {
                continue;
            };
            if e.tx.poll_timeout().is_some_and(|t| t <= now) {
                let mut acts = Vec::new();
                e.tx.on_timer(now, &mut acts);
                for a in acts {
                    match a {
                        Action::Transmit(d) => {
                            self.counters.retransmissions += 1;
                            cx.send(e.to, d);
                        }
                        Action::Terminated => done.push(k.clone()),
                        _ => {}
                    }
                }
            }
        }
        for k in done {
            self.server.remove(&k);
        }
        for (k, id, purpose) in timed_out {
            self.on_client_timeout(&k, id, purpose, 408, cx);
        }
    }

    /// A request of ours got no final answer (Timer B or F, a relay's bound, or the
    /// transport failed: `code` 408 or 503).
    pub(super) fn on_client_timeout(
        &mut self,
        key: &str,
        id: u64,
        purpose: Purpose,
        code: u16,
        cx: &mut Ctx,
    ) {
        match purpose {
            Purpose::Invite => {
                self.client.remove(key);
                // Where that INVITE went, before leg B moves on.
                let old = self.calls.get(&id).map(|c| (c.b.flow, c.b_ruri.clone()));
                if self.fail_over(id, code, cx) {
                    // Given up for silence: a late answer from that trunk is dealt with.
                    if let Some((to, ruri)) = old {
                        self.abandon(key, to, ruri, cx.now);
                    }
                    return;
                }
                let state = self.calls.get(&id).map(|c| c.state);
                match state {
                    Some(CallState::Setup | CallState::Early) => {
                        // Leg B never answered at all: `code` to A.
                        let reason = if code == 503 {
                            "Service Unavailable"
                        } else {
                            "Request Timeout"
                        };
                        let bytes = self.to_a(&self.calls[&id], code, reason, None);
                        self.answer_a(id, code, bytes, cx);
                        let status = if code == 503 {
                            ResourceStatus::Failed
                        } else {
                            ResourceStatus::NoAnswer
                        };
                        self.set_leg(id, status, Some(ResourceStatus::Completed), cx);
                        self.end_call(id);
                    }
                    Some(CallState::Ending) => self.finish_ending(id),
                    _ => {}
                }
                self.client.remove(key);
            }
            Purpose::Relay(r) => {
                self.relay_timed_out(&r, cx);
                self.client.remove(key);
            }
            Purpose::Probe(c, t) => {
                self.probed(c, t, None);
                self.client.remove(key);
            }
            Purpose::Register(c, t) => {
                self.registered(c, t, None, cx.now);
                self.client.remove(key);
            }
            Purpose::Cancel | Purpose::ByeToA | Purpose::ByeToB => {}
        }
    }

    /// Call-level timers.
    fn fire_calls(&mut self, cx: &mut Ctx) {
        let now = cx.now;
        let t2 = self.cfg.timers.t2;
        let mut ring_out = Vec::new();
        let mut given_up = Vec::new();
        let mut no_ack = Vec::new();
        for (id, c) in self.calls.iter_mut() {
            if c.ring_until.is_some_and(|t| t <= now)
                && matches!(c.state, CallState::Setup | CallState::Early)
            {
                ring_out.push(*id);
            }
            if c.give_up_at.is_some_and(|t| t <= now) && c.state == CallState::Ending {
                given_up.push((*id, c.b_invite_branch.clone()));
            }
            if let Some(r) = c.ok_to_a.as_mut() {
                if r.at <= now {
                    if now >= r.give_up {
                        // No ACK for 64×T1: the session is ended (RFC 3261 §13.3.1.4).
                        c.ok_to_a = None;
                        if c.state == CallState::Answered {
                            no_ack.push(*id);
                        }
                        continue;
                    }
                    self.counters.retransmissions += 1;
                    cx.out.push(Datagram {
                        to: c.a.flow,
                        data: r.bytes.clone(),
                    });
                    r.interval = (r.interval * 2).min(t2);
                    r.at = (now + r.interval).min(r.give_up);
                }
            }
        }
        for id in no_ack {
            self.end_answered(id, cx);
        }
        for id in ring_out {
            // Rang too long: CANCEL leg B, 408 to A, logged no-answer.
            self.abandon_setup(id, 408, "Request Timeout", ResourceStatus::NoAnswer, cx);
        }
        for (id, branch) in given_up {
            // Leg B never sent a final answer after our CANCEL (RFC 3261 §9.1: the INVITE
            // transaction is given up 64×T1 after the CANCEL).
            self.client.remove(&branch);
            self.finish_ending(id);
        }
    }

    /// Forgets ended calls once nothing refers to them. This looks at every transaction,
    /// so it runs once a second, not every tick.
    fn sweep(&mut self, now: u64) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_MS;
        // A client transaction that has its final answer only absorbs copies of it (timer
        // D or K, up to 32 s): it never needs its call again, so it does not keep it.
        let live: std::collections::HashSet<u64, foldhash::fast::RandomState> = self
            .client
            .values()
            .filter(|e| {
                !matches!(
                    e.tx.state(),
                    ClientState::Completed | ClientState::Terminated
                )
            })
            .map(|e| e.call)
            .chain(self.server.values().filter_map(|e| e.call))
            .collect();
        let gone: Vec<u64> = self
            .calls
            .iter()
            .filter(|(id, c)| {
                c.state == CallState::Ended && c.ok_to_a.is_none() && !live.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(c) = self.calls.remove(&id) {
                // A newer call may have reused leg A's Call-ID (a retry after 401/422):
                // its mapping stays.
                if self.by_a.get(&c.a.call_id) == Some(&id) {
                    self.by_a.remove(&c.a.call_id);
                }
                if self.by_b.get(&c.b.call_id) == Some(&id) {
                    self.by_b.remove(&c.b.call_id);
                }
            }
        }
        // After a burst, give the tables' memory back.
        self.client.compact();
        self.server.compact();
        compact_map(&mut self.calls);
        compact_map(&mut self.by_a);
        compact_map(&mut self.by_b);
        compact_map(&mut self.held);
    }
}
