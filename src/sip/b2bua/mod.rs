//! The B2BUA, sans-IO: a call arrives on leg A (maskd as UAS), maskd places a second,
//! independent call on leg B (maskd as UAC) from the callee's proxy number, and bridges the
//! two dialogs. Nothing of one leg is copied to the other except a whitelist of neutral
//! headers and the SDP body. Messages (with the transport they came on) and the time go
//! in; messages to send, each with its transport, come out. The route lookup and the
//! interaction log go through the narrow `Core` handle. It never reads a clock or touches a
//! socket.
//!
//! The folder follows a call's life: `dialog` (one leg's dialog state, which builds that
//! leg's requests and answers), `call` (the call and its transactions), `setup` (INVITE to
//! answer or failure, callbacks, ringing), `relay` (in-dialog requests bridged across),
//! `teardown` (CANCEL, BYE, session close, shutdown), `timers` (what time passing does) and
//! `log` (the call's interaction).

mod auth;
mod call;
mod dialog;
mod failover;
mod log;
mod media;
mod probe;
mod register;
mod relay;
mod remote;
mod setup;
mod teardown;
mod timers;

#[cfg(test)]
mod tests;

/// Whether a header of this name passes from one leg to the other verbatim (the whitelist).
pub fn passes_verbatim(name: &str) -> bool {
    setup::passes(name).is_some() || name.eq_ignore_ascii_case("Require")
}

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use self::call::{Call, CallState, ClientEntry, Held, ServerEntry};
use self::dialog::{branch_of, stamp_via, token};
pub use self::remote::Remote;
use super::message::{
    concat, decimal, parse, HeaderName, Message, Outgoing, ParseError, StartLine, Transport,
};
use super::timed::Timed;
use super::transaction::{Action, ClientTx, ServerTx, Timers};
use super::uri::NameAddr;
use crate::core::model::Interaction;
use crate::core::routing::Target;
use crate::core::store::WriteOp;
use crate::core::{Sid, E164};

/// What the B2BUA needs from the rest of maskd.
pub trait Core: Send + Sync {
    fn target(&self, proxy: E164, sender: E164) -> Option<Target>;
    /// Persists interaction changes (group commit; not awaited: calls are not acknowledged
    /// the way SMS is). `touch` counts an interaction for the session's TTL.
    fn record(&self, ops: Vec<WriteOp>, touch: Option<(Sid, i64)>);
    fn next_seq(&self) -> u64;
    /// The intercept callback URL of `service`, if it has one.
    fn intercept_url(&self, _service: Sid) -> Option<String> {
        None
    }
    /// Whether the service owning `proxy` has an out-of-session callback URL.
    fn has_out_of_session(&self, _proxy: E164) -> bool {
        false
    }
    /// A stranger called `proxy` with no session (logged for the reports).
    fn contact(&self, _proxy: E164, _caller: E164, _now_s: i64) {}
    /// A call of `session` was answered: if the session is recorded, its Recording (status
    /// in-progress) is created and its SID and file path returned.
    fn start_recording(
        &self,
        _session: Sid,
        _call_sid: &str,
    ) -> Option<(String, std::path::PathBuf)> {
        None
    }
}

/// A question for the driver, whose answer comes back through `B2bua::resume`: the INVITE
/// waits (100 Trying sent, retransmissions absorbed) and nothing of the data path is held.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// No session: the out-of-session callback may create one.
    OutOfSession {
        key: u64,
        proxy: E164,
        caller: E164,
        call_sid: String,
    },
    /// The intercept callback, before leg B exists.
    Intercept {
        key: u64,
        url: String,
        interaction: Box<Interaction>,
        caller: E164,
        callee: E164,
    },
}

/// The driver's answer to an `Ask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Out of session: a session now exists (route again) or not (404).
    SessionCreated(bool),
    /// Intercept: go on, or 403.
    Allow(bool),
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// Host written into Via, Contact and From of what maskd sends.
    pub advertised_host: String,
    pub local_port: u16,
    /// The SIP-over-TLS listener's port, when there is one (Via and Contact over TLS).
    pub tls_port: Option<u16>,
    pub trunk: SocketAddr,
    pub trusted: Vec<ipnet::IpNet>,
    /// Set P-Asserted-Identity to the proxy number on leg B.
    pub assert_identity: bool,
    pub max_calls: usize,
    /// Live transactions before new requests get 503 (BYE and CANCEL, which end calls,
    /// are still served: there are at most a few per call, and calls are bounded).
    pub max_transactions: usize,
    pub timers: Timers,
    /// Leave calls up when their session closes (else BYE on both legs).
    pub keep_calls_on_close: bool,
    /// The `Server` header of maskd's own answers (`None`: none).
    pub server_header: Option<String>,
    /// Leg B goes to the trunk over TCP.
    pub trunk_tcp: bool,
    /// How long leg B may ring before maskd gives up: CANCEL to B, 408 to A (ms).
    pub ring_timeout: u64,
    /// maskd's media address, written into every SDP it anchors.
    pub media_ip: IpAddr,
    /// Who owns which proxy numbers: leg B leaves by its carrier's trunks.
    pub carriers: std::sync::Arc<crate::core::carriers::Carriers>,
    /// Pool numbers tagged with a carrier over the API: they win over `carriers`.
    pub tags: std::sync::Arc<crate::core::carriers::CarrierTags>,
    /// Where trunks given by hostname are resolved (`None`: /etc/resolv.conf's server).
    pub dns_server: Option<SocketAddr>,
}

impl Settings {
    /// The port of ours a peer reached over `to`'s transport comes back to.
    fn port_for(&self, to: Remote) -> u16 {
        match (to.tls, self.tls_port) {
            (true, Some(p)) => p,
            _ => self.local_port,
        }
    }

    /// Our Via for a request sent to `to` (over its transport).
    fn via(&self, to: Remote, branch: &str) -> String {
        let mut port = [0u8; 20];
        concat(&[
            "SIP/2.0/",
            to.via_transport(),
            " ",
            &self.advertised_host,
            ":",
            decimal(self.port_for(to).into(), &mut port),
            ";branch=z9hG4bK",
            branch,
            ";rport",
        ])
    }

    /// Our Contact on a leg, as `user` (the proxy number that side knows), saying the
    /// leg's transport so the peer's in-dialog requests come back over it.
    fn contact(&self, user: &str, flow: Remote) -> String {
        let mut port = [0u8; 20];
        concat(&[
            "<sip:",
            user,
            "@",
            &self.advertised_host,
            ":",
            decimal(self.port_for(flow).into(), &mut port),
            flow.uri_param(),
            ">",
        ])
    }

    fn trunk(&self) -> Remote {
        Remote {
            addr: self.trunk,
            tcp: self.trunk_tcp,
            tls: false,
        }
    }
}

/// A message to send, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub to: Remote,
    pub data: Vec<u8>,
}

/// Counters the driver exports as metrics (monotonic: the driver adds the difference).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub retransmissions: u64,
    pub refused_4xx: u64,
    /// Requests answered 503 because `max_transactions` transactions were live.
    pub refused_overload: u64,
    pub calls_started: u64,
    /// Responses from sources outside `trusted_cidrs`, dropped.
    pub untrusted_responses: u64,
}

/// The B2BUA's maps: foldhash (randomly seeded per map) instead of SipHash, which was ~6 %
/// of the voice plane's CPU; keys come from trusted peers only (`trusted_cidrs`).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub struct B2bua {
    cfg: Settings,
    /// Boxed: a table growing under load moves pointers, not whole calls.
    calls: Map<u64, Box<Call>>,
    by_a: Map<String, u64>,
    by_b: Map<String, u64>,
    client: Timed<String, ClientEntry>,
    server: Timed<(String, bool), ServerEntry>,
    next: u64,
    /// Peers connected over TCP (reported by the driver).
    stream_peers: std::collections::HashSet<SocketAddr, foldhash::fast::RandomState>,
    /// When ended calls are next swept from memory.
    next_sweep: u64,
    /// INVITEs waiting for a callback's answer, by `Ask` key.
    held: Map<u64, Held>,
    /// Shutting down: new calls are refused with 503, calls in progress go on.
    draining: bool,
    /// Questions for the driver (drained by it after each call).
    pub asks: Vec<Ask>,
    pub counters: Counters,
    /// The media relay when media is anchored (`None`: SDP bodies cross untouched).
    media: Option<std::sync::Arc<dyn crate::media::Media>>,
    /// Which carriers' trunks answer their probes.
    health: probe::Health,
    /// INVITEs given up for silence when leg B moved on, by branch (late answers).
    abandoned: Map<String, failover::Abandoned>,
    /// Registrations with carriers' trunks.
    registrations: register::Registrations,
}

/// What one step works with: the time, the core, and where messages to send go.
pub(super) struct Ctx<'a> {
    pub now: u64,
    pub core: &'a dyn Core,
    pub out: &'a mut Vec<Datagram>,
}

impl Ctx<'_> {
    fn now_s(&self) -> i64 {
        (self.now / 1000) as i64
    }
    /// Queues every transmission a transaction asked for, to `to`.
    fn send_all(&mut self, to: Remote, acts: Vec<Action>) {
        for a in acts {
            if let Action::Transmit(data) = a {
                self.out.push(Datagram { to, data });
            }
        }
    }
    fn send(&mut self, to: Remote, data: Vec<u8>) {
        self.out.push(Datagram { to, data });
    }
}

/// A request as it arrived: who sent it and how, the message, and its transaction key.
pub(super) struct Incoming<'a, 'm> {
    pub src: Remote,
    pub m: &'a Message<'m>,
    pub method: &'a str,
    pub branch: String,
    pub call_id: String,
}

impl B2bua {
    pub fn new(cfg: Settings) -> B2bua {
        B2bua {
            calls: Map::default(),
            by_a: Map::default(),
            by_b: Map::default(),
            client: Timed::default(),
            server: Timed::default(),
            next: 1,
            stream_peers: Default::default(),
            next_sweep: 0,
            held: Map::default(),
            draining: false,
            asks: Vec::new(),
            counters: Counters::default(),
            media: None,
            health: probe::Health::new(&cfg.carriers),
            abandoned: Map::default(),
            registrations: register::Registrations::new(&cfg.carriers),
            cfg,
        }
    }

    /// Anchors media through `relay` (SPEC §2.4): every SDP crossing is rewritten.
    pub fn with_media(mut self, relay: std::sync::Arc<dyn crate::media::Media>) -> B2bua {
        self.media = Some(relay);
        self
    }

    /// Starts a client transaction sending `bytes`, keyed by `key` (its branch, or a
    /// CANCEL's), and sends its first transmission.
    fn start_client(&mut self, key: String, bytes: Vec<u8>, n: call::NewClient, cx: &mut Ctx) {
        let mut acts = Vec::new();
        let tx = ClientTx::start(
            n.invite,
            bytes,
            n.to.tcp,
            self.cfg.timers,
            cx.now,
            &mut acts,
        );
        self.client.insert(
            key,
            call::ClientEntry {
                call: n.call,
                purpose: n.purpose,
                to: n.to,
                tx,
                give_up: n.give_up,
            },
        );
        cx.send_all(n.to, acts);
    }

    /// The carriers again, their trunks given by hostname resolved anew: health and
    /// registrations start over when the trunks changed.
    pub fn set_carriers(&mut self, carriers: std::sync::Arc<crate::core::carriers::Carriers>) {
        if *carriers == *self.cfg.carriers {
            return;
        }
        self.health = probe::Health::new(&carriers);
        self.registrations = register::Registrations::new(&carriers);
        // Probes and REGISTERs in flight name trunks of the old list by position: their
        // answers are not read into the new one. Calls keep the trunks they began with.
        let stale: Vec<String> = self
            .client
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.purpose,
                    call::Purpose::Probe(..) | call::Purpose::Register(..)
                )
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.client.remove(&k);
        }
        self.cfg.carriers = carriers;
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn transactions(&self) -> usize {
        self.client.len() + self.server.len()
    }

    /// Starts a graceful shutdown: from now on new calls get 503 with Retry-After (another
    /// instance can take them); calls in progress go on until they end or `hang_up_all`.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether a draining B2BUA has nothing left worth waiting for: no call still up or
    /// being set up, and no request of ours still waiting for its final answer.
    pub fn settled(&self) -> bool {
        self.held.is_empty()
            && self.calls.values().all(|c| c.state == CallState::Ended)
            && self.client.values().all(|e| {
                // A trunk's probe is no call's business.
                matches!(
                    e.purpose,
                    call::Purpose::Probe(..) | call::Purpose::Register(..)
                ) || matches!(
                    e.tx.state(),
                    super::transaction::ClientState::Completed
                        | super::transaction::ClientState::Terminated
                )
            })
    }

    /// Whether any call still uses `peer` (the driver keeps such TCP connections open
    /// past their idle timeout).
    pub fn uses_peer(&self, peer: SocketAddr) -> bool {
        self.calls.values().any(|c| {
            c.state != CallState::Ended && (c.a.flow.addr == peer || c.b.flow.addr == peer)
        })
    }

    /// The driver reports a TCP connection from or to `peer` (open or closed).
    pub fn stream_peer(&mut self, peer: SocketAddr, open: bool) {
        if open {
            self.stream_peers.insert(peer);
        } else {
            self.stream_peers.remove(&peer);
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.cfg.trusted.iter().any(|n| n.contains(&ip))
    }

    /// A response to request `m` from `src`, built from its own Via (the top one stamped
    /// with `received`/`rport`, RFC 3581), From, To, Call-ID and CSeq.
    fn reply(
        &self,
        m: &Message<'_>,
        src: Remote,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
    ) -> Outgoing {
        let mut r = Outgoing::response(code, reason);
        for (i, v) in m
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::Via)
            .enumerate()
        {
            let v = if i == 0 {
                stamp_via(&v.value, src.addr)
            } else {
                v.value.to_string()
            };
            r = r.header("Via", v);
        }
        let to = m.header(HeaderName::To).unwrap_or("");
        let to = match to_tag {
            Some(tag) if !to.to_ascii_lowercase().contains(";tag=") => format!("{to};tag={tag}"),
            _ => to.to_string(),
        };
        let r = r
            .header("From", m.header(HeaderName::From).unwrap_or(""))
            .header("To", to)
            .header("Call-ID", m.header(HeaderName::CallId).unwrap_or(""))
            .header("CSeq", m.header(HeaderName::CSeq).unwrap_or(""));
        match &self.cfg.server_header {
            Some(s) => r.header("Server", s.clone()),
            None => r,
        }
    }

    /// One message from `src` at `now` (ms).
    pub fn handle(
        &mut self,
        src: Remote,
        data: &[u8],
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        // Keep-alive CRLFs.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let mut cx = Ctx { now, core, out };
        let m = match parse(data, Transport::Datagram) {
            Ok(Some((m, _))) => m,
            Ok(None) => return,
            Err(e) => {
                self.refuse_unparsable(src, data, e, &mut cx);
                return;
            }
        };
        match m.start {
            StartLine::Response { code, .. } => {
                if self.trusted(src.addr.ip()) {
                    self.on_response(&m, code, src, &mut cx);
                } else {
                    // Only trusted peers may move a call on: a forged 200 or BYE answer
                    // from elsewhere is dropped.
                    self.counters.untrusted_responses += 1;
                }
            }
            StartLine::Request { method, .. } => self.on_request(src, &m, method, &mut cx),
        }
        self.client.settle();
        self.server.settle();
    }

    /// A request that does not parse gets a 400 naming the fault when enough of it is
    /// readable to address an answer (RFC 3261 §8.2.2); otherwise it is dropped.
    fn refuse_unparsable(&mut self, src: Remote, data: &[u8], e: ParseError, cx: &mut Ctx) {
        if data.starts_with(b"SIP/") {
            return;
        }
        let text = String::from_utf8_lossy(data);
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut r = Outgoing::response(e.status, e.reason);
        let mut have = 0;
        for line in head.split("\r\n").skip(1) {
            let Some((n, v)) = line.split_once(':') else {
                continue;
            };
            let name = match HeaderName::from_name(n.trim()) {
                HeaderName::Via => "Via",
                HeaderName::From => "From",
                HeaderName::To => "To",
                HeaderName::CallId => "Call-ID",
                HeaderName::CSeq => "CSeq",
                _ => continue,
            };
            if name == "Via" || !r.headers.iter().any(|(h, _)| *h == name) {
                r = r.header(name, v.trim().to_string());
                have += 1;
            }
        }
        if have >= 5 && !head.starts_with("ACK ") {
            if let Some(server) = &self.cfg.server_header {
                r = r.header("Server", server.clone());
            }
            self.counters.refused_4xx += 1;
            cx.send(src, r.encode());
        }
    }

    fn on_request(&mut self, src: Remote, m: &Message<'_>, method: &str, cx: &mut Ctx) {
        if !self.trusted(src.addr.ip()) {
            if method != "ACK" {
                self.counters.refused_4xx += 1;
                let r = self.reply(m, src, 403, "Forbidden", Some(&token()));
                cx.send(src, r.encode());
            }
            return;
        }
        if let Err(e) = m.validate_request() {
            if method != "ACK" {
                self.counters.refused_4xx += 1;
                let r = self.reply(m, src, e.status, e.reason, Some(&token()));
                cx.send(src, r.encode());
            }
            return;
        }
        let Some(branch) = branch_of(m) else { return };
        let call_id = m.header(HeaderName::CallId).unwrap_or("").to_string();
        let req = Incoming {
            src,
            m,
            method,
            branch,
            call_id,
        };
        if method == "ACK" {
            return self.on_ack(&req, cx);
        }
        // Retransmissions of known server transactions.
        let key = (req.branch.clone(), method == "CANCEL");
        if let Some(e) = self.server.get_mut(&key) {
            let mut acts = Vec::new();
            e.tx.on_request_retransmission(&mut acts);
            let to = e.to;
            self.counters.retransmissions += 1;
            cx.send_all(to, acts);
            return;
        }
        if self.transactions() >= self.cfg.max_transactions && !matches!(method, "BYE" | "CANCEL") {
            // Over the bound: answered statelessly, so the refusal costs no transaction.
            self.counters.refused_overload += 1;
            let r = self
                .reply(m, src, 503, "Service Unavailable", Some(&token()))
                .header("Retry-After", "5")
                .encode();
            cx.send(src, r);
            return;
        }
        let to_tag = m
            .header(HeaderName::To)
            .and_then(NameAddr::parse)
            .and_then(|n| n.param("tag").map(str::to_string));
        match method {
            "INVITE" if to_tag.is_none() => self.new_call(&req, call::Decided::default(), cx),
            "CANCEL" => self.on_cancel(&req, cx),
            "BYE" => self.on_bye(&req, cx),
            "INVITE" | "UPDATE" | "INFO" | "PRACK" | "NOTIFY" | "OPTIONS" | "MESSAGE"
                if to_tag.is_some() =>
            {
                self.relay_in_dialog(&req, cx)
            }
            "OPTIONS" => {
                let r = self
                    .reply(m, src, 200, "OK", Some(&token()))
                    .header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO")
                    .encode();
                self.server_answer(&req, 200, r, cx);
            }
            _ => {
                let r = self
                    .reply(m, src, 501, "Not Implemented", Some(&token()))
                    .encode();
                self.server_answer(&req, 501, r, cx);
            }
        }
    }

    /// An ACK: for a non-2xx final answer of ours (it completes that server transaction),
    /// or in-dialog for our 2xx to leg A (it stops the 2xx's retransmission).
    fn on_ack(&mut self, req: &Incoming, cx: &mut Ctx) {
        let key = (req.branch.clone(), false);
        if let Some(e) = self.server.get_mut(&key) {
            // (An ACK for a 2xx that reuses the INVITE's branch goes on to the dialog.)
            if e.tx.state() != super::transaction::ServerState::Accepted {
                let mut acts = Vec::new();
                e.tx.on_ack(cx.now, &mut acts);
                let to = e.to;
                // Over TCP the transaction ends at once (Timer I is zero).
                if acts.contains(&Action::Terminated) {
                    self.server.remove(&key);
                }
                cx.send_all(to, acts);
                return;
            }
        }
        if let Some(id) = self.by_a.get(&req.call_id).copied() {
            let mut answer_late_offer = false;
            if let Some(c) = self.calls.get_mut(&id) {
                if req.m.cseq().is_some_and(|(n, _)| n == c.a_invite.cseq) {
                    c.ok_to_a = None;
                    answer_late_offer =
                        c.late_offer && c.ack_to_b.is_none() && c.state == CallState::Answered;
                }
            }
            if answer_late_offer {
                // A's ACK carries the answer to B's offer: B's ACK goes now, with it.
                let ct = req.m.header(HeaderName::ContentType);
                let body = if req.m.body.is_empty() {
                    None
                } else {
                    match self.anchor_body(id, media::Side::A, ct, req.m.body) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            tracing::info!(reason = e.status().1, "late-offer answer dropped");
                            None
                        }
                    }
                };
                let ct = ct.unwrap_or("application/sdp").to_string();
                self.ack_b_2xx(id, body.as_deref().map(|b| (ct.as_str(), b)), cx);
            }
        }
    }

    /// Answers a request with a final `code` through a new server transaction (which
    /// absorbs the request's retransmissions).
    fn server_answer(&mut self, req: &Incoming, code: u16, bytes: Vec<u8>, cx: &mut Ctx) {
        let invite = req.method == "INVITE";
        let mut tx = ServerTx::new(invite, req.src.tcp, self.cfg.timers);
        let mut acts = Vec::new();
        tx.respond(code, bytes, cx.now, &mut acts);
        let cancel = req.method == "CANCEL";
        if !matches!(tx.state(), super::transaction::ServerState::Terminated) {
            self.server.insert(
                (req.branch.clone(), cancel),
                ServerEntry {
                    call: None,
                    to: req.src,
                    tx,
                },
            );
        }
        if code >= 400 {
            self.counters.refused_4xx += 1;
        }
        cx.send_all(req.src, acts);
    }

    /// The driver could not reach `to` (a TCP connect failed, the connection closed, or it
    /// could not take a message): every client transaction of ours towards it fails at
    /// once (RFC 3261 §17.1.4), as if it had timed out. Server transactions end by their
    /// own timers.
    pub fn transport_error(
        &mut self,
        to: Remote,
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        let mut cx = Ctx { now, core, out };
        let keys: Vec<String> = self
            .client
            .iter()
            .filter(|(_, e)| e.to == to)
            .map(|(k, _)| k.clone())
            .collect();
        let mut failed = Vec::new();
        for k in keys {
            if let Some(e) = self.client.get_mut(&k) {
                let mut acts = Vec::new();
                e.tx.on_transport_error(&mut acts);
                if acts.contains(&Action::Timeout) {
                    failed.push((k.clone(), e.call, e.purpose.clone()));
                }
            }
            self.client.remove(&k);
        }
        for (k, id, purpose) in failed {
            self.on_client_timeout(&k, id, purpose, 503, &mut cx);
        }
        self.client.settle();
        self.server.settle();
    }

    /// Ends every call at once (the shutdown grace is running out): BYE on both legs of an
    /// answered call, CANCEL towards B for one still ringing (A gets 487), 503 for an
    /// INVITE still waiting for a callback. Interactions are closed as for a session close.
    pub fn hang_up_all(&mut self, now: u64, core: &dyn Core, out: &mut Vec<Datagram>) {
        let mut cx = Ctx { now, core, out };
        let held: Vec<u64> = self.held.keys().copied().collect();
        for key in held {
            if let Some(h) = self.held.remove(&key) {
                self.answer_held(&h, 503, "Service Unavailable", &mut cx);
            }
        }
        let ids: Vec<(u64, CallState)> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                matches!(
                    c.state,
                    CallState::Setup | CallState::Early | CallState::Answered
                )
            })
            .map(|(id, c)| (*id, c.state))
            .collect();
        for (id, state) in ids {
            if state == CallState::Answered {
                self.end_answered(id, &mut cx);
            } else {
                self.abandon_setup(
                    id,
                    487,
                    "Request Terminated",
                    crate::core::model::ResourceStatus::Canceled,
                    &mut cx,
                );
            }
        }
        self.client.settle();
        self.server.settle();
    }
}
