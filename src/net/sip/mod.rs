//! The voice plane's driver: one thread owns the sans-IO B2BUA and feeds it what arrives on
//! the UDP socket (read in batches, `udp`) and, as events, what arrives on TCP connections
//! (framed by Content-Length, `tcp`), callbacks' answers and a timer tick; it sends what the
//! B2BUA returns on the connection that peer uses, or over UDP. The core is reached through
//! the narrow `b2bua::Core` handle.
//!
//! Why a thread of its own (issue 17, BENCHMARKS.md): on the async runtime every datagram
//! cost an `epoll_wait`, a read, a read that found nothing, and wake-ups between the
//! runtime's workers; here the thread sleeps in its read, as a bare UDP relay does.

mod dns;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::core::engine::Engine;
use crate::core::routing::Target;
use crate::core::store::WriteOp;
use crate::core::{Sid, E164};
use crate::net::webhook::{self, Webhooks};
use crate::sip::b2bua::{Ask, B2bua, Core, Counters, Datagram, Remote, Resume, Settings};
pub use tcp::TcpLimits;

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
fn ask(wh: &Arc<Webhooks>, a: Ask, events: &Events) {
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

pub(super) enum Event {
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

/// What other threads hand the plane's thread: queued, then the thread is woken.
#[derive(Clone)]
pub(super) struct Events {
    tx: mpsc::Sender<Event>,
    wake: Arc<udp::Wake>,
}

impl Events {
    pub(super) async fn send(&self, ev: Event) -> Result<(), mpsc::error::SendError<Event>> {
        let r = self.tx.send(ev).await;
        self.wake.wake();
        r
    }
}

/// The timer tick: at 1,000 calls/s ~30,000 transactions are alive (UDP non-INVITE
/// server transactions absorb retransmissions for 32 s) and each tick looks at all of them;
/// 10 ms ticks cost ~7 % of the voice plane's CPU. Also the longest the thread sleeps while
/// timers run (`IDLE_MS` when none is due sooner).
const TICK_MS: u64 = 50;

/// The longest the thread sleeps when the B2BUA has nothing on a clock (no call, no
/// transaction, no probe or registration due sooner): trunk addresses re-resolved by DNS,
/// which come without waking it, are taken up within this.
const IDLE_MS: u64 = 1_000;

/// Events handled per round at most; more wait for the next (which does not sleep).
const EVENTS_PER_ROUND: usize = 4096;

/// At most this many bytes wait in one TCP connection's buffer for a message to complete.
const MAX_STREAM_BUFFER: usize = 128 * 1024;

/// At most this many messages wait for a connection maskd is opening.
const MAX_PENDING_PER_PEER: usize = 256;

/// How long opening a TCP connection may take before its messages fail.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Runs the B2BUA on `sock` (UDP) and `tcp` until `stop` changes, on a thread of its own
/// (a panic there comes back here and is raised again, so supervision sees the plane fail
/// as before).
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
    stop: watch::Receiver<bool>,
    grace: Duration,
    media: Option<MediaPlane>,
) {
    // Trunks given by hostname: resolved once before calls are taken, then again as their
    // answers expire.
    let (carriers_tx, carriers_rx) = mpsc::unbounded_channel();
    if !settings.carriers.names().is_empty() {
        // At most a few seconds: past that the plane starts, and the carrier's calls get
        // 503 until its names resolve.
        let first = tokio::time::timeout(
            Duration::from_secs(5),
            dns::resolve_trunks(&settings, &Vec::new()),
        )
        .await
        .ok()
        .flatten();
        let (resolved, keep) = first.unwrap_or((Vec::new(), Duration::from_secs(5)));
        let base = settings.carriers.clone();
        settings.carriers = Arc::new(base.with_resolved(&|n| dns::addresses_of(&resolved, n)));
        tokio::spawn(dns::re_resolve(
            base,
            settings.clone(),
            resolved,
            keep,
            carriers_tx,
            stop.clone(),
        ));
    }
    let blocking = sock.local_addr().and_then(|local| {
        let sock = sock.into_std()?;
        let wake = udp::Wake::new(local);
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(Some(wake.read_timeout(TICK_MS)))?;
        udp::large_buffers(&sock);
        Ok((sock, Arc::new(wake)))
    });
    let (sock, wake) = match blocking {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "SIP UDP socket could not be set up for the plane's thread");
            return;
        }
    };
    let (ev_tx, ev_rx) = mpsc::channel::<Event>(4096);
    let events = Events {
        tx: ev_tx,
        wake: wake.clone(),
    };
    let count = Arc::new(AtomicUsize::new(0));
    let acceptor = tokio::spawn(tcp::accept(
        tcp,
        tls,
        settings.trusted.clone(),
        limits,
        count.clone(),
        events.clone(),
    ));
    // The stop wakes the thread at once (it also looks at it after every read).
    let stop_waker = {
        let (mut stop, wake) = (stop.clone(), wake.clone());
        tokio::spawn(async move {
            let _ = stop.changed().await;
            wake.wake();
        })
    };
    let plane = Plane {
        sock,
        wake,
        events,
        ev_rx,
        carriers_rx,
        carrier_tls,
        settings,
        limits,
        core: EngineCore(engine),
        webhooks,
        stop,
        grace,
        media,
        count,
    };
    // A thread of its own, named so its CPU can be told apart (scripts/bench-sip); inside
    // the runtime's context, for the tasks it starts (connections, callbacks).
    let (done_tx, done_rx) = oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("maskd-sip".into())
        .spawn(move || {
            let _context = runtime.enter();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plane.serve()));
            let _ = done_tx.send(r);
        });
    let r = match spawned {
        Ok(_) => done_rx.await,
        Err(e) => {
            tracing::error!(error = %e, "the voice plane's thread could not be started");
            Ok(Ok(()))
        }
    };
    acceptor.abort();
    stop_waker.abort();
    if let Ok(Err(panic)) = r {
        std::panic::resume_unwind(panic);
    }
}

/// What the plane's thread is given.
struct Plane {
    sock: std::net::UdpSocket,
    wake: Arc<udp::Wake>,
    events: Events,
    ev_rx: mpsc::Receiver<Event>,
    carriers_rx: mpsc::UnboundedReceiver<Arc<crate::core::carriers::Carriers>>,
    carrier_tls: Vec<Option<crate::config::tls::TlsClient>>,
    settings: Settings,
    limits: TcpLimits,
    core: EngineCore,
    webhooks: Arc<Webhooks>,
    stop: watch::Receiver<bool>,
    grace: Duration,
    media: Option<MediaPlane>,
    count: Arc<AtomicUsize>,
}

impl Plane {
    /// The thread: read a batch (sleeping until one comes or a tick passes), hand it to the
    /// B2BUA, then the events, the timers, and send what it returned.
    fn serve(self) {
        let Plane {
            sock,
            wake,
            events,
            mut ev_rx,
            mut carriers_rx,
            carrier_tls,
            settings,
            limits,
            core,
            webhooks,
            stop,
            grace,
            media,
            count,
        } = self;
        // After `stop`: new calls are refused; (when to hang up what is left, when to give up).
        let mut draining: Draining = None;
        let mut hung_up = false;
        // Fault injection for the supervision test: the plane panics on the first OPTIONS.
        let fault_panic = std::env::var("MASKD_FAULT_INJECT").is_ok_and(|v| v == "sip-panic");
        let mut tls_out = tcp::tls_trunks(&settings.carriers, &carrier_tls);
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
        let mut io = udp::Io::new();
        let mut out: Vec<Datagram> = Vec::new();
        let mut udp_out: Vec<Datagram> = Vec::new();
        let m = crate::metrics::get();
        let clock = crate::clock::Millis::start();
        let now = || clock.now();
        let mut streams = tcp::Streams {
            count,
            ..Default::default()
        };
        let mut last = Counters::default();
        // Timers are driven by a fixed tick (RFC 3261 timers are ≥ 500 ms apart, so a timer
        // fires at most one tick late): asking the B2BUA for its next deadline after every
        // datagram cost a scan of every transaction per datagram, and each tick scans them all.
        // The first round reads nothing: timers (the trunks' first OPTIONS) start at once.
        let mut next_tick = now();
        let mut started = false;
        // The waker is tried once: its datagram must come back (a firewall dropping UDP on
        // loopback would leave every event waiting for the tick, silently).
        wake.wake();
        let wake_check_at = now() + 2_000;
        let mut wake_checked = !wake.present();
        // The waker's datagram came back: events wake the thread, which may then sleep past
        // its tick (without it, the events wait for the next read's timeout).
        let mut wake_works = false;
        // The read's timeout: a tick while timers run, up to IDLE_MS while none is due.
        let mut read_wait = TICK_MS;
        loop {
            let t = now();
            let longest = if wake_works { IDLE_MS } else { TICK_MS };
            let wait = b2bua
                .next_timer(t)
                .saturating_sub(t)
                .clamp(TICK_MS, longest);
            if wait != read_wait && sock.set_read_timeout(Some(wake.read_timeout(wait))).is_ok() {
                read_wait = wait;
            }
            let n = match started {
                true => io.recv(&sock),
                false => {
                    started = true;
                    0
                }
            };
            // Trunks re-resolved (they come without a wake-up): taken before this round's
            // messages, so an INVITE that ends a long sleep is routed on the new addresses.
            while let Ok(c) = carriers_rx.try_recv() {
                tls_out = tcp::tls_trunks(&c, &carrier_tls);
                b2bua.set_carriers(c);
            }
            let t = now();
            for i in 0..n {
                let (Some(src), data) = io.get(i) else {
                    continue;
                };
                if wake.is_from(src) {
                    wake_checked = true;
                    wake_works = true;
                    continue;
                }
                // The stop is looked at before each message: one that arrives once the stop
                // is sent is answered as a draining B2BUA would (INVITEs get 503).
                drain_if_stopped(stopped(&stop), &mut draining, &mut b2bua, grace);
                crate::metrics::sip_message(true, data);
                if fault_panic && data.starts_with(b"OPTIONS ") {
                    panic!("fault injected (MASKD_FAULT_INJECT=sip-panic)");
                }
                b2bua.handle(Remote::udp(src), data, t, &core, &mut out);
            }
            if !wake_checked && t >= wake_check_at {
                wake_checked = true;
                tracing::warn!("the voice plane's waker datagram did not arrive (UDP on loopback filtered?): TCP messages and callback answers wait up to 50 ms");
            }
            // Disarmed first: an event queued from here on wakes the next read.
            wake.disarm();
            for _ in 0..EVENTS_PER_ROUND {
                let Ok(ev) = ev_rx.try_recv() else { break };
                match ev {
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
                        streams.closed();
                        b2bua.stream_peer(remote.addr, false);
                        // Answers to our requests on it would have come back over it.
                        b2bua.transport_error(remote, now(), &core, &mut out);
                    }
                    Event::HandshakeFailed => streams.closed(),
                    Event::ConnectFailed(remote) => {
                        streams.pending.remove(&remote.addr);
                        streams.closed();
                        tracing::warn!(peer = %remote.addr, "SIP {} connect failed", remote.via_transport());
                        b2bua.transport_error(remote, now(), &core, &mut out);
                    }
                    Event::Idle(peer, answer) => {
                        let _ = answer.send(b2bua.uses_peer(peer));
                    }
                    Event::Resume(key, r) => b2bua.resume(key, r, now(), &core, &mut out),
                }
            }
            if !ev_rx.is_empty() {
                // Left for the next round, which must not sleep.
                wake.wake();
            }
            while let Ok(id) = media_timeouts.try_recv() {
                b2bua.media_timeout(id, now(), &core, &mut out);
            }
            drain_if_stopped(stopped(&stop), &mut draining, &mut b2bua, grace);
            let t = now();
            if t >= next_tick {
                b2bua.on_timer(t, &core, &mut out);
                next_tick = t + TICK_MS;
            }
            if let Some((hang_up_at, _)) = draining {
                if !hung_up && std::time::Instant::now() >= hang_up_at {
                    hung_up = true;
                    b2bua.hang_up_all(now(), &core, &mut out);
                }
            }
            for a in b2bua.asks.drain(..) {
                ask(&webhooks, a, &events);
            }
            // What the B2BUA sends; a TCP peer that cannot take it is a transport error, whose
            // answers (503s to callers) go out in a second round (its own failures are left to
            // the transactions' timers).
            for round in 0..2 {
                let mut failed: Vec<Remote> = Vec::new();
                for d in out.drain(..) {
                    crate::metrics::sip_message(false, &d.data);
                    if d.to.tcp {
                        let sent = streams.send(d.to, d.data, &events, limits, &tls_out);
                        if !sent && !failed.contains(&d.to) {
                            failed.push(d.to);
                        }
                    } else {
                        udp_out.push(d);
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
            // The counters first: whoever sees what this round sends sees what it counted.
            m.sip_calls_active.set(b2bua.active_calls() as i64);
            m.sip_transactions.set(b2bua.transactions() as i64);
            m.sip_tcp_connections.set(streams.open() as i64);
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
            if !udp_out.is_empty() {
                io.send(&sock, &udp_out);
                udp_out.clear();
            }
            if let Some((_, give_up)) = draining {
                if b2bua.settled() || std::time::Instant::now() >= give_up {
                    return;
                }
            }
        }
    }
}
