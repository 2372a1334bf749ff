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
    /// Lets go: the lock's thread unlocks and closes its connection by itself (not waited
    /// for: the server also lets go when the connection closes, and a store gone at that
    /// moment must not hold start-up).
    fn drop(&mut self) {
        self.release.take();
        self.thread.take();
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
                // Tried every second, with a word now and then, rather than waited on
                // blindly: a node holding it from behind a broken network keeps it until its
                // connection is found dead.
                let since = std::time::Instant::now();
                let mut said = 0u64;
                loop {
                    match client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&STARTUP_LOCK])
                        .await
                    {
                        Ok(row) if row.get::<_, bool>(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            let _ = ready_tx.send(Err(io(e)));
                            return;
                        }
                    }
                    let waited = since.elapsed().as_secs();
                    if waited >= 10 && waited / 10 > said {
                        said = waited / 10;
                        tracing::warn!(
                            waited_s = waited,
                            "another node is starting; waiting for its turn to end"
                        );
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
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
