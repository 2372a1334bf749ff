//! The SMS plane's drivers: the SMPP listener carriers bind to, the client binds to
//! upstream SMSCs, and the outbound dispatcher that drains the persistent queue. Each bind is
//! one task around the sans-IO codec; forwarding asks the core for the route and records the
//! interaction durably before it answers `ESME_ROK`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Validated;
use crate::core::engine::{Engine, OutboundMessage, Outbox};
use crate::core::model::{Interaction, InteractionType, Leg, ResourceStatus};
use crate::core::routing::Target;
use crate::net::webhook;

/// What forwarding needs of a route: plain values, so a lookup copies no `Arc`.
type Hop = Target;
use crate::core::store::{OutboundItem, ReceiptOrigin, RemoteRef, WriteOp};
use crate::core::{Sid, SidKind, E164};
use crate::smpp::codec::{decode, encode, error_response};
use crate::smpp::pdu::{self, status, Bind, BindKind, Body, Pdu, ShortMessage, Tlv};
use crate::smpp::text;
use order::InOrder;

mod address;
mod dispatch;
mod order;
mod receipts;

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
/// Deliveries in progress (each waits for a window slot on a bind), at most.
const MAX_DELIVERIES: usize = 20_000;
/// An acknowledged message is retried through transient trouble for this long (ms) before
/// it is marked failed.
const MAX_AGE_MS: i64 = 72 * 3600 * 1000;

#[derive(Debug, Clone)]
struct Account {
    system_id: String,
    password: String,
    allowed: Vec<ipnet::IpNet>,
    max_binds: usize,
    max_rate: u32,
}

#[derive(Debug, Clone)]
struct Upstream {
    name: String,
    address: String,
    system_id: String,
    password: String,
    bind: BindKind,
    window: usize,
}

/// A bound link that can carry messages to its peer.
#[derive(Clone)]
struct Link {
    id: u64,
    tx: mpsc::Sender<Request>,
    /// An upstream (gets submit_sm) rather than an account (gets deliver_sm).
    upstream: bool,
}

struct Request {
    body: Body,
    reply: oneshot::Sender<Result<Pdu, LinkDown>>,
}

#[derive(Debug, Clone, Copy)]
struct LinkDown;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Downstream ids answered recently, keyed by (peer, id), with their insertion order.
type RecentRefs = (
    HashMap<(String, String), RemoteRef>,
    VecDeque<(String, String)>,
);

/// `(sender, proxy, reference, total)` of a concatenated message.
type PartKey = (u64, u64, u16, u8);
/// Partial messages and their arrival order (for the bound).
type Partials = (HashMap<PartKey, Partial>, VecDeque<PartKey>);
/// Requests maskd sent on a link, by sequence number: who waits, when it was sent, and the
/// command it was (only its `_resp` or a generic_nack may answer it).
type Pending = HashMap<u32, (oneshot::Sender<Result<Pdu, LinkDown>>, Instant, u32)>;

struct Partial {
    /// When the first part arrived (ms): parts missing for 10 minutes are given up.
    first_ms: i64,
    interaction: Sid,
    route: Hop,
    parts: Vec<Option<String>>,
    first_message_id: String,
}

/// The SMS plane: shared by every bind task and the dispatcher.
pub struct SmppPlane {
    /// Itself, for the tasks `enqueue` (which has only `&self`) starts.
    me: std::sync::Weak<SmppPlane>,
    engine: Arc<Engine>,
    system_id: String,
    accounts: HashMap<String, Account>,
    upstreams: Vec<Upstream>,
    routes: Vec<(String, String)>,
    /// The calling code of each account's or upstream's `default_country`, by name.
    default_country: HashMap<String, u16>,
    reject_out_of_session: bool,
    webhooks: std::sync::OnceLock<Arc<webhook::Webhooks>>,
    window: usize,
    enquire_link: Duration,
    inactivity: Duration,
    response_timeout: Duration,
    links: Mutex<HashMap<String, Vec<Link>>>,
    bound: Mutex<HashMap<String, usize>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    partials: Mutex<Partials>,
    next_link: AtomicU64,
    /// Woken whenever a link that can carry messages is registered (feeds wait on it).
    linked: tokio::sync::Notify,
    /// The dispatcher's channel: it never holds more than `held.cap` items.
    queue: mpsc::UnboundedSender<OutboundItem>,
    held: Mutex<Held>,
    /// Downstream ids answered recently, before their store write is durable: a fast peer's
    /// receipt can arrive first. Bounded; the store has them all.
    recent_refs: Mutex<RecentRefs>,
    /// Connections accepted but not (yet) bound: capped, so nobody can hold the listener
    /// with idle sockets.
    unbound: AtomicUsize,
    /// Connections still running (their in-flight PDUs included): shutdown waits for 0.
    open_links: tokio::sync::watch::Sender<usize>,
}

const MAX_UNBOUND: usize = 1024;
/// Rows read from the store at a time when it is read back into memory.
const SWEEP_CHUNK: usize = 1024;

/// The outbound queue's memory. Every queued message is in the store; at most `cap` of them
/// are also held in memory (in the dispatcher's channel or being delivered). Past that the
/// store is the queue, and a sweep reads it back in id order as memory frees up.
struct Held {
    /// Ids held in memory, reserved ones included.
    ids: HashSet<u64>,
    /// Ids given a slot before their store write: handed to the dispatcher once durable.
    reserved: HashSet<u64>,
    cap: usize,
    /// Messages were left in the store: until a sweep has read it back up to date, every new
    /// one is left there too (so older messages go first).
    spilled: bool,
    sweeping: bool,
    /// The smallest id left in the store (and durable) since the sweep's pass began.
    missed_from: Option<u64>,
    /// Messages waiting in the store only (for the depth gauge).
    in_store: usize,
    /// Messages left to the store whose write has not been dispatched yet (a sweep may
    /// read them before their dispatch, or not): bounded by the writes in flight.
    unsent: HashSet<u64>,
    /// A sweep is reading the store: ids that leave memory meanwhile are noted in `gone`,
    /// since the read may still have seen their rows.
    reading: bool,
    gone: HashSet<u64>,
}

impl Held {
    fn gauges(&self) {
        let m = crate::metrics::get();
        m.smpp_queue_in_memory.set(self.ids.len() as i64);
        m.smpp_queue_depth
            .set((self.ids.len() + self.in_store) as i64);
    }
}

const MAX_RECENT_REFS: usize = 100_000;

fn now_s() -> i64 {
    crate::app::now_ms() / 1000
}

fn pdus(direction: &'static str, command: &'static str, st: u32) {
    // Label lookups hash three strings; keep the counters this thread already resolved.
    thread_local! {
        static CACHE: std::cell::RefCell<HashMap<(&'static str, &'static str, u32), prometheus::IntCounter>> =
            std::cell::RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 4096 {
            c.clear();
        }
        c.entry((direction, command, st))
            .or_insert_with(|| {
                crate::metrics::get().smpp_pdus.with_label_values(&[
                    direction,
                    command,
                    pdu::status_name(st),
                ])
            })
            .inc();
    });
}

impl SmppPlane {
    /// Builds the plane from config; returns it with the receiver its dispatcher drains.
    pub fn new(
        engine: Arc<Engine>,
        cfg: &Validated,
    ) -> (Arc<SmppPlane>, mpsc::UnboundedReceiver<OutboundItem>) {
        let s = &cfg.raw.smpp;
        let accounts = s
            .accounts
            .iter()
            .map(|a| {
                let allowed = a
                    .allowed_cidrs
                    .iter()
                    .filter_map(|c| {
                        c.parse::<ipnet::IpNet>()
                            .ok()
                            .or_else(|| c.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
                    })
                    .collect();
                (
                    a.system_id.clone(),
                    Account {
                        system_id: a.system_id.clone(),
                        password: a.password.clone(),
                        allowed,
                        max_binds: a.max_binds as usize,
                        max_rate: a.max_rate,
                    },
                )
            })
            .collect();
        let upstreams = s
            .upstreams
            .iter()
            .map(|u| Upstream {
                name: u.name.clone(),
                address: u.address.clone(),
                system_id: u.system_id.clone(),
                password: u.password.clone(),
                bind: BindKind::parse(&u.bind).unwrap_or(BindKind::Transceiver),
                window: u.window as usize,
            })
            .collect();
        let mut routes: Vec<(String, String)> = s
            .routes
            .iter()
            .map(|r| (r.prefix.clone(), r.via.clone()))
            .collect();
        routes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let default_country = s
            .accounts
            .iter()
            .map(|a| (&a.system_id, &a.default_country))
            .chain(s.upstreams.iter().map(|u| (&u.name, &u.default_country)))
            .filter_map(|(name, c)| {
                let cc = E164::calling_code_of(c.as_deref()?)?;
                Some((name.clone(), cc))
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let plane = Arc::new_cyclic(|me| SmppPlane {
            me: me.clone(),
            engine,
            system_id: s.system_id.clone(),
            accounts,
            upstreams,
            routes,
            default_country,
            reject_out_of_session: s.reject_out_of_session,
            webhooks: std::sync::OnceLock::new(),
            window: s.window as usize,
            enquire_link: cfg.smpp.enquire_link_interval,
            inactivity: cfg.smpp.inactivity_timeout,
            response_timeout: cfg.smpp.response_timeout,
            open_links: tokio::sync::watch::Sender::new(0),
            links: Mutex::new(HashMap::new()),
            bound: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            partials: Mutex::new((HashMap::new(), VecDeque::new())),
            next_link: AtomicU64::new(1),
            linked: tokio::sync::Notify::new(),
            queue: tx,
            held: Mutex::new(Held {
                ids: HashSet::new(),
                reserved: HashSet::new(),
                cap: (s.max_queued_in_memory as usize).max(1),
                // What the store holds from before a restart is read back by a sweep.
                spilled: true,
                sweeping: false,
                missed_from: None,
                in_store: 0,
                unsent: HashSet::new(),
                reading: false,
                gone: HashSet::new(),
            }),
            recent_refs: Mutex::new((HashMap::new(), VecDeque::new())),
            unbound: AtomicUsize::new(0),
        });
        (plane, rx)
    }

    /// Starts everything: the listener, upstream binds, the dispatcher, and re-queues what
    /// the store holds (messages acknowledged before a restart).
    pub async fn start(
        self: &Arc<Self>,
        listener: TcpListener,
        rx: mpsc::UnboundedReceiver<OutboundItem>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), crate::core::store::StoreError> {
        let pending = self.engine.store().outbound_count()?;
        let api_pending = self.engine.pending_outbound()?;
        tracing::info!(
            queued = pending,
            api_messages = api_pending.len(),
            "smpp outbound queue found"
        );
        {
            let mut h = self.held.lock();
            h.in_store = usize::try_from(pending).unwrap_or(usize::MAX);
            h.sweeping = true;
            h.missed_from = None;
            h.gauges();
        }
        let me = self.clone();
        tokio::spawn(async move { me.sweep().await });
        let me = self.clone();
        tokio::spawn(async move { me.dispatcher(rx).await });
        for msg in api_pending {
            self.enqueue(msg);
        }
        let me = self.clone();
        let accept_stop = stop.clone();
        tokio::spawn(async move { me.accept_loop(listener, accept_stop).await });
        for u in self.upstreams.clone() {
            let me = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move { me.upstream_loop(u, stop).await });
        }
        Ok(())
    }

    /// Gives a message about to be written to the queue in the store a slot in memory, if
    /// there is one (and nothing older waits in the store). Without one it is left to the
    /// store and a sweep. Either way [`dispatch`](Self::dispatch) or
    /// [`release`](Self::release) follows the write.
    fn reserve(&self, id: u64) {
        let mut h = self.held.lock();
        if h.spilled || h.ids.len() >= h.cap {
            if !h.spilled {
                tracing::warn!(
                    cap = h.cap,
                    "smpp outbound queue full in memory; the rest wait in the store"
                );
            }
            h.spilled = true;
            h.in_store += 1;
            h.unsent.insert(id);
        } else {
            h.ids.insert(id);
            h.reserved.insert(id);
        }
        h.gauges();
    }

    /// A reserved message's store write is durable: the dispatcher gets it. One without a
    /// slot is noted for the sweep (it can only be read back now that it is durable).
    fn dispatch(self: &Arc<Self>, item: OutboundItem) {
        let mut h = self.held.lock();
        if h.reserved.remove(&item.id) {
            let _ = self.queue.send(item);
            return;
        }
        h.unsent.remove(&item.id);
        if h.ids.contains(&item.id) {
            // A sweep has read it already.
            return;
        }
        // A sweep may also have read and delivered it already (if one caught up meanwhile):
        // only the store knows, so it is left to a sweep.
        h.spilled = true;
        h.missed_from = Some(h.missed_from.map_or(item.id, |m| m.min(item.id)));
        self.sweep_if_room(&mut h);
    }

    /// Starts a sweep when messages wait in the store and memory is at most half full.
    fn sweep_if_room(self: &Arc<Self>, h: &mut Held) {
        if h.spilled && !h.sweeping && h.ids.len() <= h.cap / 2 {
            h.sweeping = true;
            // A sweep starts from the first id: it reads everything durable by now.
            h.missed_from = None;
            let me = self.clone();
            tokio::spawn(async move { me.sweep().await });
        }
    }

    /// A message's store write failed (it was refused): its slot is free again.
    fn release(self: &Arc<Self>, id: u64) {
        let mut h = self.held.lock();
        if h.reserved.remove(&id) {
            h.ids.remove(&id);
        } else if h.unsent.remove(&id) {
            h.in_store = h.in_store.saturating_sub(1);
        }
        h.gauges();
        self.sweep_if_room(&mut h);
    }

    /// A message has left the queue (its store row is deleted): its slot is free. Once memory
    /// is half empty, what waits in the store is read back.
    fn done(self: &Arc<Self>, id: u64) {
        let mut h = self.held.lock();
        h.ids.remove(&id);
        if h.reading {
            h.gone.insert(id);
        }
        h.gauges();
        self.sweep_if_room(&mut h);
    }

    /// Reads the queue in the store back into memory, in id order, skipping what memory
    /// holds, until memory is full or the store is caught up. A pass ends at the end of the
    /// table; messages left in the store while it ran are read by another pass from the
    /// smallest of their ids. Only a pass that missed nothing ends the spill.
    async fn sweep(self: Arc<Self>) {
        let mut from = 0u64;
        loop {
            let mut cursor = from;
            let full = loop {
                self.held.lock().reading = true;
                let store = self.engine.store().clone();
                let after = cursor;
                let rows = match tokio::task::spawn_blocking(move || {
                    store.outbound_after(after, SWEEP_CHUNK)
                })
                .await
                {
                    Ok(Ok(rows)) => rows,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot read the smpp outbound queue");
                        self.held.lock().reading = false;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(_) => {
                        let mut h = self.held.lock();
                        h.reading = false;
                        h.sweeping = false;
                        return;
                    }
                };
                let n = rows.len();
                let mut h = self.held.lock();
                h.reading = false;
                let gone = std::mem::take(&mut h.gone);
                let mut full = false;
                for item in rows {
                    if h.ids.len() >= h.cap {
                        full = true;
                        break;
                    }
                    cursor = item.id;
                    // Delivered while the read ran: its row is deleted by now.
                    if gone.contains(&item.id) {
                        continue;
                    }
                    if h.ids.insert(item.id) {
                        h.in_store = h.in_store.saturating_sub(1);
                        let _ = self.queue.send(item);
                    }
                }
                h.gauges();
                if full || n < SWEEP_CHUNK {
                    break full;
                }
            };
            let mut h = self.held.lock();
            if full {
                // The next sweep starts over once memory has drained.
                h.sweeping = false;
                return;
            }
            match h.missed_from.take() {
                None => {
                    h.spilled = false;
                    h.sweeping = false;
                    // Only the writes not yet dispatched may still wait in the store.
                    h.in_store = h.unsent.iter().filter(|i| !h.ids.contains(i)).count();
                    h.gauges();
                    return;
                }
                Some(m) => from = m.saturating_sub(1),
            }
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, addr)) => {
                        if self.unbound.load(Ordering::Relaxed) >= MAX_UNBOUND {
                            tracing::warn!("too many unbound smpp connections; refusing one");
                            drop(stream);
                            continue;
                        }
                        self.unbound.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nodelay(true);
                        let me = self.clone();
                        let stop = stop.clone();
                        tokio::spawn(async move { me.run_link(stream, addr, None, stop).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "smpp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }

    async fn upstream_loop(self: Arc<Self>, u: Upstream, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            if *stop.borrow() {
                return;
            }
            let connect =
                tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&u.address)).await;
            match connect {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let addr = stream
                        .peer_addr()
                        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                    tracing::info!(upstream = %u.name, "smpp upstream connected");
                    let bound = self
                        .clone()
                        .run_link(stream, addr, Some(u.clone()), stop.clone())
                        .await;
                    if bound {
                        backoff = Duration::from_millis(500);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(upstream = %u.name, error = %e, "smpp upstream connect failed")
                }
                Err(_) => tracing::warn!(upstream = %u.name, "smpp upstream connect timed out"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    fn take_token(&self, account: &str, rate: u32) -> bool {
        let mut buckets = self.buckets.lock();
        let now = Instant::now();
        let b = buckets.entry(account.to_string()).or_insert(Bucket {
            tokens: f64::from(rate),
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * f64::from(rate))
            .min(f64::from(rate));
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn authenticate(&self, b: &Bind, peer: IpAddr) -> Result<Account, u32> {
        let Some(acct) = self.accounts.get(&b.system_id) else {
            return Err(status::ESME_RINVSYSID);
        };
        let ok = crate::api::constant_time_eq(b.password.as_bytes(), acct.password.as_bytes());
        if !ok {
            return Err(status::ESME_RINVPASWD);
        }
        if !acct.allowed.iter().any(|n| n.contains(&peer)) {
            return Err(status::ESME_RBINDFAIL);
        }
        let mut bound = self.bound.lock();
        let n = bound.entry(acct.system_id.clone()).or_default();
        if *n >= acct.max_binds {
            return Err(status::ESME_RBINDFAIL);
        }
        *n += 1;
        Ok(acct.clone())
    }

    fn register(&self, peer: &str, link: Link) {
        self.links
            .lock()
            .entry(peer.to_string())
            .or_default()
            .push(link);
        self.linked.notify_waiters();
    }

    fn unregister(&self, peer: &str, id: u64, counted: bool) {
        if let Some(v) = self.links.lock().get_mut(peer) {
            v.retain(|l| l.id != id);
        }
        if counted {
            if let Some(n) = self.bound.lock().get_mut(peer) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// A link of `peer` for a message to `to`: the same one for the same destination while
    /// the peer's links stay, so what one bind sends one number keeps its order when the
    /// peer has several binds (destinations spread the load).
    fn pick_link(&self, peer: &str, to: E164) -> Option<Link> {
        let links = self.links.lock();
        let v = links.get(peer)?;
        if v.is_empty() {
            return None;
        }
        let i = (to.as_u64() % v.len() as u64) as usize;
        Some(v[i].clone())
    }

    fn route_for(&self, to: E164) -> Option<String> {
        let digits = to.to_string();
        self.routes
            .iter()
            .find(|(p, _)| digits.starts_with(p.as_str()))
            .map(|(_, via)| via.clone())
    }

    /// One TCP connection: a server-side bind (`upstream` None) or maskd's bind to an
    /// upstream. Returns whether it got bound.
    async fn run_link(
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

    /// Connects the intercept and out-of-session callbacks.
    pub fn set_webhooks(&self, wh: Arc<webhook::Webhooks>) {
        let _ = self.webhooks.set(wh);
    }

    fn webhooks(&self) -> Option<&Arc<webhook::Webhooks>> {
        self.webhooks.get()
    }

    /// Decides about one message from `peer`: returns the command_status and message_id to
    /// answer with, and the queue items to dispatch once answered (already durable).
    async fn accept_message(
        self: &Arc<Self>,
        peer: &str,
        msg: ShortMessage,
        queue_id: u64,
    ) -> (u32, String, Vec<OutboundItem>) {
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
            created: crate::app::now_ms(),
        };
        ops.push(WriteOp::PutOutbound(item.clone()));
        self.reserve(item.id);
        let durable = self.engine.record(ops, Some((route.session, now)));
        match durable.await {
            Ok(()) => (status::ESME_ROK, message_id, vec![item]),
            Err(e) => {
                tracing::error!(error = %e, "smpp message not recorded");
                self.release(item.id);
                (status::ESME_RSYSERR, String::new(), Vec::new())
            }
        }
    }

    fn interaction(
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
            data: serde_json::json!({ "body": body }).to_string(),
            kind: InteractionType::Message,
            inbound: Leg {
                participant_sid: Some(route.participant),
                resource_sid: Some(message_id.to_string()),
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
    fn log_incomplete(&self, p: Partial, now: i64) -> WriteOp {
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
    fn collect_part(
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
        let stale_before = crate::app::now_ms() - PARTIAL_MAX_AGE_MS;
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
                    first_ms: crate::app::now_ms(),
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

/// The queue payload: the outbound message as an encoded submit_sm (decoded again at send
/// time, when the target decides submit_sm or deliver_sm).
fn encode_payload(m: ShortMessage) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + m.short_message.len());
    encode(
        &Pdu {
            seq: 0,
            status: 0,
            body: Body::SubmitSm(m),
        },
        &mut buf,
    );
    buf
}

fn decode_payload(bytes: &[u8]) -> Option<Body> {
    decode(bytes).ok().flatten().map(|(p, _)| p.body)
}

impl Outbox for SmppPlane {
    /// A message created through the API: encode it (GSM 03.38 when it fits, else UCS-2;
    /// long texts in message_payload), queue it durably, then dispatch it.
    fn enqueue(&self, msg: OutboundMessage) {
        let (dc, octets) = match text::encode_gsm(&msg.body) {
            Some(g) => (0u8, g),
            None => (8u8, text::encode_ucs2(&msg.body)),
        };
        let (short_message, tlvs) = if octets.len() > 254 {
            (
                Vec::new(),
                vec![Tlv {
                    tag: pdu::tag::MESSAGE_PAYLOAD,
                    value: octets,
                }],
            )
        } else {
            (octets, Vec::new())
        };
        let m = ShortMessage {
            source: address::international(msg.from),
            dest: address::international(msg.to),
            registered_delivery: 1,
            data_coding: dc,
            short_message,
            tlvs,
            ..ShortMessage::default()
        };
        let item = OutboundItem {
            id: self.engine.next_seq(),
            interaction: msg.interaction,
            from: msg.from,
            to: msg.to,
            via: None,
            origin: None,
            payload: encode_payload(m),
            created: crate::app::now_ms(),
        };
        self.reserve(item.id);
        let durable = self
            .engine
            .record(vec![WriteOp::PutOutbound(item.clone())], None);
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            if durable.await.is_ok() {
                me.dispatch(item);
            } else {
                me.release(item.id);
            }
        });
    }
}
