//! Delivery receipts on the SMS plane: receipts from upstream SMSCs matched to their
//! interaction by the id the SMSC gave (ids are per peer), final delivery when the next hop
//! is an account's own bind (its deliver_sm_resp with ESME_ROK; SMPP 3.4 §4.6.2 leaves that
//! answer's message_id empty, so there is no id to wait for), and the receipt maskd owes the
//! original sender for its own message id in either case.

use std::sync::Arc;
use std::time::Duration;

use super::{address, encode_payload, now_s, SmppPlane, MAX_RECENT_REFS};
use crate::core::model::ResourceStatus;
use crate::core::store::{OutboundItem, ReceiptOrigin, RemoteRef, WriteOp};
use crate::core::{Sid, E164};
use crate::smpp::pdu::{self, status, ShortMessage, Tlv};
use crate::smpp::receipt;

/// A time as receipts write it (SMPP 3.4 Appendix B): `YYMMDDhhmm`, UTC.
fn receipt_date(unix_s: i64) -> String {
    let stamp = crate::core::datetime::format(unix_s);
    [
        &stamp[2..4],
        &stamp[5..7],
        &stamp[8..10],
        &stamp[11..13],
        &stamp[14..16],
    ]
    .concat()
}

impl SmppPlane {
    /// A receipt from `peer` (an upstream SMSC, or an account reporting on what maskd
    /// handed it): moves the outbound leg and queues the receipt owed to the sender.
    pub(super) async fn accept_receipt(
        self: &Arc<Self>,
        peer: &str,
        msg: ShortMessage,
    ) -> (u32, String, Vec<OutboundItem>) {
        let Some(r) = receipt::parse(&msg) else {
            crate::metrics::get()
                .smpp_receipts
                .with_label_values(&["unreadable"])
                .inc();
            return (status::ESME_ROK, String::new(), Vec::new());
        };
        // A fast peer's receipt can overtake maskd's own bookkeeping of the id it answered
        // with (the delivery task records it right after the answer): look again briefly.
        let mut found = None;
        for attempt in 0..6u64 {
            found = self.lookup_ref(peer, &r.message_id).await;
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
        let Some(rr) = found else {
            crate::metrics::get()
                .smpp_receipts
                .with_label_values(&["unknown"])
                .inc();
            return (status::ESME_ROK, String::new(), Vec::new());
        };
        crate::metrics::get()
            .smpp_receipts
            .with_label_values(&["matched"])
            .inc();
        let st = match r.stat.as_str() {
            "DELIVRD" => ResourceStatus::Delivered,
            "UNDELIV" => ResourceStatus::Undelivered,
            "ACCEPTD" | "ENROUTE" => ResourceStatus::Sent,
            _ => ResourceStatus::Failed,
        };
        let now = now_s();
        let mut ops = vec![WriteOp::SetOutboundStatus {
            interaction: rr.interaction,
            status: st,
            resource_sid: None,
            at: now,
        }];
        let mut items = Vec::new();
        if let (Some(o), false) = (&rr.origin, st == ResourceStatus::Sent) {
            // The SMSC's own submit date, when its receipt has one.
            let submitted = r.submit_date.clone().unwrap_or_else(|| receipt_date(now));
            if let Some(item) = self.owed_receipt(o, rr.interaction, &r.stat, &submitted, now) {
                ops.push(WriteOp::PutOutbound(item.clone()));
                items.push(item);
            }
        }
        for i in &items {
            self.reserve(i.id);
        }
        match self.engine.record(ops, None).await {
            Ok(()) => (status::ESME_ROK, String::new(), items),
            Err(_) => {
                for i in &items {
                    self.release(i.id);
                }
                (status::ESME_RSYSERR, String::new(), Vec::new())
            }
        }
    }

    /// The receipt maskd owes the original sender of a message (its `origin`): a deliver_sm
    /// for maskd's own message id, from the number it wrote to, to the sender; `None` when
    /// the sender is an upstream (SMSCs get no receipts from maskd) or its numbers are not
    /// readable. `submitted` is the `YYMMDDhhmm` the message was submitted at.
    fn owed_receipt(
        &self,
        o: &ReceiptOrigin,
        interaction: Sid,
        stat: &str,
        submitted: &str,
        now: i64,
    ) -> Option<OutboundItem> {
        if self.upstreams.iter().any(|u| u.name == o.peer) {
            return None;
        }
        let from = E164::parse(&o.dest).ok()?;
        let to = E164::parse(&o.source).ok()?;
        let body = receipt::text(&o.message_id, stat, submitted, &receipt_date(now));
        let m = ShortMessage {
            source: address::international(from),
            dest: address::international(to),
            esm_class: pdu::esm::DELIVERY_RECEIPT,
            short_message: body.into_bytes(),
            tlvs: vec![
                // receipted_message_id is a C-Octet string: NUL-terminated.
                Tlv {
                    tag: pdu::tag::RECEIPTED_MESSAGE_ID,
                    value: [o.message_id.as_bytes(), &[0]].concat(),
                },
                Tlv {
                    tag: pdu::tag::MESSAGE_STATE,
                    value: vec![receipt::state_of(stat)],
                },
            ],
            ..ShortMessage::default()
        };
        Some(OutboundItem {
            id: self.engine.next_seq(),
            interaction,
            from,
            to,
            via: Some(o.peer.clone()),
            origin: None,
            payload: encode_payload(m),
            created: crate::clock::now_ms(),
        })
    }

    /// An account's bind took the message (deliver_sm_resp, ESME_ROK): final delivery. The
    /// leg is `delivered`, the item leaves the queue and, if the sender asked for one, its
    /// DELIVRD receipt is queued in the same commit. An id in the answer (which SMPP 3.4 says
    /// should be empty) is kept as the leg's resource sid, without the receipt origin: the
    /// sender has had its receipt. Returns whether the item's delete is durable.
    pub(super) async fn delivered(
        self: &Arc<Self>,
        item: &OutboundItem,
        peer: &str,
        remote: String,
    ) -> bool {
        let now = now_s();
        let mut ops = vec![
            WriteOp::DeleteOutbound(item.id),
            WriteOp::SetOutboundStatus {
                interaction: item.interaction,
                status: ResourceStatus::Delivered,
                resource_sid: Some(remote.clone()).filter(|r| !r.is_empty()),
                at: now,
            },
        ];
        if !remote.is_empty() {
            let rr = RemoteRef {
                peer: peer.to_string(),
                remote_id: remote,
                interaction: item.interaction,
                origin: None,
            };
            self.remember_ref(&rr);
            ops.push(WriteOp::PutRemoteRef(rr));
        }
        let submitted = receipt_date(item.created / 1000);
        let owed = item
            .origin
            .as_ref()
            .and_then(|o| self.owed_receipt(o, item.interaction, "DELIVRD", &submitted, now));
        if let Some(r) = &owed {
            ops.push(WriteOp::PutOutbound(r.clone()));
            self.reserve(r.id);
        }
        match self.engine.record(ops, None).await {
            Ok(()) => {
                if let Some(r) = owed {
                    self.dispatch(r);
                }
                true
            }
            Err(_) => {
                if let Some(r) = owed {
                    self.release(r.id);
                }
                false
            }
        }
    }

    /// Keeps a downstream id in memory until its store write is surely durable (bounded).
    pub(super) fn remember_ref(&self, rr: &RemoteRef) {
        let mut guard = self.recent_refs.lock();
        let (map, order) = &mut *guard;
        let key = (rr.peer.clone(), rr.remote_id.clone());
        if map.insert(key.clone(), rr.clone()).is_none() {
            order.push_back(key);
        }
        while order.len() > MAX_RECENT_REFS {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// The message a receipt from `peer` is about: ids are only unique per peer, and a peer
    /// can only report on messages maskd handed to it.
    async fn lookup_ref(&self, peer: &str, remote_id: &str) -> Option<RemoteRef> {
        let key = (peer.to_string(), remote_id.to_string());
        if let Some(rr) = self.recent_refs.lock().0.get(&key).cloned() {
            return Some(rr);
        }
        let store = self.engine.store().clone();
        let (peer, id) = key;
        tokio::task::spawn_blocking(move || store.remote_ref(&peer, &id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn receipt_dates_are_yymmddhhmm() {
        // 2026-11-24T09:05:59Z
        assert_eq!(super::receipt_date(1_795_511_159), "2611240905");
    }
}
