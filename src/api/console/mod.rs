//! The operators' web console at `/console` on the API listener, behind the API's
//! credentials: one page and its script and style, embedded in the binary (no CDN, nothing
//! built at run time), and the JSON it reads under `/console/api`. It shows what memory,
//! the store's report counters and the metrics already hold; closing a session is its one
//! write. Participants' numbers are masked to their last four digits unless the request
//! asks `reveal=1` (pool numbers are maskd's own and shown whole).

mod history;
mod views;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::error::ApiError;
use super::waits::{blocking, durable};
use super::{json_response, Shared};
use crate::core::model::{SessionStatus, Timestamp};
use crate::core::{Sid, SidKind, E164};

pub use history::History;

type ApiResult = Result<Response, ApiError>;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Only the page's own files; no frames, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The header the console's write carries: a page of another origin cannot send it without
/// a CORS preflight maskd never grants, so a browser holding the operator's credentials
/// cannot be made to close sessions from elsewhere.
pub const WRITE_HEADER: &str = "x-maskd-console";

/// What the console keeps besides the engine.
pub struct Console {
    pub history: History,
    /// The SMPP peers of the config (accounts and upstreams), for their bind health.
    pub peers: Vec<String>,
}

impl Console {
    pub fn new(peers: Vec<String>) -> Console {
        Console {
            history: History::default(),
            peers,
        }
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/console/api/services", get(services))
        .route("/console/api/services/{service}/numbers", get(numbers))
        .route("/console/api/services/{service}/contacts", get(contacts))
        .route("/console/api/sessions", get(search))
        .route("/console/api/sessions/{session}", get(session))
        .route("/console/api/sessions/{session}/close", post(close))
        .route("/console/api/health", get(health))
        .route("/console/api/recordings/{file}", get(recording))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn ok(v: serde_json::Value) -> ApiResult {
    let mut r = json_response(StatusCode::OK, &v);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The query parameters the console's reads take.
struct Opts {
    q: String,
    reveal: bool,
    days: Option<u32>,
}

impl Opts {
    fn of(uri: &Uri) -> Result<Opts, ApiError> {
        let p = super::params::Params::parse(uri.query().unwrap_or("").as_bytes());
        let days = match p.get("days") {
            None | Some("") => None,
            Some(d) => Some(
                d.parse::<u32>()
                    .ok()
                    .filter(|d| (1..=90).contains(d))
                    .ok_or_else(|| {
                        ApiError::invalid("days", "must be a whole number from 1 to 90")
                    })?,
            ),
        };
        Ok(Opts {
            q: p.get("q").unwrap_or("").to_string(),
            reveal: matches!(p.get("reveal"), Some("1" | "true")),
            days,
        })
    }
    fn reveal(&self) -> bool {
        self.reveal
    }
}

/// A participant's number as the console shows it.
pub(crate) fn shown(n: E164, reveal: bool) -> String {
    if reveal {
        n.to_string()
    } else {
        n.masked().to_string()
    }
}

fn now() -> Timestamp {
    crate::clock::now_ms() / 1000
}

async fn services(State(st): State<Shared>) -> ApiResult {
    let pools = st.engine.pool_use();
    let t = now();
    let list: Vec<_> = pools
        .iter()
        .map(|p| {
            let mut points = st.console.history.of(p.service);
            points.push((t, p.in_use, p.size));
            json!({
                "sid": p.service.to_string(),
                "unique_name": p.unique_name,
                "numbers": p.size,
                "numbers_in_use": p.in_use,
                "sessions_active": p.active_sessions,
                "utilisation": points
                    .iter()
                    .map(|(t, u, s)| json!({"t": t, "in_use": u, "size": s}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    ok(json!({ "services": list }))
}

async fn numbers(State(st): State<Shared>, Path(service): Path<String>, uri: Uri) -> ApiResult {
    let o = Opts::of(&uri)?;
    let svc = st.engine.resolve_service(&service)?;
    let days = i64::from(o.days.unwrap_or(7));
    let today = now() - now().rem_euclid(86_400);
    let q = crate::core::reports::ReportQuery {
        service: svc,
        from_day: crate::core::datetime::format(today - (days - 1) * 86_400)[..10].to_string(),
        to_day: crate::core::datetime::format(today)[..10].to_string(),
    };
    let store = st.engine.store().clone();
    let rows = crate::core::reports::pivot(blocking(move || store.report_counts(&q)).await?);
    let mut pool = Vec::new();
    let mut cursor = crate::core::engine::Cursor::Start;
    // Bounded: a pool is at most this many pages of the engine's listing.
    for _ in 0..100 {
        let page = st.engine.list_numbers(svc, cursor, 1000)?;
        if let Some(last) = page.items.last() {
            cursor = crate::core::engine::Cursor::After(last.seq);
        }
        let more = page.more_after;
        pool.extend(page.items);
        if !more {
            break;
        }
    }
    ok(views::numbers(&pool, &rows, today, days))
}

async fn contacts(State(st): State<Shared>, Path(service): Path<String>, uri: Uri) -> ApiResult {
    let o = Opts::of(&uri)?;
    let svc = st.engine.resolve_service(&service)?;
    let store = st.engine.store().clone();
    let q = crate::core::reports::ContactQuery {
        service: svc,
        proxy: None,
        offset: 0,
        limit: 200,
    };
    let list = blocking(move || store.contacts(&q)).await?;
    let reveal = o.reveal();
    ok(json!({
        "contacts": list.iter().map(|c| json!({
            "proxy_number": c.proxy.to_string(),
            "sender": shown(c.sender, reveal),
            "first_contact": crate::core::datetime::format(c.first_at),
            "last_contact": crate::core::datetime::format(c.last_at),
            "messages": c.messages,
            "calls": c.calls,
            "session_sid": c.session.map(|s| s.to_string()),
        })).collect::<Vec<_>>()
    }))
}

async fn search(State(st): State<Shared>, uri: Uri) -> ApiResult {
    let o = Opts::of(&uri)?;
    let found = st.engine.find_sessions(&o.q, 50);
    let reveal = o.reveal();
    let list: Vec<_> = found
        .iter()
        .map(|(s, parts)| views::session(&st, s, parts, reveal))
        .collect();
    ok(json!({ "sessions": list }))
}

async fn session(State(st): State<Shared>, Path(session): Path<String>, uri: Uri) -> ApiResult {
    let o = Opts::of(&uri)?;
    let sid =
        Sid::parse(SidKind::Session, &session).ok_or_else(|| ApiError::invalid_sid("Sid", "KC"))?;
    let (s, parts) = st
        .engine
        .find_sessions(&sid.to_string(), 1)
        .pop()
        .ok_or_else(ApiError::not_found)?;
    let store = st.engine.store().clone();
    let (interactions, recordings) = blocking(move || {
        let i = store.interactions(crate::core::store::InteractionQuery {
            session: sid,
            message_participant: None,
            after_seq: 0,
            before_seq: None,
            limit: 500,
        })?;
        let r = store.recordings(&crate::core::store::RecordingQuery {
            session: Some(sid),
            limit: 100,
            ..Default::default()
        })?;
        Ok((i, r))
    })
    .await?;
    let reveal = o.reveal();
    ok(views::timeline(
        &st,
        &s,
        &parts,
        &interactions,
        &recordings,
        reveal,
    ))
}

async fn close(
    State(st): State<Shared>,
    Path(session): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    if headers.get(WRITE_HEADER).is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            20403,
            "The console's writes carry its header",
        ));
    }
    let sid =
        Sid::parse(SidKind::Session, &session).ok_or_else(|| ApiError::invalid_sid("Sid", "KC"))?;
    let patch = crate::core::engine::SessionPatch {
        status: Some(SessionStatus::Closed),
        ..Default::default()
    };
    let (s, d) = st.engine.update_session(sid, patch, now())?;
    durable(d).await?;
    tracing::info!(session = %sid, "session closed from the console");
    ok(
        json!({ "sid": s.sid.to_string(), "status": s.status.as_str(), "closed_reason": s.closed_reason.as_str() }),
    )
}

async fn health(State(st): State<Shared>) -> ApiResult {
    let store = st.engine.store().clone();
    let oldest = blocking(move || store.callbacks_after(0, 20)).await?;
    ok(views::health(&st.console.peers, &oldest))
}

async fn recording(State(st): State<Shared>, Path(file): Path<String>, uri: Uri) -> ApiResult {
    if !file.ends_with(".wav") {
        return Err(ApiError::not_found());
    }
    super::recordings::wav(&st, &file, &uri).await
}

/// Samples every pool's use once a minute until `stop`, for the utilisation charts.
pub fn spawn_sampler(state: Shared, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(history::EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let pools = state.engine.pool_use();
                    state.console.history.record(now(), &pools);
                }
                _ = stop.changed() => break,
            }
        }
    });
}
