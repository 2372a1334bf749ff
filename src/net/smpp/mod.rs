//! The SMS plane's drivers: the SMPP listener carriers bind to, the client binds to
//! upstream SMSCs, and the outbound dispatcher that drains the persistent queue. Each bind is
//! one task around the sans-IO codec; forwarding asks the core for the route and records the
//! interaction durably before it answers `ESME_ROK`.
//!
//! Here: the plane's shared state, configuration, the listener and upstream loops, bind
//! authentication and the links each peer has. Beside it: `link` (one connection),
//! `accept` (one message in), `address` (TON/NPI), `order` (a bind's order), `queue` (the
//! queue's memory half), `dispatch` (messages out) and `receipts`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Validated;
use crate::core::engine::{Engine, OutboundMessage, Outbox};
use crate::core::routing::Target;
use crate::core::store::{OutboundItem, RemoteRef, WriteOp};
use crate::core::E164;
use crate::net::webhook;
use crate::smpp::codec::{decode, encode};
use crate::smpp::pdu::{self, status, Bind, BindKind, Body, Pdu, ShortMessage, Tlv};
use crate::smpp::text;
use accept::Partials;
use queue::Held;

mod accept;
mod address;
mod dispatch;
mod link;
mod order;
mod queue;
mod receipts;
mod shaper;
mod shared;

/// What forwarding needs of a route: plain values, so a lookup copies no `Arc`.
type Hop = Target;

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
    /// Reached over TLS, verified with these settings.
    tls: Option<crate::config::tls::TlsClient>,
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

/// The SMS plane: shared by every bind task and the dispatcher.
pub struct SmppPlane {
    /// Itself, for the tasks `enqueue` (which has only `&self`) starts.
    me: std::sync::Weak<SmppPlane>,
    engine: Arc<Engine>,
    system_id: String,
    accounts: HashMap<String, Account>,
    upstreams: Vec<Upstream>,
    routes: Vec<(String, String)>,
    /// Who owns which proxy numbers: a message leaves by its sender's carrier.
    carriers: Arc<crate::core::carriers::Carriers>,
    /// Pool numbers tagged with a carrier over the API: they win over `carriers`.
    tags: Arc<crate::core::carriers::CarrierTags>,
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
    /// Several nodes: peers whose messages this node lets go of (no link to them here).
    letting_go: Mutex<std::collections::HashSet<String>>,
    /// The dispatcher's channel: it never holds more than the memory bound's `cap` items.
    queue: mpsc::UnboundedSender<OutboundItem>,
    held: Mutex<Held>,
    /// Downstream ids answered recently, before their store write is durable: a fast peer's
    /// receipt can arrive first. Bounded; the store has them all.
    recent_refs: Mutex<RecentRefs>,
    /// Connections accepted but not (yet) bound: capped, so nobody can hold the listener
    /// with idle sockets.
    unbound: AtomicUsize,
    /// The listeners' bounds (plain and TLS together): connections, and per address.
    limits: crate::limits::ConnLimits,
    /// Connections still running (their in-flight PDUs included): shutdown waits for 0.
    open_links: tokio::sync::watch::Sender<usize>,
}

const MAX_UNBOUND: usize = 1024;

const MAX_RECENT_REFS: usize = 100_000;

fn now_s() -> i64 {
    crate::clock::now_ms() / 1000
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
                tls: cfg.smpp.upstream_tls.get(&u.name).cloned(),
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
        let tags = engine.carrier_tags();
        let plane = Arc::new_cyclic(|me| SmppPlane {
            me: me.clone(),
            engine,
            system_id: s.system_id.clone(),
            accounts,
            upstreams,
            routes,
            carriers: cfg.carriers.clone(),
            tags,
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
            letting_go: Mutex::new(std::collections::HashSet::new()),
            queue: tx,
            held: Mutex::new(Held::new(s.max_queued_in_memory as usize)),
            recent_refs: Mutex::new((HashMap::new(), VecDeque::new())),
            unbound: AtomicUsize::new(0),
            limits: crate::limits::ConnLimits::new(
                "smpp",
                cfg.bounds.smpp.max,
                cfg.bounds.smpp.per_address,
            ),
        });
        (plane, rx)
    }

    /// Starts everything: the listener, upstream binds, the dispatcher, and re-queues what
    /// the store holds (messages acknowledged before a restart).
    pub async fn start(
        self: &Arc<Self>,
        listener: TcpListener,
        tls: Option<(TcpListener, crate::tls::Acceptor)>,
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
            h.found_at_start(pending);
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
        tokio::spawn(async move { me.accept_loop(listener, None, accept_stop).await });
        if let Some((listener, acceptor)) = tls {
            let me = self.clone();
            let accept_stop = stop.clone();
            tokio::spawn(
                async move { me.accept_loop(listener, Some(acceptor), accept_stop).await },
            );
        }
        for u in self.upstreams.clone() {
            let me = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move { me.upstream_loop(u, stop).await });
        }
        if self.engine.store().shared() {
            let me = self.clone();
            tokio::spawn(me.claim_loop(stop));
        }
        Ok(())
    }

    /// Accepts connections on `listener`, over TLS with `tls` (the handshake bounded by
    /// `tls::HANDSHAKE_TIMEOUT`, the connection counted unbound meanwhile).
    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<crate::tls::Acceptor>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, addr)) => {
                        let now = std::time::Instant::now();
                        // Refusals are counted and told as one summary line per interval.
                        let Ok(guard) = self.limits.admit(addr.ip(), now) else {
                            drop(stream);
                            continue;
                        };
                        if self.unbound.load(Ordering::Relaxed) >= MAX_UNBOUND {
                            self.limits.refused("unbound", now);
                            drop(stream);
                            continue;
                        }
                        self.unbound.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nodelay(true);
                        let me = self.clone();
                        let stop = stop.clone();
                        let Some(acceptor) = tls.clone() else {
                            tokio::spawn(async move {
                                me.run_link(stream, addr, None, stop).await;
                                drop(guard);
                            });
                            continue;
                        };
                        tokio::spawn(async move {
                            let hs = tokio::time::timeout(
                                crate::tls::HANDSHAKE_TIMEOUT,
                                acceptor.accept(stream),
                            );
                            match hs.await {
                                Ok(Ok(s)) => {
                                    me.run_link(s, addr, None, stop).await;
                                    drop(guard);
                                }
                                failed => {
                                    me.unbound.fetch_sub(1, Ordering::Relaxed);
                                    crate::metrics::get().tls_failed.with_label_values(&["smpp", "accept"]).inc();
                                    let why = match failed {
                                        Ok(Err(e)) => e.to_string(),
                                        _ => "timed out".into(),
                                    };
                                    tracing::debug!(peer = %addr, error = %why, "smpp tls handshake failed");
                                }
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: told in the listener's
                        // summary line, not a line each.
                        tracing::debug!(error = %e, "smpp accept failed");
                        self.limits.refused("accept_failed", std::time::Instant::now());
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
                    let bound = match &u.tls {
                        None => {
                            tracing::info!(upstream = %u.name, "smpp upstream connected");
                            self.clone()
                                .run_link(stream, addr, Some(u.clone()), stop.clone())
                                .await
                        }
                        Some(t) => {
                            let hs = tokio::time::timeout(
                                crate::tls::HANDSHAKE_TIMEOUT,
                                t.connector.connect(
                                    t.server_name.clone().unwrap_or_else(|| {
                                        rustls::pki_types::ServerName::from(addr.ip())
                                    }),
                                    stream,
                                ),
                            );
                            match hs.await {
                                Ok(Ok(s)) => {
                                    tracing::info!(upstream = %u.name, "smpp upstream connected over tls");
                                    self.clone()
                                        .run_link(s, addr, Some(u.clone()), stop.clone())
                                        .await
                                }
                                failed => {
                                    crate::metrics::get()
                                        .tls_failed
                                        .with_label_values(&["smpp", "connect"])
                                        .inc();
                                    let why = match failed {
                                        Ok(Err(e)) => e.to_string(),
                                        _ => "timed out".into(),
                                    };
                                    tracing::warn!(upstream = %u.name, error = %why, "smpp upstream tls handshake failed");
                                    false
                                }
                            }
                        }
                    };
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
        let ok = crate::secret::constant_time_eq(b.password.as_bytes(), acct.password.as_bytes());
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

    /// Where a message from proxy number `from` to `to` leaves: by the SMPP link of the
    /// carrier owning `from` (a sender ID is only valid there), else by the longest prefix
    /// route matching `to`.
    fn route_for(&self, from: E164, to: E164) -> Option<String> {
        if let Some(link) = self
            .carriers
            .owner_tagged(from, &self.tags)
            .and_then(|(_, c)| c.smpp.clone())
        {
            return Some(link);
        }
        let digits = to.to_string();
        self.routes
            .iter()
            .find(|(p, _)| digits.starts_with(p.as_str()))
            .map(|(_, via)| via.clone())
    }

    /// Connects the intercept and out-of-session callbacks.
    pub fn set_webhooks(&self, wh: Arc<webhook::Webhooks>) {
        let _ = self.webhooks.set(wh);
    }

    fn webhooks(&self) -> Option<&Arc<webhook::Webhooks>> {
        self.webhooks.get()
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
            created: crate::clock::now_ms(),
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
