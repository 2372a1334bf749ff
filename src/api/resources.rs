//! The handlers, one per operation of the reference's §2 matrix. Each resolves the path
//! (Services and Sessions accept a SID or a UniqueName), parses parameters, asks the engine,
//! awaits durability for writes, and renders. ShortCodes are not offered (404).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::error::ApiError;
use super::params::{is_sid, Paging, Params};
use super::render::page_envelope;
use super::waits::{blocking, durable, within};
use super::{json_response, Shared};
use crate::core::engine::{Cursor, NewParticipant, NewSession, ServicePatch, SessionPatch};
use crate::core::model::*;
use crate::core::store::{Durable, InteractionQuery, StoreError};
use crate::core::{Sid, SidKind};

type ApiResult = Result<Response, ApiError>;

pub fn routes() -> Router<Shared> {
    let svc = "/v1/Services/{service}";
    let sess = "/v1/Services/{service}/Sessions/{session}";
    let part = "/v1/Services/{service}/Sessions/{session}/Participants/{participant}";
    Router::new()
        .route("/v1/Services", get(list_services).post(create_service))
        .route(
            svc,
            get(fetch_service)
                .post(update_service)
                .delete(delete_service),
        )
        .route(
            &format!("{svc}/PhoneNumbers"),
            get(list_numbers).post(create_number),
        )
        .route(
            &format!("{svc}/PhoneNumbers/{{number}}"),
            get(fetch_number).post(update_number).delete(delete_number),
        )
        .route(
            &format!("{svc}/Sessions"),
            get(list_sessions).post(create_session),
        )
        .route(
            sess,
            get(fetch_session)
                .post(update_session)
                .delete(delete_session),
        )
        .route(
            &format!("{sess}/Participants"),
            get(list_participants).post(create_participant),
        )
        .route(part, get(fetch_participant).delete(delete_participant))
        .route(&format!("{sess}/Interactions"), get(list_interactions))
        .route(
            &format!("{sess}/Interactions/{{interaction}}"),
            get(fetch_interaction).delete(delete_interaction),
        )
        .route(
            &format!("{part}/MessageInteractions"),
            get(list_message_interactions).post(create_message_interaction),
        )
        .route(
            &format!("{part}/MessageInteractions/{{interaction}}"),
            get(fetch_message_interaction),
        )
}

fn now() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn ok(status: StatusCode, v: Value) -> ApiResult {
    Ok(json_response(status, &v))
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Attempts of a change another node's session keeps refusing (see `settled`).
const CONFLICT_ATTEMPTS: u32 = 8;

/// Several nodes: a change to a session that the store refused because another node's
/// session holds a route key it claimed (`StoreError::Conflict`) is settled (memory back to
/// what is committed, the holder's session loaded) and made again, so the engine chooses as
/// a single node would, or answers what a single node would (80603, 80604, 80208…).
async fn settled<T>(
    st: &Shared,
    mut attempt: impl FnMut() -> Result<(T, Sid, Durable), crate::core::CoreError>,
) -> Result<T, ApiError> {
    for n in 0..CONFLICT_ATTEMPTS {
        if n > 0 {
            // The other nodes' latest sessions arrive by following meanwhile.
            tokio::time::sleep(std::time::Duration::from_millis(5 << n.min(5))).await;
        }
        let (value, session, d) = attempt()?;
        match within(d).await {
            Ok(()) => return Ok(value),
            Err(StoreError::Conflict) => {
                let engine = st.engine.clone();
                tokio::task::spawn_blocking(move || {
                    engine.settle_conflict(session, crate::clock::now_ms())
                })
                .await
                .map_err(|e| StoreError::Io(e.to_string()))??;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        20503,
        "Other nodes keep taking the proxy numbers chosen for this request; try again",
    ))
}

/// Reads a form body within the size limit; other content types are refused.
pub(super) async fn form(
    state: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<Params, ApiError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let ct = ct.split(';').next().unwrap_or("").trim();
        if !ct.is_empty() && !ct.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                80701,
                "Request body must be application/x-www-form-urlencoded",
            ));
        }
    }
    let bytes = axum::body::to_bytes(body, state.max_body)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                80701,
                format!("Request body is larger than {} bytes", state.max_body),
            )
        })?;
    Ok(Params::parse(&bytes))
}

fn paging(uri: &Uri) -> Result<Paging, ApiError> {
    Paging::from_query(&Params::parse(uri.query().unwrap_or("").as_bytes()))
}

fn service_sid(state: &Shared, key: &str) -> Result<Sid, ApiError> {
    Ok(state.engine.resolve_service(key)?)
}

fn session_sid(state: &Shared, svc: &str, sess: &str) -> Result<(Sid, Sid), ApiError> {
    let svc = service_sid(state, svc)?;
    let sess = state.engine.resolve_session(svc, sess)?;
    Ok((svc, sess))
}

/// A path SID that only a SID can fill: one that does not match Twilio's pattern is a 400
/// with Twilio's "Invalid … Sid" code; one that names nothing is a 404.
fn path_sid(kind: SidKind, param: &str, text: &str) -> Result<Sid, ApiError> {
    Sid::parse(kind, text).ok_or_else(|| {
        ApiError::invalid_sid(param, std::str::from_utf8(&kind.prefix()).unwrap_or("??"))
    })
}

/// `param` is the path parameter's name in Twilio's file (`Sid` or `ParticipantSid`).
fn participant_sid(
    state: &Shared,
    svc: &str,
    sess: &str,
    (param, part): (&str, &str),
) -> Result<(Sid, Sid, Sid), ApiError> {
    let (svc, sess) = session_sid(state, svc, sess)?;
    let part = path_sid(SidKind::Participant, param, part)?;
    state.engine.participant(sess, part)?;
    Ok((svc, sess, part))
}

/// A PhoneNumbers path key: a PN SID or, as maskd also allows, the number itself.
fn number_key(key: &str) -> Result<&str, ApiError> {
    if is_sid("PN", key) || crate::core::E164::parse(key).is_ok() {
        Ok(key)
    } else {
        Err(ApiError::invalid_sid("Sid", "PN"))
    }
}

// ----- Services -----

fn service_patch(state: &Shared, p: &Params) -> Result<ServicePatch, ApiError> {
    let base = &state.public_url;
    Ok(ServicePatch {
        unique_name: p.string("UniqueName"),
        default_ttl: p.u64("DefaultTtl")?,
        callback_url: p.url("CallbackUrl", base)?,
        geo_match_level: p.enumerated(
            "GeoMatchLevel",
            GeoMatchLevel::parse,
            &["area-code", "overlay", "radius", "country"],
        )?,
        number_selection_behavior: p.enumerated(
            "NumberSelectionBehavior",
            NumberSelection::parse,
            &["avoid-sticky", "prefer-sticky"],
        )?,
        intercept_callback_url: p.url("InterceptCallbackUrl", base)?,
        out_of_session_callback_url: p.url("OutOfSessionCallbackUrl", base)?,
        record: None,
        // Empty clears it, as with the callback URLs.
        chat_instance_sid: match p.get("ChatInstanceSid") {
            Some("") => Some(String::new()),
            _ => p.sid("ChatInstanceSid", "IS")?,
        },
        cooloff: None,
    })
}

async fn list_services(State(st): State<Shared>, uri: Uri) -> ApiResult {
    let pg = paging(&uri)?;
    let page = st.engine.list_services(pg.cursor, pg.size);
    let bounds = page
        .items
        .first()
        .zip(page.items.last())
        .map(|(a, b)| (a.seq, b.seq));
    let items = page.items.iter().map(|s| st.service_json(s)).collect();
    ok(
        StatusCode::OK,
        page_envelope(
            &st.services_url(),
            "services",
            items,
            &pg,
            bounds,
            page.more_after,
        ),
    )
}

async fn create_service(State(st): State<Shared>, headers: HeaderMap, body: Body) -> ApiResult {
    let p = form(&st, &headers, body).await?;
    p.required("UniqueName")?;
    let patch = service_patch(&st, &p)?;
    let (svc, d) = st.engine.create_service(patch, now())?;
    durable(d).await?;
    ok(StatusCode::CREATED, st.service_json(&svc))
}

async fn fetch_service(State(st): State<Shared>, Path(key): Path<String>) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    ok(StatusCode::OK, st.service_json(&st.engine.service(sid)?))
}

async fn update_service(
    State(st): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    let p = form(&st, &headers, body).await?;
    let patch = service_patch(&st, &p)?;
    let (svc, d) = st.engine.update_service(sid, patch, now())?;
    durable(d).await?;
    ok(StatusCode::OK, st.service_json(&svc))
}

async fn delete_service(State(st): State<Shared>, Path(key): Path<String>) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    durable(st.engine.delete_service(sid)?).await?;
    no_content()
}

// ----- PhoneNumbers -----

async fn list_numbers(State(st): State<Shared>, Path(key): Path<String>, uri: Uri) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    let pg = paging(&uri)?;
    let page = st.engine.list_numbers(sid, pg.cursor, pg.size)?;
    let bounds = page
        .items
        .first()
        .zip(page.items.last())
        .map(|(a, b)| (a.seq, b.seq));
    let items = page.items.iter().map(|n| st.number_json(n)).collect();
    let url = format!("{}/PhoneNumbers", st.service_url(sid));
    ok(
        StatusCode::OK,
        page_envelope(&url, "phone_numbers", items, &pg, bounds, page.more_after),
    )
}

async fn create_number(
    State(st): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    let p = form(&st, &headers, body).await?;
    let reserved = p.bool("IsReserved")?.unwrap_or(false);
    let pn = p.sid("Sid", "PN")?;
    // maskd extension: the carrier the number leaves by (README "Carriers").
    let carrier = p.get("Carrier").filter(|c| !c.is_empty()).map(String::from);
    let (n, d) = st.engine.add_number(
        sid,
        pn.as_deref(),
        p.get("PhoneNumber"),
        reserved,
        carrier,
        now(),
    )?;
    durable(d).await?;
    ok(StatusCode::CREATED, st.number_json(&n))
}

async fn fetch_number(
    State(st): State<Shared>,
    Path((key, number)): Path<(String, String)>,
) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    ok(
        StatusCode::OK,
        st.number_json(&st.engine.number(sid, number_key(&number)?)?),
    )
}

async fn update_number(
    State(st): State<Shared>,
    Path((key, number)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    let p = form(&st, &headers, body).await?;
    // maskd extension: `Carrier` tags the number with a carrier; empty takes the tag off.
    let carrier = p
        .get("Carrier")
        .map(|c| Some(c.to_string()).filter(|c| !c.is_empty()));
    let (n, d) = st.engine.update_number(
        sid,
        number_key(&number)?,
        p.bool("IsReserved")?,
        carrier,
        now(),
    )?;
    durable(d).await?;
    ok(StatusCode::OK, st.number_json(&n))
}

async fn delete_number(
    State(st): State<Shared>,
    Path((key, number)): Path<(String, String)>,
) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    durable(st.engine.delete_number(sid, number_key(&number)?)?).await?;
    no_content()
}

// ----- Sessions -----

fn session_status(p: &Params) -> Result<Option<SessionStatus>, ApiError> {
    p.enumerated(
        "Status",
        SessionStatus::parse,
        &["open", "in-progress", "closed", "failed", "unknown"],
    )
}

/// One `Participants` value: JSON text of an object with Identifier and optional
/// FriendlyName, ProxyIdentifier, ProxyIdentifierSid (PascalCase, camelCase or snake_case).
fn participant_from_json(text: &str) -> Result<NewParticipant, ApiError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|_| ApiError::invalid("Participants", "each value must be a JSON object"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid("Participants", "each value must be a JSON object"))?;
    let field = |names: &[&str]| -> Result<Option<String>, ApiError> {
        for n in names {
            match obj.get(*n) {
                Some(Value::String(s)) => return Ok(Some(s.clone())),
                Some(Value::Null) | None => continue,
                Some(_) => {
                    return Err(ApiError::invalid(
                        "Participants",
                        format!("{n} must be a string"),
                    ))
                }
            }
        }
        Ok(None)
    };
    let proxy_identifier_sid = field(&[
        "ProxyIdentifierSid",
        "proxyIdentifierSid",
        "proxy_identifier_sid",
    ])?
    .filter(|s| !s.is_empty());
    if proxy_identifier_sid
        .as_deref()
        .is_some_and(|s| !is_sid("PN", s))
    {
        return Err(ApiError::invalid_sid(
            "Participants.ProxyIdentifierSid",
            "PN",
        ));
    }
    Ok(NewParticipant {
        identifier: field(&["Identifier", "identifier"])?
            .ok_or_else(|| ApiError::missing("Participants.Identifier"))?,
        friendly_name: field(&["FriendlyName", "friendlyName", "friendly_name"])?,
        proxy_identifier: field(&["ProxyIdentifier", "proxyIdentifier", "proxy_identifier"])?,
        proxy_identifier_sid,
    })
}

async fn list_sessions(State(st): State<Shared>, Path(key): Path<String>, uri: Uri) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    let pg = paging(&uri)?;
    let page = st.engine.list_sessions(sid, pg.cursor, pg.size)?;
    let bounds = page
        .items
        .first()
        .zip(page.items.last())
        .map(|(a, b)| (a.seq, b.seq));
    let items = page.items.iter().map(|s| st.session_json(s)).collect();
    let url = format!("{}/Sessions", st.service_url(sid));
    ok(
        StatusCode::OK,
        page_envelope(&url, "sessions", items, &pg, bounds, page.more_after),
    )
}

async fn create_session(
    State(st): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let sid = service_sid(&st, &key)?;
    let p = form(&st, &headers, body).await?;
    let req = NewSession {
        unique_name: p.string("UniqueName").filter(|s| !s.is_empty()),
        date_expiry: p.date("DateExpiry")?,
        ttl: p.u64("Ttl")?,
        mode: p.enumerated(
            "Mode",
            Mode::parse,
            &["message-only", "voice-only", "voice-and-message"],
        )?,
        status: session_status(&p)?,
        participants: p
            .all("Participants")
            .map(participant_from_json)
            .collect::<Result<_, _>>()?,
        // maskd extension: record this session's answered calls (default: the service's).
        record: p.bool("Record")?,
    };
    let session = settled(&st, || {
        let (session, _, d) = st.engine.create_session(sid, req.clone(), now())?;
        Ok((session.clone(), session.sid, d))
    })
    .await?;
    ok(StatusCode::CREATED, st.session_json(&session))
}

async fn fetch_session(
    State(st): State<Shared>,
    Path((svc, sess)): Path<(String, String)>,
) -> ApiResult {
    let (_, sess) = session_sid(&st, &svc, &sess)?;
    ok(StatusCode::OK, st.session_json(&st.engine.session(sess)?))
}

async fn update_session(
    State(st): State<Shared>,
    Path((svc, sess)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let (_, sess) = session_sid(&st, &svc, &sess)?;
    let p = form(&st, &headers, body).await?;
    let patch = SessionPatch {
        date_expiry: p.date("DateExpiry")?,
        ttl: p.u64("Ttl")?,
        status: session_status(&p)?,
        record: p.bool("Record")?,
    };
    let session = settled(&st, || {
        let (session, d) = st.engine.update_session(sess, patch.clone(), now())?;
        Ok((session, sess, d))
    })
    .await?;
    ok(StatusCode::OK, st.session_json(&session))
}

async fn delete_session(
    State(st): State<Shared>,
    Path((svc, sess)): Path<(String, String)>,
) -> ApiResult {
    let (_, sess) = session_sid(&st, &svc, &sess)?;
    durable(st.engine.delete_session(sess)?).await?;
    no_content()
}

// ----- Participants -----

async fn list_participants(
    State(st): State<Shared>,
    Path((svc, sess)): Path<(String, String)>,
    uri: Uri,
) -> ApiResult {
    let (svc, sess) = session_sid(&st, &svc, &sess)?;
    let pg = paging(&uri)?;
    let page = st.engine.list_participants(sess, pg.cursor, pg.size)?;
    let bounds = page
        .items
        .first()
        .zip(page.items.last())
        .map(|(a, b)| (a.seq, b.seq));
    let items = page.items.iter().map(|p| st.participant_json(p)).collect();
    let url = format!("{}/Participants", st.session_url(svc, sess));
    ok(
        StatusCode::OK,
        page_envelope(&url, "participants", items, &pg, bounds, page.more_after),
    )
}

async fn create_participant(
    State(st): State<Shared>,
    Path((svc, sess)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let (_, sess) = session_sid(&st, &svc, &sess)?;
    let p = form(&st, &headers, body).await?;
    let req = NewParticipant {
        identifier: p.required("Identifier")?,
        friendly_name: p.string("FriendlyName"),
        proxy_identifier: p.string("ProxyIdentifier").filter(|s| !s.is_empty()),
        proxy_identifier_sid: p.sid("ProxyIdentifierSid", "PN")?,
    };
    let part = settled(&st, || {
        let (part, d) = st.engine.add_participant(sess, req.clone(), now())?;
        Ok((part, sess, d))
    })
    .await?;
    ok(StatusCode::CREATED, st.participant_json(&part))
}

async fn fetch_participant(
    State(st): State<Shared>,
    Path((svc, sess, part)): Path<(String, String, String)>,
) -> ApiResult {
    let (_, sess, part) = participant_sid(&st, &svc, &sess, ("Sid", &part))?;
    ok(
        StatusCode::OK,
        st.participant_json(&st.engine.participant(sess, part)?),
    )
}

async fn delete_participant(
    State(st): State<Shared>,
    Path((svc, sess, part)): Path<(String, String, String)>,
) -> ApiResult {
    let (_, sess, part) = participant_sid(&st, &svc, &sess, ("Sid", &part))?;
    let (_, d) = st.engine.delete_participant(sess, part, now())?;
    durable(d).await?;
    no_content()
}

// ----- Interactions -----

async fn interaction_page(
    st: &Shared,
    session: Sid,
    participant: Option<Sid>,
    pg: &Paging,
) -> Result<(Vec<Interaction>, bool), ApiError> {
    let (after_seq, before_seq) = match pg.cursor {
        Cursor::Start => (0, None),
        Cursor::After(s) => (s, None),
        Cursor::Before(s) => (0, Some(s)),
    };
    let q = InteractionQuery {
        session,
        message_participant: participant,
        after_seq,
        before_seq,
        limit: pg.size + 1,
    };
    let store = st.engine.store().clone();
    let mut rows = blocking(move || store.interactions(q)).await?;
    let more = rows.len() > pg.size || before_seq.is_some();
    if before_seq.is_some() && rows.len() > pg.size {
        rows.remove(0);
    }
    rows.truncate(pg.size);
    Ok((rows, more))
}

async fn load_interaction(st: &Shared, session: Sid, key: &str) -> Result<Interaction, ApiError> {
    let sid = path_sid(SidKind::Interaction, "Sid", key)?;
    let store = st.engine.store().clone();
    let found = blocking(move || store.interaction(sid)).await?;
    found
        .filter(|i| i.session_sid == session)
        .ok_or_else(ApiError::not_found)
}

async fn list_interactions(
    State(st): State<Shared>,
    Path((svc, sess)): Path<(String, String)>,
    uri: Uri,
) -> ApiResult {
    let (svc, sess) = session_sid(&st, &svc, &sess)?;
    let pg = paging(&uri)?;
    let (rows, more) = interaction_page(&st, sess, None, &pg).await?;
    let bounds = rows.first().zip(rows.last()).map(|(a, b)| (a.seq, b.seq));
    let items = rows.iter().map(|i| st.interaction_json(i, None)).collect();
    let url = format!("{}/Interactions", st.session_url(svc, sess));
    ok(
        StatusCode::OK,
        page_envelope(&url, "interactions", items, &pg, bounds, more),
    )
}

async fn fetch_interaction(
    State(st): State<Shared>,
    Path((svc, sess, ki)): Path<(String, String, String)>,
) -> ApiResult {
    let (_, sess) = session_sid(&st, &svc, &sess)?;
    let i = load_interaction(&st, sess, &ki).await?;
    ok(StatusCode::OK, st.interaction_json(&i, None))
}

async fn delete_interaction(
    State(st): State<Shared>,
    Path((svc, sess, ki)): Path<(String, String, String)>,
) -> ApiResult {
    let (_, sess) = session_sid(&st, &svc, &sess)?;
    let i = load_interaction(&st, sess, &ki).await?;
    durable(st.engine.delete_interaction(i.sid)).await?;
    no_content()
}

async fn list_message_interactions(
    State(st): State<Shared>,
    Path((svc, sess, part)): Path<(String, String, String)>,
    uri: Uri,
) -> ApiResult {
    let (svc, sess, part) = participant_sid(&st, &svc, &sess, ("ParticipantSid", &part))?;
    let pg = paging(&uri)?;
    let (rows, more) = interaction_page(&st, sess, Some(part), &pg).await?;
    let bounds = rows.first().zip(rows.last()).map(|(a, b)| (a.seq, b.seq));
    let items = rows
        .iter()
        .map(|i| st.interaction_json(i, Some(part)))
        .collect();
    let url = format!(
        "{}/MessageInteractions",
        st.participant_url(svc, sess, part)
    );
    // Twilio's key for MessageInteraction lists is `interactions`.
    ok(
        StatusCode::OK,
        page_envelope(&url, "interactions", items, &pg, bounds, more),
    )
}

async fn create_message_interaction(
    State(st): State<Shared>,
    Path((svc, sess, part)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let (_, sess, part) = participant_sid(&st, &svc, &sess, ("ParticipantSid", &part))?;
    let p = form(&st, &headers, body).await?;
    let text = match (p.get("Body"), p.get("MediaUrl")) {
        (Some(b), _) if !b.is_empty() => b.to_string(),
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "MediaUrl",
                "media is not supported; send a Body",
            ))
        }
        _ => return Err(ApiError::missing("Body")),
    };
    if text.chars().count() > 1600 {
        return Err(ApiError::invalid("Body", "must be at most 1600 characters"));
    }
    let (interaction, msg, d) = st
        .engine
        .create_message_interaction(sess, part, &text, now())?;
    durable(d).await?;
    st.engine.enqueue_outbound(msg);
    ok(
        StatusCode::CREATED,
        st.interaction_json(&interaction, Some(part)),
    )
}

async fn fetch_message_interaction(
    State(st): State<Shared>,
    Path((svc, sess, part, ki)): Path<(String, String, String, String)>,
) -> ApiResult {
    let (_, sess, part) = participant_sid(&st, &svc, &sess, ("ParticipantSid", &part))?;
    let i = load_interaction(&st, sess, &ki).await?;
    if i.message_participant_sid != Some(part) {
        return Err(ApiError::not_found());
    }
    ok(StatusCode::OK, st.interaction_json(&i, Some(part)))
}
