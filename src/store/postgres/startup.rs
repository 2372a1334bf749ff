//! The start-up lock: nodes starting at once take turns loading the store and creating the
//! services their config lists, so the second finds what the first created instead of
//! creating it again (two services of one name, or one number added twice).

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio_postgres::Config;

use super::{connect, describe_error};
use crate::core::store::StoreError;

/// A session-level advisory lock (class and key apart from the migration and change-log
/// locks), on a connection of its own.
const STARTUP_LOCK: i64 = 0x6d61_736b_6400_0003;

/// Holds the lock until dropped; the server also lets go of it if this process dies.
pub(super) struct StartupLock {
    release: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for StartupLock {
    fn drop(&mut self) {
        self.release.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until this node holds the start-up lock.
pub(super) fn take(config: Config) -> Result<StartupLock, StoreError> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StoreError>>();
    let (release, released) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("maskd-startup-lock".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(StoreError::Io(e.to_string())));
                    return;
                }
            };
            rt.block_on(async move {
                let io = |e: tokio_postgres::Error| StoreError::Io(describe_error(&e));
                let client = match connect(&config).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(io(e)));
                        return;
                    }
                };
                if let Err(e) = client
                    .execute("SELECT pg_advisory_lock($1)", &[&STARTUP_LOCK])
                    .await
                {
                    let _ = ready_tx.send(Err(io(e)));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                // Held until the guard is dropped (the sender with it).
                let _ = tokio::task::spawn_blocking(move || released.recv()).await;
                let _ = client
                    .execute("SELECT pg_advisory_unlock($1)", &[&STARTUP_LOCK])
                    .await;
            });
        })
        .map_err(|e| StoreError::Io(e.to_string()))?;
    let lock = StartupLock {
        release: Some(release),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(lock),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Io("the start-up lock's thread ended".into())),
    }
}
