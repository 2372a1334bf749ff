//! Twilio's 2010-04-01 Recording resource over maskd's recorded calls: list (paged, newest
//! first, filters `DateCreated`/`DateCreated<`/`DateCreated>` and `CallSid`), fetch, delete,
//! the media (`.wav`, or no extension, streamed from disk), and a call's recordings (list,
//! and fetch or delete of one only under its own call). Fields,
//! formats (RFC 2822 dates, `duration` a string) and the list envelope are Twilio's; errors
//! are its `{code, message, more_info, status}`. An AccountSid other than maskd's is 404.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::error::ApiError;
use super::params::{Paging, Params};
use super::{json_response, Shared};
use crate::core::datetime;
use crate::core::engine::recordings::{wire_status, SOURCE};
use crate::core::engine::Cursor;
use crate::core::model::{Recording, RecordingStatus};
use crate::core::store::RecordingQuery;
use crate::core::{Sid, SidKind};

type ApiResult = Result<Response, ApiError>;

const API_VERSION: &str = "2010-04-01";
/// Bytes read from a recording per chunk of the response.
const CHUNK: usize = 64 * 1024;

pub fn routes() -> Router<Shared> {
    let acc = "/2010-04-01/Accounts/{account}";
    Router::new()
        .route(&format!("{acc}/Recordings.json"), get(list))
        .route(
            &format!("{acc}/Recordings/{{file}}"),
            get(fetch).delete(delete),
        )
        .route(
            &format!("{acc}/Calls/{{call}}/Recordings.json"),
            get(list_for_call),
        )
        .route(
            &format!("{acc}/Calls/{{call}}/Recordings/{{file}}"),
            get(fetch_for_call).delete(delete_for_call),
        )
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        20404,
        format!("The requested resource {what} was not found"),
    )
}

fn account(st: &Shared, account: &str, uri: &Uri) -> Result<(), ApiError> {
    if account == st.account_sid {
        Ok(())
    } else {
        Err(not_found(uri.path()))
    }
}

impl super::ApiState {
    fn recordings_uri(&self) -> String {
        format!("/{API_VERSION}/Accounts/{}/Recordings", self.account_sid)
    }

    pub fn recording_json(&self, r: &Recording) -> Value {
        let base = format!("{}/{}", self.recordings_uri(), r.sid);
        let d = datetime::format_rfc2822;
        json!({
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "call_sid": r.call_sid,
            "conference_sid": null,
            "date_created": d(r.date_created),
            "date_updated": d(r.date_updated),
            "start_time": d(r.start_ms.div_euclid(1000)),
            // Twilio shows -1 until a recording is finished.
            "duration": match (r.status, r.duration) {
                (RecordingStatus::InProgress, _) | (_, None) => "-1".to_string(),
                (_, Some(s)) => s.to_string(),
            },
            "sid": r.sid.to_string(),
            "price": null,
            "price_unit": "USD",
            "status": wire_status(r.status),
            "channels": 2,
            "source": SOURCE,
            "error_code": r.error_code,
            "uri": format!("{base}.json"),
            "encryption_details": null,
            "subresource_uris": {
                "add_on_results": format!("{base}/AddOnResults.json"),
                "transcriptions": format!("{base}/Transcriptions.json"),
            },
            "media_url": format!("{}{base}", self.public_url),
            "track": "both",
        })
    }
}

/// `YYYY-MM-DD` (a whole day in GMT) or a date-time.
fn day(p: &Params, name: &str) -> Result<Option<(i64, bool)>, ApiError> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => datetime::parse(v)
            .map(|t| Some((t, v.trim().len() == 10)))
            .ok_or_else(|| ApiError::invalid(name, "must be a date (YYYY-MM-DD) or date-time")),
    }
}

async fn list(State(st): State<Shared>, Path(acc): Path<String>, uri: Uri) -> ApiResult {
    account(&st, &acc, &uri)?;
    let p = Params::parse(uri.query().unwrap_or("").as_bytes());
    let call = match p.get("CallSid").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            Sid::parse(SidKind::Call, v)
                .ok_or_else(|| ApiError::invalid_sid("CallSid", "CA"))?
                .to_string(),
        ),
    };
    page(&st, &uri, &p, call).await
}

async fn list_for_call(
    State(st): State<Shared>,
    Path((acc, call)): Path<(String, String)>,
    uri: Uri,
) -> ApiResult {
    account(&st, &acc, &uri)?;
    let call = Sid::parse(SidKind::Call, &call).ok_or_else(|| not_found(uri.path()))?;
    let p = Params::parse(uri.query().unwrap_or("").as_bytes());
    page(&st, &uri, &p, Some(call.to_string())).await
}

async fn page(st: &Shared, uri: &Uri, p: &Params, call: Option<String>) -> ApiResult {
    let pg = Paging::from_query(p)?;
    let mut q = RecordingQuery {
        call_sid: call,
        limit: pg.size + 1,
        ..RecordingQuery::default()
    };
    if let Some((t, whole_day)) = day(p, "DateCreated")? {
        q.created_from = Some(t);
        q.created_before = Some(if whole_day { t + 86_400 } else { t + 1 });
    }
    if let Some((t, whole_day)) = day(p, "DateCreated<")? {
        // On or before that day (Twilio's `DateCreated<=`).
        let end = if whole_day { t + 86_400 } else { t };
        q.created_before = Some(q.created_before.map_or(end, |b| b.min(end)));
    }
    if let Some((t, _)) = day(p, "DateCreated>")? {
        q.created_from = Some(q.created_from.map_or(t, |f| f.max(t)));
    }
    match pg.cursor {
        Cursor::Start => {}
        Cursor::After(s) => q.below_seq = Some(s),
        Cursor::Before(s) => q.above_seq = Some(s),
    }
    let mut rows = st.engine.store().recordings(&q)?;
    let more_after = match pg.cursor {
        Cursor::Before(_) => true,
        _ => rows.len() > pg.size,
    };
    if matches!(pg.cursor, Cursor::Before(_)) && rows.len() > pg.size {
        rows.drain(..rows.len() - pg.size);
    }
    rows.truncate(pg.size);
    // Every filter but the paging ones is kept in the page links.
    let mut keep = form_urlencoded::Serializer::new(String::new());
    for name in ["DateCreated", "DateCreated<", "DateCreated>", "CallSid"] {
        if let Some(v) = p.get(name) {
            keep.append_pair(name, v);
        }
    }
    let filters = keep.finish();
    let path = uri.path();
    let base = if filters.is_empty() {
        format!("{path}?PageSize={}", pg.size)
    } else {
        format!("{path}?{filters}&PageSize={}", pg.size)
    };
    let items: Vec<Value> = rows.iter().map(|r| st.recording_json(r)).collect();
    let seqs = (rows.first().map(|r| r.seq), rows.last().map(|r| r.seq));
    Ok(json_response(
        StatusCode::OK,
        &envelope("recordings", items, &pg, &base, seqs, more_after),
    ))
}

enum Form {
    Json,
    Wav,
}

/// `RE….json`, `RE….wav` or `RE…`; anything else (`.mp3`: maskd keeps WAV only) is 404.
fn parse_file(file: &str) -> Option<(Sid, Form)> {
    let (stem, form) = match file.rsplit_once('.') {
        Some((s, "json")) => (s, Form::Json),
        Some((s, "wav")) => (s, Form::Wav),
        Some(_) => return None,
        None => (file, Form::Wav),
    };
    Sid::parse(SidKind::Recording, stem).map(|s| (s, form))
}

/// The recording `file` names (of call `call`, when given under a call), and its form.
fn lookup(
    st: &Shared,
    file: &str,
    call: Option<&str>,
    uri: &Uri,
) -> Result<(Recording, Form), ApiError> {
    let (sid, form) = parse_file(file).ok_or_else(|| not_found(uri.path()))?;
    let rec = st
        .engine
        .store()
        .recording(sid)?
        .filter(|r| call.is_none_or(|c| r.call_sid == c))
        .ok_or_else(|| not_found(uri.path()))?;
    Ok((rec, form))
}

async fn fetch(
    State(st): State<Shared>,
    Path((acc, file)): Path<(String, String)>,
    uri: Uri,
) -> ApiResult {
    account(&st, &acc, &uri)?;
    let (rec, form) = lookup(&st, &file, None, &uri)?;
    show(&st, rec, form, &uri).await
}

/// `/Calls/{CallSid}/Recordings/{Sid}`: the same recording, found only under its own call.
async fn fetch_for_call(
    State(st): State<Shared>,
    Path((acc, call, file)): Path<(String, String, String)>,
    uri: Uri,
) -> ApiResult {
    account(&st, &acc, &uri)?;
    let (rec, form) = lookup(&st, &file, Some(&call), &uri)?;
    show(&st, rec, form, &uri).await
}

async fn show(st: &Shared, rec: Recording, form: Form, uri: &Uri) -> ApiResult {
    match form {
        Form::Json => Ok(json_response(StatusCode::OK, &st.recording_json(&rec))),
        Form::Wav => media(st, &rec, uri).await,
    }
}

/// A recording's audio by `RE….wav` (the console's player).
pub(super) async fn wav(st: &Shared, file: &str, uri: &Uri) -> ApiResult {
    let (rec, _) = lookup(st, file, None, uri)?;
    media(st, &rec, uri).await
}

/// Streams the WAV from disk in `CHUNK`s, each read on the blocking pool.
async fn media(st: &Shared, rec: &Recording, uri: &Uri) -> ApiResult {
    // An absent or failed recording has no audio to serve, whatever was left on disk.
    if matches!(
        rec.status,
        RecordingStatus::Absent | RecordingStatus::Failed
    ) {
        return Err(not_found(uri.path()));
    }
    let path = st
        .engine
        .recording_path(rec.sid)
        .ok_or_else(|| not_found(uri.path()))?;
    let opened = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        Ok::<_, std::io::Error>((f, len))
    })
    .await
    .map_err(|_| not_found(uri.path()))?;
    // No file (absent, failed, or removed by hand): the media is not there.
    let (file, len) = opened.map_err(|_| not_found(uri.path()))?;
    let stream = futures_util::stream::unfold(Some(file), |state| async move {
        let mut f = state?;
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; CHUNK];
            let n = f.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((f, buf))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok((_, buf)) if buf.is_empty() => None,
            Ok((f, buf)) => Some((Ok(bytes_of(buf)), Some(f))),
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("audio/x-wav"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

fn bytes_of(buf: Vec<u8>) -> axum::body::Bytes {
    axum::body::Bytes::from(buf)
}

async fn delete(
    State(st): State<Shared>,
    Path((acc, file)): Path<(String, String)>,
    uri: Uri,
) -> ApiResult {
    account(&st, &acc, &uri)?;
    let sid = match parse_file(&file) {
        Some((sid, Form::Json)) => sid,
        _ => return Err(not_found(uri.path())),
    };
    remove(&st, sid, &uri).await
}

async fn delete_for_call(
    State(st): State<Shared>,
    Path((acc, call, file)): Path<(String, String, String)>,
    uri: Uri,
) -> ApiResult {
    account(&st, &acc, &uri)?;
    let sid = match lookup(&st, &file, Some(&call), &uri)? {
        (rec, Form::Json) => rec.sid,
        _ => return Err(not_found(uri.path())),
    };
    remove(&st, sid, &uri).await
}

async fn remove(st: &Shared, sid: Sid, uri: &Uri) -> ApiResult {
    let engine = st.engine.clone();
    let d = tokio::task::spawn_blocking(move || engine.delete_recording(sid))
        .await
        .map_err(|_| not_found(uri.path()))??;
    match d {
        Some(d) => {
            d.await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(not_found(uri.path())),
    }
}

/// A 2010-04-01 list (Recordings, Keys): `items` under `name`, with that API's paging fields.
/// `base` is the list's path with its filters and `PageSize`; `seqs` the first and last item's
/// sequence (the page tokens).
pub(super) fn envelope(
    name: &str,
    items: Vec<Value>,
    pg: &Paging,
    base: &str,
    seqs: (Option<u64>, Option<u64>),
    more_after: bool,
) -> Value {
    let this = match pg.cursor {
        Cursor::Start => format!("{base}&Page={}", pg.page),
        Cursor::After(s) => format!("{base}&Page={}&PageToken=PA{s}", pg.page),
        Cursor::Before(s) => format!("{base}&Page={}&PageToken=PB{s}", pg.page),
    };
    let next = match seqs.1 {
        Some(last) if more_after => json!(format!(
            "{base}&Page={}&PageToken=PA{last}",
            pg.page.saturating_add(1)
        )),
        _ => Value::Null,
    };
    let previous = match seqs.0 {
        Some(first) if pg.page > 0 => {
            json!(format!("{base}&Page={}&PageToken=PB{first}", pg.page - 1))
        }
        _ => Value::Null,
    };
    let start = pg.page.saturating_mul(pg.size as u64);
    let end = start
        .saturating_add(items.len() as u64)
        .saturating_sub(1)
        .max(start);
    let mut v = json!({
        "first_page_uri": format!("{base}&Page=0"),
        "next_page_uri": next,
        "previous_page_uri": previous,
        "page": pg.page,
        "page_size": pg.size,
        "start": start,
        "end": end,
        "uri": this,
    });
    v[name] = Value::Array(items);
    v
}
