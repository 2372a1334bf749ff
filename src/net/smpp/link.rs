//! One TCP connection of the SMS plane, either side: a carrier's bind to maskd's listener
//! or maskd's bind to an upstream. The driver around the sans-IO session
//! (`smpp/session.rs`: bind state, windows, timers): it reads and decodes PDUs, writes what
//! the session sends, sleeps until its next deadline, decides binds (accounts) and messages
//! (throttling, then acceptance in a task of its own, queue items kept in the bind's
//! order), and carries the dispatcher's requests.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::order::InOrder;
use super::{pdus, Account, Link, LinkDown, Request, SmppPlane, Upstream};
use crate::core::store::OutboundItem;
use crate::smpp::codec::{decode, encode};
use crate::smpp::pdu::{self, status, Bind, BindKind, Body, Pdu, ShortMessage};
use crate::smpp::session::{self, CloseReason, Event, Session};

/// Who waits for the answer to a request maskd sends on a link.
type Reply = oneshot::Sender<Result<Pdu, LinkDown>>;

/// A message's answer from its acceptance task, with its place in the bind's order.
struct Answer {
    seq: u32,
    command: u32,
    status: u32,
    message_id: String,
    turn: Turn,
}

/// What the driver knows of its connection beside the session.
struct LinkState {
    id: u64,
    /// Who the peer is once bound: its name, bind, and account (none for an upstream).
    peer: Option<(String, BindKind, Option<Account>)>,
    upstream: Option<Upstream>,
    peer_ip: IpAddr,
    req_tx: mpsc::Sender<Request>,
    answers: mpsc::UnboundedSender<Answer>,
    order: Arc<Mutex<InOrder<OutboundItem>>>,
    /// A frame the writer had no room for.
    stalled: Option<Vec<u8>>,
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
    pub(super) async fn run_link<S>(
        self: Arc<Self>,
        stream: S,
        addr: SocketAddr,
        upstream: Option<Upstream>,
        stop: watch::Receiver<bool>,
    ) -> bool
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
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

    async fn link<S>(
        self: Arc<Self>,
        stream: S,
        addr: SocketAddr,
        upstream: Option<Upstream>,
        mut stop: watch::Receiver<bool>,
    ) -> bool
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (frames, mut frames_rx) = mpsc::channel::<Vec<u8>>(1024);
        let writer = tokio::spawn(async move {
            while let Some(mut frame) = frames_rx.recv().await {
                // Coalesce what is already queued into one write.
                while frame.len() < 64 * 1024 {
                    match frames_rx.try_recv() {
                        Ok(more) => frame.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                // Flushed: over TLS, what the socket did not take at once stays in the
                // session's buffer until the next write or a flush.
                if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let cfg = session::Config {
            system_id: self.system_id.clone(),
            window: upstream.as_ref().map_or(self.window, |u| u.window).max(1),
            inbound_window: self.window,
            enquire_link: self.enquire_link,
            inactivity: self.inactivity,
            response_timeout: self.response_timeout,
        };
        let mut session = match &upstream {
            Some(u) => Session::client(cfg, upstream_bind(u), Instant::now()),
            None => Session::server(cfg, Instant::now()),
        };
        let (answers, mut answers_rx) = mpsc::unbounded_channel::<Answer>();
        let (req_tx, mut req_rx) = mpsc::channel::<Request>(self.window.max(1));
        let mut link = LinkState {
            id: self.next_link.fetch_add(1, Ordering::Relaxed),
            peer: None,
            upstream,
            peer_ip: addr.ip(),
            req_tx,
            answers,
            order: Arc::new(Mutex::new(InOrder::default())),
            stalled: None,
        };
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 16 * 1024];
        let mut bound_ever = false;
        // A server-side connection counts as unbound until it binds.
        let mut unbound_counted = link.upstream.is_none();
        let mut stopping = false;
        // One timer for the session's deadlines. It is moved earlier when a deadline comes
        // sooner, never later: traffic keeps pushing the inactivity and enquire_link
        // deadlines back, and a timer that fires before anything is due costs one
        // `handle_timeout` that finds nothing, where re-arming it would cost every PDU.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        'conn: loop {
            self.drive(&mut session, &mut link, &frames);
            if session.bound().is_some() && !bound_ever {
                bound_ever = true;
                if unbound_counted {
                    unbound_counted = false;
                    self.unbound.fetch_sub(1, Ordering::Relaxed);
                }
            }
            if session.is_closed() {
                break 'conn;
            }
            if let Some(at) = session.poll_timeout() {
                if armed.is_none_or(|a| at < a) {
                    timer.as_mut().reset(at.into());
                    armed = Some(at);
                }
            }
            // Nothing is read while the writer has no room: a peer that does not read its
            // answers cannot make maskd queue them without end.
            let reading = link.stalled.is_none();
            tokio::select! {
                r = rd.read(&mut chunk), if reading => {
                    let n = match r { Ok(0) | Err(_) => break 'conn, Ok(n) => n };
                    let now = Instant::now();
                    session.heard(now);
                    buf.extend_from_slice(&chunk[..n]);
                    let mut used_total = 0;
                    while !session.is_closed() {
                        match decode(&buf[used_total..]) {
                            Ok(None) => break,
                            Ok(Some((pdu, used))) => {
                                used_total += used;
                                pdus("in", pdu.body.name(), pdu.status);
                                session.handle_pdu(pdu, now);
                                // Each PDU's events before the next PDU: a bind decided
                                // before the message behind it.
                                self.drive(&mut session, &mut link, &frames);
                            }
                            Err(e) => {
                                pdus("in", pdu::command_name(e.command_id), e.status);
                                tracing::debug!(error = %e, "smpp pdu refused");
                                session.handle_malformed(&e, now);
                                used_total += e.skip.unwrap_or(0);
                            }
                        }
                    }
                    buf.drain(..used_total.min(buf.len()));
                    if buf.len() > pdu::MAX_PDU_LEN as usize {
                        break 'conn;
                    }
                }
                Some(req) = req_rx.recv(), if session.can_request() => {
                    // Every request waiting, as far as the window goes.
                    let now = Instant::now();
                    let mut next = Some(req);
                    while let Some(req) = next.take() {
                        // The sender stopped waiting (its timeout ran out and it will
                        // retry): sending this now would deliver the message twice.
                        if !req.reply.is_closed() {
                            session.request(req.body, req.reply, now);
                        }
                        if session.can_request() {
                            next = req_rx.try_recv().ok();
                        }
                    }
                }
                Some(a) = answers_rx.recv() => {
                    // Every answer ready now, written together.
                    let now = Instant::now();
                    let mut turns = Vec::new();
                    for a in std::iter::once(a).chain(std::iter::from_fn(|| answers_rx.try_recv().ok())) {
                        session.answer(a.seq, a.command, a.status, a.message_id, now);
                        turns.push(a.turn);
                    }
                    // The answers are on their way before the messages are: a receipt for
                    // one cannot overtake it.
                    flush(&mut session, &mut link.stalled, &frames);
                    drop(turns);
                }
                permit = frames.reserve(), if link.stalled.is_some() => {
                    if let (Ok(permit), Some(frame)) = (permit, link.stalled.take()) {
                        permit.send(frame);
                    }
                }
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    session.handle_timeout(Instant::now());
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    session.shutdown(Instant::now());
                }
            }
        }
        if unbound_counted {
            self.unbound.fetch_sub(1, Ordering::Relaxed);
        }
        for reply in session.abandon() {
            let _ = reply.send(Err(LinkDown));
        }
        if let Some((name, _, acct)) = &link.peer {
            self.unregister(name, link.id, acct.is_some());
            crate::metrics::get()
                .smpp_binds
                .with_label_values(&[name])
                .dec();
            tracing::info!(peer = %name, "smpp unbound");
        }
        // What the session still has to send goes out (a peer that stops reading holds each
        // frame for the response timeout at most), and the messages still being accepted
        // are answered: they are taken or not all the same. Their tasks hold the other
        // senders of `answers`.
        let limit = self.response_timeout;
        write_out(&mut session, link.stalled.take(), &frames, limit).await;
        drop(link.answers);
        while let Some(a) = answers_rx.recv().await {
            session.answer(a.seq, a.command, a.status, a.message_id, Instant::now());
            write_out(&mut session, None, &frames, limit).await;
            drop(a.turn);
        }
        drop(frames);
        let _ = writer.await;
        bound_ever
    }

    /// Writes what the session has to send and acts on its events.
    fn drive(
        self: &Arc<Self>,
        session: &mut Session<Reply>,
        link: &mut LinkState,
        frames: &mpsc::Sender<Vec<u8>>,
    ) {
        // Events can make more to send (a bind's answer), and sending makes no events.
        while let Some(event) = session.poll_event() {
            self.on_event(event, session, link);
        }
        flush(session, &mut link.stalled, frames);
    }

    fn on_event(
        self: &Arc<Self>,
        event: Event<Reply>,
        session: &mut Session<Reply>,
        link: &mut LinkState,
    ) {
        match event {
            Event::BindRequested { seq, bind } => match self.authenticate(&bind, link.peer_ip) {
                Ok(acct) => {
                    session.accept_bind(seq, bind.kind);
                    if bind.kind.can_receive() {
                        self.register(
                            &acct.system_id,
                            Link {
                                id: link.id,
                                tx: link.req_tx.clone(),
                                upstream: false,
                            },
                        );
                    }
                    crate::metrics::get()
                        .smpp_binds
                        .with_label_values(&[&acct.system_id])
                        .inc();
                    tracing::info!(account = %acct.system_id, kind = bind.kind.as_str(), "smpp bound");
                    link.peer = Some((acct.system_id.clone(), bind.kind, Some(acct)));
                }
                Err(st) => {
                    tracing::info!(status = pdu::status_name(st), "smpp bind refused");
                    session.refuse_bind(seq, bind.kind, st);
                }
            },
            Event::Bound { .. } => {
                let Some(u) = &link.upstream else { return };
                link.peer = Some((u.name.clone(), u.bind, None));
                crate::metrics::get()
                    .smpp_binds
                    .with_label_values(&[&u.name])
                    .inc();
                if u.bind.can_send() {
                    self.register(
                        &u.name,
                        Link {
                            id: link.id,
                            tx: link.req_tx.clone(),
                            upstream: true,
                        },
                    );
                }
                tracing::info!(upstream = %u.name, "smpp upstream bound");
            }
            Event::BindRefused { status } => {
                let name = link.upstream.as_ref().map_or("", |u| u.name.as_str());
                tracing::warn!(upstream = %name, status = pdu::status_name(status), "smpp upstream refused the bind");
            }
            Event::Message(pdu) => self.on_message(pdu, session, link),
            Event::Answered { token, pdu } => {
                let _ = token.send(Ok(pdu));
            }
            // The sender sees its request fail and retries.
            Event::TimedOut { token } => drop(token),
            Event::Closed(CloseReason::Inactive) => {
                let peer = link.peer.as_ref().map_or("unbound", |p| p.0.as_str());
                tracing::info!(peer = %peer, "smpp bind inactive; closing");
            }
            Event::Closed(_) => {}
        }
    }

    /// A message on a bind that may send it: throttled, refused past the window, or
    /// accepted in a task of its own, in the bind's order.
    fn on_message(self: &Arc<Self>, pdu: Pdu, session: &mut Session<Reply>, link: &LinkState) {
        let Some((name, _, acct)) = link.peer.clone() else {
            session.refuse(&pdu, status::ESME_RINVBNDSTS);
            return;
        };
        if let Some(a) = &acct {
            if !self.take_token(&a.system_id, a.max_rate) {
                session.refuse(&pdu, status::ESME_RTHROTTLED);
                return;
            }
        }
        if !session.begin_message(&pdu) {
            return;
        }
        let (seq, command) = (pdu.seq, pdu.body.command_id());
        let msg = match pdu.body {
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
            _ => ShortMessage::default(),
        };
        // Its place in the bind's order, and its queue id, taken in arrival order: the
        // store gives queued messages back in id order too.
        let turn = Turn {
            plane: self.clone(),
            order: link.order.clone(),
            ticket: link.order.lock().ticket(),
            items: Vec::new(),
        };
        let queue_id = self.engine.next_seq();
        let me = self.clone();
        let answers = link.answers.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (status, message_id, items) = me.accept_message(&name, msg, queue_id).await;
            // Durable already: forwarded whatever happens to the answer, after what the
            // bind sent before it (the link hands the turn on once the answer is out).
            let mut turn = turn;
            turn.items = items;
            let _ = answers.send(Answer {
                seq,
                command,
                status,
                message_id,
                turn,
            });
            crate::metrics::get()
                .smpp_accept_latency
                .observe(started.elapsed().as_secs_f64());
        });
    }
}

/// Puts what the session has to send into the writer's queue, until it is full (then the
/// frame waits in `stalled` and the link stops reading until there is room).
fn flush(
    session: &mut Session<Reply>,
    stalled: &mut Option<Vec<u8>>,
    frames: &mpsc::Sender<Vec<u8>>,
) {
    while stalled.is_none() {
        // Everything the session has to send now goes to the writer as one frame: one
        // allocation and one channel hand-over per batch, not per PDU.
        let mut buf = Vec::with_capacity(512);
        while buf.len() < 64 * 1024 {
            let Some(pdu) = session.poll_transmit() else {
                break;
            };
            encode(&pdu, &mut buf);
            pdus("out", pdu.body.name(), pdu.status);
        }
        if buf.is_empty() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(buf)) = frames.try_send(buf) {
            *stalled = Some(buf);
        }
    }
}

/// For a link that is closing: writes a stalled frame and what the session has to send,
/// waiting for room in the writer's queue (at most `limit` a frame).
async fn write_out(
    session: &mut Session<Reply>,
    stalled: Option<Vec<u8>>,
    frames: &mpsc::Sender<Vec<u8>>,
    limit: std::time::Duration,
) {
    let mut next = stalled;
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => {
                let Some(pdu) = session.poll_transmit() else {
                    return;
                };
                let mut buf = Vec::with_capacity(64);
                encode(&pdu, &mut buf);
                pdus("out", pdu.body.name(), pdu.status);
                buf
            }
        };
        let _ = tokio::time::timeout(limit, frames.send(frame)).await;
    }
}

/// maskd's bind to an upstream.
fn upstream_bind(u: &Upstream) -> Bind {
    Bind {
        kind: u.bind,
        system_id: u.system_id.clone(),
        password: u.password.clone(),
        system_type: String::new(),
        interface_version: 0x34,
        addr_ton: 0,
        addr_npi: 0,
        address_range: String::new(),
    }
}
