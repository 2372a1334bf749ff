//! The outbound dispatcher: drains the queue's memory half and sends each message on the
//! link its route names, until the next hop accepts it, refuses it for good, or it is too
//! old. Each next hop has a feed of its own, which hands its messages to the links in queue
//! order and waits for a link when there is none: what one bind sent back to back (the parts
//! of a concatenated message) goes out in that order, and one slow peer holds no other.
//! Answers are awaited per message, so a link's window stays full.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::shaper::Shaper;
use super::{decode_payload, now_s, LinkDown, Request, SmppPlane, MAX_AGE_MS, MAX_DELIVERIES};
use crate::core::model::ResourceStatus;
use crate::core::store::{OutboundItem, RemoteRef, WriteOp};
use crate::smpp::pdu::{self, status, Body, Pdu, ShortMessage};

/// A request handed to a link: its answer, and whether the link is an upstream's.
struct Sent {
    answer: oneshot::Receiver<Result<Pdu, LinkDown>>,
    upstream: bool,
}

/// One queued message on its way to its next hop.
struct Delivery {
    item: OutboundItem,
    peer: String,
    message: ShortMessage,
    _slot: OwnedSemaphorePermit,
}

type Feed = mpsc::UnboundedSender<Delivery>;

impl SmppPlane {
    pub(super) async fn dispatcher(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<OutboundItem>) {
        let slots = Arc::new(Semaphore::new(MAX_DELIVERIES));
        let mut feeds: HashMap<String, Feed> = HashMap::new();
        let mut shaper = Shaper::default();
        let clock = std::time::Instant::now();
        let now_ms = || clock.elapsed().as_millis() as u64;
        let backlog = &crate::metrics::get().smpp_throttled_backlog;
        loop {
            let wake = shaper
                .next_due()
                .map(|at| tokio::time::Instant::from_std(clock + Duration::from_millis(at)));
            let next = match wake {
                Some(at) => tokio::select! {
                    r = rx.recv() => r,
                    _ = tokio::time::sleep_until(at) => {
                        for (item, label) in shaper.take_due(now_ms()) {
                            backlog.with_label_values(&[&label]).dec();
                            self.engine.set_backlog(item.from, shaper.waiting(item.from));
                            self.dispatch_one(item, &slots, &mut feeds).await;
                        }
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(item) = next else { return };
            // Held messages whose time has come go first: a newer one from the same number
            // must not overtake them.
            for (held, label) in shaper.take_due(now_ms()) {
                backlog.with_label_values(&[&label]).dec();
                self.engine
                    .set_backlog(held.from, shaper.waiting(held.from));
                self.dispatch_one(held, &slots, &mut feeds).await;
            }
            if let Some((mps, label)) = self.rate_of(&item) {
                let now = now_ms();
                let at = shaper.slot(item.from, mps, now);
                if at > now {
                    backlog.with_label_values(&[&label]).inc();
                    let from = item.from;
                    shaper.hold(at, item, label);
                    // The allocator gives numbers with spare rate among equals.
                    self.engine.set_backlog(from, shaper.waiting(from));
                    continue;
                }
            }
            self.dispatch_one(item, &slots, &mut feeds).await;
        }
    }

    /// The rate a message is held to (its sender's carrier's `mps`), and the label of its
    /// backlog (the sender's service); `None` for receipts and unlimited numbers.
    fn rate_of(&self, item: &OutboundItem) -> Option<(u32, String)> {
        if item.via.is_some() {
            return None;
        }
        let mps = self.carriers.owner_tagged(item.from, &self.tags)?.1.mps?;
        let label = self
            .engine
            .service_of_number(item.from)
            .map_or_else(|| "none".to_string(), |s| s.to_string());
        Some((mps, label))
    }

    /// Routes one message to its next hop's feed, once a delivery slot is free.
    async fn dispatch_one(
        self: &Arc<Self>,
        item: OutboundItem,
        slots: &Arc<Semaphore>,
        feeds: &mut HashMap<String, Feed>,
    ) {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let peer = item
            .via
            .clone()
            .or_else(|| self.route_for(item.from, item.to));
        let (Some(peer), Some(Body::SubmitSm(message))) = (peer, decode_payload(&item.payload))
        else {
            if item.via.is_none() {
                tracing::warn!(to = %item.to.masked(), "no smpp route for destination");
            }
            let me = self.clone();
            tokio::spawn(async move {
                if me.give_up(&item).await {
                    me.done(item.id);
                }
                drop(slot);
            });
            return;
        };
        let feed = feeds.entry(peer.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let me = self.clone();
            tokio::spawn(me.feed(rx));
            tx
        });
        let _ = feed.send(Delivery {
            item,
            peer,
            message,
            _slot: slot,
        });
    }

    /// One next hop's feed: the first attempt of each message, in queue order.
    async fn feed(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Delivery>) {
        while let Some(d) = rx.recv().await {
            if self.hand_off(d.item.id, &d.peer).await {
                continue;
            }
            let sent = self.first_send(&d).await;
            let me = self.clone();
            tokio::spawn(async move {
                let id = d.item.id;
                // A row whose delete failed keeps its slot (the store stops taking writes
                // then): a sweep must not send it again.
                if me.deliver(&d, sent).await {
                    me.done(id);
                }
            });
        }
    }

    /// Hands a message to one of its peer's links, waiting (with the messages behind it)
    /// while the peer has none; `None` once the message is too old to wait longer.
    async fn first_send(&self, d: &Delivery) -> Option<Sent> {
        let mut backoff = Duration::from_millis(250);
        loop {
            // Armed before the look, so a link registered right after it still wakes us.
            let linked = self.linked.notified();
            tokio::pin!(linked);
            linked.as_mut().enable();
            if let Some(sent) = self.send_once(d).await {
                return Some(sent);
            }
            if crate::clock::now_ms() - d.item.created > MAX_AGE_MS {
                return None;
            }
            tokio::select! {
                _ = linked => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Puts the message on a link of its peer (the same link for the same destination while
    /// the links stay); `None` when the peer has no link or it went away meanwhile.
    async fn send_once(&self, d: &Delivery) -> Option<Sent> {
        let link = self.pick_link(&d.peer, d.item.to)?;
        let body = if link.upstream {
            Body::SubmitSm(d.message.clone())
        } else {
            Body::DeliverSm(d.message.clone())
        };
        let (tx, answer) = oneshot::channel();
        link.tx.send(Request { body, reply: tx }).await.ok()?;
        Some(Sent {
            answer,
            upstream: link.upstream,
        })
    }

    /// Follows one message until the peer accepts it, it fails for good, or it is too old
    /// for more retries; the queue item leaves the store only then. Transient trouble (no
    /// bind, link down, timeout, throttling, a full queue) is retried with backoff.
    /// Returns whether the item left the store.
    async fn deliver(self: &Arc<Self>, d: &Delivery, mut sent: Option<Sent>) -> bool {
        let mut backoff = Duration::from_millis(250);
        loop {
            if let Some(s) = sent.take() {
                if let Some(left) = self.outcome(d, s).await {
                    return left;
                }
            }
            if crate::clock::now_ms() - d.item.created > MAX_AGE_MS {
                tracing::warn!(to = %d.item.to.masked(), "smpp message expired undelivered");
                return self.give_up(&d.item).await;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            sent = self.send_once(d).await;
        }
    }

    /// The peer's answer to one attempt: `Some(left the store)` when the message is done
    /// with (accepted, or refused for good), `None` to try again.
    async fn outcome(self: &Arc<Self>, d: &Delivery, s: Sent) -> Option<bool> {
        let wait = self.response_timeout + Duration::from_secs(1);
        let Ok(Ok(Ok(resp))) = tokio::time::timeout(wait, s.answer).await else {
            return None;
        };
        let item = &d.item;
        match resp.status {
            status::ESME_ROK => {
                let remote = match resp.body {
                    Body::SubmitSmResp { message_id } | Body::DeliverSmResp { message_id } => {
                        message_id
                    }
                    _ => String::new(),
                };
                crate::metrics::get()
                    .smpp_forward_latency
                    .observe((crate::clock::now_ms() - item.created).max(0) as f64 / 1000.0);
                Some(if item.via.is_some() {
                    self.finish_receipt(item).await
                } else if s.upstream {
                    // An SMSC took it: its receipt, matched by this id, tells.
                    self.finish(item, &d.peer, ResourceStatus::Sent, Some(remote))
                        .await
                } else {
                    self.delivered(item, &d.peer, remote).await
                })
            }
            status::ESME_RTHROTTLED
            | status::ESME_RMSGQFUL
            | status::ESME_RX_T_APPN
            | status::ESME_RSYSERR => None,
            st => {
                tracing::info!(
                    status = pdu::status_name(st),
                    "smpp peer refused a message for good"
                );
                Some(self.give_up(item).await)
            }
        }
    }

    /// A message that cannot be sent: its leg is failed and it leaves the queue. A receipt
    /// maskd owed a sender only leaves the queue (the message's own status stands).
    async fn give_up(&self, item: &OutboundItem) -> bool {
        if item.via.is_some() {
            self.finish_receipt(item).await
        } else {
            self.finish(item, "", ResourceStatus::Failed, None).await
        }
    }

    /// Returns whether the item's delete is durable.
    async fn finish(
        &self,
        item: &OutboundItem,
        peer: &str,
        st: ResourceStatus,
        remote: Option<String>,
    ) -> bool {
        let now = now_s();
        let mut ops = vec![
            WriteOp::DeleteOutbound(item.id),
            WriteOp::SetOutboundStatus {
                interaction: item.interaction,
                status: st,
                resource_sid: remote.clone().filter(|r| !r.is_empty()),
                at: now,
            },
        ];
        if let Some(r) = remote.filter(|r| !r.is_empty()) {
            let rr = RemoteRef {
                peer: peer.to_string(),
                remote_id: r,
                interaction: item.interaction,
                origin: item.origin.clone(),
            };
            self.remember_ref(&rr);
            ops.push(WriteOp::PutRemoteRef(rr));
        }
        self.engine.record(ops, None).await.is_ok()
    }

    /// Returns whether the item's delete is durable.
    async fn finish_receipt(&self, item: &OutboundItem) -> bool {
        self.engine
            .record(vec![WriteOp::DeleteOutbound(item.id)], None)
            .await
            .is_ok()
    }
}
