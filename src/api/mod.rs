//! The REST API, wire-compatible with Twilio Proxy v1: resources under `/v1/Services`,
//! form-encoded PascalCase parameters, snake_case JSON with every field present, Twilio's
//! paging envelope and error JSON, HTTP basic auth compared in constant time, and a body size
//! limit. It asks the engine for everything and awaits durability before answering 2xx.
//! Also the operator endpoints (`/metrics`, `/healthz`, `/readyz`) on their own listener.

pub mod auth;
mod calls;
pub mod console;
pub mod error;
mod keys;
pub mod params;
mod recordings;
mod render;
mod reports;
mod resources;
pub mod serve;
mod waits;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::core::Engine;
use error::ApiError;

/// What every handler needs.
pub struct ApiState {
    pub engine: Arc<Engine>,
    pub limiter: RateLimiter,
    /// Base of `url` and `links`, without a trailing slash.
    pub public_url: String,
    pub account_sid: String,
    pub auth_token: String,
    /// Accepted beside `auth_token` (rotation); signs nothing.
    pub auth_token_secondary: Option<String>,
    /// API keys whose secret this process has checked (`auth`).
    pub keys: crate::secret::VerifiedKeys,
    /// Bounds the argon2 checks running at once (`auth::KEY_CHECKS`).
    pub key_checks: tokio::sync::Semaphore,
    pub max_body: usize,
    pub console: console::Console,
}

pub type Shared = Arc<ApiState>;

pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut resp = (status, value.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// The `/v1` router with the rate limit, auth and request metrics.
pub fn router(state: Shared) -> Router {
    resources::routes()
        .merge(recordings::routes())
        .merge(calls::routes())
        .merge(reports::routes())
        .merge(console::routes())
        .merge(keys::routes())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(state.clone(), store_up))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(state.clone(), limit))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// A token bucket per client address: `rate` requests a second, `burst` at once. One
/// client's flood gets 429 (Twilio's 20429) and costs the others nothing. At most
/// `MAX_CLIENTS` addresses are tracked; beyond it, full (idle) buckets are forgotten first.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: parking_lot::Mutex<std::collections::HashMap<IpAddr, (f64, Instant)>>,
}

const MAX_CLIENTS: usize = 10_000;

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Default::default(),
        }
    }

    /// Takes a token for `ip` at `now`; `Err(seconds)` until one is available.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut b = self.buckets.lock();
        if b.len() >= MAX_CLIENTS && !b.contains_key(&ip) {
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if b.len() >= MAX_CLIENTS {
                return Err(1);
            }
        }
        let (tokens, at) = b.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

async fn limit(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip {
        if let Err(wait) = state.limiter.take(ip, Instant::now()) {
            let mut resp = ApiError::too_many_requests().into_response();
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
    }
    next.run(req).await
}

/// While the store cannot be reached (several nodes, PostgreSQL down) a change is refused at
/// once with 503 (Twilio error 20503) rather than acknowledged without being durable; reads
/// of what memory holds go on.
async fn store_up(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::GET && !state.engine.store().available() {
        return ApiError::unavailable().into_response();
    }
    next.run(req).await
}

async fn auth(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) && auth::cross_site(req.headers(), &state.public_url)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            20403,
            "A change from a page of another site is refused",
        )
        .into_response();
    }
    let from = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let Some(credential) = auth::credential(req.headers(), &state, from).await else {
        let mut resp = ApiError::unauthorized().into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"maskd\""),
        );
        return resp;
    };
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut req = req;
    req.extensions_mut().insert(credential.clone());
    let resp = next.run(req).await;
    auth::audit(&credential, &method, &path, resp.status());
    resp
}

async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    // The span carries the route template, never the path: paths hold SIDs and names.
    let span = tracing::debug_span!("api", method = %method, route = %route);
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request"
        )
    });
    let class = match resp.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let method = match method.as_str() {
        "GET" | "POST" | "DELETE" => method.as_str(),
        _ => "other",
    };
    let m = crate::metrics::get();
    m.api_requests
        .with_label_values(&[&route, method, class])
        .inc();
    m.api_duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Operator endpoints: `/metrics`, `/healthz` (the process serves), `/readyz` (the engine is
/// loaded and the store accepts writes).
pub fn ops_router(engine: Arc<Engine>, ready: Arc<AtomicBool>) -> Router {
    let store = engine.store().clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let engine = engine.clone();
                async move {
                    update_gauges(&engine);
                    let mut resp = crate::metrics::render().into_response();
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    resp
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Acquire);
                let store = store.available();
                async move {
                    match (ready, store) {
                        (true, true) => (StatusCode::OK, "ready\n"),
                        (true, false) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: store unreachable\n",
                        ),
                        _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
                    }
                }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, Body::from("not found\n")) })
}

fn update_gauges(engine: &Engine) {
    let m = crate::metrics::get();
    let stats = engine.stats();
    for (status, n) in stats.sessions_by_status {
        m.sessions
            .with_label_values(&[status.as_str()])
            .set(n as i64);
    }
    m.routing_table.set(stats.routes as i64);
    m.store_available.set(i64::from(engine.store().available()));
    m.wheel_size.set(stats.wheel as i64);
    m.pool_size.reset();
    m.pool_in_use.reset();
    for (service, size, in_use) in stats.pools {
        m.pool_size.with_label_values(&[&service]).set(size as i64);
        m.pool_in_use
            .with_label_values(&[&service])
            .set(in_use as i64);
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_per_address_refills_at_the_rate() {
        let l = RateLimiter::new(10, 3);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(a, t0).is_ok());
        }
        assert_eq!(l.take(a, t0), Err(1), "burst spent");
        assert!(l.take(b, t0).is_ok(), "another address is not affected");
        assert!(
            l.take(a, t0 + Duration::from_millis(100)).is_ok(),
            "one token per 1/rate"
        );
        assert!(l.take(a, t0 + Duration::from_millis(100)).is_err());
    }
}
