//! The voice plane's driver: one task owns the sans-IO B2BUA and feeds it what arrives on
//! the UDP socket and on TCP connections (framed by Content-Length), plus a timer tick; it
//! sends what the B2BUA returns on the connection that peer uses, or over UDP. The core is
//! reached through the narrow `b2bua::Core` handle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::core::engine::Engine;
use crate::core::routing::Target;
use crate::core::store::WriteOp;
use crate::core::{Sid, E164};
use crate::net::webhook::{self, Webhooks};
use crate::sip::b2bua::{Ask, B2bua, Core, Counters, Datagram, Remote, Resume, Settings};
use crate::sip::{parse, Transport};

/// The media relay, when media is anchored, and the calls it finds silent.
pub struct MediaPlane {
    pub relay: Arc<dyn crate::media::Media>,
    pub timeouts: mpsc::UnboundedReceiver<u64>,
}

struct EngineCore(Arc<Engine>);

impl Core for EngineCore {
    fn target(&self, proxy: E164, sender: E164) -> Option<Target> {
        self.0.routes().target(proxy, sender)
    }
    fn record(&self, ops: Vec<WriteOp>, touch: Option<(Sid, i64)>) {
        // Not awaited: a call's log is written by the group commit in order; the answer on
        // the wire does not wait for it.
        self.0.record_behind(ops, touch);
    }
    fn next_seq(&self) -> u64 {
        self.0.next_seq()
    }
    fn intercept_url(&self, service: Sid) -> Option<String> {
        self.0.service(service).ok()?.intercept_callback_url
    }
    fn has_out_of_session(&self, proxy: E164) -> bool {
        // Several nodes: a miss is worth asking the store about too (the webhook sender's
        // `out_of_session` does that first).
        self.0.out_of_session_url(proxy).is_some() || self.0.store().shared()
    }
    fn contact(&self, proxy: E164, caller: E164, now_s: i64) {
        self.0.record_contact(
            proxy,
            caller,
            crate::core::model::InteractionType::Voice,
            now_s,
        );
    }
    fn start_recording(
        &self,
        session: Sid,
        call_sid: &str,
    ) -> Option<(String, std::path::PathBuf)> {
        self.0.start_recording(session, call_sid)
    }
}

/// Asks the callback the B2BUA wants answered; the answer comes back as an event.
fn ask(wh: &Arc<Webhooks>, a: Ask, events: &mpsc::Sender<Event>) {
    let wh = wh.clone();
    let events = events.clone();
    tokio::spawn(async move {
        let (key, r) = match a {
            Ask::OutOfSession {
                key,
                proxy,
                caller,
                call_sid,
            } => {
                let inbound =
                    webhook::inbound_params(wh.account_sid(), caller, proxy, None, Some(&call_sid));
                (
                    key,
                    Resume::SessionCreated(wh.out_of_session(proxy, caller, inbound).await),
                )
            }
            Ask::Intercept {
                key,
                url,
                interaction,
                caller,
                callee,
            } => {
                let params =
                    webhook::intercept_params(wh.account_sid(), &interaction, caller, callee);
                let v = wh.intercept(&url, &params).await;
                (key, Resume::Allow(v == webhook::Verdict::Allow))
            }
        };
        let _ = events.send(Event::Resume(key, r)).await;
    });
}

enum Event {
    Message(Remote, Vec<u8>),
    /// A callback's answer for a held INVITE.
    Resume(u64, Resume),
    Opened(SocketAddr, mpsc::Sender<Vec<u8>>),
    Closed(Remote),
    /// A connection maskd opened could not be made.
    ConnectFailed(Remote),
    /// A TLS connection accepted did not complete its handshake.
    HandshakeFailed,
    /// A connection carried nothing for the idle timeout: may it close?
    Idle(SocketAddr, oneshot::Sender<bool>),
}

/// The timer tick: at 1,000 calls/s ~30,000 transactions are alive (UDP non-INVITE
/// server transactions absorb retransmissions for 32 s) and each tick looks at all of them;
/// 10 ms ticks cost ~7 % of the voice plane's CPU.
const TICK_MS: u64 = 50;

/// Datagrams read per wake-up beyond the first.
const UDP_BURST: usize = 63;

/// At most this many bytes wait in one TCP connection's buffer for a message to complete.
const MAX_STREAM_BUFFER: usize = 128 * 1024;

/// At most this many messages wait for a connection maskd is opening.
const MAX_PENDING_PER_PEER: usize = 256;

/// How long opening a TCP connection may take before its messages fail.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// TCP limits: connections open at once (accepted and opened), and how long one may stay
/// silent before it is closed (unless a call still uses its peer).
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    pub max_connections: usize,
    /// Accepted connections one source address may hold.
    pub max_per_address: usize,
    pub idle_timeout: Duration,
}

/// Whether a connection accepted from `peer` may stay: from a trusted source, under the cap
/// (`open`: connections accepted and opened now), under its address's cap. Refusals are
/// counted and told in the log as one summary line per interval (`accepted`).
fn admit_tcp(
    peer: SocketAddr,
    trusted: &[ipnet::IpNet],
    open: usize,
    limits: &TcpLimits,
    accepted: &crate::limits::ConnLimits,
) -> Option<crate::limits::ConnGuard> {
    let m = crate::metrics::get();
    let now = std::time::Instant::now();
    if !trusted.iter().any(|n| n.contains(&peer.ip())) {
        m.sip_tcp_refused.with_label_values(&["untrusted"]).inc();
        accepted.refused("untrusted", now);
        return None;
    }
    if open >= limits.max_connections {
        m.sip_tcp_refused.with_label_values(&["limit"]).inc();
        accepted.refused("limit", now);
        return None;
    }
    match accepted.admit(peer.ip(), now) {
        Ok(guard) => Some(guard),
        Err(why) => {
            m.sip_tcp_refused.with_label_values(&[why.as_str()]).inc();
            None
        }
    }
}

/// One TCP or TLS connection (`remote`): frames messages by Content-Length and hands them
/// to the B2BUA task; writes what the task sends back. Closes when the peer does, when
/// framing is lost, or when it stays idle and no call uses the peer.
async fn connection<S>(stream: S, remote: Remote, events: mpsc::Sender<Event>, idle: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let peer = remote.addr;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    if events.send(Event::Opened(peer, tx)).await.is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            // Flushed: over TLS, what the socket did not take at once stays in the
            // session's buffer until the next write or a flush.
            if wr.write_all(&data).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    });
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match tokio::time::timeout(idle, rd.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                let (ask, answer) = oneshot::channel();
                if events.send(Event::Idle(peer, ask)).await.is_err() {
                    break;
                }
                match answer.await {
                    Ok(true) => continue,
                    _ => break,
                }
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            // Keep-alive CRLFs between messages.
            let skip = buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            buf.drain(..skip);
            if buf.is_empty() {
                break;
            }
            match parse(&buf, Transport::Stream) {
                Ok(Some((_, used))) => {
                    let msg: Vec<u8> = buf.drain(..used).collect();
                    if events.send(Event::Message(remote, msg)).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(None) if buf.len() <= MAX_STREAM_BUFFER => break,
                _ => {
                    // Framing is lost: let the B2BUA answer what it can read, then close.
                    let msg = std::mem::take(&mut buf);
                    let _ = events.send(Event::Message(remote, msg)).await;
                    break 'conn;
                }
            }
        }
    }
    let _ = events.send(Event::Closed(remote)).await;
    writer.abort();
}

/// How maskd reaches a TLS trunk: its settings and the name its certificate must carry.
type TlsOut = (
    crate::tls::Connector,
    rustls::pki_types::ServerName<'static>,
);

/// Opens a connection to `to` in the background (the loop never waits on a connect), over
/// TLS with `tls`; its `Opened` event, or `ConnectFailed`, comes back through `events`.
fn connect(to: Remote, tls: Option<TlsOut>, events: mpsc::Sender<Event>, idle: Duration) {
    tokio::spawn(async move {
        let s = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to.addr)).await {
            Ok(Ok(s)) => s,
            _ => {
                let _ = events.send(Event::ConnectFailed(to)).await;
                return;
            }
        };
        let _ = s.set_nodelay(true);
        let Some((connector, name)) = tls else {
            return connection(s, to, events, idle).await;
        };
        match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, connector.connect(name, s)).await
        {
            Ok(Ok(s)) => connection(s, to, events, idle).await,
            failed => {
                crate::metrics::get()
                    .tls_failed
                    .with_label_values(&["sip", "connect"])
                    .inc();
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                tracing::warn!(peer = %to.addr, error = %why, "SIP TLS handshake failed");
                let _ = events.send(Event::ConnectFailed(to)).await;
            }
        }
    });
}

/// Accepts a TLS connection (handshake bounded) and runs it.
fn accept_tls(
    s: TcpStream,
    peer: SocketAddr,
    acceptor: crate::tls::Acceptor,
    events: mpsc::Sender<Event>,
    idle: Duration,
    guard: crate::limits::ConnGuard,
) {
    tokio::spawn(async move {
        let _ = s.set_nodelay(true);
        match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
            Ok(Ok(s)) => {
                connection(s, Remote::tls(peer), events, idle).await;
                drop(guard);
            }
            failed => {
                crate::metrics::get()
                    .tls_failed
                    .with_label_values(&["sip", "accept"])
                    .inc();
                if let Ok(Err(e)) = failed {
                    tracing::debug!(%peer, error = %e, "SIP TLS handshake failed");
                }
                // Counted as a connection until now.
                let _ = events.send(Event::HandshakeFailed).await;
            }
        }
    });
}

/// Accepts on `l`; never resolves when there is none.
async fn accept_on(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The TLS trunks' settings by address: each carrier's `tls` trunks, as resolved now.
fn tls_trunks(
    carriers: &crate::core::carriers::Carriers,
    settings: &[Option<crate::config::tls::TlsClient>],
) -> HashMap<SocketAddr, TlsOut> {
    let mut out = HashMap::new();
    for (c, s) in carriers.list().iter().zip(settings) {
        let Some(s) = s else { continue };
        for t in c.trunks.iter().filter(|t| t.tls) {
            let name = s.server_name.clone().or_else(|| {
                t.host
                    .as_ref()
                    .and_then(|h| rustls::pki_types::ServerName::try_from(h.clone()).ok())
            });
            let name = name.unwrap_or_else(|| rustls::pki_types::ServerName::from(t.addr.ip()));
            out.insert(t.addr, (s.connector.clone(), name));
        }
    }
    out
}

/// The TCP side of the driver: open connections by peer, messages waiting for a
/// connection being opened, and how many connections exist or are being made.
#[derive(Default)]
struct Streams {
    writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>, foldhash::fast::RandomState>,
    pending: HashMap<SocketAddr, Vec<Vec<u8>>, foldhash::fast::RandomState>,
    /// Connections accepted or being opened, until their `Closed`/`ConnectFailed`.
    count: usize,
}

impl Streams {
    /// Sends `data` to `peer` over its connection, opening one when there is none. `false`
    /// when it cannot go (the connection's queue is full or closed, too many messages wait
    /// for the connection, or no connection may be opened): a transport error for the
    /// B2BUA, since TCP has no retransmission to make up for it.
    fn send(
        &mut self,
        to: Remote,
        data: Vec<u8>,
        events: &mpsc::Sender<Event>,
        limits: TcpLimits,
        tls: &HashMap<SocketAddr, TlsOut>,
    ) -> bool {
        let peer = to.addr;
        if let Some(w) = self.writers.get(&peer) {
            if w.try_send(data).is_ok() {
                return true;
            }
            // The peer does not read (or the connection is gone): give it up.
            self.writers.remove(&peer);
            return false;
        }
        if let Some(q) = self.pending.get_mut(&peer) {
            if q.len() < MAX_PENDING_PER_PEER {
                q.push(data);
                return true;
            }
            return false;
        }
        if self.count >= limits.max_connections {
            return false;
        }
        // maskd opens TLS connections only to trunks it has settings for.
        let settings = match to.tls {
            true => match tls.get(&peer) {
                Some(s) => Some(s.clone()),
                None => return false,
            },
            false => None,
        };
        self.count += 1;
        self.pending.insert(peer, vec![data]);
        connect(to, settings, events.clone(), limits.idle_timeout);
        true
    }

    fn opened(&mut self, peer: SocketAddr, w: mpsc::Sender<Vec<u8>>) {
        for data in self.pending.remove(&peer).unwrap_or_default() {
            let _ = w.try_send(data);
        }
        self.writers.insert(peer, w);
    }
}

/// After the stop: (when to hang up the calls left, when to give up on them).
type Draining = Option<(std::time::Instant, std::time::Instant)>;

/// Starts draining once the stop has been sent (new INVITEs get 503 from then on). Looked at
/// before each message is handled, so one that arrives with the stop is not taken as a new
/// call. Calls get until shortly before the grace runs out to end by themselves; then
/// BYE/CANCEL, and a moment for the answers.
fn drain_if_stopped(stopped: bool, draining: &mut Draining, b2bua: &mut B2bua, grace: Duration) {
    if draining.is_some() || !stopped {
        return;
    }
    let t = std::time::Instant::now();
    let spare = (grace / 4).min(Duration::from_secs(2));
    b2bua.drain();
    *draining = Some((t + grace - spare, t + grace.saturating_sub(spare / 4)));
}

/// Whether the stop has been sent: one atomic load, no lock (it is asked per message).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    stop.has_changed().unwrap_or(true)
}

/// Runs the B2BUA on `sock` (UDP) and `tcp` until `stop` changes.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    sock: UdpSocket,
    tcp: TcpListener,
    tls: Option<(TcpListener, crate::tls::Acceptor)>,
    carrier_tls: Vec<Option<crate::config::tls::TlsClient>>,
    mut settings: Settings,
    limits: TcpLimits,
    engine: Arc<Engine>,
    webhooks: Arc<Webhooks>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    media: Option<MediaPlane>,
) {
    let core = EngineCore(engine);
    // After `stop`: new calls are refused; (when to hang up what is left, when to give up).
    let mut draining: Draining = None;
    let mut hung_up = false;
    let trusted = settings.trusted.clone();
    let accepted =
        crate::limits::ConnLimits::new("sip", limits.max_connections, limits.max_per_address);
    // Fault injection for the supervision test: the plane panics on the first OPTIONS.
    let fault_panic = std::env::var("MASKD_FAULT_INJECT").is_ok_and(|v| v == "sip-panic");
    // Trunks given by hostname: resolved once before calls are taken, then again as their
    // answers expire.
    let (carriers_tx, mut carriers_rx) = mpsc::unbounded_channel();
    if !settings.carriers.names().is_empty() {
        // At most a few seconds: past that the plane starts, and the carrier's calls get
        // 503 until its names resolve.
        let first = tokio::time::timeout(
            Duration::from_secs(5),
            resolve_trunks(&settings, &Vec::new()),
        )
        .await
        .ok()
        .flatten();
        let (resolved, keep) = first.unwrap_or((Vec::new(), Duration::from_secs(5)));
        let base = settings.carriers.clone();
        settings.carriers = Arc::new(base.with_resolved(&|n| addresses_of(&resolved, n)));
        tokio::spawn(re_resolve(
            base,
            settings.clone(),
            resolved,
            keep,
            carriers_tx,
            stop.clone(),
        ));
    }
    let mut tls_out = tls_trunks(&settings.carriers, &carrier_tls);
    let (tls_listener, acceptor) = match tls {
        Some((l, a)) => (Some(l), Some(a)),
        None => (None, None),
    };
    let mut b2bua = B2bua::new(settings);
    // Calls the relay found silent for media.timeout (a closed channel in passthrough).
    let (mut media_timeouts, _no_relay) = match media {
        Some(p) => {
            b2bua = b2bua.with_media(p.relay);
            (p.timeouts, None)
        }
        None => {
            let (tx, rx) = mpsc::unbounded_channel();
            (rx, Some(tx))
        }
    };
    let mut buf = vec![0u8; 65_535];
    let mut out: Vec<Datagram> = Vec::new();
    let m = crate::metrics::get();
    let clock = crate::clock::Millis::start();
    let now = || clock.now();
    let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(4096);
    let mut streams = Streams::default();
    let mut last = Counters::default();
    // Timers are driven by a fixed tick (RFC 3261 timers are ≥ 500 ms apart, so a timer
    // fires at most one tick late): asking the B2BUA for its next deadline after every
    // datagram cost a scan of every transaction per datagram, and each tick scans them all.
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                // The stop is looked at before each read's messages: one that arrives once
                // the stop is sent is answered as a draining B2BUA would (INVITEs get 503).
                drain_if_stopped(stopped(&stop), &mut draining, &mut b2bua, grace);
                crate::metrics::sip_message(true, &buf[..n]);
                if fault_panic && buf[..n].starts_with(b"OPTIONS ") {
                    panic!("fault injected (MASKD_FAULT_INJECT=sip-panic)");
                }
                let t = now();
                b2bua.handle(Remote::udp(src), &buf[..n], t, &core, &mut out);
                // Whatever else already waits is read now (a bounded number): one wake-up
                // serves a burst instead of one per datagram.
                for _ in 0..UDP_BURST {
                    let Ok((n, src)) = sock.try_recv_from(&mut buf) else { break };
                    drain_if_stopped(stopped(&stop), &mut draining, &mut b2bua, grace);
                    crate::metrics::sip_message(true, &buf[..n]);
                    b2bua.handle(Remote::udp(src), &buf[..n], t, &core, &mut out);
                }
            }
            r = tcp.accept() => {
                if let Ok((stream, peer)) = r {
                    // Untrusted sources and connections past the caps are closed at once,
                    // before anything is read or buffered.
                    if let Some(guard) = admit_tcp(peer, &trusted, streams.count, &limits, &accepted) {
                        streams.count += 1;
                        let _ = stream.set_nodelay(true);
                        let (events, idle) = (ev_tx.clone(), limits.idle_timeout);
                        tokio::spawn(async move {
                            connection(stream, Remote::tcp(peer), events, idle).await;
                            drop(guard);
                        });
                    }
                }
            }
            r = accept_on(tls_listener.as_ref()) => {
                if let (Ok((stream, peer)), Some(acceptor)) = (r, &acceptor) {
                    if let Some(guard) = admit_tcp(peer, &trusted, streams.count, &limits, &accepted) {
                        streams.count += 1;
                        accept_tls(stream, peer, acceptor.clone(), ev_tx.clone(), limits.idle_timeout, guard);
                    }
                }
            }
            Some(ev) = ev_rx.recv() => match ev {
                Event::Message(peer, data) => {
                    drain_if_stopped(stopped(&stop), &mut draining, &mut b2bua, grace);
                    crate::metrics::sip_message(true, &data);
                    b2bua.handle(peer, &data, now(), &core, &mut out);
                }
                Event::Opened(peer, tx) => {
                    streams.opened(peer, tx);
                    b2bua.stream_peer(peer, true);
                }
                Event::Closed(remote) => {
                    streams.writers.remove(&remote.addr);
                    streams.count = streams.count.saturating_sub(1);
                    b2bua.stream_peer(remote.addr, false);
                    // Answers to our requests on it would have come back over it.
                    b2bua.transport_error(remote, now(), &core, &mut out);
                }
                Event::HandshakeFailed => {
                    streams.count = streams.count.saturating_sub(1);
                }
                Event::ConnectFailed(remote) => {
                    streams.pending.remove(&remote.addr);
                    streams.count = streams.count.saturating_sub(1);
                    tracing::warn!(peer = %remote.addr, "SIP {} connect failed", remote.via_transport());
                    b2bua.transport_error(remote, now(), &core, &mut out);
                }
                Event::Idle(peer, answer) => {
                    let _ = answer.send(b2bua.uses_peer(peer));
                }
                Event::Resume(key, r) => b2bua.resume(key, r, now(), &core, &mut out),
            },
            _ = tick.tick() => {
                b2bua.on_timer(now(), &core, &mut out);
            }
            Some(c) = carriers_rx.recv() => {
                tls_out = tls_trunks(&c, &carrier_tls);
                b2bua.set_carriers(c);
            }
            Some(id) = media_timeouts.recv() => {
                b2bua.media_timeout(id, now(), &core, &mut out);
            }
            _ = stop.changed(), if draining.is_none() => {
                drain_if_stopped(true, &mut draining, &mut b2bua, grace);
            }
        }
        if let Some((hang_up_at, _)) = draining {
            if !hung_up && std::time::Instant::now() >= hang_up_at {
                hung_up = true;
                b2bua.hang_up_all(now(), &core, &mut out);
            }
        }
        for a in b2bua.asks.drain(..) {
            ask(&webhooks, a, &ev_tx);
        }
        // What the B2BUA sends; a TCP peer that cannot take it is a transport error, whose
        // answers (503s to callers) go out in a second round (its own failures are left to
        // the transactions' timers).
        for round in 0..2 {
            let mut failed: Vec<Remote> = Vec::new();
            for d in std::mem::take(&mut out) {
                crate::metrics::sip_message(false, &d.data);
                if d.to.tcp {
                    let sent = streams.send(d.to, d.data, &ev_tx, limits, &tls_out);
                    if !sent && !failed.contains(&d.to) {
                        failed.push(d.to);
                    }
                } else {
                    let _ = sock.send_to(&d.data, d.to.addr).await;
                }
            }
            if round == 1 || failed.is_empty() {
                break;
            }
            for remote in failed {
                tracing::warn!(peer = %remote.addr, "SIP {} peer cannot take what maskd sends", remote.via_transport());
                b2bua.transport_error(remote, now(), &core, &mut out);
            }
        }
        out.clear();
        m.sip_calls_active.set(b2bua.active_calls() as i64);
        m.sip_transactions.set(b2bua.transactions() as i64);
        m.sip_tcp_connections.set(streams.count as i64);
        // Counters only ever grow: add what this pass added (a scrape never reads a reset).
        let c = b2bua.counters;
        m.sip_retransmissions
            .inc_by(c.retransmissions - last.retransmissions);
        m.sip_refused.inc_by(
            (c.refused_4xx + c.refused_overload) - (last.refused_4xx + last.refused_overload),
        );
        m.sip_calls_started
            .inc_by(c.calls_started - last.calls_started);
        m.sip_untrusted_responses
            .inc_by(c.untrusted_responses - last.untrusted_responses);
        last = c;
        if let Some((_, give_up)) = draining {
            if b2bua.settled() || std::time::Instant::now() >= give_up {
                return;
            }
        }
    }
}

/// What each trunk given by hostname resolved to.
type Resolved = Vec<(crate::core::carriers::TrunkName, Vec<SocketAddr>)>;

/// What `resolved` has for `n` (nothing yet: none).
fn addresses_of(resolved: &Resolved, n: &crate::core::carriers::TrunkName) -> Vec<SocketAddr> {
    resolved
        .iter()
        .find(|(name, _)| name == n)
        .map(|(_, a)| a.clone())
        .unwrap_or_default()
}

/// Resolves every trunk given by hostname (`None`: there are none, or no DNS server); a
/// name that fails keeps what `before` had for it. Also how long until the next round.
async fn resolve_trunks(settings: &Settings, before: &Resolved) -> Option<(Resolved, Duration)> {
    let names = settings.carriers.names();
    if names.is_empty() {
        return None;
    }
    let Some(server) = settings.dns_server.or_else(crate::net::dns::system_server) else {
        tracing::error!("trunks are given by hostname but there is no DNS server (sip.dns_server, /etc/resolv.conf)");
        return None;
    };
    let m = &crate::metrics::get().sip_dns_lookups;
    let mut out = Vec::new();
    let mut keep = Duration::from_secs(3600);
    for n in names {
        match crate::net::dns::resolve(server, &n).await {
            Ok((addrs, ttl)) if !addrs.is_empty() => {
                m.with_label_values(&["ok"]).inc();
                for a in addrs
                    .iter()
                    .filter(|a| !settings.trusted.iter().any(|t| t.contains(&a.ip())))
                {
                    tracing::warn!(host = %n.host, addr = %a, "a trunk address outside sip.trusted_cidrs: its answers will be dropped");
                }
                keep = keep.min(crate::net::dns::keep_for(ttl));
                out.push((n, addrs));
            }
            other => {
                m.with_label_values(&["failed"]).inc();
                let why = match other {
                    Err(e) => e,
                    Ok(_) => "no address".to_string(),
                };
                tracing::warn!(host = %n.host, error = %why, "trunk hostname not resolved; keeping what it had");
                keep = keep.min(Duration::from_secs(30));
                let had = addresses_of(before, &n);
                out.push((n, had));
            }
        }
    }
    Some((out, keep))
}

/// Resolves the trunks given by hostname again as their answers expire, and hands the
/// carriers with the new addresses to the B2BUA.
async fn re_resolve(
    base: Arc<crate::core::carriers::Carriers>,
    settings: Settings,
    mut resolved: Resolved,
    mut keep: Duration,
    tx: mpsc::UnboundedSender<Arc<crate::core::carriers::Carriers>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(keep) => {}
            _ = stop.changed() => return,
        }
        // No DNS server (yet): looked for again in 30 s.
        let Some((next, k)) = resolve_trunks(&settings, &resolved).await else {
            keep = Duration::from_secs(30);
            continue;
        };
        resolved = next;
        keep = k;
        let carriers = base.with_resolved(&|n| addresses_of(&resolved, n));
        if tx.send(Arc::new(carriers)).is_err() {
            return;
        }
    }
}
