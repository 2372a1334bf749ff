//! Acceptance of one message from a bind: addresses, the route, out-of-session and intercept
//! callbacks, opt-out, concatenation, and the durable record (interaction and queue item)
//! that precedes `ESME_ROK`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{address, encode_payload, now_s, Hop, SmppPlane};
use crate::core::model::{Interaction, InteractionType, Leg, ResourceStatus};
use crate::core::store::{OutboundItem, ReceiptOrigin, WriteOp};
use crate::core::{Sid, SidKind, E164};
use crate::net::webhook;
use crate::smpp::pdu::{self, status, ShortMessage};
use crate::smpp::text;

/// Opt-out keywords (reference §4.7): such a message is acknowledged, never forwarded.
const OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "END",
    "CANCEL",
    "QUIT",
    "ARRET",
    "ARRETE",
    "ARRETT",
    "UNSTOP",
];

/// Concatenated messages waiting for their other parts, at most.
const MAX_PARTIALS: usize = 10_000;

/// An incomplete concatenated message is logged as it is after this long (ms).
const PARTIAL_MAX_AGE_MS: i64 = 10 * 60 * 1000;

/// `(sender, proxy, reference, total)` of a concatenated message.
type PartKey = (u64, u64, u16, u8);

/// Partial messages and their arrival order (for the bound).
pub(super) type Partials = (HashMap<PartKey, Partial>, VecDeque<PartKey>);

pub(super) struct Partial {
    /// When the first part arrived (ms): parts missing for 10 minutes are given up.
    first_ms: i64,
    interaction: Sid,
    route: Hop,
    parts: Vec<Option<String>>,
    first_message_id: String,
}

/// How long a message's acknowledgement waits for its write to be durable.
const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl SmppPlane {
    /// Decides about one message from `peer`: returns the command_status and message_id to
    /// answer with, and the queue items to dispatch once answered (already durable).
    pub(super) async fn accept_message(
        self: &Arc<Self>,
        peer: &str,
        msg: ShortMessage,
        queue_id: u64,
    ) -> (u32, String, Vec<OutboundItem>) {
        // Never ESME_ROK without durability: while the store cannot be reached (several
        // nodes, PostgreSQL down) the peer is told to try again later.
        if !self.engine.store().available() {
            crate::metrics::get().smpp_store_throttled.inc();
            return (status::ESME_RTHROTTLED, String::new(), Vec::new());
        }
        if msg.is_receipt() {
            return self.accept_receipt(peer, msg).await;
        }
        // Read with their TON/NPI; one that is no phone number is refused, never dropped.
        let country = self.default_country.get(peer).copied();
        let invalid = |field: &str, st: u32| {
            crate::metrics::get()
                .smpp_invalid_address
                .with_label_values(&[field])
                .inc();
            (st, String::new(), Vec::new())
        };
        let Some(src) = address::read(&msg.source, country) else {
            return invalid("source_addr", status::ESME_RINVSRCADR);
        };
        let Some(dst) = address::read(&msg.dest, country) else {
            return invalid("destination_addr", status::ESME_RINVDSTADR);
        };
        let message_id = Sid::generate(SidKind::Message).to_string();
        let mut route = self.engine.routes().target(dst, src);
        if route.is_none() {
            self.engine.record_contact(
                dst,
                src,
                crate::core::model::InteractionType::Message,
                crate::clock::now_ms() / 1000,
            );
            // The out-of-session callback may create the session (reference §4.8.3).
            if let Some(wh) = self.webhooks() {
                let text = text::decode(msg.data_coding, msg.payload());
                let inbound = webhook::inbound_params(
                    wh.account_sid(),
                    src,
                    dst,
                    Some((&message_id, &text, 1)),
                    None,
                );
                if wh.out_of_session(dst, src, inbound).await {
                    route = self.engine.routes().target(dst, src);
                }
            }
        }
        let Some(route) = route else {
            crate::metrics::get().smpp_out_of_session.inc();
            tracing::debug!(from = %src.masked(), to = %dst.masked(), "sms out of session");
            return if self.reject_out_of_session {
                (status::ESME_RINVDSTADR, String::new(), Vec::new())
            } else {
                (status::ESME_ROK, message_id, Vec::new())
            };
        };
        if !route.mode.allows_messages() {
            return (status::ESME_RINVDSTADR, String::new(), Vec::new());
        }
        let octets = msg.payload();
        let (concat, text_octets) = if msg.esm_class & pdu::esm::UDHI != 0 {
            match text::split_udh(octets) {
                Some(x) => x,
                None => return (status::ESME_RINVESMCLASS, String::new(), Vec::new()),
            }
        } else {
            let sar = (
                msg.tlv(pdu::tag::SAR_MSG_REF_NUM),
                msg.tlv(pdu::tag::SAR_TOTAL_SEGMENTS),
                msg.tlv(pdu::tag::SAR_SEGMENT_SEQNUM),
            );
            let concat = match sar {
                (Some([a, b]), Some([t]), Some([s])) => Some(text::Concat {
                    reference: u16::from_be_bytes([*a, *b]),
                    total: *t,
                    seq: *s,
                }),
                _ => None,
            };
            (concat, octets)
        };
        // Opt-out applies to the text whatever its coding (flash messages included); octets
        // with no text form are logged as hex.
        let body_text = text::text_of(msg.data_coding, text_octets);
        let opt_out = body_text
            .as_deref()
            .is_some_and(|t| OPT_OUT.iter().any(|k| t.trim().eq_ignore_ascii_case(k)));
        let body_text = body_text.unwrap_or_else(|| text::hex(text_octets));
        if concat.is_none() && opt_out {
            crate::metrics::get().smpp_opt_out.inc();
            return (status::ESME_ROK, message_id, Vec::new());
        }
        let part = concat.filter(|c| c.total > 1 && c.seq >= 1 && c.seq <= c.total);
        let interaction_sid = Sid::generate(SidKind::Interaction);
        if part.is_none() {
            // The intercept callback, before the outbound leg exists: 403 blocks.
            let url = self
                .engine
                .service(route.service)
                .ok()
                .and_then(|s| s.intercept_callback_url);
            if let (Some(url), Some(wh)) = (url, self.webhooks()) {
                let mut i = self.interaction(
                    interaction_sid,
                    &route,
                    &message_id,
                    body_text.clone(),
                    now_s(),
                );
                let params =
                    webhook::intercept_params(wh.account_sid(), &i, src, route.counterpart_real);
                if wh.intercept(&url, &params).await == webhook::Verdict::Block {
                    // Acknowledged (the sender did nothing wrong), logged, not forwarded.
                    i.outbound.resource_status = Some(ResourceStatus::Canceled);
                    let durable = self.engine.record(
                        vec![WriteOp::PutInteraction(i)],
                        Some((route.session, now_s())),
                    );
                    return match durable.await {
                        Ok(()) => (status::ESME_ROK, message_id, Vec::new()),
                        Err(_) => (status::ESME_RSYSERR, String::new(), Vec::new()),
                    };
                }
            }
        }
        let now = now_s();
        let mut ops = Vec::new();
        let interaction_sid = match part {
            None => {
                ops.push(WriteOp::PutInteraction(self.interaction(
                    interaction_sid,
                    &route,
                    &message_id,
                    body_text,
                    now,
                )));
                match &ops[0] {
                    WriteOp::PutInteraction(i) => i.sid,
                    _ => Sid::generate(SidKind::Interaction),
                }
            }
            Some(c) => {
                self.collect_part(&route, src, dst, c, &message_id, body_text, now, &mut ops)
            }
        };
        let outbound = ShortMessage {
            source: address::international(route.counterpart_proxy),
            dest: address::international(route.counterpart_real),
            esm_class: msg.esm_class & pdu::esm::UDHI,
            protocol_id: msg.protocol_id,
            registered_delivery: 1,
            data_coding: msg.data_coding,
            short_message: msg.short_message.clone(),
            tlvs: msg
                .tlvs
                .iter()
                .filter(|t| {
                    matches!(
                        t.tag,
                        pdu::tag::MESSAGE_PAYLOAD
                            | pdu::tag::SAR_MSG_REF_NUM
                            | pdu::tag::SAR_TOTAL_SEGMENTS
                            | pdu::tag::SAR_SEGMENT_SEQNUM
                    )
                })
                .cloned()
                .collect(),
            ..ShortMessage::default()
        };
        // The receipt goes back in international form, whatever form the sender used.
        let origin = (msg.registered_delivery & 0x03 != 0).then(|| ReceiptOrigin {
            peer: peer.to_string(),
            message_id: message_id.clone(),
            source: address::digits(src),
            dest: address::digits(dst),
        });
        let item = OutboundItem {
            id: queue_id,
            interaction: interaction_sid,
            from: route.counterpart_proxy,
            to: route.counterpart_real,
            via: None,
            origin,
            payload: encode_payload(outbound),
            created: crate::clock::now_ms(),
        };
        ops.push(WriteOp::PutOutbound(item.clone()));
        self.reserve(item.id);
        let mut durable = self.engine.record(ops, Some((route.session, now)));
        match tokio::time::timeout(DURABLE_WAIT, &mut durable).await {
            Ok(Ok(())) => (status::ESME_ROK, message_id, vec![item]),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "smpp message not recorded");
                self.release(item.id);
                (status::ESME_RSYSERR, String::new(), Vec::new())
            }
            Err(_) => {
                // The store went away while the message was on its way: the peer is told to
                // try again; the message goes out if its write lands after all.
                crate::metrics::get().smpp_store_throttled.inc();
                let me = self.clone();
                tokio::spawn(async move {
                    match durable.await {
                        Ok(()) => me.dispatch(item),
                        Err(_) => me.release(item.id),
                    }
                });
                (status::ESME_RTHROTTLED, String::new(), Vec::new())
            }
        }
    }

    pub(super) fn interaction(
        &self,
        sid: Sid,
        route: &Hop,
        message_id: &str,
        body: String,
        now: i64,
    ) -> Interaction {
        Interaction {
            sid,
            seq: self.engine.next_seq(),
            session_sid: route.session,
            service_sid: route.service,
            data: serde_json::json!({ "body": body }).to_string().into(),
            kind: InteractionType::Message,
            inbound: Leg {
                participant_sid: Some(route.participant),
                resource_sid: Some((*message_id).into()),
                resource_status: Some(ResourceStatus::Received),
                resource_type: Some("Message".into()),
                resource_url: None,
            },
            outbound: Leg {
                participant_sid: Some(route.counterpart),
                resource_sid: None,
                resource_status: Some(ResourceStatus::Queued),
                resource_type: Some("Message".into()),
                resource_url: None,
            },
            message_participant_sid: None,
            date_created: now,
            date_updated: now,
        }
    }

    /// The interaction of a concatenated message given up on: the parts that arrived.
    pub(super) fn log_incomplete(&self, p: Partial, now: i64) -> WriteOp {
        let text: String = p
            .parts
            .iter()
            .map(|t| t.clone().unwrap_or_default())
            .collect();
        WriteOp::PutInteraction(self.interaction(
            p.interaction,
            &p.route,
            &p.first_message_id,
            text,
            now,
        ))
    }

    /// Keeps one part of a concatenated message; when the last part arrives, records the
    /// whole text as one interaction. Partial state is bounded: the oldest incomplete
    /// message is logged with what arrived when the bound is reached.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn collect_part(
        &self,
        route: &Hop,
        src: E164,
        dst: E164,
        c: text::Concat,
        message_id: &str,
        body: String,
        now: i64,
        ops: &mut Vec<WriteOp>,
    ) -> Sid {
        let key: PartKey = (src.as_u64(), dst.as_u64(), c.reference, c.total);
        let mut guard = self.partials.lock();
        let (map, order) = &mut *guard;
        // Messages whose other parts have not come for 10 minutes are logged with what
        // arrived (the parts themselves were forwarded as they came).
        let stale_before = crate::clock::now_ms() - PARTIAL_MAX_AGE_MS;
        while let Some(front) = order.front().copied() {
            match map.get(&front) {
                Some(p) if p.first_ms < stale_before => {
                    order.pop_front();
                    if let Some(p) = map.remove(&front) {
                        ops.push(self.log_incomplete(p, now));
                    }
                }
                Some(_) => break,
                None => {
                    order.pop_front();
                }
            }
        }
        if !map.contains_key(&key) {
            if map.len() >= MAX_PARTIALS {
                while let Some(old) = order.pop_front() {
                    if let Some(p) = map.remove(&old) {
                        ops.push(self.log_incomplete(p, now));
                        break;
                    }
                }
            }
            map.insert(
                key,
                Partial {
                    first_ms: crate::clock::now_ms(),
                    interaction: Sid::generate(SidKind::Interaction),
                    route: *route,
                    parts: vec![None; c.total as usize],
                    first_message_id: message_id.to_string(),
                },
            );
            order.push_back(key);
        }
        let Some(p) = map.get_mut(&key) else {
            return Sid::generate(SidKind::Interaction);
        };
        if let Some(slot) = p.parts.get_mut(c.seq as usize - 1) {
            *slot = Some(body);
        }
        let sid = p.interaction;
        if p.parts.iter().all(Option::is_some) {
            if let Some(p) = map.remove(&key) {
                order.retain(|k| *k != key);
                let text: String = p.parts.into_iter().flatten().collect();
                ops.push(WriteOp::PutInteraction(self.interaction(
                    p.interaction,
                    &p.route,
                    &p.first_message_id,
                    text,
                    now,
                )));
            }
        }
        sid
    }
}
