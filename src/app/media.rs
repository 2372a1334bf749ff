//! Wiring of the media plane: the relay (when `media.mode` is `anchor`), the recordings'
//! directory and start-up repair, and the retention task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::AppError;
use crate::clock::now_ms;
use crate::config::Validated;
use crate::core::engine::Engine;
use crate::core::store::StoreError;

/// Starts the relay threads, after a probe that `media.listen_ip` is an address of this
/// host. Recordings end in the engine (the Recording resource and its callback).
pub(super) fn start(
    cfg: &Validated,
    engine: Arc<Engine>,
) -> Result<Option<crate::net::sip::MediaPlane>, AppError> {
    if !cfg.media.anchor {
        return Ok(None);
    }
    let probe = SocketAddr::new(cfg.media.listen_ip, 0);
    let bind_err = |source| AppError::Bind {
        key: "media.listen_ip",
        addr: probe,
        source,
    };
    std::net::UdpSocket::bind(probe).map_err(bind_err)?;
    crate::net::media::raise_fd_limit();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = crate::net::media::Relay::start(
        crate::net::media::RelayConfig {
            listen_ip: cfg.media.listen_ip,
            ports: cfg.media.ports,
            timeout: cfg.media.timeout,
            threads: cfg.media.threads,
        },
        crate::clock::Millis::start(),
        tx,
        engine,
    )
    .map_err(bind_err)?;
    Ok(Some(crate::net::sip::MediaPlane {
        relay: Arc::new(relay),
        timeouts: rx,
    }))
}

/// Where recordings go, and the repair of every recording a crash left in progress (its
/// WAV header fixed, the recording completed and its callback queued).
pub(super) fn prepare_recordings(cfg: &Validated, engine: &Engine) -> Result<(), StoreError> {
    if let Err(e) = std::fs::create_dir_all(&cfg.media.recording_dir) {
        tracing::warn!(dir = %cfg.media.recording_dir.display(), error = %e, "recording dir not created");
    }
    engine.set_recording(crate::core::engine::RecordingSettings {
        dir: cfg.media.recording_dir.clone(),
        account_sid: cfg.raw.api.account_sid.clone(),
        public_url: cfg.public_url.clone(),
        clock: now_ms,
    });
    let repaired = engine.repair_recordings(now_ms())?;
    if repaired > 0 {
        tracing::info!(repaired, "recordings left in progress were finished");
    }
    Ok(())
}

/// Deletes recordings older than `retention` (rows and files), at start and hourly.
pub(super) fn spawn_retention(
    engine: Arc<Engine>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    let e = engine.clone();
                    match tokio::task::spawn_blocking(move || e.expire_recordings(now_ms(), retention)).await {
                        Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "recordings past retention deleted"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "recording retention failed"),
                        _ => {}
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });
}
