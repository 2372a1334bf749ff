//! The persistence contract the engine needs: a snapshot to rebuild from at start, an
//! ordered stream of write batches that become durable in order, and the reads that are not
//! kept in memory (interactions). `store/` implements it; the core never sees SQL.
//! `Durable` is a std-only future the API awaits before answering 2xx.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use super::e164::E164;
use super::model::{
    Interaction, Participant, PhoneNumber, Recording, RecordingStatus, ResourceStatus, Service,
    Session, Timestamp,
};
use super::sid::Sid;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("store is corrupt or from an unknown schema version: {0}")]
    Corrupt(String),
    #[error("store writer has stopped")]
    Closed,
    /// The store cannot be reached now (several nodes: PostgreSQL is down or unreachable);
    /// what was submitted waits and is written when it returns.
    #[error("the store is unreachable: {0}")]
    Unavailable(String),
    /// Several nodes: another node holds a route key this batch claimed; nothing of the
    /// batch was written.
    #[error("a route key this change claims is held by another node's session")]
    Conflict,
}

/// One change, applied in order within a batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    PutService(Service),
    DeleteService(Sid),
    PutNumber(PhoneNumber),
    DeleteNumber(Sid),
    PutSession(Session),
    DeleteSession(Sid),
    /// An interaction in a session at `at` (Unix seconds): its last interaction moves to
    /// `at` if later and an open session becomes in-progress. Never reopens a closed one,
    /// so a node that has not yet seen another node close the session cannot undo it.
    /// `follow`: other nodes need to hear of it (an open session became in-progress, or a
    /// TTL's deadline moved and they have not heard for a second); otherwise the row is
    /// written and nobody is told.
    TouchSession {
        session: Sid,
        at: Timestamp,
        follow: bool,
    },
    /// The timer wheel closed `Session` (its new row). Several nodes: it is written only
    /// if the session is still active and its deadline has passed by the row in the store;
    /// otherwise (another node closed it first, or activity there moved the deadline) it is
    /// not, and every node reads the session again.
    ExpireSession(Session),
    PutParticipant(Participant),
    PutInteraction(Interaction),
    DeleteInteraction(Sid),
    /// A message accepted for forwarding: durable before the sender's ack.
    PutOutbound(OutboundItem),
    /// Forwarded (acknowledged downstream) or given up: leaves the queue.
    DeleteOutbound(u64),
    /// Several nodes: this node has no link to the message's next hop `via` (a peer name);
    /// it lets go of the message for a node that has one to claim
    /// (`Store::claim_outbound`). The item's own `via` is left as it was.
    ReleaseOutbound {
        id: u64,
        via: String,
    },
    /// Moves an interaction's outbound leg; `resource_sid` is kept when `None`.
    SetOutboundStatus {
        interaction: Sid,
        status: ResourceStatus,
        resource_sid: Option<String>,
        at: Timestamp,
    },
    /// Remembers a downstream message id, so its receipt finds the interaction.
    PutRemoteRef(RemoteRef),
    /// A status callback waiting to be delivered (durable queue).
    PutCallback(super::callback::CallbackItem),
    /// Delivered, refused for good, or given up: leaves the queue.
    DeleteCallback(u64),
    /// A recording's row (created at answer, replaced when it ends).
    PutRecording(Recording),
    DeleteRecording(Sid),
    /// A stranger reached a pool number with no session (reports and lead attribution).
    PutContact(super::reports::ContactEvent),
    /// A new key (never replaces a row: a key deleted meanwhile on another node stays gone).
    PutKey(super::model::ApiKey),
    /// A key's new name, only if the key is still there.
    UpdateKey {
        sid: Sid,
        friendly_name: String,
        at: Timestamp,
    },
    DeleteKey(Sid),
}

/// One message waiting in the persistent outbound queue. The payload is opaque to the core
/// (the SMS plane's encoded message body).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundItem {
    pub id: u64,
    pub interaction: Sid,
    pub from: E164,
    pub to: E164,
    /// A specific peer to deliver to (receipts go back to their origin); else by route.
    pub via: Option<String>,
    /// The receipt maskd owes the original sender once this message's fate is known.
    pub origin: Option<ReceiptOrigin>,
    pub payload: Vec<u8>,
    pub created: Timestamp,
}

/// Where maskd sends its own receipt: the sender's peer, maskd's message id, and the
/// addresses of the original message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptOrigin {
    pub peer: String,
    pub message_id: String,
    pub source: String,
    pub dest: String,
}

/// A downstream message id (unique per peer) and what it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteRef {
    /// The account or upstream the message was handed to; its receipts must come from it.
    pub peer: String,
    pub remote_id: String,
    pub interaction: Sid,
    pub origin: Option<ReceiptOrigin>,
}

/// Everything the engine rebuilds its state from at start, but the sessions and their
/// participants, which `Store::load_rows` streams (a million of them are not held twice).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub numbers: Vec<PhoneNumber>,
    pub keys: Vec<super::model::ApiKey>,
    /// How many rows `load_rows` will hand over, to size the engine's tables.
    pub sessions: usize,
    pub participants: usize,
    /// The largest `seq` of any record, interactions included.
    pub max_seq: u64,
}

/// A row streamed by `Store::load_rows`: every session first, then every participant, each
/// in no particular order.
#[derive(Debug)]
pub enum Loaded {
    Session(Session),
    Participant(Participant),
}

/// A page of interactions in creation order.
#[derive(Debug, Clone, Copy)]
pub struct InteractionQuery {
    pub session: Sid,
    /// Only interactions sent to this participant through MessageInteractions.
    pub message_participant: Option<Sid>,
    pub after_seq: u64,
    pub before_seq: Option<u64>,
    pub limit: usize,
}

/// A page of recordings, newest first (the 2010 API's order), with its filters.
#[derive(Debug, Clone, Default)]
pub struct RecordingQuery {
    pub call_sid: Option<String>,
    /// Only this session's (the console's timeline).
    pub session: Option<Sid>,
    pub status: Option<RecordingStatus>,
    /// `date_created` at or after / strictly before (Unix seconds).
    pub created_from: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    /// Recordings that started strictly before this (Unix ms): retention.
    pub started_before_ms: Option<i64>,
    /// Only `seq` below this (the next page, newest first).
    pub below_seq: Option<u64>,
    /// Only `seq` above this (the previous page); still returned newest first.
    pub above_seq: Option<u64>,
    /// Several nodes: only recordings this node made (their files are on its disk).
    pub made_here: bool,
    pub limit: usize,
}

/// Another node's change, as the store holds it now (`None`: deleted). A session comes with
/// all its participants, deleted ones included.
#[derive(Debug, Clone)]
pub enum Followed {
    Service(Sid, Option<Service>),
    Number(Sid, Option<PhoneNumber>),
    Key(Sid, Option<super::model::ApiKey>),
    Session(Sid, Option<(Session, Vec<Participant>)>),
    /// A session every node reads again itself, this one included (a close the store did
    /// not take): read behind the node's own writes, with its state held still.
    Reread(Sid),
}

impl Followed {
    /// The row (service, number or session) it carries.
    pub fn sid(&self) -> Sid {
        match self {
            Followed::Service(sid, _)
            | Followed::Number(sid, _)
            | Followed::Key(sid, _)
            | Followed::Session(sid, _)
            | Followed::Reread(sid) => *sid,
        }
    }
}

/// What a node does with the other nodes' changes (the engine's `follow`): the rows, read
/// after the store's `mark` (see `Store::written_here_since`). Returns the ones it left
/// alone because this node has changed them since: the store reads those again once this
/// node's writes of them are committed.
pub type FollowFn = Box<dyn Fn(Vec<Followed>, u64) -> Vec<Followed> + Send + Sync>;

pub trait Store: Send + Sync + 'static {
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Hands every session, then every participant, to `each`.
    fn load_rows(&self, each: &mut dyn FnMut(Loaded)) -> Result<(), StoreError>;
    /// Queues `ops` to be committed after everything submitted before; `done` is completed
    /// once they are durable (or failed).
    fn submit(&self, ops: Vec<WriteOp>, done: Option<Completion>);
    fn interactions(&self, q: InteractionQuery) -> Result<Vec<Interaction>, StoreError>;
    fn interaction(&self, sid: Sid) -> Result<Option<Interaction>, StoreError>;
    /// The voice interaction one of whose legs is the call `call_sid` (`CA…`).
    fn call_interaction(&self, call_sid: &str) -> Result<Option<Interaction>, StoreError>;
    /// API-created interactions still `queued` that have no outbound queue item yet.
    fn queued_messages(&self) -> Result<Vec<Interaction>, StoreError>;
    /// Up to `limit` items of the persistent outbound queue with ids above `after`, in id
    /// order.
    fn outbound_after(&self, after: u64, limit: usize) -> Result<Vec<OutboundItem>, StoreError>;
    /// How many items the persistent outbound queue holds.
    fn outbound_count(&self) -> Result<u64, StoreError>;
    fn remote_ref(&self, peer: &str, remote_id: &str) -> Result<Option<RemoteRef>, StoreError>;
    /// Up to `limit` entries of the status callback queue with ids above `after`, oldest
    /// first.
    fn callbacks_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<super::callback::CallbackItem>, StoreError>;
    fn recording(&self, sid: Sid) -> Result<Option<Recording>, StoreError>;
    /// A service's daily counters over a range of days (`core::reports`).
    fn report_counts(
        &self,
        q: &super::reports::ReportQuery,
    ) -> Result<Vec<super::reports::ReportCount>, StoreError>;
    /// Folds the report counters' pending increments (a shared store appends them, see
    /// `store::postgres::reports`); the followers do it now and then. Nothing for one node.
    fn fold_reports(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// A page of a service's out-of-session contacts, most recent first.
    fn contacts(
        &self,
        q: &super::reports::ContactQuery,
    ) -> Result<Vec<super::reports::Contact>, StoreError>;
    fn recordings(&self, q: &RecordingQuery) -> Result<Vec<Recording>, StoreError>;
    /// Stops accepting writes and returns once everything submitted is committed (or has
    /// failed). Blocks: call it off the async runtime.
    fn close(&self);
    /// A store shared by several nodes hands every other node's change committed after
    /// `load` to `apply`, in commit order, from now until `close` (catching up after any
    /// lost connection). A store of one node has nothing to follow.
    fn follow(&self, apply: FollowFn) -> Result<(), StoreError> {
        drop(apply);
        Ok(())
    }
    /// Several nodes: whether this node has written `sid` (a service, number or session)
    /// since `mark` or has a write of it on its way, so a row of it the store read after
    /// `mark` is older than this node's memory. Asked with the engine's state locked, so
    /// no local change slips in between the question and the rows' install.
    fn written_here_since(&self, sid: Sid, mark: u64) -> bool {
        let _ = (sid, mark);
        false
    }
    /// Whether other nodes share this store (the calls below are for them).
    fn shared(&self) -> bool {
        false
    }
    /// Whether the store takes writes now. A shared store that cannot reach its server
    /// says no until it can again (writes submitted meanwhile wait, in order).
    fn available(&self) -> bool {
        true
    }
    /// A session and all its participants as committed (several nodes).
    fn session_rows(&self, sid: Sid) -> Result<Option<(Session, Vec<Participant>)>, StoreError> {
        let _ = sid;
        Err(StoreError::Io(
            "a store of one node is read from memory".into(),
        ))
    }
    /// Several nodes: takes for this node up to `limit` queued messages, oldest first, that
    /// no node holds and whose next hop is one of `peers` (this node has links to them), or
    /// that a node no longer running held. They are this node's to deliver from then on.
    fn claim_outbound(
        &self,
        peers: &[String],
        limit: usize,
    ) -> Result<Vec<OutboundItem>, StoreError> {
        let _ = (peers, limit);
        Ok(Vec::new())
    }
    /// Several nodes: waits until this node may load the store and create the services of
    /// its config, one node at a time (nodes starting at once would each create them), and
    /// holds that turn until the returned guard is dropped. `None` for one node.
    fn startup_lock(&self) -> Result<Option<Box<dyn std::any::Any + Send>>, StoreError> {
        Ok(None)
    }
    /// Several nodes: whether callback `id` is still this node's to send (another node
    /// claims it if this one falls silent), and the status callbacks of its interaction the
    /// store took before it, oldest first, each with whether this node sends it; `None` when
    /// `id` is not in the store (not committed yet, or gone). A node sends an interaction's
    /// callback only once none before it waits on another node. For one node: its own,
    /// nothing before (its memory holds the whole order).
    #[allow(clippy::type_complexity)]
    fn callbacks_before(&self, id: u64) -> Result<Option<(bool, Vec<(u64, bool)>)>, StoreError> {
        let _ = id;
        Ok(Some((true, Vec::new())))
    }
    /// Several nodes: takes for this node up to `limit` status callbacks that a node no
    /// longer running was to send, oldest first. They are this node's to send from then on.
    fn claim_callbacks(
        &self,
        limit: usize,
    ) -> Result<Vec<super::callback::CallbackItem>, StoreError> {
        let _ = limit;
        Ok(Vec::new())
    }
    /// The session holding the route key `(proxy, identifier)` as committed (several
    /// nodes).
    fn route_owner(&self, proxy: E164, identifier: E164) -> Result<Option<Sid>, StoreError> {
        let _ = (proxy, identifier);
        Err(StoreError::Io(
            "a store of one node is read from memory".into(),
        ))
    }
}

#[derive(Default)]
struct Slot {
    result: Option<Result<(), StoreError>>,
    finished: bool,
    waker: Option<Waker>,
}

type Shared = Arc<(Mutex<Slot>, Condvar)>;

/// The writer's half: completes the matching `Durable`.
pub struct Completion(Shared);

/// Resolves when a submitted batch is durable.
pub struct Durable(Shared);

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Durable")
    }
}

pub fn durable_pair() -> (Completion, Durable) {
    let slot: Shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
    (Completion(slot.clone()), Durable(slot))
}

fn finish(shared: &Shared, result: Result<(), StoreError>, only_if_empty: bool) {
    let waker = {
        let mut slot = shared.0.lock().unwrap_or_else(|e| e.into_inner());
        if only_if_empty && slot.finished {
            return;
        }
        slot.finished = true;
        slot.result = Some(result);
        slot.waker.take()
    };
    shared.1.notify_all();
    if let Some(w) = waker {
        w.wake();
    }
}

impl Completion {
    pub fn complete(self, result: Result<(), StoreError>) {
        finish(&self.0, result, false);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // A completion dropped without an answer (writer gone) fails its waiter.
        finish(&self.0, Err(StoreError::Closed), true);
    }
}

impl Durable {
    /// Blocks the current thread until durable (start-up and tests, not the runtime).
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        let mut slot = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = slot.result.take() {
                return r;
            }
            slot = self.0 .1.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Future for Durable {
    type Output = Result<(), StoreError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
