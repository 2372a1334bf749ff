//! A call's state: its two dialogs, leg A's INVITE (answered through its server
//! transaction), leg B's INVITE, the interaction being logged, and the call's own timers
//! (ringing, a CANCEL's wait, the 2xx retransmission). And the transaction entries that
//! point back at calls.

use super::dialog::Dialog;
use super::Remote;
use crate::core::model::Interaction;
use crate::core::{Sid, E164};
use crate::sip::timed::Deadline;
use crate::sip::transaction::{ClientTx, ServerTx};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CallState {
    /// Leg B's INVITE sent, nothing but 100 back.
    Setup,
    /// Leg B rings (or plays early media).
    Early,
    Answered,
    /// Leg A has its final answer; leg B's INVITE was cancelled and its final answer is
    /// awaited (until `give_up_at`), to be ACKed (or, if it was a 2xx, hung up).
    Ending,
    Ended,
}

/// What an INVITE has already been through when it is (re)considered.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Decided {
    pub out_of_session_asked: bool,
    pub intercepted: bool,
    pub interaction: Option<Sid>,
}

/// An INVITE waiting for a callback's answer.
pub(super) struct Held {
    pub src: Remote,
    pub bytes: Vec<u8>,
    pub branch: String,
    pub decided: Decided,
}

/// Leg A's INVITE, as its answers need it.
#[derive(Debug)]
pub(super) struct InviteIn {
    pub branch: String,
    /// Its Via headers, the top one stamped with received/rport.
    pub vias: Vec<String>,
    /// Its From, verbatim (with the caller's tag).
    pub from: String,
    /// Its Record-Route headers, copied into answers that create the dialog (§12.1.1).
    pub record_route: Vec<String>,
    pub cseq: u32,
}

/// A 2xx to leg A, retransmitted until A's ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
pub(super) struct Retransmit {
    pub bytes: Vec<u8>,
    pub at: u64,
    pub interval: u64,
    pub give_up: u64,
}

#[derive(Debug)]
pub(super) struct Call {
    pub state: CallState,
    /// Leg A: maskd is the UAS.
    pub a: Dialog,
    pub a_invite: InviteIn,
    pub ok_to_a: Option<Retransmit>,
    /// Leg B: maskd is the UAC.
    pub b: Dialog,
    /// Leg B's INVITE: its Request-URI and branch (a CANCEL repeats both).
    pub b_ruri: String,
    pub b_invite_branch: String,
    /// Leg B's INVITE's CSeq number (its ACK and CANCEL repeat it; an INVITE sent again,
    /// to the next trunk or with credentials, has a higher one).
    pub b_invite_cseq: u32,
    pub ack_to_b: Option<Vec<u8>>,
    /// The log.
    pub interaction: Interaction,
    pub session: Sid,
    /// The route key the call came in on: when it stops resolving, the session closed.
    pub key: (E164, E164),
    /// When leg A's INVITE arrived, until the first 180/200 went back (setup latency).
    pub setup_from: Option<u64>,
    pub answered_at: Option<u64>,
    /// While ringing: when maskd gives up on leg B (`sip.ring_timeout`).
    pub ring_until: Option<u64>,
    /// While ending: when leg B's INVITE is given up if its final answer never comes.
    pub give_up_at: Option<u64>,
    /// Leg B is to be cancelled, but has sent no provisional answer yet: a CANCEL may only
    /// follow one (RFC 3261 §9.1); it goes when the first arrives.
    pub cancel_pending: bool,
    /// Anchored media (`None` in passthrough, or once released).
    pub media: Option<super::media::CallMedia>,
    /// Leg A's INVITE had no SDP (late offer): B's 2xx carries the offer, and leg B's ACK
    /// waits for A's, which carries the answer.
    pub late_offer: bool,
    /// Leg B through a carrier that has more trunks or credentials: what it needs to go
    /// again.
    pub carrier_leg: Option<Box<super::failover::CarrierLeg>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Purpose {
    Invite,
    Cancel,
    ByeToB,
    ByeToA,
    /// An in-dialog request (re-INVITE, UPDATE, INFO, …) relayed from the other leg: the
    /// final answer goes back through this server transaction, built from these headers.
    Relay(Box<Relayed>),
    /// An OPTIONS probe of a carrier's trunk: (carrier, trunk), indexes.
    Probe(usize, usize),
    /// A REGISTER with a carrier's trunk: (carrier, trunk), indexes.
    Register(usize, usize),
}

/// What is needed to answer the leg that sent a relayed in-dialog request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Relayed {
    pub server_key: (String, bool),
    pub reply_to: Remote,
    /// Its Via headers, the top one stamped with received/rport.
    pub vias: Vec<String>,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: String,
    /// Our Contact on the answering leg.
    pub contact: String,
    pub invite: bool,
    /// The request's CSeq number on the leg it was relayed to (its ACK repeats it).
    pub out_cseq: u32,
    /// Whether it was relayed from leg A (to B) or from B (to A).
    pub from_a: bool,
    /// Relayed to leg B through a carrier with credentials: what it needs to go again,
    /// once, answering a digest challenge.
    pub retry: Option<Box<RelayRetry>>,
}

/// A relayed request's method, the headers after the dialog's own, and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RelayRetry {
    pub method: String,
    pub extra: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A client transaction about to start: whose it is, what for, where to, and when to give
/// up on it beyond the transaction's own timers.
pub(super) struct NewClient {
    pub call: u64,
    pub purpose: Purpose,
    pub to: Remote,
    pub invite: bool,
    pub give_up: Option<u64>,
}

pub(super) struct ClientEntry {
    pub call: u64,
    pub purpose: Purpose,
    pub to: Remote,
    pub tx: ClientTx,
    /// A relayed request is given up (408 to its sender) at this time even if the other
    /// leg sent a provisional answer (which stops an INVITE's Timer B).
    pub give_up: Option<u64>,
}

pub(super) struct ServerEntry {
    pub call: Option<u64>,
    pub to: Remote,
    pub tx: ServerTx,
}

impl Deadline for ClientEntry {
    fn deadline(&self) -> Option<u64> {
        match (self.tx.poll_timeout(), self.give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Deadline for ServerEntry {
    fn deadline(&self) -> Option<u64> {
        self.tx.poll_timeout()
    }
}
