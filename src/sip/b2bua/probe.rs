//! Trunk health (SPEC §2.7): every trunk of every carrier is probed with OPTIONS each
//! `options_interval`. A trunk answering 5xx or 6xx, or nothing within four T1, is down until
//! a probe is answered again (any 1xx-4xx final answer: a trunk refusing OPTIONS is still
//! there). Leg B tries a carrier's trunks that are up first, in order, then those down: a
//! probe can be wrong, and a call should not fail for want of trying.

use super::call::{NewClient, Purpose};
use super::{B2bua, Ctx, Remote};
use crate::core::carriers::Carriers;
use crate::sip::message::Outgoing;

/// A probe unanswered this many T1 marks its trunk down.
const SILENCE_T1: u64 = 4;

/// The call id client entries of probes carry (no call has it).
pub(super) const NO_CALL: u64 = u64::MAX;

/// Which trunks are up, and when each carrier's are probed next.
#[derive(Debug, Default)]
pub(super) struct Health {
    up: Vec<Vec<bool>>,
    next_probe: Vec<u64>,
}

impl Health {
    /// Every trunk up until a probe says otherwise; the first probes at the first tick.
    pub fn new(carriers: &Carriers) -> Health {
        Health {
            up: carriers
                .list()
                .iter()
                .map(|c| vec![true; c.trunks.len()])
                .collect(),
            next_probe: vec![0; carriers.list().len()],
        }
    }

    /// When the next probe is due (ms; `u64::MAX` when no carrier has a trunk to probe).
    pub fn next_due(&self, carriers: &Carriers) -> u64 {
        carriers
            .list()
            .iter()
            .zip(&self.next_probe)
            .filter(|(c, _)| !c.trunks.is_empty())
            .map(|(_, at)| *at)
            .min()
            .unwrap_or(u64::MAX)
    }

    pub fn is_up(&self, carrier: usize, trunk: usize) -> bool {
        self.up
            .get(carrier)
            .and_then(|c| c.get(trunk))
            .copied()
            .unwrap_or(true)
    }
}

impl B2bua {
    /// Sends the probes due at `cx.now`.
    pub(super) fn probe_trunks(&mut self, cx: &mut Ctx) {
        if self.draining {
            return;
        }
        let carriers = self.cfg.carriers.clone();
        for (i, c) in carriers.list().iter().enumerate() {
            let due = self.health.next_probe.get(i).copied().unwrap_or(u64::MAX);
            if c.trunks.is_empty() || cx.now < due {
                continue;
            }
            self.health.next_probe[i] = cx.now + c.options_interval.as_millis() as u64;
            for (t, trunk) in c.trunks.iter().enumerate() {
                let to = Remote::of_trunk(trunk);
                let branch = super::dialog::token();
                let host = &self.cfg.advertised_host;
                let options = Outgoing::request("OPTIONS", &format!("sip:{}", trunk.addr))
                    .header("Via", self.cfg.via(to, &branch))
                    .header("Max-Forwards", "70")
                    .header(
                        "From",
                        format!("<sip:maskd@{host}>;tag={}", super::dialog::token()),
                    )
                    .header("To", format!("<sip:{}>", trunk.addr))
                    .header("Call-ID", format!("{}@maskd", super::dialog::token()))
                    .header("CSeq", "1 OPTIONS")
                    .header("Accept", "application/sdp")
                    .encode();
                let n = NewClient {
                    call: NO_CALL,
                    purpose: Purpose::Probe(i, t),
                    to,
                    invite: false,
                    give_up: Some(cx.now + SILENCE_T1 * self.cfg.timers.t1),
                };
                self.start_client(branch, options, n, cx);
            }
        }
    }

    /// A probe of trunk `t` of carrier `c` was answered with `code`, or not at all (`None`).
    pub(super) fn probed(&mut self, c: usize, t: usize, code: Option<u16>) {
        let up = code.is_some_and(|code| (100..500).contains(&code));
        let Some(slot) = self.health.up.get_mut(c).and_then(|v| v.get_mut(t)) else {
            return;
        };
        let Some(carrier) = self.cfg.carriers.list().get(c) else {
            return;
        };
        let Some(trunk) = carrier.trunks.get(t) else {
            return;
        };
        if *slot != up {
            tracing::warn!(carrier = %carrier.name, trunk = %trunk.addr, up, ?code, "trunk health changed");
        }
        *slot = up;
        crate::metrics::get()
            .sip_trunk_up
            .with_label_values(&[carrier.name.as_str(), &trunk.addr.to_string()])
            .set(i64::from(up));
    }
}
