//! SIP over TCP and TLS: accepting connections (bounded), framing each by Content-Length,
//! opening connections to peers maskd sends to, and the writers by peer. Messages go to the
//! plane's thread as events; what it sends goes to each connection's writer task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::{Event, Events, CONNECT_TIMEOUT, MAX_PENDING_PER_PEER, MAX_STREAM_BUFFER};
use crate::sip::b2bua::Remote;
use crate::sip::{parse, Transport};

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
pub(super) fn admit_tcp(
    peer: SocketAddr,
    trusted: &[ipnet::IpNet],
    open: &AtomicUsize,
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
    // A place is taken under the cap in one step (the plane's thread opens connections too).
    if !reserve(open, limits.max_connections) {
        m.sip_tcp_refused.with_label_values(&["limit"]).inc();
        accepted.refused("limit", now);
        return None;
    }
    match accepted.admit(peer.ip(), now) {
        Ok(guard) => Some(guard),
        Err(why) => {
            release(open);
            m.sip_tcp_refused.with_label_values(&[why.as_str()]).inc();
            None
        }
    }
}

/// Takes one of `max` places in `count`; false when all are taken.
fn reserve(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// Gives a place back (never below 0).
fn release(count: &AtomicUsize) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

/// One TCP or TLS connection (`remote`): frames messages by Content-Length and hands them
/// to the B2BUA task; writes what the task sends back. Closes when the peer does, when
/// framing is lost, or when it stays idle and no call uses the peer.
async fn connection<S>(stream: S, remote: Remote, events: Events, idle: Duration)
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
pub(super) type TlsOut = (
    crate::tls::Connector,
    rustls::pki_types::ServerName<'static>,
);

/// Opens a connection to `to` in the background (the loop never waits on a connect), over
/// TLS with `tls`; its `Opened` event, or `ConnectFailed`, comes back through `events`.
fn connect(to: Remote, tls: Option<TlsOut>, events: Events, idle: Duration) {
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
    events: Events,
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

/// Accepts TCP (and TLS) connections until the plane stops: untrusted sources and
/// connections past the caps are closed at once, before anything is read or buffered.
pub(super) async fn accept(
    tcp: TcpListener,
    tls: Option<(TcpListener, crate::tls::Acceptor)>,
    trusted: Vec<ipnet::IpNet>,
    limits: TcpLimits,
    count: Arc<AtomicUsize>,
    events: Events,
) {
    let accepted =
        crate::limits::ConnLimits::new("sip", limits.max_connections, limits.max_per_address);
    let (tls_listener, acceptor) = match tls {
        Some((l, a)) => (Some(l), Some(a)),
        None => (None, None),
    };
    loop {
        let (r, over_tls) = tokio::select! {
            r = tcp.accept() => (r, false),
            r = accept_on(tls_listener.as_ref()) => (r, true),
        };
        let Ok((stream, peer)) = r else { continue };
        let Some(guard) = admit_tcp(peer, &trusted, &count, &limits, &accepted) else {
            continue;
        };
        let (events, idle) = (events.clone(), limits.idle_timeout);
        match (&acceptor, over_tls) {
            (Some(acceptor), true) => {
                accept_tls(stream, peer, acceptor.clone(), events, idle, guard);
            }
            _ => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    connection(stream, Remote::tcp(peer), events, idle).await;
                    drop(guard);
                });
            }
        }
    }
}

/// Accepts on `l`; never resolves when there is none.
async fn accept_on(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The TLS trunks' settings by address: each carrier's `tls` trunks, as resolved now.
pub(super) fn tls_trunks(
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
pub(super) struct Streams {
    pub(super) writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>, foldhash::fast::RandomState>,
    pub(super) pending: HashMap<SocketAddr, Vec<Vec<u8>>, foldhash::fast::RandomState>,
    /// Connections accepted or being opened, until their `Closed`/`ConnectFailed`; shared
    /// with the accepting task.
    pub(super) count: Arc<AtomicUsize>,
}

impl Streams {
    /// Sends `data` to `peer` over its connection, opening one when there is none. `false`
    /// when it cannot go (the connection's queue is full or closed, too many messages wait
    /// for the connection, or no connection may be opened): a transport error for the
    /// B2BUA, since TCP has no retransmission to make up for it.
    pub(super) fn send(
        &mut self,
        to: Remote,
        data: Vec<u8>,
        events: &Events,
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
        // maskd opens TLS connections only to trunks it has settings for.
        let settings = match to.tls {
            true => match tls.get(&peer) {
                Some(s) => Some(s.clone()),
                None => return false,
            },
            false => None,
        };
        if !reserve(&self.count, limits.max_connections) {
            return false;
        }
        self.pending.insert(peer, vec![data]);
        connect(to, settings, events.clone(), limits.idle_timeout);
        true
    }

    /// A connection closed, or one being made failed.
    pub(super) fn closed(&self) {
        release(&self.count);
    }

    /// Connections open or being made.
    pub(super) fn open(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(super) fn opened(&mut self, peer: SocketAddr, w: mpsc::Sender<Vec<u8>>) {
        for data in self.pending.remove(&peer).unwrap_or_default() {
            let _ = w.try_send(data);
        }
        self.writers.insert(peer, w);
    }
}
