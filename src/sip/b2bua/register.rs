//! Registration with carriers' trunks (RFC 3261 §10): a carrier that delivers inbound calls
//! only to a registered contact gets a REGISTER from maskd on each of its trunks
//! (`carriers[].sip.register`: the time asked for), answered digest challenges included,
//! and again at half of the time granted; a failure is tried again after 30 s. The address
//! of record is the trunk's username at the trunk; the contact is maskd's SIP listener.

use super::call::{NewClient, Purpose};
use super::probe::NO_CALL;
use super::{B2bua, Ctx, Remote};
use crate::sip::digest::{self, Challenge};
use crate::sip::message::{HeaderName, Message, Outgoing};

/// A failed registration is tried again after this long (ms).
const RETRY_MS: u64 = 30_000;

/// One trunk's registration.
#[derive(Debug, Default)]
pub(super) struct Registration {
    /// When the next REGISTER goes (ms); `None`: one is in flight.
    next_at: Option<u64>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The challenge to answer in the next REGISTER (after a 401/407), and how many were
    /// answered in a row (a second one means the credentials are wrong).
    challenge: Option<(&'static str, Challenge)>,
    answered: u8,
    registered: bool,
    /// The registrar's `Min-Expires` after a 423: asked for instead when longer.
    min_expires: Option<u64>,
}

/// Every trunk's registration, by carrier and trunk.
#[derive(Debug, Default)]
pub(super) struct Registrations(Vec<Vec<Option<Registration>>>);

impl Registrations {
    pub fn new(carriers: &crate::core::carriers::Carriers) -> Registrations {
        Registrations(
            carriers
                .list()
                .iter()
                .map(|c| {
                    c.trunks
                        .iter()
                        .map(|t| {
                            (c.register.is_some() && t.credentials.is_some()).then(|| {
                                Registration {
                                    next_at: Some(0),
                                    call_id: format!("{}@maskd", super::dialog::token()),
                                    from_tag: super::dialog::token(),
                                    ..Registration::default()
                                }
                            })
                        })
                        .collect()
                })
                .collect(),
        )
    }

    /// When the next REGISTER is due (ms; `u64::MAX` for none: none wanted, or all in
    /// flight, whose transactions have deadlines of their own).
    pub fn next_due(&self) -> u64 {
        self.0
            .iter()
            .flatten()
            .flatten()
            .filter_map(|r| r.next_at)
            .min()
            .unwrap_or(u64::MAX)
    }
}

fn count(carrier: &str, outcome: &str) {
    crate::metrics::get()
        .sip_register
        .with_label_values(&[carrier, outcome])
        .inc();
}

impl B2bua {
    /// Sends the REGISTERs due at `cx.now`.
    pub(super) fn register_trunks(&mut self, cx: &mut Ctx) {
        if self.draining {
            return;
        }
        let carriers = self.cfg.carriers.clone();
        for (i, c) in carriers.list().iter().enumerate() {
            let Some(wanted) = c.register else { continue };
            for (t, trunk) in c.trunks.iter().enumerate() {
                let Some(cred) = &trunk.credentials else {
                    continue;
                };
                let Some(Some(reg)) = self.registrations.0.get_mut(i).and_then(|v| v.get_mut(t))
                else {
                    continue;
                };
                if reg.next_at.is_none_or(|at| cx.now < at) {
                    continue;
                }
                let expires = wanted.as_secs().max(reg.min_expires.unwrap_or(0));
                reg.next_at = None;
                reg.cseq += 1;
                let to = Remote::of_trunk(trunk);
                let branch = super::dialog::token();
                let host = &self.cfg.advertised_host;
                let registrar = format!("sip:{}", trunk.addr);
                let aor = format!("<sip:{}@{}>", cred.username, trunk.addr);
                let transport = to.uri_param();
                let port = self.cfg.port_for(to);
                let mut r = Outgoing::request("REGISTER", &registrar)
                    .header("Via", self.cfg.via(to, &branch))
                    .header("Max-Forwards", "70")
                    .header("From", format!("{aor};tag={}", reg.from_tag))
                    .header("To", aor)
                    .header("Call-ID", reg.call_id.clone())
                    .header("CSeq", format!("{} REGISTER", reg.cseq))
                    .header(
                        "Contact",
                        format!("<sip:{}@{host}:{port}{transport}>", cred.username),
                    )
                    .header("Expires", expires.to_string());
                if let Some((name, ch)) = reg.challenge.take() {
                    r = r.header(
                        name,
                        digest::authorization(
                            &ch,
                            &cred.username,
                            &cred.password,
                            "REGISTER",
                            &registrar,
                            &super::dialog::token(),
                            1,
                        ),
                    );
                }
                let n = NewClient {
                    call: NO_CALL,
                    purpose: Purpose::Register(i, t),
                    to,
                    invite: false,
                    give_up: None,
                };
                self.start_client(branch, r.encode(), n, cx);
            }
        }
    }

    /// The final answer to trunk `t` of carrier `c`'s REGISTER (`None`: none came).
    pub(super) fn registered(
        &mut self,
        c: usize,
        t: usize,
        answer: Option<(&Message<'_>, u16)>,
        now: u64,
    ) {
        let carriers = self.cfg.carriers.clone();
        let Some(carrier) = carriers.list().get(c) else {
            return;
        };
        let (Some(trunk), Some(asked)) = (carrier.trunks.get(t), carrier.register) else {
            return;
        };
        let Some(Some(reg)) = self.registrations.0.get_mut(c).and_then(|v| v.get_mut(t)) else {
            return;
        };
        let name = carrier.name.as_str();
        let mut up = false;
        match answer {
            Some((m, code @ (401 | 407))) => {
                let (asks, header) = if code == 401 {
                    ("WWW-Authenticate", "Authorization")
                } else {
                    ("Proxy-Authenticate", "Proxy-Authorization")
                };
                let realm = trunk.credentials.as_ref().and_then(|c| c.realm.clone());
                let ch = m
                    .headers
                    .iter()
                    .filter(|h| h.raw_name.eq_ignore_ascii_case(asks))
                    .filter_map(|h| digest::parse_challenge(&h.value))
                    .find(|ch| realm.as_ref().is_none_or(|r| *r == ch.realm));
                match ch {
                    Some(ch) if reg.answered == 0 || (reg.answered == 1 && ch.stale) => {
                        reg.answered += 1;
                        reg.challenge = Some((header, ch));
                        reg.next_at = Some(now);
                        return;
                    }
                    Some(_) => count(name, "refused"),
                    None => count(name, "unanswerable"),
                }
                reg.answered = 0;
                reg.next_at = Some(now + RETRY_MS);
            }
            Some((_, 423)) => {
                // Interval Too Brief: ask again at once for the registrar's minimum.
                let min = answer
                    .and_then(|(m, _)| {
                        m.headers
                            .iter()
                            .find(|h| h.raw_name.eq_ignore_ascii_case("Min-Expires"))
                            .and_then(|h| h.value.trim().parse::<u64>().ok())
                    })
                    .filter(|s| *s > 0 && *s <= 86_400);
                count(name, "failed");
                reg.answered = 0;
                reg.next_at = Some(now + if min.is_some() { 0 } else { RETRY_MS });
                reg.min_expires = min.or(reg.min_expires);
            }
            Some((m, code)) if (200..300).contains(&code) => {
                // What the registrar granted our contact (its own expires parameter among
                // the contacts bound to the address of record), else Expires, else what was
                // asked; never more than asked, at least a second.
                let ours = trunk
                    .credentials
                    .as_ref()
                    .map(|c| {
                        format!(
                            "sip:{}@{}:{}",
                            c.username,
                            self.cfg.advertised_host,
                            self.cfg.port_for(Remote::of_trunk(trunk))
                        )
                    })
                    .unwrap_or_default();
                let asked_s = asked.as_secs().max(reg.min_expires.unwrap_or(0));
                let granted = m
                    .header_values(HeaderName::Contact)
                    .iter()
                    .filter(|v| v.contains(&ours))
                    .find_map(|v| {
                        let params = &v[v.find('>').unwrap_or(0)..];
                        crate::sip::uri::param(params.trim_start_matches('>'), "expires")
                            .and_then(|e| e.trim().parse::<u64>().ok())
                    })
                    .or_else(|| m.header(HeaderName::Expires)?.trim().parse().ok())
                    .unwrap_or(asked_s)
                    .clamp(1, asked_s.max(1));
                reg.answered = 0;
                // Half of what was granted, at least a second: refreshed before it lapses.
                reg.next_at = Some(now + granted.saturating_mul(500).max(1_000));
                if !reg.registered {
                    tracing::info!(carrier = name, trunk = %trunk.addr, granted, "registered");
                }
                count(name, "registered");
                up = true;
            }
            Some((_, code)) => {
                tracing::warn!(carrier = name, trunk = %trunk.addr, code, "registration refused");
                count(name, "failed");
                reg.answered = 0;
                reg.next_at = Some(now + RETRY_MS);
            }
            None => {
                tracing::warn!(carrier = name, trunk = %trunk.addr, "registration unanswered");
                count(name, "timeout");
                reg.answered = 0;
                reg.next_at = Some(now + RETRY_MS);
            }
        }
        reg.registered = up;
        crate::metrics::get()
            .sip_registered
            .with_label_values(&[name, &trunk.addr.to_string()])
            .set(i64::from(up));
    }
}
