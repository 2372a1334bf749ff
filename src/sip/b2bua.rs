//! The B2BUA, sans-IO: a call arrives on leg A (maskd as UAS), maskd places a second,
//! independent call on leg B (maskd as UAC) from the callee's proxy number, and bridges the
//! two dialogs. Nothing of one leg is copied to the other except a whitelist of neutral
//! headers and the SDP body. Datagrams and the time go in; datagrams to send come out. The
//! route lookup and the interaction log go through the narrow `Core` handle.

use std::collections::HashMap;

use super::timed::{compact_map, Deadline, Timed};
use std::net::{IpAddr, SocketAddr};

use super::message::{parse, HeaderName, Message, Outgoing, ParseError, StartLine, Transport};
use super::transaction::{Action, ClientTx, ServerTx, Timers};
use super::uri::{NameAddr, Uri};
use crate::core::model::{Interaction, InteractionType, Leg, ResourceStatus};
use crate::core::routing::Target;
use crate::core::store::WriteOp;
use crate::core::{Sid, SidKind, E164};

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

/// What an INVITE has already been through when it is (re)considered.
#[derive(Debug, Clone, Copy, Default)]
struct Decided {
    out_of_session_asked: bool,
    intercepted: bool,
    interaction: Option<Sid>,
}

struct Held {
    src: SocketAddr,
    bytes: Vec<u8>,
    branch: String,
    decided: Decided,
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// Host written into Via, Contact and From of what maskd sends.
    pub advertised_host: String,
    pub local_port: u16,
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
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// Headers that may pass from one leg to the other; everything else is rebuilt or dropped.
const PASS: &[&str] = &[
    "Content-Type",
    "Allow",
    "Supported",
    "Session-Expires",
    "Min-SE",
    "Accept",
];
/// Option tags maskd lets through in Require (others: 420 Bad Extension).
const KNOWN_EXTENSIONS: &[&str] = &["timer", "100rel", "replaces"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    Setup,
    Early,
    Answered,
    Ended,
}

#[derive(Debug)]
struct Call {
    state: CallState,
    // Leg A: maskd is the UAS.
    a_addr: SocketAddr,
    a_call_id: String,
    a_from: String,
    a_to: String,
    a_tag: String,
    a_vias: Vec<String>,
    a_cseq: u32,
    a_invite_branch: String,
    a_out_cseq: u32,
    /// The 2xx to A, retransmitted until A's ACK (RFC 3261 §13.3.1.4).
    ok_to_a: Option<(Vec<u8>, u64, u64, u64)>,
    // Leg B: maskd is the UAC.
    b_call_id: String,
    b_from: String,
    b_to: String,
    b_to_tag: Option<String>,
    b_ruri: String,
    b_target: Option<String>,
    b_invite_branch: String,
    b_cseq: u32,
    ack_to_b: Option<Vec<u8>>,
    // The log.
    interaction: Interaction,
    session: Sid,
    /// The route key the call came in on: when it stops resolving, the session closed.
    key: (E164, E164),
    /// When leg A's INVITE arrived, until the first 180/200 went back (setup latency).
    setup_from: Option<u64>,
    answered_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Purpose {
    Invite,
    Cancel,
    ByeToB,
    ByeToA,
    /// An in-dialog request (re-INVITE, UPDATE, INFO, …) relayed from the other leg: the
    /// final answer goes back through this server transaction, built from these headers.
    Relay(Box<Relayed>),
}

/// What is needed to answer the leg that sent a relayed in-dialog request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relayed {
    server_key: (String, bool),
    reply_to: SocketAddr,
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
    /// Our Contact on the answering leg.
    contact: String,
    invite: bool,
}

struct ClientEntry {
    call: u64,
    purpose: Purpose,
    to: SocketAddr,
    tx: ClientTx,
}

struct ServerEntry {
    call: Option<u64>,
    to: SocketAddr,
    tx: ServerTx,
}

impl Deadline for ClientEntry {
    fn deadline(&self) -> Option<u64> {
        self.tx.poll_timeout()
    }
}

impl Deadline for ServerEntry {
    fn deadline(&self) -> Option<u64> {
        self.tx.poll_timeout()
    }
}

/// Counters the driver exports as metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub retransmissions: u64,
    pub refused_4xx: u64,
    /// Requests answered 503 because `max_transactions` transactions were live.
    pub refused_overload: u64,
    pub calls_started: u64,
}

/// How often ended calls are swept from memory (ms).
const SWEEP_MS: u64 = 1_000;

/// The B2BUA's maps: foldhash (randomly seeded per map) instead of SipHash, which was ~6 %
/// of the voice plane's CPU; keys come from trusted peers only (`trusted_cidrs`).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub struct B2bua {
    cfg: Settings,
    calls: Map<u64, Call>,
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
}

/// Queues every transmission a transaction asked for, to `to`.
fn send_all(to: SocketAddr, acts: Vec<Action>, out: &mut Vec<Datagram>) {
    for a in acts {
        if let Action::Transmit(data) = a {
            out.push(Datagram { to, data });
        }
    }
}

fn token() -> String {
    let s = Sid::generate(SidKind::Call).to_string();
    s[2..18].to_string()
}

fn number_of(uri: &str) -> Option<E164> {
    let u = Uri::parse(uri)?;
    E164::parse(u.user?.split(';').next()?).ok()
}

fn strip_tag(v: &str) -> String {
    // Removes a `;tag=` parameter from a From/To value (keeps the rest verbatim).
    let mut out = String::new();
    let mut depth = 0;
    let mut cut = v.len();
    for (i, c) in v.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ';' if depth == 0
                && v[i + 1..]
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("tag") =>
            {
                cut = i;
                break;
            }
            _ => {}
        }
    }
    out.push_str(v[..cut].trim_end());
    if let Some(rest) = v[cut..].get(1..) {
        if let Some(next) = rest.find(';') {
            out.push_str(&rest[next..]);
        }
    }
    out
}

fn branch_of(m: &Message<'_>) -> Option<String> {
    let via = m
        .header_values(HeaderName::Via)
        .into_iter()
        .next()?
        .to_string();
    super::uri::param(via.split_once(';').map_or("", |x| x.1), "branch").map(str::to_string)
}

impl B2bua {
    pub fn new(cfg: Settings) -> B2bua {
        B2bua {
            cfg,
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
        }
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
                matches!(
                    e.tx.state(),
                    super::transaction::ClientState::Completed
                        | super::transaction::ClientState::Terminated
                )
            })
    }

    /// Ends every call at once (the shutdown grace is running out): BYE on both legs of an
    /// answered call, CANCEL towards B for one still ringing (A then gets 487), 503 for an
    /// INVITE still waiting for a callback. Interactions are closed as for a session close.
    pub fn hang_up_all(&mut self, now: u64, core: &dyn Core, out: &mut Vec<Datagram>) {
        let held: Vec<u64> = self.held.keys().copied().collect();
        for key in held {
            if let Some(h) = self.held.remove(&key) {
                self.answer_held(&h, 503, "Service Unavailable", now, out);
            }
        }
        let ids: Vec<(u64, CallState)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.state != CallState::Ended)
            .map(|(id, c)| (*id, c.state))
            .collect();
        for (id, state) in ids {
            if state == CallState::Answered {
                self.end_answered(id, now, core, out);
            } else {
                self.cancel_leg_b(id, now, out);
            }
        }
        self.client.settle();
        self.server.settle();
    }

    /// Our Via for a request sent to `to`: TCP when that peer is reached over a stream.
    fn via_to(&self, to: SocketAddr, branch: &str) -> String {
        let transport = if self.is_stream(to) { "TCP" } else { "UDP" };
        format!(
            "SIP/2.0/{transport} {}:{};branch=z9hG4bK{branch};rport",
            self.cfg.advertised_host, self.cfg.local_port
        )
    }

    /// Is `peer` reached over a stream (TCP): the trunk when `sip.transport` is tcp, or a
    /// peer whose connection the driver reported. Streams get no retransmissions.
    fn is_stream(&self, peer: SocketAddr) -> bool {
        (peer == self.cfg.trunk && self.cfg.trunk_tcp) || self.stream_peers.contains(&peer)
    }

    /// The driver reports a TCP connection from or to `peer` (open or closed).
    pub fn stream_peer(&mut self, peer: SocketAddr, open: bool) {
        if open {
            self.stream_peers.insert(peer);
        } else {
            self.stream_peers.remove(&peer);
        }
    }

    fn contact(&self, user: &str) -> String {
        format!(
            "<sip:{user}@{}:{}>",
            self.cfg.advertised_host, self.cfg.local_port
        )
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.cfg.trusted.iter().any(|n| n.contains(&ip))
    }

    /// A response to request `m`, built from its own Via, From, To, Call-ID and CSeq.
    fn reply(&self, m: &Message<'_>, code: u16, reason: &str, to_tag: Option<&str>) -> Outgoing {
        let mut r = Outgoing::response(code, reason);
        for v in m.headers.iter().filter(|h| h.name == HeaderName::Via) {
            r = r.header("Via", v.value.to_string());
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

    /// One datagram from `src` at `now` (ms).
    pub fn handle(
        &mut self,
        src: SocketAddr,
        data: &[u8],
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        // Keep-alive CRLFs.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let m = match parse(data, Transport::Datagram) {
            Ok(Some((m, _))) => m,
            Ok(None) => return,
            Err(e) => {
                self.refuse_unparsable(src, data, e, out);
                return;
            }
        };
        match m.start {
            StartLine::Response { code, .. } => self.on_response(&m, code, now, core, out),
            StartLine::Request { method, .. } => self.on_request(src, &m, method, now, core, out),
        }
        self.client.settle();
        self.server.settle();
    }

    /// A request that does not parse gets a 400 naming the fault when enough of it is
    /// readable to address an answer (RFC 3261 §8.2.2); otherwise it is dropped.
    fn refuse_unparsable(
        &mut self,
        src: SocketAddr,
        data: &[u8],
        e: ParseError,
        out: &mut Vec<Datagram>,
    ) {
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
            out.push(Datagram {
                to: src,
                data: r.encode(),
            });
        }
    }

    fn on_request(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        method: &str,
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        if !self.trusted(src.ip()) {
            if method != "ACK" {
                self.counters.refused_4xx += 1;
                out.push(Datagram {
                    to: src,
                    data: self.reply(m, 403, "Forbidden", Some(&token())).encode(),
                });
            }
            return;
        }
        if let Err(e) = m.validate_request() {
            if method != "ACK" {
                self.counters.refused_4xx += 1;
                out.push(Datagram {
                    to: src,
                    data: self.reply(m, e.status, e.reason, Some(&token())).encode(),
                });
            }
            return;
        }
        let Some(branch) = branch_of(m) else { return };
        let call_id = m.header(HeaderName::CallId).unwrap_or("").to_string();
        // Retransmissions and ACKs of known server transactions.
        let key = (branch.clone(), method == "CANCEL");
        if method == "ACK" {
            if let Some(e) = self.server.get_mut(&(branch.clone(), false)) {
                let mut acts = Vec::new();
                e.tx.on_ack(now, &mut acts);
                let to = e.to;
                send_all(to, acts, out);
                return;
            }
            // ACK for our 2xx: in-dialog, by Call-ID.
            if let Some(id) = self.by_a.get(&call_id).copied() {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.ok_to_a = None;
                }
            }
            return;
        }
        if let Some(e) = self.server.get_mut(&key) {
            let mut acts = Vec::new();
            e.tx.on_request_retransmission(&mut acts);
            let to = e.to;
            self.counters.retransmissions += 1;
            send_all(to, acts, out);
            return;
        }
        if self.transactions() >= self.cfg.max_transactions && !matches!(method, "BYE" | "CANCEL") {
            // Over the bound: answered statelessly, so the refusal costs no transaction.
            self.counters.refused_overload += 1;
            let r = self
                .reply(m, 503, "Service Unavailable", Some(&token()))
                .header("Retry-After", "5")
                .encode();
            out.push(Datagram { to: src, data: r });
            return;
        }
        let to_tag = m
            .header(HeaderName::To)
            .and_then(NameAddr::parse)
            .and_then(|n| n.param("tag").map(str::to_string));
        match method {
            "INVITE" if to_tag.is_none() => {
                self.new_call(src, m, branch, Decided::default(), now, core, out)
            }
            "CANCEL" => self.on_cancel(src, m, branch, now, out),
            "BYE" => self.on_bye(src, m, branch, call_id, now, core, out),
            "INVITE" | "UPDATE" | "INFO" | "PRACK" | "NOTIFY" if to_tag.is_some() => {
                self.relay_in_dialog(src, m, method, branch, call_id, now, out)
            }
            "OPTIONS" if to_tag.is_none() => {
                let r = self
                    .reply(m, 200, "OK", Some(&token()))
                    .header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
                    .encode();
                self.server_answer(src, m, branch, false, 200, r, now, out);
            }
            _ => {
                let r = self
                    .reply(m, 501, "Not Implemented", Some(&token()))
                    .encode();
                self.server_answer(src, m, branch, method == "INVITE", 501, r, now, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn server_answer(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        branch: String,
        invite: bool,
        code: u16,
        bytes: Vec<u8>,
        now: u64,
        out: &mut Vec<Datagram>,
    ) {
        let mut tx = ServerTx::new(invite, self.is_stream(src), self.cfg.timers);
        let mut acts = Vec::new();
        tx.respond(code, bytes, now, &mut acts);
        let cancel = m.method() == Some("CANCEL");
        if !matches!(tx.state(), super::transaction::ServerState::Terminated) {
            self.server.insert(
                (branch, cancel),
                ServerEntry {
                    call: None,
                    to: src,
                    tx,
                },
            );
        }
        if code >= 400 {
            self.counters.refused_4xx += 1;
        }
        send_all(src, acts, out);
    }

    /// The driver's answer to the `Ask` with this key: the held INVITE goes on.
    pub fn resume(
        &mut self,
        key: u64,
        answer: Resume,
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        let Some(h) = self.held.remove(&key) else {
            return;
        };
        // Cancelled (or otherwise answered) while it waited: nothing more to do.
        let waiting = self
            .server
            .get(&(h.branch.clone(), false))
            .is_some_and(|e| {
                e.call.is_none() && e.tx.state() == super::transaction::ServerState::Proceeding
            });
        if waiting {
            if let Ok(Some((m, _))) = parse(&h.bytes, Transport::Datagram) {
                let mut decided = h.decided;
                match answer {
                    Resume::SessionCreated(_) => decided.out_of_session_asked = true,
                    Resume::Allow(true) => decided.intercepted = true,
                    Resume::Allow(false) => {
                        self.blocked_call(h.src, &m, h.branch.clone(), decided, now, core, out);
                        self.client.settle();
                        self.server.settle();
                        return;
                    }
                }
                self.new_call(h.src, &m, h.branch.clone(), decided, now, core, out);
            }
        }
        self.client.settle();
        self.server.settle();
    }

    /// Holds an INVITE for a callback: 100 Trying from its server transaction (which
    /// absorbs retransmissions), then the `Ask` for the driver.
    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        branch: String,
        decided: Decided,
        ask: impl FnOnce(u64) -> Ask,
        now: u64,
        out: &mut Vec<Datagram>,
    ) {
        self.trying(src, m, &branch, None, now, out);
        let key = self.next;
        self.next += 1;
        self.held.insert(
            key,
            Held {
                src,
                bytes: m.raw.to_vec(),
                branch,
                decided,
            },
        );
        self.asks.push(ask(key));
    }

    /// The INVITE's server transaction, created with 100 Trying sent if it does not exist
    /// yet (it does when the INVITE waited for a callback); bound to `call`.
    fn trying(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        branch: &str,
        call: Option<u64>,
        now: u64,
        out: &mut Vec<Datagram>,
    ) {
        let key = (branch.to_string(), false);
        if let Some(e) = self.server.get_mut(&key) {
            e.call = call;
            return;
        }
        let mut tx = ServerTx::new(true, self.is_stream(src), self.cfg.timers);
        let mut acts = Vec::new();
        tx.respond(
            100,
            self.reply(m, 100, "Trying", None).encode(),
            now,
            &mut acts,
        );
        self.server.insert(key, ServerEntry { call, to: src, tx });
        send_all(src, acts, out);
    }

    /// An INVITE the intercept callback blocked: 403 on leg A, logged as a call whose
    /// outbound leg was canceled.
    #[allow(clippy::too_many_arguments)]
    fn blocked_call(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        branch: String,
        decided: Decided,
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        if let Some((proxy, caller)) = Self::parties(m) {
            if let Some(t) = core.target(proxy, caller) {
                let mut i =
                    Self::voice_interaction(&t, decided.interaction, (now / 1000) as i64, core);
                i.inbound.resource_status = Some(ResourceStatus::Completed);
                i.outbound.resource_status = Some(ResourceStatus::Canceled);
                core.record(
                    vec![WriteOp::PutInteraction(i)],
                    Some((t.session, (now / 1000) as i64)),
                );
            }
        }
        let r = self.reply(m, 403, "Forbidden", Some(&token())).encode();
        self.server_answer(src, m, branch, true, 403, r, now, out);
    }

    /// The dialled proxy number and the caller (From, or P-Asserted-Identity when From is
    /// anonymous) of an INVITE.
    fn parties(m: &Message<'_>) -> Option<(E164, E164)> {
        let StartLine::Request { uri, .. } = m.start else {
            return None;
        };
        let proxy = number_of(uri)?;
        let from = m.header(HeaderName::From).unwrap_or("");
        let caller = NameAddr::parse(from)
            .and_then(|n| E164::parse(n.uri.user?.split(';').next()?).ok())
            .or_else(|| {
                m.header(HeaderName::PAssertedIdentity)
                    .and_then(NameAddr::parse)
                    .and_then(|n| E164::parse(n.uri.user?.split(';').next()?).ok())
            })?;
        Some((proxy, caller))
    }

    fn voice_interaction(t: &Target, sid: Option<Sid>, now_s: i64, core: &dyn Core) -> Interaction {
        Interaction {
            sid: sid.unwrap_or_else(|| Sid::generate(SidKind::Interaction)),
            seq: core.next_seq(),
            session_sid: t.session,
            service_sid: t.service,
            data: "{}".into(),
            kind: InteractionType::Voice,
            inbound: Leg {
                participant_sid: Some(t.participant),
                resource_sid: Some(Sid::generate(SidKind::Call).to_string()),
                resource_status: Some(ResourceStatus::InProgress),
                resource_type: Some("Call".into()),
                resource_url: None,
            },
            outbound: Leg {
                participant_sid: Some(t.counterpart),
                resource_sid: Some(Sid::generate(SidKind::Call).to_string()),
                resource_status: Some(ResourceStatus::Initiated),
                resource_type: Some("Call".into()),
                resource_url: None,
            },
            message_participant_sid: None,
            date_created: now_s,
            date_updated: now_s,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_call(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        branch: String,
        decided: Decided,
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        let refuse = |me: &mut B2bua, code: u16, reason: &str, out: &mut Vec<Datagram>| {
            let r = me.reply(m, code, reason, Some(&token()));
            let r = if code == 503 {
                r.header("Retry-After", "5")
            } else {
                r
            };
            me.server_answer(src, m, branch.clone(), true, code, r.encode(), now, out);
        };
        if let Some(mf) = m.header(HeaderName::MaxForwards) {
            if mf.trim() == "0" {
                return refuse(self, 483, "Too Many Hops", out);
            }
        }
        if let Some(req) = m.header(HeaderName::Require) {
            if req
                .split(',')
                .any(|t| !KNOWN_EXTENSIONS.contains(&t.trim()))
            {
                return refuse(self, 420, "Bad Extension", out);
            }
        }
        if self.calls.len() >= self.cfg.max_calls || self.draining {
            return refuse(self, 503, "Service Unavailable", out);
        }
        let Some((proxy, caller)) = Self::parties(m) else {
            return refuse(self, 404, "Not Found", out);
        };
        let from = m.header(HeaderName::From).unwrap_or("");
        let Some(t) = core.target(proxy, caller) else {
            if !decided.out_of_session_asked && core.has_out_of_session(proxy) {
                let call_sid = Sid::generate(SidKind::Call).to_string();
                return self.hold(
                    src,
                    m,
                    branch.clone(),
                    decided,
                    |key| Ask::OutOfSession {
                        key,
                        proxy,
                        caller,
                        call_sid,
                    },
                    now,
                    out,
                );
            }
            tracing::debug!(from = %caller.masked(), to = %proxy.masked(), "call out of session");
            return refuse(self, 404, "Not Found", out);
        };
        if !t.mode.allows_voice() {
            return refuse(self, 403, "Forbidden", out);
        }
        if !decided.intercepted {
            if let Some(url) = core.intercept_url(t.service) {
                let mut decided = decided;
                let i = Self::voice_interaction(&t, None, (now / 1000) as i64, core);
                decided.interaction = Some(i.sid);
                let callee = t.counterpart_real;
                return self.hold(
                    src,
                    m,
                    branch.clone(),
                    decided,
                    |key| Ask::Intercept {
                        key,
                        url,
                        interaction: Box::new(i),
                        caller,
                        callee,
                    },
                    now,
                    out,
                );
            }
        }
        let mf: u32 = m
            .header(HeaderName::MaxForwards)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(70);
        let id = self.next;
        self.next += 1;
        let a_tag = token();
        // 100 Trying at once (already sent if the INVITE waited for a callback).
        self.trying(src, m, &branch, Some(id), now, out);

        // Leg B from scratch.
        let b_call_id = format!("{}@maskd", token());
        let b_branch = token();
        let proxy_b = t.counterpart_proxy.to_string();
        let real_b = t.counterpart_real.to_string();
        let b_ruri = format!("sip:{real_b}@{}", self.cfg.trunk);
        let b_from = format!(
            "<sip:{proxy_b}@{}>;tag={}",
            self.cfg.advertised_host,
            token()
        );
        let b_to = format!("<sip:{real_b}@{}>", self.cfg.trunk);
        let mut invite = Outgoing::request("INVITE", &b_ruri)
            .header("Via", self.via_to(self.cfg.trunk, &b_branch))
            .header("Max-Forwards", mf.saturating_sub(1).to_string())
            .header("From", b_from.clone())
            .header("To", b_to.clone())
            .header("Call-ID", b_call_id.clone())
            .header("CSeq", "1 INVITE")
            .header("Contact", self.contact(&proxy_b));
        if self.cfg.assert_identity {
            invite = invite.header(
                "P-Asserted-Identity",
                format!("<sip:{proxy_b}@{}>", self.cfg.advertised_host),
            );
        }
        for h in &m.headers {
            if let Some(name) = PASS.iter().find(|p| {
                p.eq_ignore_ascii_case(h.raw_name)
                    || HeaderName::from_name(h.raw_name) == HeaderName::from_name(p)
                        && HeaderName::from_name(p) != HeaderName::Other
            }) {
                invite = invite.header(name, h.value.to_string());
            }
        }
        if let Some(req) = m.header(HeaderName::Require) {
            invite = invite.header("Require", req.to_string());
        }
        invite.body = m.body.to_vec();
        let bytes = invite.encode();
        let mut acts = Vec::new();
        let ctx = ClientTx::start(
            true,
            bytes,
            self.is_stream(self.cfg.trunk),
            self.cfg.timers,
            now,
            &mut acts,
        );
        self.client.insert(
            b_branch.clone(),
            ClientEntry {
                call: id,
                purpose: Purpose::Invite,
                to: self.cfg.trunk,
                tx: ctx,
            },
        );
        send_all(self.cfg.trunk, acts, out);
        let now_s = (now / 1000) as i64;
        let interaction = Self::voice_interaction(&t, decided.interaction, now_s, core);
        core.record(
            vec![WriteOp::PutInteraction(interaction.clone())],
            Some((t.session, now_s)),
        );
        let call = Call {
            state: CallState::Setup,
            a_addr: src,
            a_call_id: m.header(HeaderName::CallId).unwrap_or("").to_string(),
            a_from: from.to_string(),
            a_to: strip_tag(m.header(HeaderName::To).unwrap_or("")),
            a_tag,
            a_vias: m
                .headers
                .iter()
                .filter(|h| h.name == HeaderName::Via)
                .map(|h| h.value.to_string())
                .collect(),
            a_cseq: m.cseq().map_or(1, |c| c.0),
            a_invite_branch: branch,
            a_out_cseq: 1,
            ok_to_a: None,
            b_call_id: b_call_id.clone(),
            b_from,
            b_to,
            b_to_tag: None,
            b_ruri,
            b_target: None,
            b_invite_branch: b_branch,
            b_cseq: 1,
            ack_to_b: None,
            interaction,
            session: t.session,
            key: (proxy, caller),
            setup_from: Some(now),
            answered_at: None,
        };
        self.by_a.insert(call.a_call_id.clone(), id);
        self.by_b.insert(b_call_id, id);
        self.calls.insert(id, call);
        self.counters.calls_started += 1;
    }

    /// A response to leg A's INVITE, in A's dialog.
    fn to_a(
        c: &Call,
        code: u16,
        reason: &str,
        body: Option<(&str, &[u8])>,
        contact: Option<String>,
    ) -> Vec<u8> {
        let mut r = Outgoing::response(code, reason);
        for v in &c.a_vias {
            r = r.header("Via", v.clone());
        }
        r = r
            .header("From", c.a_from.clone())
            .header("To", format!("{};tag={}", c.a_to, c.a_tag))
            .header("Call-ID", c.a_call_id.clone())
            .header("CSeq", format!("{} INVITE", c.a_cseq));
        if let Some(ct) = contact {
            r = r.header("Contact", ct);
        }
        if let Some((ct, b)) = body {
            r = r.body(Some(ct), b);
        }
        r.encode()
    }

    fn set_leg(
        &mut self,
        id: u64,
        status: ResourceStatus,
        inbound: Option<ResourceStatus>,
        now: u64,
        core: &dyn Core,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.interaction.outbound.resource_status = Some(status);
        if let Some(s) = inbound {
            c.interaction.inbound.resource_status = Some(s);
        }
        c.interaction.date_updated = (now / 1000) as i64;
        core.record(vec![WriteOp::PutInteraction(c.interaction.clone())], None);
    }

    fn on_response(
        &mut self,
        m: &Message<'_>,
        code: u16,
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        let Some(branch) = branch_of(m) else { return };
        let Some(mut branch) = branch.strip_prefix("z9hG4bK").map(str::to_string) else {
            return;
        };
        if m.cseq().is_some_and(|(_, method)| method == "CANCEL") {
            // A CANCEL shares its INVITE's branch; its transaction is keyed apart.
            branch.push_str("-cancel");
        }
        let Some(entry) = self.client.get_mut(&branch) else {
            // A 2xx retransmission after the INVITE transaction ended: ACK it again.
            if (200..300).contains(&code) {
                let call_id = m.header(HeaderName::CallId).unwrap_or("");
                if let Some(c) = self.by_b.get(call_id).and_then(|id| self.calls.get(id)) {
                    if let Some(ack) = &c.ack_to_b {
                        self.counters.retransmissions += 1;
                        out.push(Datagram {
                            to: self.cfg.trunk,
                            data: ack.clone(),
                        });
                    }
                }
            }
            return;
        };
        let (id, purpose, to) = (entry.call, entry.purpose.clone(), entry.to);
        let mut acts = Vec::new();
        entry.tx.on_response(code, now, &mut acts);
        let passed_up = acts.contains(&Action::Response(code));
        let ended = acts.contains(&Action::Terminated);
        for a in &acts {
            if let Action::Transmit(d) = a {
                out.push(Datagram {
                    to,
                    data: d.clone(),
                });
            }
        }
        if ended && purpose != Purpose::Invite {
            self.client.remove(&branch);
        }
        if !passed_up {
            return;
        }
        match purpose {
            Purpose::Invite => self.on_invite_response(id, &branch, m, code, now, core, out),
            Purpose::Relay(ref r) => self.relay_answer(&branch, r, m, code, to, now, out),
            Purpose::ByeToA | Purpose::ByeToB | Purpose::Cancel => {}
        }
        if ended && purpose == Purpose::Invite && (200..300).contains(&code) {
            self.client.remove(&branch);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_invite_response(
        &mut self,
        id: u64,
        branch: &str,
        m: &Message<'_>,
        code: u16,
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        let to_tag = m
            .header(HeaderName::To)
            .and_then(NameAddr::parse)
            .and_then(|n| n.param("tag").map(str::to_string));
        let body = m
            .header(HeaderName::ContentType)
            .filter(|_| !m.body.is_empty())
            .map(|ct| (ct.to_string(), m.body.to_vec()));
        let contact_b = m
            .header(HeaderName::Contact)
            .and_then(NameAddr::parse)
            .map(|n| {
                let full = m.header(HeaderName::Contact).unwrap_or("");
                let inner = full
                    .find('<')
                    .and_then(|i| full[i + 1..].find('>').map(|j| &full[i + 1..i + 1 + j]));
                inner.map_or_else(|| format!("sip:{}", n.uri.host), str::to_string)
            });
        let (a_addr, a_branch) = match self.calls.get_mut(&id) {
            Some(c) => {
                if to_tag.is_some() {
                    c.b_to_tag = to_tag.clone();
                }
                if contact_b.is_some() {
                    c.b_target = contact_b;
                }
                (c.a_addr, c.a_invite_branch.clone())
            }
            None => return,
        };
        if matches!(code, 180 | 183 | 200..=299) {
            if let Some(from) = self.calls.get_mut(&id).and_then(|c| c.setup_from.take()) {
                crate::metrics::get()
                    .sip_setup
                    .observe(now.saturating_sub(from) as f64 / 1000.0);
            }
        }
        let Some(c) = self.calls.get(&id) else { return };
        let proxy_a = number_of(&format!(
            "sip:{}",
            c.a_to
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim_start_matches("sip:")
        ))
        .map(|n| n.to_string())
        .unwrap_or_else(|| "maskd".into());
        let our_contact = Some(self.contact(&proxy_a));
        let body_ref = body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_slice()));
        match code {
            100 => {}
            101..=199 => {
                let reason = if code == 180 {
                    "Ringing"
                } else {
                    "Session Progress"
                };
                let bytes = Self::to_a(c, code, reason, body_ref, our_contact);
                if let Some(e) = self.server.get_mut(&(a_branch, false)) {
                    let mut acts = Vec::new();
                    e.tx.respond(code, bytes, now, &mut acts);
                    send_all(a_addr, acts, out);
                }
                if let Some(c) = self.calls.get_mut(&id) {
                    c.state = CallState::Early;
                }
                self.set_leg(id, ResourceStatus::Ringing, None, now, core);
            }
            200..=299 => {
                let bytes = Self::to_a(c, 200, "OK", body_ref, our_contact);
                if let Some(mut e) = self.server.remove(&(a_branch, false)) {
                    let mut acts = Vec::new();
                    e.tx.respond(200, bytes.clone(), now, &mut acts);
                    send_all(a_addr, acts, out);
                }
                // ACK leg B's 2xx (end to end, new branch), to its Contact.
                let Some(c) = self.calls.get(&id) else { return };
                let target = c.b_target.clone().unwrap_or_else(|| c.b_ruri.clone());
                let ack = Outgoing::request("ACK", &target)
                    .header("Via", self.via_to(self.cfg.trunk, &token()))
                    .header("Max-Forwards", "70")
                    .header("From", c.b_from.clone())
                    .header(
                        "To",
                        format!("{};tag={}", c.b_to, c.b_to_tag.clone().unwrap_or_default()),
                    )
                    .header("Call-ID", c.b_call_id.clone())
                    .header("CSeq", "1 ACK")
                    .encode();
                out.push(Datagram {
                    to: self.cfg.trunk,
                    data: ack.clone(),
                });
                let t1 = self.cfg.timers.t1;
                if let Some(c) = self.calls.get_mut(&id) {
                    c.ack_to_b = Some(ack);
                    c.state = CallState::Answered;
                    c.answered_at = Some(now);
                    c.ok_to_a = Some((bytes, now + t1, t1, now + 64 * t1));
                }
                self.set_leg(
                    id,
                    ResourceStatus::InProgress,
                    Some(ResourceStatus::InProgress),
                    now,
                    core,
                );
            }
            _ => {
                // ACK the failure on leg B (same branch), pass the final answer to A.
                let Some(c) = self.calls.get(&id) else { return };
                let ack = Outgoing::request("ACK", &c.b_ruri)
                    .header("Via", self.via_to(self.cfg.trunk, branch))
                    .header("Max-Forwards", "70")
                    .header("From", c.b_from.clone())
                    .header(
                        "To",
                        format!("{};tag={}", c.b_to, to_tag.unwrap_or_default()),
                    )
                    .header("Call-ID", c.b_call_id.clone())
                    .header("CSeq", "1 ACK")
                    .encode();
                if let Some(e) = self.client.get_mut(branch) {
                    let mut acts = Vec::new();
                    e.tx.ack(ack, &mut acts);
                    send_all(self.cfg.trunk, acts, out);
                }
                let reason = match code {
                    486 => "Busy Here",
                    487 => "Request Terminated",
                    480 => "Temporarily Unavailable",
                    404 => "Not Found",
                    408 => "Request Timeout",
                    603 => "Decline",
                    _ => "Call Failed",
                };
                let bytes = Self::to_a(c, code, reason, None, None);
                if let Some(e) = self.server.get_mut(&(a_branch, false)) {
                    let mut acts = Vec::new();
                    e.tx.respond(code, bytes, now, &mut acts);
                    send_all(a_addr, acts, out);
                }
                let status = match code {
                    486 | 600 => ResourceStatus::Busy,
                    480 | 408 => ResourceStatus::NoAnswer,
                    487 => ResourceStatus::Canceled,
                    _ => ResourceStatus::Failed,
                };
                self.set_leg(id, status, Some(ResourceStatus::Completed), now, core);
                self.end_call(id);
            }
        }
    }

    fn on_cancel(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        branch: String,
        now: u64,
        out: &mut Vec<Datagram>,
    ) {
        let call = self
            .server
            .get(&(branch.clone(), false))
            .and_then(|e| e.call);
        if let Some(key) = self
            .held
            .iter()
            .find(|(_, h)| h.branch == branch)
            .map(|(k, _)| *k)
        {
            // Cancelled while it waited for a callback: 200 for the CANCEL, 487 for the
            // INVITE, and the callback's answer will find nothing to resume.
            if let Some(h) = self.held.remove(&key) {
                let r = self.reply(m, 200, "OK", None).encode();
                self.server_answer(src, m, branch.clone(), false, 200, r, now, out);
                self.answer_held(&h, 487, "Request Terminated", now, out);
                return;
            }
        }
        let Some(id) = call.filter(|id| {
            self.calls
                .get(id)
                .is_some_and(|c| matches!(c.state, CallState::Setup | CallState::Early))
        }) else {
            let r = self
                .reply(m, 481, "Call/Transaction Does Not Exist", Some(&token()))
                .encode();
            return self.server_answer(src, m, branch, false, 481, r, now, out);
        };
        let r = self
            .reply(m, 200, "OK", Some(&self.calls[&id].a_tag.clone()))
            .encode();
        self.server_answer(src, m, branch.clone(), false, 200, r, now, out);
        // 487 to A's INVITE happens when B answers our CANCEL with 487; CANCEL leg B now.
        self.cancel_leg_b(id, now, out);
    }

    /// Sends CANCEL for leg B's INVITE (the call is not answered yet).
    fn cancel_leg_b(&mut self, id: u64, now: u64, out: &mut Vec<Datagram>) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let cancel = Outgoing::request("CANCEL", &c.b_ruri)
            .header("Via", self.via_to(self.cfg.trunk, &c.b_invite_branch))
            .header("Max-Forwards", "70")
            .header("From", c.b_from.clone())
            .header("To", c.b_to.clone())
            .header("Call-ID", c.b_call_id.clone())
            .header("CSeq", "1 CANCEL")
            .encode();
        let mut acts = Vec::new();
        let tx = ClientTx::start(
            false,
            cancel,
            self.is_stream(self.cfg.trunk),
            self.cfg.timers,
            now,
            &mut acts,
        );
        // The CANCEL shares the INVITE's branch; key it apart.
        let key = format!("{}-cancel", c.b_invite_branch);
        self.client.insert(
            key,
            ClientEntry {
                call: id,
                purpose: Purpose::Cancel,
                to: self.cfg.trunk,
                tx,
            },
        );
        send_all(self.cfg.trunk, acts, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_bye(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        branch: String,
        call_id: String,
        now: u64,
        core: &dyn Core,
        out: &mut Vec<Datagram>,
    ) {
        let (id, from_a) = match (self.by_a.get(&call_id), self.by_b.get(&call_id)) {
            (Some(id), _) => (*id, true),
            (None, Some(id)) => (*id, false),
            _ => {
                let r = self
                    .reply(m, 481, "Call/Transaction Does Not Exist", Some(&token()))
                    .encode();
                return self.server_answer(src, m, branch, false, 481, r, now, out);
            }
        };
        let r = self.reply(m, 200, "OK", None).encode();
        self.server_answer(src, m, branch, false, 200, r, now, out);
        self.hang_up_other(id, from_a, now, out);
        let duration = self
            .calls
            .get(&id)
            .and_then(|c| c.answered_at)
            .map_or(0, |t| now.saturating_sub(t) / 1000);
        if let Some(c) = self.calls.get_mut(&id) {
            c.interaction.data =
                serde_json::json!({ "duration": duration.to_string() }).to_string();
        }
        self.set_leg(
            id,
            ResourceStatus::Completed,
            Some(ResourceStatus::Completed),
            now,
            core,
        );
        self.end_call(id);
    }

    /// Sends BYE on the leg that did not hang up.
    fn hang_up_other(&mut self, id: u64, from_a: bool, now: u64, out: &mut Vec<Datagram>) {
        let branch = token();
        let dest = if from_a {
            Some(self.cfg.trunk)
        } else {
            self.calls.get(&id).map(|c| c.a_addr)
        };
        let Some(dest) = dest else { return };
        let via = self.via_to(dest, &branch);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let (bye, to, purpose) = if from_a {
            c.b_cseq += 1;
            let target = c.b_target.clone().unwrap_or_else(|| c.b_ruri.clone());
            let bye = Outgoing::request("BYE", &target)
                .header("Via", via)
                .header("Max-Forwards", "70")
                .header("From", c.b_from.clone())
                .header(
                    "To",
                    format!("{};tag={}", c.b_to, c.b_to_tag.clone().unwrap_or_default()),
                )
                .header("Call-ID", c.b_call_id.clone())
                .header("CSeq", format!("{} BYE", c.b_cseq))
                .encode();
            (bye, self.cfg.trunk, Purpose::ByeToB)
        } else {
            c.a_out_cseq += 1;
            let target = NameAddr::parse(&c.a_from).map_or_else(
                || "sip:caller".to_string(),
                |n| format!("sip:{}@{}", n.uri.user.unwrap_or(""), n.uri.host),
            );
            let bye = Outgoing::request("BYE", &target)
                .header("Via", via)
                .header("Max-Forwards", "70")
                .header("From", format!("{};tag={}", c.a_to, c.a_tag))
                .header("To", c.a_from.clone())
                .header("Call-ID", c.a_call_id.clone())
                .header("CSeq", format!("{} BYE", c.a_out_cseq))
                .encode();
            (bye, c.a_addr, Purpose::ByeToA)
        };
        let mut acts = Vec::new();
        let reliable = self.is_stream(to);
        let tx = ClientTx::start(false, bye, reliable, self.cfg.timers, now, &mut acts);
        self.client.insert(
            branch,
            ClientEntry {
                call: id,
                purpose,
                to,
                tx,
            },
        );
        send_all(to, acts, out);
    }

    /// Relays an in-dialog request to the other leg, rebuilt in that leg's dialog; only the
    /// whitelisted headers and the body cross.
    #[allow(clippy::too_many_arguments)]
    fn relay_in_dialog(
        &mut self,
        src: SocketAddr,
        m: &Message<'_>,
        method: &str,
        branch: String,
        call_id: String,
        now: u64,
        out: &mut Vec<Datagram>,
    ) {
        let (id, from_a) = match (self.by_a.get(&call_id), self.by_b.get(&call_id)) {
            (Some(id), _) => (*id, true),
            (None, Some(id)) => (*id, false),
            _ => {
                let r = self
                    .reply(m, 481, "Call/Transaction Does Not Exist", None)
                    .encode();
                return self.server_answer(src, m, branch, method == "INVITE", 481, r, now, out);
            }
        };
        let invite = method == "INVITE";
        let dest = if from_a {
            self.cfg.trunk
        } else {
            self.calls.get(&id).map_or(src, |c| c.a_addr)
        };
        let via = self.via_to(dest, &{ token() });
        let new_branch = via
            .split("branch=z9hG4bK")
            .nth(1)
            .and_then(|b| b.split(';').next())
            .unwrap_or("")
            .to_string();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let (target, to_addr, from, to, cid, cseq, our_user) = if from_a {
            c.b_cseq += 1;
            let target = c.b_target.clone().unwrap_or_else(|| c.b_ruri.clone());
            let to = format!("{};tag={}", c.b_to, c.b_to_tag.clone().unwrap_or_default());
            let user = NameAddr::parse(&c.b_from)
                .and_then(|n| n.uri.user.map(str::to_string))
                .unwrap_or_default();
            (
                target,
                self.cfg.trunk,
                c.b_from.clone(),
                to,
                c.b_call_id.clone(),
                c.b_cseq,
                user,
            )
        } else {
            c.a_out_cseq += 1;
            let target = NameAddr::parse(&c.a_from).map_or_else(
                || format!("sip:{}", c.a_addr),
                |n| format!("sip:{}@{}", n.uri.user.unwrap_or(""), c.a_addr),
            );
            let user = c
                .a_to
                .trim_start_matches('<')
                .trim_start_matches("sip:")
                .split('@')
                .next()
                .unwrap_or("")
                .to_string();
            (
                target,
                c.a_addr,
                format!("{};tag={}", c.a_to, c.a_tag),
                c.a_from.clone(),
                c.a_call_id.clone(),
                c.a_out_cseq,
                user,
            )
        };
        let contact = format!(
            "<sip:{our_user}@{}:{}>",
            self.cfg.advertised_host, self.cfg.local_port
        );
        // Our Contact towards the requester is the proxy number it knows.
        let requester_contact = if from_a {
            let user = self.calls[&id]
                .a_to
                .trim_start_matches('<')
                .trim_start_matches("sip:")
                .split('@')
                .next()
                .unwrap_or("")
                .to_string();
            format!(
                "<sip:{user}@{}:{}>",
                self.cfg.advertised_host, self.cfg.local_port
            )
        } else {
            let user = NameAddr::parse(&self.calls[&id].b_from)
                .and_then(|n| n.uri.user.map(str::to_string))
                .unwrap_or_default();
            format!(
                "<sip:{user}@{}:{}>",
                self.cfg.advertised_host, self.cfg.local_port
            )
        };
        let mut req = Outgoing::request(method, &target)
            .header("Via", via)
            .header("Max-Forwards", "70")
            .header("From", from)
            .header("To", to)
            .header("Call-ID", cid)
            .header("CSeq", format!("{cseq} {method}"));
        if invite || method == "UPDATE" {
            req = req.header("Contact", contact);
        }
        for h in &m.headers {
            if let Some(name) = PASS.iter().find(|p| p.eq_ignore_ascii_case(h.raw_name)) {
                req = req.header(name, h.value.to_string());
            }
        }
        req.body = m.body.to_vec();
        let relayed = Relayed {
            server_key: (branch.clone(), false),
            reply_to: src,
            vias: m
                .headers
                .iter()
                .filter(|h| h.name == HeaderName::Via)
                .map(|h| h.value.to_string())
                .collect(),
            from: m.header(HeaderName::From).unwrap_or("").to_string(),
            to: m.header(HeaderName::To).unwrap_or("").to_string(),
            call_id,
            cseq: m.header(HeaderName::CSeq).unwrap_or("").to_string(),
            contact: requester_contact,
            invite,
        };
        self.server.insert(
            (branch, false),
            ServerEntry {
                call: Some(id),
                to: src,
                tx: ServerTx::new(invite, self.is_stream(src), self.cfg.timers),
            },
        );
        let mut acts = Vec::new();
        let tx = ClientTx::start(
            invite,
            req.encode(),
            self.is_stream(to_addr),
            self.cfg.timers,
            now,
            &mut acts,
        );
        self.client.insert(
            new_branch,
            ClientEntry {
                call: id,
                purpose: Purpose::Relay(Box::new(relayed)),
                to: to_addr,
                tx,
            },
        );
        send_all(to_addr, acts, out);
    }

    /// The other leg answered a relayed request: pass the final answer back (body included),
    /// and ACK a re-INVITE's answer on that leg ourselves.
    #[allow(clippy::too_many_arguments)]
    fn relay_answer(
        &mut self,
        branch: &str,
        r: &Relayed,
        m: &Message<'_>,
        code: u16,
        to: SocketAddr,
        now: u64,
        out: &mut Vec<Datagram>,
    ) {
        if code < 200 {
            return;
        }
        if r.invite {
            // ACK the other leg's final answer to our re-INVITE (2xx: new branch; else the
            // transaction's ACK on the same branch).
            let ack_branch = if (200..300).contains(&code) {
                token()
            } else {
                branch.to_string()
            };
            let target = m.header(HeaderName::Contact).and_then(|c| {
                let i = c.find('<')?;
                let j = c[i + 1..].find('>')?;
                Some(c[i + 1..i + 1 + j].to_string())
            });
            let cseq_n = m.cseq().map_or(1, |c| c.0);
            let ack = Outgoing::request("ACK", target.as_deref().unwrap_or("sip:peer"))
                .header("Via", self.via_to(to, &ack_branch))
                .header("Max-Forwards", "70")
                .header("From", m.header(HeaderName::From).unwrap_or("").to_string())
                .header("To", m.header(HeaderName::To).unwrap_or("").to_string())
                .header(
                    "Call-ID",
                    m.header(HeaderName::CallId).unwrap_or("").to_string(),
                )
                .header("CSeq", format!("{cseq_n} ACK"))
                .encode();
            if (200..300).contains(&code) {
                out.push(Datagram { to, data: ack });
            } else if let Some(e) = self.client.get_mut(branch) {
                let mut acts = Vec::new();
                e.tx.ack(ack, &mut acts);
                send_all(to, acts, out);
            }
        }
        self.relay_final(r, m, code, now, out);
    }

    fn relay_final(
        &mut self,
        r: &Relayed,
        m: &Message<'_>,
        code: u16,
        now: u64,
        out: &mut Vec<Datagram>,
    ) {
        let reason = match code {
            200..=299 => "OK",
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
        if let Some(ct) = m
            .header(HeaderName::ContentType)
            .filter(|_| !m.body.is_empty())
        {
            resp = resp.body(Some(ct), m.body);
        }
        let bytes = resp.encode();
        if let Some(e) = self.server.get_mut(&r.server_key) {
            let mut acts = Vec::new();
            e.tx.respond(code, bytes, now, &mut acts);
            let done = acts.contains(&Action::Terminated);
            send_all(r.reply_to, acts, out);
            if done {
                self.server.remove(&r.server_key);
            }
        }
    }

    /// Ends every answered call whose session has closed (its route key no longer
    /// resolves to it): BYE on both legs. One lookup per answered call per tick.
    fn end_closed_sessions(&mut self, now: u64, core: &dyn Core, out: &mut Vec<Datagram>) {
        if self.cfg.keep_calls_on_close {
            return;
        }
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.state == CallState::Answered
                    && core
                        .target(c.key.0, c.key.1)
                        .is_none_or(|t| t.session != c.session)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.end_answered(id, now, core, out);
        }
    }

    /// Ends an answered call from maskd's side: BYE on both legs, both legs completed.
    fn end_answered(&mut self, id: u64, now: u64, core: &dyn Core, out: &mut Vec<Datagram>) {
        self.hang_up_other(id, true, now, out);
        self.hang_up_other(id, false, now, out);
        self.set_leg(
            id,
            ResourceStatus::Completed,
            Some(ResourceStatus::Completed),
            now,
            core,
        );
        self.end_call(id);
    }

    /// Answers an INVITE that was held for a callback with a final `code` (503 carries
    /// Retry-After).
    fn answer_held(
        &mut self,
        h: &Held,
        code: u16,
        reason: &str,
        now: u64,
        out: &mut Vec<Datagram>,
    ) {
        let Ok(Some((inv, _))) = parse(&h.bytes, Transport::Datagram) else {
            return;
        };
        let r = self.reply(&inv, code, reason, Some(&token()));
        let bytes = if code == 503 {
            r.header("Retry-After", "5")
        } else {
            r
        }
        .encode();
        if let Some(e) = self.server.get_mut(&(h.branch.clone(), false)) {
            let mut acts = Vec::new();
            e.tx.respond(code, bytes, now, &mut acts);
            send_all(h.src, acts, out);
        }
    }

    fn end_call(&mut self, id: u64) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.state = CallState::Ended;
        }
        // Keep the call until its transactions are gone (the 2xx retransmission and ACKs);
        // `on_timer` drops ended calls with nothing left to do.
    }

    /// Drives every timer due at `now`.
    pub fn on_timer(&mut self, now: u64, core: &dyn Core, out: &mut Vec<Datagram>) {
        self.fire_timers(now, core, out);
        self.client.settle();
        self.server.settle();
    }

    fn fire_timers(&mut self, now: u64, core: &dyn Core, out: &mut Vec<Datagram>) {
        let mut timed_out = Vec::new();
        let mut done = Vec::new();
        for k in self.client.due(now) {
            let Some(e) = self.client.get_mut(&k) else {
                continue;
            };
            if e.tx.poll_timeout().is_some_and(|t| t <= now) {
                let mut acts = Vec::new();
                e.tx.on_timer(now, &mut acts);
                for a in acts {
                    match a {
                        Action::Transmit(d) => {
                            self.counters.retransmissions += 1;
                            out.push(Datagram { to: e.to, data: d });
                        }
                        Action::Timeout => timed_out.push((e.call, e.purpose.clone())),
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
                            out.push(Datagram { to: e.to, data: d });
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
        for (id, purpose) in timed_out {
            if purpose == Purpose::Invite {
                // Leg B never answered: 408 to A.
                if let Some(c) = self.calls.get(&id) {
                    let bytes = Self::to_a(c, 408, "Request Timeout", None, None);
                    let (a_addr, a_branch) = (c.a_addr, c.a_invite_branch.clone());
                    if let Some(e) = self.server.get_mut(&(a_branch, false)) {
                        let mut acts = Vec::new();
                        e.tx.respond(408, bytes, now, &mut acts);
                        send_all(a_addr, acts, out);
                    }
                }
                self.set_leg(
                    id,
                    ResourceStatus::NoAnswer,
                    Some(ResourceStatus::Completed),
                    now,
                    core,
                );
                self.end_call(id);
            }
        }
        self.end_closed_sessions(now, core, out);
        let t2 = self.cfg.timers.t2;
        for c in self.calls.values_mut() {
            if let Some((bytes, at, interval, give_up)) = c.ok_to_a.as_mut() {
                if *at <= now {
                    if now >= *give_up {
                        c.ok_to_a = None;
                        continue;
                    }
                    self.counters.retransmissions += 1;
                    out.push(Datagram {
                        to: c.a_addr,
                        data: bytes.clone(),
                    });
                    *interval = (*interval * 2).min(t2);
                    *at = now + *interval;
                }
            }
        }
        // Forget ended calls once nothing refers to them. This looks at every transaction,
        // so it runs once a second, not every tick.
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_MS;
        let live: std::collections::HashSet<u64, foldhash::fast::RandomState> = self
            .client
            .values()
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
                self.by_a.remove(&c.a_call_id);
                self.by_b.remove(&c.b_call_id);
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
