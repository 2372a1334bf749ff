//! One SMPP session (one TCP connection, either side), sans-IO: bind state, sequence
//! numbers, the window of maskd's own requests and their timeouts, the window of the peer's
//! messages being accepted, enquire_link, inactivity, and the unbind handshake. PDUs and the
//! time come in (`handle_*`, all taking `now`); PDUs to write, events for the driver and the
//! next deadline come out (`poll_transmit`, `poll_event`, `poll_timeout`). No sockets, no
//! clock, nothing about accounts or routes: the driver (`net/smpp/link.rs`) decides binds and
//! messages and answers through this session.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::codec::{error_response, DecodeError};
use super::pdu::{cmd, status, tag, Bind, BindKind, Body, Pdu, Tlv};

/// ESME_RQUERYFAIL: maskd keeps no per-message state for query_sm (receipts carry it).
const ESME_RQUERYFAIL: u32 = 0x0000_0067;
/// The highest sequence number (SMPP 3.4 §5.1.4); numbering starts over at 1 after it.
const MAX_SEQ: u32 = 0x7FFF_FFFF;

/// What a session is allowed and how long it waits.
#[derive(Debug, Clone)]
pub struct Config {
    /// maskd's system_id in bind responses.
    pub system_id: String,
    /// maskd's own requests unanswered at most.
    pub window: usize,
    /// The peer's messages being accepted (unanswered) at most; beyond, ESME_RMSGQFUL.
    pub inbound_window: usize,
    /// An enquire_link after this long without a PDU from the peer.
    pub enquire_link: Duration,
    /// The link closes after this long without a PDU from the peer.
    pub inactivity: Duration,
    /// How long an answer may take; also how long a connection may stay unbound, and how
    /// long the unbind handshake may take.
    pub response_timeout: Duration,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Connected, not bound (a client has sent its bind).
    Open,
    Bound(BindKind),
    /// maskd sent unbind at `since`; the peer's messages before it are still answered.
    Closing {
        since: Instant,
        kind: BindKind,
    },
    Closed,
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No PDU from the peer for the inactivity timeout.
    Inactive,
    /// Not bound within the response timeout.
    NeverBound,
    /// A bind refused (by maskd, or by the upstream).
    BindRefused,
    /// The peer unbound.
    PeerUnbound,
    /// maskd's unbind handshake is done (or ran out of time).
    Unbound,
    /// The byte stream cannot be framed any more.
    Malformed,
}

/// What the driver must act on.
#[derive(Debug)]
pub enum Event<T> {
    /// A peer asks to bind (server side): answer with `accept_bind` or `refuse_bind`.
    BindRequested {
        seq: u32,
        bind: Bind,
    },
    /// The upstream accepted maskd's bind (client side).
    Bound {
        kind: BindKind,
    },
    /// The upstream refused maskd's bind; the session is closed.
    BindRefused {
        status: u32,
    },
    /// A message (submit_sm, deliver_sm, data_sm) on a bind that may send it: the driver
    /// refuses it (`refuse`) or starts accepting it (`begin_message`) and then `answer`s.
    Message(Pdu),
    /// The answer to a request of maskd's (its `_resp`, or a generic_nack).
    Answered {
        token: T,
        pdu: Pdu,
    },
    /// A request of maskd's got no answer within the response timeout.
    TimedOut {
        token: T,
    },
    Closed(CloseReason),
}

struct Pending<T> {
    /// `None` for the session's own unbind.
    token: Option<T>,
    sent: Instant,
    command: u32,
}

/// An SMPP session. `T` is what the driver gets back with the answer to its request.
pub struct Session<T> {
    cfg: Config,
    client: bool,
    state: State,
    seq: u32,
    pending: HashMap<u32, Pending<T>>,
    /// No later than the oldest pending request's sending time (exact after each
    /// `handle_timeout`; an answer may leave it early, which only makes a deadline early).
    oldest_pending: Option<Instant>,
    /// The peer's messages begun and not yet answered.
    inbound: usize,
    connected: Instant,
    last_rx: Instant,
    last_enquire: Instant,
    transmit: VecDeque<Pdu>,
    events: VecDeque<Event<T>>,
}

impl<T> Session<T> {
    /// A connection a peer opened to maskd's listener.
    pub fn server(cfg: Config, now: Instant) -> Session<T> {
        Session {
            cfg,
            client: false,
            state: State::Open,
            seq: 0,
            pending: HashMap::new(),
            oldest_pending: None,
            inbound: 0,
            connected: now,
            last_rx: now,
            last_enquire: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// maskd's connection to an upstream: `bind` goes out first.
    pub fn client(cfg: Config, bind: Bind, now: Instant) -> Session<T> {
        let mut s = Session::server(cfg, now);
        s.client = true;
        let seq = s.next_seq();
        s.send(seq, status::ESME_ROK, Body::Bind(bind));
        s
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = if self.seq >= MAX_SEQ { 1 } else { self.seq + 1 };
        self.seq
    }

    fn send(&mut self, seq: u32, st: u32, body: Body) {
        self.transmit.push_back(Pdu {
            seq,
            status: st,
            body,
        });
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.events.push_back(Event::Closed(reason));
        }
    }

    /// The bind, while bound (closing included).
    pub fn bound(&self) -> Option<BindKind> {
        match self.state {
            State::Bound(k) | State::Closing { kind: k, .. } => Some(k),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// May the driver send a request now (bound, not closing, window not full)?
    pub fn can_request(&self) -> bool {
        matches!(self.state, State::Bound(_)) && self.pending.len() < self.cfg.window
    }

    /// Bytes arrived from the peer: it is alive.
    pub fn heard(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// One PDU from the peer.
    pub fn handle_pdu(&mut self, pdu: Pdu, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.last_rx = now;
        if pdu.body.command_id() & cmd::RESP != 0 {
            self.handle_response(pdu);
        } else {
            self.handle_request(pdu);
        }
        self.check_closing(now);
    }

    fn handle_response(&mut self, pdu: Pdu) {
        if let (true, State::Open, Body::BindResp { kind, .. }) =
            (self.client, self.state, &pdu.body)
        {
            if pdu.status == status::ESME_ROK {
                self.state = State::Bound(*kind);
                self.events.push_back(Event::Bound { kind: *kind });
            } else {
                self.events
                    .push_back(Event::BindRefused { status: pdu.status });
                self.close(CloseReason::BindRefused);
            }
            return;
        }
        let answers = self.pending.get(&pdu.seq).is_some_and(|p| {
            pdu.body.command_id() == (p.command | cmd::RESP) || pdu.body == Body::GenericNack
        });
        if answers {
            if let Some(Pending {
                token: Some(token), ..
            }) = self.pending.remove(&pdu.seq)
            {
                self.events.push_back(Event::Answered { token, pdu });
            }
        }
    }

    fn handle_request(&mut self, pdu: Pdu) {
        let seq = pdu.seq;
        match pdu.body {
            Body::Bind(bind) => {
                if self.client || self.state != State::Open {
                    let resp = self.bind_resp(bind.kind, Vec::new());
                    self.send(seq, status::ESME_RALYBND, resp);
                } else {
                    self.events.push_back(Event::BindRequested { seq, bind });
                }
            }
            Body::EnquireLink => self.send(seq, status::ESME_ROK, Body::EnquireLinkResp),
            Body::Unbind => {
                self.send(seq, status::ESME_ROK, Body::UnbindResp);
                self.close(CloseReason::PeerUnbound);
            }
            Body::QuerySm { message_id, .. } => {
                if self.bound().is_none() {
                    self.send(seq, status::ESME_RINVBNDSTS, Body::GenericNack);
                } else {
                    let resp = Body::QuerySmResp {
                        message_id,
                        final_date: String::new(),
                        message_state: 0,
                        error_code: 0,
                    };
                    self.send(seq, ESME_RQUERYFAIL, resp);
                }
            }
            Body::SubmitSm(_) | Body::DeliverSm(_) | Body::DataSm(_) => {
                let may_send = match self.bound() {
                    None => false,
                    // maskd's own binds take whatever the upstream sends (receipts, MO).
                    Some(_) if self.client => true,
                    Some(kind) => kind.can_send(),
                };
                if may_send {
                    self.events.push_back(Event::Message(pdu));
                } else {
                    self.refuse(&pdu, status::ESME_RINVBNDSTS);
                }
            }
            _ => self.send(seq, status::ESME_RINVCMDID, Body::GenericNack),
        }
    }

    fn bind_resp(&self, kind: BindKind, tlvs: Vec<Tlv>) -> Body {
        Body::BindResp {
            kind,
            system_id: self.cfg.system_id.clone(),
            tlvs,
        }
    }

    /// The driver accepts the bind asked for in `BindRequested`.
    pub fn accept_bind(&mut self, seq: u32, kind: BindKind) {
        let tlvs = vec![Tlv {
            tag: tag::SC_INTERFACE_VERSION,
            value: vec![0x34],
        }];
        let resp = self.bind_resp(kind, tlvs);
        self.send(seq, status::ESME_ROK, resp);
        self.state = State::Bound(kind);
    }

    /// The driver refuses the bind: one try per connection (no password guessing on a held
    /// link), so the session closes after the answer.
    pub fn refuse_bind(&mut self, seq: u32, kind: BindKind, st: u32) {
        let resp = self.bind_resp(kind, Vec::new());
        self.send(seq, st, resp);
        self.close(CloseReason::BindRefused);
    }

    /// Answers a message with `st` and no message_id, without accepting it.
    pub fn refuse(&mut self, message: &Pdu, st: u32) {
        if let Some(body) = message_resp(message.body.command_id(), String::new()) {
            self.send(message.seq, st, body);
        }
    }

    /// Starts accepting a message: `false` (and ESME_RMSGQFUL sent) when the peer already
    /// has its window of messages being accepted. Each `true` needs one `answer`.
    pub fn begin_message(&mut self, message: &Pdu) -> bool {
        if self.inbound >= self.cfg.inbound_window {
            self.refuse(message, status::ESME_RMSGQFUL);
            return false;
        }
        self.inbound += 1;
        true
    }

    /// The answer to a message begun with `begin_message` (`command` is the message's
    /// command id): frees its window slot before the peer can see the answer. Answered even
    /// after the session closed: the message was taken (or not) all the same, and the peer
    /// should know before it sends it again.
    pub fn answer(&mut self, seq: u32, command: u32, st: u32, message_id: String, now: Instant) {
        self.inbound = self.inbound.saturating_sub(1);
        if let Some(body) = message_resp(command, message_id) {
            self.send(seq, st, body);
        }
        self.check_closing(now);
    }

    /// Sends a request of maskd's (`can_request` must hold); its answer comes back as
    /// `Answered` with `token`, or `TimedOut`.
    pub fn request(&mut self, body: Body, token: T, now: Instant) -> u32 {
        let seq = self.next_seq();
        let command = body.command_id();
        self.pending.insert(
            seq,
            Pending {
                token: Some(token),
                sent: now,
                command,
            },
        );
        self.oldest_pending.get_or_insert(now);
        self.send(seq, status::ESME_ROK, body);
        seq
    }

    /// Bytes from the peer that are no PDU: the answer the codec prescribes; the session
    /// closes when framing is lost.
    pub fn handle_malformed(&mut self, e: &DecodeError, now: Instant) {
        self.last_rx = now;
        self.transmit.push_back(error_response(e));
        if e.skip.is_none() {
            self.close(CloseReason::Malformed);
        }
    }

    /// maskd is stopping: unbind, and close once the peer has answered it and maskd's other
    /// requests (or they time out) and every message the peer sent before it is answered.
    /// The peer's unbind_resp comes after every PDU it sent before it saw the unbind (TCP
    /// keeps the order), so waiting for it means each of those is read. An unbound
    /// connection just closes.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state {
            State::Bound(kind) => {
                let seq = self.next_seq();
                self.pending.insert(
                    seq,
                    Pending {
                        token: None,
                        sent: now,
                        command: cmd::UNBIND,
                    },
                );
                self.oldest_pending.get_or_insert(now);
                self.send(seq, status::ESME_ROK, Body::Unbind);
                self.state = State::Closing { since: now, kind };
            }
            State::Open => self.close(CloseReason::Unbound),
            State::Closing { .. } | State::Closed => {}
        }
    }

    /// Closed from outside (the connection ended): the tokens still waiting for answers.
    pub fn abandon(&mut self) -> Vec<T> {
        self.state = State::Closed;
        self.pending.drain().filter_map(|(_, p)| p.token).collect()
    }

    fn check_closing(&mut self, now: Instant) {
        if let State::Closing { since, .. } = self.state {
            let settled = self.pending.is_empty() && self.inbound == 0;
            if settled || now.saturating_duration_since(since) >= self.cfg.response_timeout {
                self.close(CloseReason::Unbound);
            }
        }
    }

    /// Time passed: closes an inactive or never-bound link, probes an idle one with
    /// enquire_link, and times out requests.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        let since = |t: Instant| now.saturating_duration_since(t);
        if since(self.last_rx) >= self.cfg.inactivity {
            self.close(CloseReason::Inactive);
            return;
        }
        if self.bound().is_none() && since(self.connected) >= self.cfg.response_timeout {
            self.close(CloseReason::NeverBound);
            return;
        }
        if self.bound().is_some()
            && since(self.last_rx) >= self.cfg.enquire_link
            && since(self.last_enquire) >= self.cfg.enquire_link
        {
            self.last_enquire = now;
            let seq = self.next_seq();
            self.send(seq, status::ESME_ROK, Body::EnquireLink);
        }
        let timeout = self.cfg.response_timeout;
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| since(p.sent) >= timeout)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            if let Some(Pending {
                token: Some(token), ..
            }) = self.pending.remove(&seq)
            {
                self.events.push_back(Event::TimedOut { token });
            }
        }
        self.oldest_pending = self.pending.values().map(|p| p.sent).min();
        self.check_closing(now);
    }

    /// When `handle_timeout` has something to do next (or earlier: then it finds nothing due
    /// and the next call tells the real deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut next = self.last_rx + self.cfg.inactivity;
        let mut at = |t: Instant| next = next.min(t);
        match self.state {
            State::Open => at(self.connected + self.cfg.response_timeout),
            State::Closing { since, .. } => at(since + self.cfg.response_timeout),
            _ => {}
        }
        if self.bound().is_some() {
            at(self.last_rx.max(self.last_enquire) + self.cfg.enquire_link);
        }
        if let Some(oldest) = self.oldest_pending {
            at(oldest + self.cfg.response_timeout);
        }
        Some(next)
    }

    /// The next PDU to write.
    pub fn poll_transmit(&mut self) -> Option<Pdu> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }
}

/// The answer body for a message command, with `message_id`.
fn message_resp(command: u32, message_id: String) -> Option<Body> {
    match command {
        cmd::SUBMIT_SM => Some(Body::SubmitSmResp { message_id }),
        cmd::DELIVER_SM => Some(Body::DeliverSmResp { message_id }),
        cmd::DATA_SM => Some(Body::DataSmResp {
            message_id,
            tlvs: Vec::new(),
        }),
        _ => None,
    }
}

/// Protocol tests in simulated time: a scripted peer on one side, the clock a variable.
#[cfg(test)]
mod tests;
