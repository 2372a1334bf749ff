//! Serves the API's router on its listener with bounds: at most so many connections, and so
//! many per source address (`limits::ConnLimits`); a request's header must arrive whole
//! within `header_timeout` of its first byte (slowloris), a new connection must start its
//! first request within the same time, and a keep-alive connection idle for `idle_timeout`
//! is closed. HTTP/1.1 through hyper, one task per connection; with `api.tls`, HTTPS (the
//! handshake bounded by `tls::HANDSHAKE_TIMEOUT`; the certificate and key read again on
//! SIGHUP, for new connections, the open ones kept).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::limits::ConnLimits;

/// A listener's bounds.
#[derive(Clone)]
pub struct Bounds {
    pub limits: ConnLimits,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// HTTPS: the settings new connections get (replaced on SIGHUP).
    pub tls: Option<Arc<Tls>>,
}

/// The API's TLS settings and the files they are read from.
pub struct Tls {
    files: crate::config::bounds::ApiTlsFiles,
    current: Mutex<crate::tls::Acceptor>,
}

impl Tls {
    pub fn new(files: crate::config::bounds::ApiTlsFiles) -> Tls {
        let current = Mutex::new(files.acceptor.clone());
        Tls { files, current }
    }

    /// Reads the certificate and key again; on a problem the settings in use stay.
    pub fn reload(&self) -> Result<(), String> {
        let config = crate::tls::server(&self.files.cert, &self.files.key, None)?;
        *self.current.lock() = tokio_rustls::TlsAcceptor::from(config);
        Ok(())
    }

    fn acceptor(&self) -> crate::tls::Acceptor {
        self.current.lock().clone()
    }
}

/// Where a connection is between requests.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request's first byte since then; `first`: no request yet.
    Idle { since: Instant, first: bool },
    /// A request's header is arriving, its first byte read then.
    Head { since: Instant },
    /// A request is being read or answered; bytes last moved then (an answer that stops
    /// moving, a body that trickles, is cut after the idle timeout).
    Busy { since: Instant },
}

/// The phase, shared by the connection's reads and its service.
#[derive(Clone)]
struct Activity(Arc<Mutex<Phase>>);

impl Activity {
    fn read_some(&self) {
        let mut p = self.0.lock();
        match *p {
            Phase::Idle { .. } => {
                *p = Phase::Head {
                    since: Instant::now(),
                }
            }
            Phase::Busy { .. } => {
                *p = Phase::Busy {
                    since: Instant::now(),
                }
            }
            Phase::Head { .. } => {}
        }
    }
    fn wrote_some(&self) {
        let mut p = self.0.lock();
        if let Phase::Busy { .. } = *p {
            *p = Phase::Busy {
                since: Instant::now(),
            };
        }
    }
    fn busy(&self) {
        *self.0.lock() = Phase::Busy {
            since: Instant::now(),
        };
    }
    fn answered(&self) {
        *self.0.lock() = Phase::Idle {
            since: Instant::now(),
            first: false,
        };
    }
    /// When the phase's time runs out, and what for (`None`: no limit now).
    fn deadline(&self, b: &Bounds) -> Option<(Instant, &'static str)> {
        match *self.0.lock() {
            Phase::Idle { since, first: true } => {
                Some((since + b.header_timeout, "header_timeout"))
            }
            Phase::Idle { since, .. } => Some((since + b.idle_timeout, "idle_timeout")),
            Phase::Head { since } => Some((since + b.header_timeout, "header_timeout")),
            Phase::Busy { since } => Some((since + b.idle_timeout, "stalled")),
        }
    }
}

/// The stream, telling `Activity` when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote_some();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that tells `Activity` when it has all gone (or was dropped).
struct Tracked {
    inner: axum::body::Body,
    activity: Option<Activity>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(a) = self.activity.take() {
            a.answered();
        }
    }
}

impl axum::body::HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) {
            if let Some(a) = self.activity.take() {
                a.answered();
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accepts and serves until `stop`; then lets open connections finish (bounded).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    bounds: Bounds,
    mut hangup: Hangups,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            // SIGHUP reads the API's certificate again; it never stops the daemon.
            Some(()) = next_hangup(&mut hangup) => match &bounds.tls {
                Some(tls) => match tls.reload() {
                    Ok(()) => tracing::info!("api tls certificate read again (SIGHUP)"),
                    Err(e) => tracing::warn!(error = %e, "api tls certificate not read again; the one in use stays"),
                },
                None => tracing::info!("SIGHUP: nothing to read again (no api.tls)"),
            },
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: a moment, not a spin; told
                        // in the listener's summary line, not a line each.
                        tracing::debug!(error = %e, "api accept failed");
                        bounds.limits.refused("accept_failed", std::time::Instant::now());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(guard) = bounds.limits.admit(peer.ip(), std::time::Instant::now()) else {
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (router, bounds, stop) = (router.clone(), bounds.clone(), stop.clone());
                conns.spawn(async move {
                    match &bounds.tls {
                        None => connection(stream, peer, router, &bounds, stop).await,
                        Some(tls) => {
                            let acceptor = tls.acceptor();
                            let hs = tokio::time::timeout(
                                crate::tls::HANDSHAKE_TIMEOUT,
                                acceptor.accept(stream),
                            );
                            match hs.await {
                                Ok(Ok(s)) => connection(s, peer, router, &bounds, stop).await,
                                // Plain HTTP, a scanner, a client that does not trust us.
                                _ => crate::metrics::get()
                                    .tls_failed
                                    .with_label_values(&["api", "accept"])
                                    .inc(),
                            }
                        }
                    }
                    drop(guard);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
}

/// SIGHUP, where there are signals: taken from the start of the daemon (before the store
/// loads), so that it never stops maskd.
#[cfg(unix)]
pub type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangups = Option<()>;

#[cfg(unix)]
pub fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
pub fn hangups() -> Hangups {
    None
}

#[cfg(unix)]
async fn next_hangup(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Option<()>) -> Option<()> {
    std::future::pending().await
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    bounds: &Bounds,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity(Arc::new(Mutex::new(Phase::Idle {
        since: Instant::now(),
        first: true,
    })));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let (router, act) = (router.clone(), act.clone());
        act.busy();
        req.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let resp = router
                .oneshot(req.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            // Answered once the whole body has gone (a recording is streamed).
            Ok::<_, Infallible>(resp.map(|body| {
                axum::body::Body::new(Tracked {
                    inner: body,
                    activity: Some(act),
                })
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The phases are timed here (hyper's own header timer would also cut idle
        // connections at its default 30 s).
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(bounds);
        let wake = deadline.map_or_else(|| Instant::now() + Duration::from_secs(3600), |d| d.0);
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = tokio::time::sleep_until(wake), if deadline.is_some() => {
                // The phase may have moved on since the deadline was read.
                if let Some((at, why)) = activity.deadline(bounds) {
                    if Instant::now() >= at {
                        crate::metrics::get()
                            .api_connections_closed
                            .with_label_values(&[why])
                            .inc();
                        break;
                    }
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
