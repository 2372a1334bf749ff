//! Several nodes sharing one store share the SMS queue. A message whose next hop has no link
//! on this node is let go (its row's owner cleared, its next hop written) for a node that has
//! one; every node claims, every half second and whenever one of its links comes up, the
//! messages it can deliver: those let go for peers it has links to, and those of nodes gone
//! silent (`Store::claim_outbound`, `FOR UPDATE SKIP LOCKED`, so two nodes never take the
//! same one).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::SmppPlane;
use crate::core::store::WriteOp;

/// Messages claimed at a time.
const CLAIM: usize = 256;
/// How long a message waits for a link to its next hop on this node before it is let go.
const HAND_OFF_AFTER: Duration = Duration::from_secs(2);
/// How often a node looks for messages to claim without a link coming up.
const CLAIM_EVERY: Duration = Duration::from_millis(500);

impl SmppPlane {
    /// With a shared store and no link here to `peer` for `HAND_OFF_AFTER` (a bind that
    /// comes back at once keeps its messages here, in order): lets go of the message for
    /// another node (true) and frees its slot in memory. While this node has let go of a
    /// peer's messages and has no link to it, the next ones go at once, in queue order.
    /// Otherwise false: this node delivers it.
    pub(super) async fn hand_off(self: &Arc<Self>, id: u64, peer: &str) -> bool {
        if !self.engine.store().shared() {
            return false;
        }
        let linked = |me: &Self| me.links.lock().get(peer).is_some_and(|v| !v.is_empty());
        if linked(self) {
            self.letting_go.lock().remove(peer);
            return false;
        }
        if !self.letting_go.lock().contains(peer) {
            let until = tokio::time::Instant::now() + HAND_OFF_AFTER;
            loop {
                let notified = self.linked.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if linked(self) {
                    return false;
                }
                if tokio::time::timeout_at(until, notified).await.is_err() {
                    break;
                }
            }
            if linked(self) {
                return false;
            }
            self.letting_go.lock().insert(peer.to_string());
        }
        let released = self
            .engine
            .record(
                vec![WriteOp::ReleaseOutbound {
                    id,
                    via: peer.to_string(),
                }],
                None,
            )
            .await;
        if released.is_err() {
            return false;
        }
        crate::metrics::get().smpp_handed_off.inc();
        self.done(id);
        true
    }

    /// Claims the queue's messages this node can deliver, until `stop`.
    pub(super) async fn claim_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let linked = self.linked.notified();
            tokio::select! {
                _ = linked => {}
                _ = tokio::time::sleep(CLAIM_EVERY) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            if self.held.lock().spilled() {
                // Memory is full: what this node holds waits in the store already.
                continue;
            }
            let peers: Vec<String> = self
                .links
                .lock()
                .iter()
                .filter(|(_, links)| !links.is_empty())
                .map(|(peer, _)| peer.clone())
                .collect();
            let store = self.engine.store().clone();
            let claimed =
                tokio::task::spawn_blocking(move || store.claim_outbound(&peers, CLAIM)).await;
            match claimed {
                Ok(Ok(items)) => {
                    if !items.is_empty() {
                        crate::metrics::get()
                            .smpp_claimed
                            .inc_by(items.len() as u64);
                    }
                    for item in items {
                        self.reserve(item.id);
                        self.dispatch(item);
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot claim queued messages"),
                Err(_) => return,
            }
        }
    }
}
