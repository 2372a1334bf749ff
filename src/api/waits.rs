//! Waiting on the store from a request's handler: a change until it is durable (bounded),
//! and a read on the runtime's blocking pool. One place, so every resource (REST, Keys, the
//! console, reports) answers a slow or gone store the same way.

use axum::http::StatusCode;

use super::error::ApiError;
use crate::core::store::{Durable, StoreError};

/// How long an API answer waits for its change to be durable. Past it (the store went away
/// while the change was on its way) the answer is 503: the change is in memory and is
/// written when the store returns.
const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for `d`, the answer being the API's error when it failed or did not come in time.
pub(super) async fn durable(d: Durable) -> Result<(), ApiError> {
    within(d).await.map_err(ApiError::from)
}

/// Waits for `d` at most `DURABLE_WAIT`.
pub(super) async fn within(d: Durable) -> Result<(), StoreError> {
    match tokio::time::timeout(DURABLE_WAIT, d).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(
            "the change was not confirmed in time; it is written when the store returns".into(),
        )),
    }
}

/// Runs a store read `f` on the blocking pool; a read that panicked is a 500.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            80504,
            "Internal server error",
        )
    })??)
}
