//! One TCP connection of the SMS plane, either side: a carrier's bind to maskd's listener
//! or maskd's bind to an upstream. Reads and decodes PDUs, answers what the link itself
//! answers, hands messages to acceptance (one task each, their queue items kept in the
//! bind's order), and carries the dispatcher's requests within the window.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::order::InOrder;
use super::{pdus, Account, Link, LinkDown, Request, SmppPlane, Upstream};
use crate::core::store::OutboundItem;
use crate::smpp::codec::{decode, encode, error_response};
use crate::smpp::pdu::{self, status, Bind, BindKind, Body, Pdu, ShortMessage, Tlv};

/// Requests maskd sent on a link, by sequence number: who waits, when it was sent, and the
/// command it was (only its `_resp` or a generic_nack may answer it).
type Pending = HashMap<u32, (oneshot::Sender<Result<Pdu, LinkDown>>, Instant, u32)>;

enum Flow {
    Continue,
    Close,
}

/// One message's place in its bind's order: when it is dropped (also if its task ends
/// early), what the message queued is handed to the dispatcher after everything its bind
/// sent before it.
struct Turn {
    plane: Arc<SmppPlane>,
    order: Arc<Mutex<InOrder<OutboundItem>>>,
    ticket: u64,
    items: Vec<OutboundItem>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Under the lock: two turns finishing at once still hand their items on in order.
        let mut order = self.order.lock();
        for item in order.finish(self.ticket, std::mem::take(&mut self.items)) {
            self.plane.dispatch(item);
        }
    }
}

impl SmppPlane {
    /// One TCP connection: a server-side bind (`upstream` None) or maskd's bind to an
    /// upstream. Returns whether it got bound.
    pub(super) async fn run_link(
        self: Arc<Self>,
        stream: TcpStream,
        addr: SocketAddr,
        upstream: Option<Upstream>,
        stop: watch::Receiver<bool>,
    ) -> bool {
        /// Counts a connection open for its whole life, however it ends.
        struct Open(tokio::sync::watch::Sender<usize>);
        impl Drop for Open {
            fn drop(&mut self) {
                self.0.send_modify(|n| *n -= 1);
            }
        }
        self.open_links.send_modify(|n| *n += 1);
        let _open = Open(self.open_links.clone());
        self.clone().link(stream, addr, upstream, stop).await
    }

    /// Resolves once every connection has closed (after `stop`, each finishes its in-flight
    /// PDUs first).
    pub async fn drained(&self) {
        let mut rx = self.open_links.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    async fn link(
        self: Arc<Self>,
        stream: TcpStream,
        addr: SocketAddr,
        upstream: Option<Upstream>,
        mut stop: watch::Receiver<bool>,
    ) -> bool {
        let (mut rd, mut wr) = stream.into_split();
        let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(1024);
        let writer = tokio::spawn(async move {
            while let Some(mut frame) = frames_rx.recv().await {
                // Coalesce what is already queued into one write.
                while frame.len() < 64 * 1024 {
                    match frames_rx.try_recv() {
                        Ok(more) => frame.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if wr.write_all(&frame).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let link_id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let (req_tx, mut req_rx) = mpsc::channel::<Request>(self.window.max(1));
        let mut pending: Pending = HashMap::new();
        let mut seq: u32 = 0;
        let mut next_seq = || {
            seq = if seq >= 0x7FFF_FFFF { 1 } else { seq + 1 };
            seq
        };
        let send = |frames: &mpsc::Sender<Vec<u8>>, pdu: &Pdu| {
            let mut buf = Vec::with_capacity(64);
            encode(pdu, &mut buf);
            pdus("out", pdu.body.name(), pdu.status);
            frames.try_send(buf).is_ok()
        };
        // Bind state: who the peer is once bound.
        let mut peer: Option<(String, BindKind, Option<Account>)> = None;
        let window = upstream.as_ref().map_or(self.window, |u| u.window).max(1);
        let mut link_window = window;
        if let Some(u) = &upstream {
            let bind = Pdu {
                seq: next_seq(),
                status: 0,
                body: Body::Bind(Bind {
                    kind: u.bind,
                    system_id: u.system_id.clone(),
                    password: u.password.clone(),
                    system_type: String::new(),
                    interface_version: 0x34,
                    addr_ton: 0,
                    addr_npi: 0,
                    address_range: String::new(),
                }),
            };
            send(&frames_tx, &bind);
        }
        let in_flight = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(InOrder::default()));
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 16 * 1024];
        let mut last_rx = Instant::now();
        let connected_at = last_rx;
        let mut last_enquire = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut bound_ever = false;
        // A server-side connection counts as unbound until it binds.
        let mut unbound_counted = upstream.is_none();
        let peer_ip = addr.ip();
        // Shutting down: unbind sent, no new requests of maskd's own; the link closes once
        // the peer has answered the unbind and maskd's other requests (or they time out) and
        // every message the peer sent before that is answered.
        let mut closing: Option<Instant> = None;
        'conn: loop {
            if let Some(since) = closing {
                if (pending.is_empty() && in_flight.load(Ordering::Relaxed) == 0)
                    || since.elapsed() > self.response_timeout
                {
                    break 'conn;
                }
            }
            let can_request = peer.is_some() && pending.len() < link_window && closing.is_none();
            tokio::select! {
                r = rd.read(&mut chunk) => {
                    let n = match r { Ok(0) | Err(_) => break 'conn, Ok(n) => n };
                    last_rx = Instant::now();
                    buf.extend_from_slice(&chunk[..n]);
                    let mut used_total = 0;
                    loop {
                        match decode(&buf[used_total..]) {
                            Ok(None) => break,
                            Ok(Some((pdu, used))) => {
                                used_total += used;
                                pdus("in", pdu.body.name(), pdu.status);
                                match self.on_pdu(pdu, &mut peer, &upstream, peer_ip, link_id, &req_tx, &frames_tx, &in_flight, &order, &mut pending).await {
                                    Flow::Continue => {}
                                    Flow::Close => break 'conn,
                                }
                                if peer.is_some() && !bound_ever {
                                    bound_ever = true;
                                    if unbound_counted {
                                        unbound_counted = false;
                                        self.unbound.fetch_sub(1, Ordering::Relaxed);
                                    }
                                    link_window = window;
                                }
                            }
                            Err(e) => {
                                pdus("in", pdu::command_name(e.command_id), e.status);
                                tracing::debug!(error = %e, "smpp pdu refused");
                                send(&frames_tx, &error_response(&e));
                                match e.skip {
                                    Some(n) => used_total += n,
                                    None => break 'conn,
                                }
                            }
                        }
                    }
                    buf.drain(..used_total);
                    if buf.len() > pdu::MAX_PDU_LEN as usize {
                        break 'conn;
                    }
                }
                Some(req) = req_rx.recv(), if can_request => {
                    // The sender stopped waiting (its timeout ran out and it will retry):
                    // sending this now would deliver the message twice.
                    if req.reply.is_closed() {
                        continue;
                    }
                    let s = next_seq();
                    let cmd = req.body.command_id();
                    let pdu = Pdu { seq: s, status: 0, body: req.body };
                    if send(&frames_tx, &pdu) {
                        pending.insert(s, (req.reply, Instant::now(), cmd));
                    } else {
                        let _ = req.reply.send(Err(LinkDown));
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_rx) > self.inactivity {
                        tracing::info!(peer = peer.as_ref().map_or("unbound", |p| p.0.as_str()), "smpp bind inactive; closing");
                        break 'conn;
                    }
                    if peer.is_none() && now.duration_since(connected_at) > self.response_timeout {
                        break 'conn; // never bound
                    }
                    if peer.is_some() && now.duration_since(last_rx) > self.enquire_link && now.duration_since(last_enquire) > self.enquire_link {
                        last_enquire = now;
                        send(&frames_tx, &Pdu { seq: next_seq(), status: 0, body: Body::EnquireLink });
                    }
                    let timeout = self.response_timeout;
                    pending.retain(|_, (_, at, _)| now.duration_since(*at) <= timeout);
                }
                _ = stop.changed(), if closing.is_none() => {
                    if peer.is_none() {
                        break 'conn;
                    }
                    // The peer's unbind_resp comes after every PDU it sent before it saw the
                    // unbind (TCP keeps the order): waiting for it (as a pending request)
                    // means each of those is read and answered before the link closes.
                    let s = next_seq();
                    if send(&frames_tx, &Pdu { seq: s, status: 0, body: Body::Unbind }) {
                        let (tx, _) = oneshot::channel();
                        pending.insert(s, (tx, Instant::now(), pdu::cmd::UNBIND));
                    }
                    closing = Some(Instant::now());
                }
            }
        }
        if unbound_counted {
            self.unbound.fetch_sub(1, Ordering::Relaxed);
        }
        for (_, (reply, _, _)) in pending.drain() {
            let _ = reply.send(Err(LinkDown));
        }
        if let Some((name, _, acct)) = &peer {
            self.unregister(name, link_id, acct.is_some());
            crate::metrics::get()
                .smpp_binds
                .with_label_values(&[name])
                .dec();
            tracing::info!(peer = %name, "smpp unbound");
        }
        drop(frames_tx);
        let _ = writer.await;
        bound_ever
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_pdu(
        self: &Arc<Self>,
        pdu: Pdu,
        peer: &mut Option<(String, BindKind, Option<Account>)>,
        upstream: &Option<Upstream>,
        peer_ip: IpAddr,
        link_id: u64,
        req_tx: &mpsc::Sender<Request>,
        frames: &mpsc::Sender<Vec<u8>>,
        in_flight: &Arc<AtomicUsize>,
        order: &Arc<Mutex<InOrder<OutboundItem>>>,
        pending: &mut Pending,
    ) -> Flow {
        let reply = |body: Body, st: u32| {
            let p = Pdu {
                seq: pdu.seq,
                status: st,
                body,
            };
            let mut buf = Vec::with_capacity(64);
            encode(&p, &mut buf);
            pdus("out", p.body.name(), st);
            let _ = frames.try_send(buf);
        };
        let is_resp = pdu.body.command_id() & pdu::cmd::RESP != 0;
        if is_resp {
            if let Body::BindResp { .. } = &pdu.body {
                if let (Some(u), None) = (upstream, peer.as_ref()) {
                    if pdu.status != status::ESME_ROK {
                        tracing::warn!(upstream = %u.name, status = pdu::status_name(pdu.status), "smpp upstream refused the bind");
                        return Flow::Close;
                    }
                    *peer = Some((u.name.clone(), u.bind, None));
                    crate::metrics::get()
                        .smpp_binds
                        .with_label_values(&[&u.name])
                        .inc();
                    if u.bind.can_send() {
                        self.register(
                            &u.name,
                            Link {
                                id: link_id,
                                tx: req_tx.clone(),
                                upstream: true,
                            },
                        );
                    }
                    tracing::info!(upstream = %u.name, "smpp upstream bound");
                    return Flow::Continue;
                }
            }
            let answers = pending.get(&pdu.seq).is_some_and(|(_, _, cmd)| {
                pdu.body.command_id() == (cmd | pdu::cmd::RESP) || pdu.body == Body::GenericNack
            });
            if answers {
                if let Some((reply, _, _)) = pending.remove(&pdu.seq) {
                    let _ = reply.send(Ok(pdu));
                }
            }
            return Flow::Continue;
        }
        match &pdu.body {
            Body::Bind(b) => {
                if upstream.is_some() || peer.is_some() {
                    reply(
                        Body::BindResp {
                            kind: b.kind,
                            system_id: self.system_id.clone(),
                            tlvs: Vec::new(),
                        },
                        status::ESME_RALYBND,
                    );
                    return Flow::Continue;
                }
                match self.authenticate(b, peer_ip) {
                    Ok(acct) => {
                        let tlvs = vec![Tlv {
                            tag: pdu::tag::SC_INTERFACE_VERSION,
                            value: vec![0x34],
                        }];
                        reply(
                            Body::BindResp {
                                kind: b.kind,
                                system_id: self.system_id.clone(),
                                tlvs,
                            },
                            status::ESME_ROK,
                        );
                        if b.kind.can_receive() {
                            self.register(
                                &acct.system_id,
                                Link {
                                    id: link_id,
                                    tx: req_tx.clone(),
                                    upstream: false,
                                },
                            );
                        }
                        crate::metrics::get()
                            .smpp_binds
                            .with_label_values(&[&acct.system_id])
                            .inc();
                        tracing::info!(account = %acct.system_id, kind = b.kind.as_str(), "smpp bound");
                        *peer = Some((acct.system_id.clone(), b.kind, Some(acct)));
                    }
                    Err(st) => {
                        tracing::info!(status = pdu::status_name(st), "smpp bind refused");
                        reply(
                            Body::BindResp {
                                kind: b.kind,
                                system_id: self.system_id.clone(),
                                tlvs: Vec::new(),
                            },
                            st,
                        );
                        // One try per connection: no password guessing on a held link.
                        return Flow::Close;
                    }
                }
                Flow::Continue
            }
            Body::EnquireLink => {
                reply(Body::EnquireLinkResp, status::ESME_ROK);
                Flow::Continue
            }
            Body::Unbind => {
                reply(Body::UnbindResp, status::ESME_ROK);
                Flow::Close
            }
            Body::GenericNack => Flow::Continue,
            Body::Outbind { .. } => {
                reply(Body::GenericNack, status::ESME_RINVCMDID);
                Flow::Continue
            }
            Body::QuerySm { message_id, .. } => {
                if peer.is_none() {
                    reply(Body::GenericNack, status::ESME_RINVBNDSTS);
                } else {
                    // maskd does not keep per-part state for query_sm; receipts carry it.
                    reply(
                        Body::QuerySmResp {
                            message_id: message_id.clone(),
                            final_date: String::new(),
                            message_state: 0,
                            error_code: 0,
                        },
                        0x67, // ESME_RQUERYFAIL
                    );
                }
                Flow::Continue
            }
            Body::SubmitSm(_) | Body::DeliverSm(_) | Body::DataSm(_) => {
                let resp_body = |id: String| match &pdu.body {
                    Body::SubmitSm(_) => Body::SubmitSmResp { message_id: id },
                    Body::DeliverSm(_) => Body::DeliverSmResp { message_id: id },
                    _ => Body::DataSmResp {
                        message_id: id,
                        tlvs: Vec::new(),
                    },
                };
                let Some((name, kind, acct)) = peer.clone() else {
                    reply(resp_body(String::new()), status::ESME_RINVBNDSTS);
                    return Flow::Continue;
                };
                // A receiver bind may not send messages (receipts from upstreams arrive on
                // maskd's own binds, which are not accounts).
                if acct.is_some() && !kind.can_send() {
                    reply(resp_body(String::new()), status::ESME_RINVBNDSTS);
                    return Flow::Continue;
                }
                if let Some(a) = &acct {
                    if !self.take_token(&a.system_id, a.max_rate) {
                        reply(resp_body(String::new()), status::ESME_RTHROTTLED);
                        return Flow::Continue;
                    }
                }
                if in_flight.load(Ordering::Relaxed) >= self.window {
                    reply(resp_body(String::new()), status::ESME_RMSGQFUL);
                    return Flow::Continue;
                }
                let msg = match pdu.body.clone() {
                    Body::SubmitSm(m) | Body::DeliverSm(m) => m,
                    Body::DataSm(d) => ShortMessage {
                        service_type: d.service_type,
                        source: d.source,
                        dest: d.dest,
                        esm_class: d.esm_class,
                        registered_delivery: d.registered_delivery,
                        data_coding: d.data_coding,
                        tlvs: d.tlvs,
                        ..ShortMessage::default()
                    },
                    _ => return Flow::Continue,
                };
                in_flight.fetch_add(1, Ordering::Relaxed);
                let me = self.clone();
                let frames = frames.clone();
                let in_flight = in_flight.clone();
                let seq = pdu.seq;
                let body_kind = pdu.body.command_id();
                // Its place in the bind's order, and its queue id, taken in arrival order:
                // the store gives queued messages back in id order too.
                let mut turn = Turn {
                    plane: self.clone(),
                    order: order.clone(),
                    ticket: order.lock().ticket(),
                    items: Vec::new(),
                };
                let queue_id = self.engine.next_seq();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let (st, id, item) = me.accept_message(&name, msg, queue_id).await;
                    let body = match body_kind {
                        pdu::cmd::SUBMIT_SM => Body::SubmitSmResp { message_id: id },
                        pdu::cmd::DELIVER_SM => Body::DeliverSmResp { message_id: id },
                        _ => Body::DataSmResp {
                            message_id: id,
                            tlvs: Vec::new(),
                        },
                    };
                    let p = Pdu {
                        seq,
                        status: st,
                        body,
                    };
                    let mut buf = Vec::with_capacity(64);
                    encode(&p, &mut buf);
                    pdus("out", p.body.name(), st);
                    // Free the window slot before the peer can see the answer and send again.
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    // A peer that stops reading cannot hold this task forever (the timer is
                    // only armed when the link's queue is full).
                    if let Err(mpsc::error::TrySendError::Full(buf)) = frames.try_send(buf) {
                        let _ = tokio::time::timeout(me.response_timeout, frames.send(buf)).await;
                    }
                    // Durable already: forwarded whatever happened to the answer, after what
                    // the bind sent before it.
                    turn.items = item;
                    drop(turn);
                    crate::metrics::get()
                        .smpp_accept_latency
                        .observe(started.elapsed().as_secs_f64());
                });
                Flow::Continue
            }
            _ => {
                reply(Body::GenericNack, status::ESME_RINVCMDID);
                Flow::Continue
            }
        }
    }
}
