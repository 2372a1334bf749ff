//! Wiring: opens the store, rebuilds the engine, applies the services from config, binds the
//! API and metrics listeners, drives the timer wheel, and shuts down on SIGTERM/SIGINT
//! (stop accepting, drain in-flight requests for up to `shutdown_grace`, flush the store).
//! No business logic lives here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, ApiState};
use crate::config::StoreTarget;
use crate::config::Validated;
use crate::core::engine::{Engine, EngineOptions};
use crate::core::store::Store;
use crate::core::store::StoreError;
use crate::core::CoreError;
use crate::net::smpp::SmppPlane;
use crate::store::{PgStore, SqliteStore};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("store {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("{key} {addr}: cannot listen: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("services[{index}] ({name}): {source}")]
    Service {
        index: usize,
        name: String,
        source: CoreError,
    },
    #[error("store write failed while running: {0}; restart rebuilds from the last durable state")]
    StoreFailed(StoreError),
    #[error("the {0} plane {1} while running; restart to serve it again")]
    PlaneFailed(&'static str, &'static str),
}

impl AppError {
    /// sysexits-style exit codes: 69 unavailable (port), 74 I/O (store), 70 software.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Bind { .. } => 69,
            AppError::Store { .. } | AppError::StoreFailed(_) => 74,
            AppError::Service { .. } => 65,
            AppError::PlaneFailed(..) => 70,
        }
    }
}

use crate::clock::now_ms;

mod media;

/// The accept queue of every TCP listener: a burst of new connections waits there rather
/// than having its SYNs dropped and retried a second later (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    listen().map_err(|source| AppError::Bind { key, addr, source })
}

/// Runs the daemon until `shutdown` resolves (or the store fails).
pub async fn run(
    cfg: Validated,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    // SIGHUP from now on reads the API's certificate again; it never stops the daemon.
    let hangups = api::serve::hangups();
    let store_path = match &cfg.store {
        StoreTarget::Sqlite(path) => path.display().to_string(),
        StoreTarget::Postgres { url, .. } => crate::store::postgres::describe_url(url),
    };
    let store_err = |source| AppError::Store {
        path: store_path.clone(),
        source,
    };
    let (fatal_tx, mut fatal_rx) = watch::channel::<Option<StoreError>>(None);
    let on_fatal = Box::new(move |e| {
        let _ = fatal_tx.send(Some(e));
    });
    // Opening PostgreSQL blocks on the network (connect, migrate): off the runtime's workers.
    let target = cfg.store.clone();
    let store: Arc<dyn Store> = tokio::task::spawn_blocking(move || {
        Ok::<Arc<dyn Store>, StoreError>(match target {
            StoreTarget::Sqlite(path) => Arc::new(SqliteStore::open(&path, on_fatal)?),
            StoreTarget::Postgres {
                url,
                node_id,
                node_timeout,
            } => Arc::new(PgStore::open_with(&url, node_id, node_timeout, on_fatal)?),
        })
    })
    .await
    .map_err(|e| store_err(StoreError::Io(e.to_string())))?
    .map_err(store_err)?;
    let opts = EngineOptions {
        wheel_tick_ms: cfg.timer_tick.as_millis().max(1) as u64,
        node: match &cfg.store {
            StoreTarget::Sqlite(_) => None,
            StoreTarget::Postgres { node_id, .. } => Some(*node_id),
        },
        ..EngineOptions::default()
    };
    // Several nodes starting at once: one at a time loads the store and creates the services
    // its config lists, so the next finds them (held until they are durable, below).
    let turn = if cfg.services.is_empty() {
        None
    } else {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.startup_lock())
            .await
            .map_err(|e| store_err(StoreError::Io(e.to_string())))?
            .map_err(store_err)?
    };
    let started = std::time::Instant::now();
    let engine = Arc::new(Engine::open(store.clone(), opts, now_ms()).map_err(store_err)?);
    engine.set_carrier_names(cfg.carriers.list().iter().map(|c| c.name.clone()).collect());
    // Several nodes: the others' changes from here on (nothing to follow on SQLite).
    engine.start_following(now_ms).map_err(store_err)?;
    for (index, s) in cfg.services.iter().enumerate() {
        let d = engine
            .ensure_service(
                &s.unique_name,
                s.default_ttl,
                s.cooloff.as_secs(),
                s.record,
                &s.numbers,
                now_ms() / 1000,
            )
            .map_err(|source| AppError::Service {
                index,
                name: s.unique_name.clone(),
                source,
            })?;
        d.await.map_err(store_err)?;
    }
    drop(turn);
    media::prepare_recordings(&cfg, &engine).map_err(store_err)?;
    let closed = engine.expire(now_ms());
    let pending = engine.pending_outbound().map_err(store_err)?;
    let stats = engine.stats();
    tracing::info!(
        routes = stats.routes,
        armed = stats.wheel,
        closed_at_start = closed,
        queued_messages = pending.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state loaded"
    );

    let api_listener = bind("api.listen", cfg.api_listen).await?;
    let smpp_listener = bind("smpp.listen", cfg.smpp.listen).await?;
    let smpp_tls = match &cfg.smpp.tls {
        Some(t) => Some((bind("smpp.tls.listen", t.listen).await?, t.acceptor.clone())),
        None => None,
    };
    let smpp_tls_addr = match &smpp_tls {
        Some((l, _)) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        None => "-".to_string(),
    };
    let sip_socket = tokio::net::UdpSocket::bind(cfg.sip.listen)
        .await
        .map_err(|source| AppError::Bind {
            key: "sip.listen",
            addr: cfg.sip.listen,
            source,
        })?;
    let sip_addr = sip_socket.local_addr().map_err(|source| AppError::Bind {
        key: "sip.listen",
        addr: cfg.sip.listen,
        source,
    })?;
    // TCP on the same address and port as UDP.
    let sip_tcp = bind("sip.listen", sip_addr).await?;
    let sip_tls = match &cfg.sip.tls {
        Some(t) => Some((bind("sip.tls.listen", t.listen).await?, t.acceptor.clone())),
        None => None,
    };
    let sip_tls_addr = sip_tls.as_ref().and_then(|(l, _)| l.local_addr().ok());
    let media = media::start(&cfg, engine.clone())?;
    let smpp_addr = smpp_listener
        .local_addr()
        .map_err(|source| AppError::Bind {
            key: "smpp.listen",
            addr: cfg.smpp.listen,
            source,
        })?;
    let metrics_listener = bind("metrics.listen", cfg.metrics_listen).await?;
    let api_addr = api_listener.local_addr().map_err(|source| AppError::Bind {
        key: "api.listen",
        addr: cfg.api_listen,
        source,
    })?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| AppError::Bind {
            key: "metrics.listen",
            addr: cfg.metrics_listen,
            source,
        })?;

    let state = Arc::new(ApiState {
        engine: engine.clone(),
        limiter: crate::api::RateLimiter::new(
            cfg.raw.api.rate_limit_per_second,
            cfg.raw.api.rate_limit_burst,
        ),
        public_url: cfg.public_url.clone(),
        account_sid: cfg.raw.api.account_sid.clone(),
        auth_token: cfg.raw.api.auth_token.clone(),
        auth_token_secondary: cfg.raw.api.auth_token_secondary.clone(),
        keys: crate::secret::VerifiedKeys::default(),
        key_checks: tokio::sync::Semaphore::new(crate::api::auth::KEY_CHECKS),
        max_body: cfg.raw.api.max_body_bytes,
        console: crate::api::console::Console::new(
            cfg.raw
                .smpp
                .accounts
                .iter()
                .map(|a| a.system_id.clone())
                .chain(cfg.raw.smpp.upstreams.iter().map(|u| u.name.clone()))
                .collect(),
        ),
    });
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);

    let wheel_engine = engine.clone();
    let tick = cfg.timer_tick;
    let mut wheel_stop = stop_rx.clone();
    // The wheel ticks while it holds a timer; empty, its task sleeps until a session is
    // armed (a permit stored by `notify_one` is not lost if the arm comes before the wait).
    let armed = Arc::new(tokio::sync::Notify::new());
    engine.set_wheel_waker({
        let armed = armed.clone();
        Arc::new(move || armed.notify_one())
    });
    let wheel = tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if wheel_engine.wheel_is_empty() {
                tokio::select! {
                    _ = armed.notified() => interval.reset(),
                    _ = wheel_stop.changed() => break,
                }
            }
            tokio::select! {
                _ = interval.tick() => { wheel_engine.expire(now_ms()); }
                _ = wheel_stop.changed() => break,
            }
        }
    });

    media::spawn_retention(engine.clone(), cfg.media.retention, stop_rx.clone());
    crate::api::console::spawn_sampler(state.clone(), stop_rx.clone());

    let serve = |listener: TcpListener, router: axum::Router, mut stop: watch::Receiver<bool>| {
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await;
        })
    };
    let webhooks = Arc::new(crate::net::webhook::Webhooks::new(
        engine.clone(),
        cfg.raw.api.account_sid.clone(),
        cfg.raw.api.auth_token.clone(),
        cfg.webhook_timeout,
        cfg.raw.webhooks.intercept_on_error == "block",
    ));
    engine.set_callback_sink(crate::net::webhook::start_status_sender(
        webhooks.clone(),
        stop_rx.clone(),
        cfg.raw.webhooks.max_queued_in_memory as usize,
    ));
    let (smpp, smpp_rx) = SmppPlane::new(engine.clone(), &cfg);
    smpp.set_webhooks(webhooks.clone());
    engine.set_outbox(smpp.clone());
    smpp.start(smpp_listener, smpp_tls, smpp_rx, stop_rx.clone())
        .await
        .map_err(store_err)?;
    let sip_settings = crate::sip::b2bua::Settings {
        // An IPv6 literal goes into Via, Contact and From in brackets.
        advertised_host: crate::sip::uri::uri_host(&cfg.raw.sip.advertised_host),
        local_port: sip_addr.port(),
        tls_port: sip_tls_addr.map(|a| a.port()),
        trunk: cfg.sip.trunk,
        trusted: cfg.sip.trusted.clone(),
        assert_identity: cfg.raw.sip.assert_identity,
        max_calls: cfg.raw.sip.max_calls as usize,
        max_transactions: cfg.raw.sip.max_transactions as usize,
        keep_calls_on_close: cfg.raw.sip.keep_calls_on_close,
        server_header: Some(cfg.raw.sip.server_header.clone()).filter(|s| !s.is_empty()),
        trunk_tcp: cfg.raw.sip.transport == "tcp",
        ring_timeout: cfg.sip.ring_timeout.as_millis() as u64,
        media_ip: cfg.media.advertised_ip,
        carriers: cfg.carriers.clone(),
        tags: engine.carrier_tags(),
        dns_server: cfg
            .raw
            .sip
            .dns_server
            .as_deref()
            .and_then(|d| d.parse().ok()),
        timers: crate::sip::transaction::Timers {
            t1: cfg.sip.t1.as_millis() as u64,
            t2: cfg.sip.t2.as_millis() as u64,
            t4: cfg.sip.t4.as_millis() as u64,
        },
    };
    let sip_task = tokio::spawn(crate::net::sip::run(
        sip_socket,
        sip_tcp,
        sip_tls,
        cfg.sip.carrier_tls.clone(),
        sip_settings,
        crate::net::sip::TcpLimits {
            max_connections: cfg.sip.tcp_max_connections,
            max_per_address: cfg.bounds.sip.per_address,
            idle_timeout: cfg.sip.tcp_idle_timeout,
        },
        engine.clone(),
        webhooks.clone(),
        stop_rx.clone(),
        cfg.shutdown_grace,
        media,
    ));
    let api_bounds = api::serve::Bounds {
        limits: crate::limits::ConnLimits::new(
            "api",
            cfg.bounds.api.max,
            cfg.bounds.api.per_address,
        ),
        header_timeout: cfg.bounds.api_header_timeout,
        idle_timeout: cfg.bounds.api_idle_timeout,
        tls: cfg
            .bounds
            .api_tls
            .clone()
            .map(|files| Arc::new(api::serve::Tls::new(files))),
    };
    let api_task = tokio::spawn(api::serve::serve(
        api_listener,
        api::router(state),
        api_bounds,
        hangups,
        stop_rx.clone(),
        cfg.shutdown_grace,
    ));
    let ops_task = serve(
        metrics_listener,
        api::ops_router(engine.clone(), ready.clone()),
        stop_rx.clone(),
    );
    ready.store(true, Ordering::Release);
    tracing::info!(api = %api_addr, metrics = %metrics_addr, smpp = %smpp_addr, sip = %sip_addr, smpp_tls = %smpp_tls_addr, sip_tls = %sip_tls_addr.map_or("-".to_string(), |a| a.to_string()), "maskd ready");

    let mut failure = None;
    let mut sip_task = Some(sip_task);
    let requested = tokio::select! {
        _ = shutdown => true,
        _ = fatal_rx.changed() => {
            failure = fatal_rx.borrow().clone().map(AppError::StoreFailed);
            false
        }
        // The voice plane only returns after the stop: ending before it (a panic) means
        // calls are no longer served. Not ready from now on, and a non-zero exit so the
        // service manager restarts maskd (the store holds every session).
        // `sip_task` is Some here: it is set to None only inside this very branch.
        r = async { sip_task.as_mut().expect("taken only here").await } => {
            sip_task = None;
            let why = match r {
                Err(e) if e.is_panic() => "panicked",
                _ => "stopped",
            };
            tracing::error!(plane = "sip", why, "voice plane failed; stopping");
            failure = Some(AppError::PlaneFailed("sip", why));
            false
        }
    };
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    // Logged once every plane has been told: what arrives after this line sees the stop.
    if requested {
        tracing::info!("shutdown requested");
    }
    let drained = tokio::time::timeout(cfg.shutdown_grace, async {
        let _ = api_task.await;
        let _ = ops_task.await;
        let _ = wheel.await;
        // SMPP links answer what they accepted; the SIP plane lets calls end (and hangs up
        // what is left shortly before the grace runs out).
        smpp.drained().await;
        if let Some(t) = sip_task {
            let _ = t.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?cfg.shutdown_grace, "in-flight requests did not finish within shutdown_grace");
    }
    // Commit everything queued before exiting.
    let flush = store.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || flush.close()),
    )
    .await;
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}
