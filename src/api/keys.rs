//! Twilio's 2010-04-01 Key resource: API keys an app authenticates with (`SK…:secret`)
//! instead of the account's auth token, one per app or team, revocable alone. Create
//! (`FriendlyName`; the secret is shown this once), list and fetch (never the secret),
//! update of `FriendlyName`, delete (the key stops working at once). Keys are managed with
//! the account's credentials only, as Twilio's standard keys cannot manage keys.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::auth::Credential;
use super::error::ApiError;
use super::params::{Paging, Params};
use super::waits::durable;
use super::{json_response, Shared};
use crate::core::datetime::format_rfc2822;
use crate::core::model::ApiKey;
use crate::core::{Sid, SidKind};

type ApiResult = Result<Response, ApiError>;

pub fn routes() -> Router<Shared> {
    let acc = "/2010-04-01/Accounts/{account}";
    Router::new()
        .route(&format!("{acc}/Keys.json"), get(list).post(create))
        .route(
            &format!("{acc}/Keys/{{file}}"),
            get(fetch).post(update).delete(delete),
        )
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        20404,
        format!("The requested resource {path} was not found"),
    )
}

/// The account must be maskd's, and the credential the account's own.
fn allowed(st: &Shared, account: &str, who: &Credential, uri: &Uri) -> Result<(), ApiError> {
    if account != st.account_sid {
        return Err(not_found(uri.path()));
    }
    if matches!(who, Credential::Key(_)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            20403,
            "API keys cannot manage keys: use the account's auth token",
        ));
    }
    Ok(())
}

fn key_json(k: &ApiKey) -> Value {
    json!({
        "sid": k.sid.to_string(),
        "friendly_name": k.friendly_name,
        "date_created": format_rfc2822(k.date_created),
        "date_updated": format_rfc2822(k.date_updated),
    })
}

/// `SK….json` (or no extension).
fn key_sid(file: &str, uri: &Uri) -> Result<Sid, ApiError> {
    let stem = file.strip_suffix(".json").unwrap_or(file);
    Sid::parse(SidKind::Key, stem).ok_or_else(|| not_found(uri.path()))
}

fn name(p: &Params) -> Result<Option<String>, ApiError> {
    match p.get("FriendlyName") {
        None => Ok(None),
        Some(n) if n.chars().count() > crate::core::engine::MAX_KEY_NAME => Err(ApiError::invalid(
            "FriendlyName",
            "must be at most 64 characters",
        )),
        Some(n) => Ok(Some(n.to_string())),
    }
}

fn now() -> i64 {
    crate::clock::now_ms() / 1000
}

async fn create(
    State(st): State<Shared>,
    Path(acc): Path<String>,
    Extension(who): Extension<Credential>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    allowed(&st, &acc, &who, &uri)?;
    let p = super::resources::form(&st, &headers, body).await?;
    let friendly = name(&p)?.unwrap_or_default();
    let secret = crate::secret::new_key_secret();
    // Hashing takes tens of milliseconds: off the runtime's threads.
    let s = secret.clone();
    let hash = tokio::task::spawn_blocking(move || crate::secret::hash_key_secret(&s))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                80504,
                "Internal server error",
            )
        })?;
    let (key, d) = st.engine.create_key(&friendly, hash, now());
    durable(d).await?;
    // Made here with this secret: no need to check it again.
    st.keys.remember(key.sid, secret.as_bytes());
    let mut v = key_json(&key);
    v["secret"] = json!(secret);
    Ok(json_response(StatusCode::CREATED, &v))
}

async fn list(
    State(st): State<Shared>,
    Path(acc): Path<String>,
    Extension(who): Extension<Credential>,
    uri: Uri,
) -> ApiResult {
    allowed(&st, &acc, &who, &uri)?;
    let p = Params::parse(uri.query().unwrap_or("").as_bytes());
    let pg = Paging::from_query(&p)?;
    let page = st.engine.list_keys(pg.cursor, pg.size);
    let base = format!("{}?PageSize={}", uri.path(), pg.size);
    let items = page.items.iter().map(key_json).collect();
    let seqs = (
        page.items.first().map(|k| k.seq),
        page.items.last().map(|k| k.seq),
    );
    Ok(json_response(
        StatusCode::OK,
        &super::recordings::envelope("keys", items, &pg, &base, seqs, page.more_after),
    ))
}

async fn fetch(
    State(st): State<Shared>,
    Path((acc, file)): Path<(String, String)>,
    Extension(who): Extension<Credential>,
    uri: Uri,
) -> ApiResult {
    allowed(&st, &acc, &who, &uri)?;
    let sid = key_sid(&file, &uri)?;
    let key = st.engine.key(sid).map_err(|_| not_found(uri.path()))?;
    Ok(json_response(StatusCode::OK, &key_json(&key)))
}

async fn update(
    State(st): State<Shared>,
    Path((acc, file)): Path<(String, String)>,
    Extension(who): Extension<Credential>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    allowed(&st, &acc, &who, &uri)?;
    let sid = key_sid(&file, &uri)?;
    let p = super::resources::form(&st, &headers, body).await?;
    let friendly = name(&p)?;
    let (key, d) = st
        .engine
        .update_key(sid, friendly.as_deref(), now())
        .map_err(|_| not_found(uri.path()))?;
    durable(d).await?;
    Ok(json_response(StatusCode::OK, &key_json(&key)))
}

async fn delete(
    State(st): State<Shared>,
    Path((acc, file)): Path<(String, String)>,
    Extension(who): Extension<Credential>,
    uri: Uri,
) -> ApiResult {
    allowed(&st, &acc, &who, &uri)?;
    let sid = key_sid(&file, &uri)?;
    let d = st
        .engine
        .delete_key(sid)
        .map_err(|_| not_found(uri.path()))?;
    st.keys.forget(sid);
    durable(d).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
