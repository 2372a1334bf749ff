//! Reports (a maskd extension, not in Twilio Proxy): a service's daily counters per proxy
//! number (`/v1/Services/{Sid}/Reports/Daily`) and the strangers who reached its numbers
//! with no session (`/v1/Services/{Sid}/Reports/Contacts`), as JSON in Twilio's list
//! envelope or as CSV (`.csv`, `Format=csv` or `Accept: text/csv`). The counters are kept by
//! the store as things happen (`core::reports`); a request reads them, never the
//! interactions.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::params::{Paging, Params};
use super::render::page_envelope;
use super::waits::blocking;
use super::{json_response, Shared};
use crate::core::datetime;
use crate::core::engine::Cursor;
use crate::core::reports::{pivot, Contact, ContactQuery, DailyRow, ReportQuery, FIELDS};
use crate::core::{Sid, E164};

type ApiResult = Result<Response, ApiError>;

/// The longest range one request covers, in days.
const MAX_DAYS: i64 = 366;
/// Days covered when no `StartDate` is given (ending on `EndDate`, else today).
const DEFAULT_DAYS: i64 = 31;
/// The most contacts one CSV holds.
const CSV_CONTACTS: usize = 100_000;

pub fn routes() -> Router<Shared> {
    let base = "/v1/Services/{service}/Reports";
    Router::new().route(&format!("{base}/{{report}}"), get(report))
}

enum Format {
    Json,
    Csv,
}

fn format_of(name: &str, p: &Params, headers: &HeaderMap) -> Result<(String, Format), ApiError> {
    let (name, csv_path) = match name.strip_suffix(".csv") {
        Some(n) => (n, true),
        None => (name.strip_suffix(".json").unwrap_or(name), false),
    };
    let accept_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    let format = match p.get("Format").map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some(_) => return Err(ApiError::invalid("Format", "must be json or csv")),
        None if csv_path || accept_csv => Format::Csv,
        None => Format::Json,
    };
    Ok((name.to_string(), format))
}

async fn report(
    State(st): State<Shared>,
    Path((service, name)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult {
    let svc = st.engine.resolve_service(&service)?;
    let p = Params::parse(uri.query().unwrap_or("").as_bytes());
    let (name, format) = format_of(&name, &p, &headers)?;
    match name.as_str() {
        "Daily" => daily(&st, svc, &p, format).await,
        "Contacts" => contacts(&st, svc, &p, format).await,
        _ => Err(ApiError::not_found()),
    }
}

/// `StartDate`..=`EndDate` (`YYYY-MM-DD`, UTC) as day strings.
fn days(p: &Params, today: i64) -> Result<(String, String), ApiError> {
    let day = |name: &str| -> Result<Option<i64>, ApiError> {
        match p.get(name) {
            None | Some("") => Ok(None),
            Some(v) => datetime::parse(&format!("{v}T00:00:00Z"))
                .filter(|_| v.len() == 10)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(name, "must be a date, YYYY-MM-DD")),
        }
    };
    let end = day("EndDate")?.unwrap_or(today - today.rem_euclid(86_400));
    let start = day("StartDate")?.unwrap_or(end - (DEFAULT_DAYS - 1) * 86_400);
    if start > end {
        return Err(ApiError::invalid("StartDate", "is after EndDate"));
    }
    if (end - start) / 86_400 >= MAX_DAYS {
        return Err(ApiError::invalid(
            "EndDate",
            format!("a report covers at most {MAX_DAYS} days"),
        ));
    }
    let d = |t: i64| datetime::format(t)[..10].to_string();
    Ok((d(start), d(end)))
}

fn phone_filter(p: &Params) -> Result<Option<E164>, ApiError> {
    p.get("PhoneNumber")
        .filter(|v| !v.is_empty())
        .map(|v| E164::parse(v).map_err(|e| ApiError::invalid("PhoneNumber", e)))
        .transpose()
}

/// The furthest a page token reaches (rows of a report, or contacts).
const MAX_OFFSET: u64 = 100_000_000;

/// The page's start (an index into the rows) from its token.
fn offset(pg: &Paging) -> Result<usize, ApiError> {
    let bad = || ApiError::invalid("PageToken", "is not a token this server issued");
    Ok(match pg.cursor {
        Cursor::Start => 0,
        Cursor::After(i) if i < MAX_OFFSET => i as usize + 1,
        Cursor::Before(i) if i < MAX_OFFSET => (i as usize).saturating_sub(pg.size),
        _ => return Err(bad()),
    })
}

async fn daily(st: &Shared, svc: Sid, p: &Params, format: Format) -> ApiResult {
    let (from_day, to_day) = days(p, crate::clock::now_ms() / 1000)?;
    let only = phone_filter(p)?;
    let store = st.engine.store().clone();
    let q = ReportQuery {
        service: svc,
        from_day,
        to_day,
    };
    let mut rows = pivot(blocking(move || store.report_counts(&q)).await?);
    if let Some(n) = only {
        rows.retain(|r| r.number == Some(n));
    }
    let url = format!("{}/Reports/Daily", st.service_url(svc));
    match format {
        Format::Csv => {
            let mut out = csv_line(
                ["date", "service_sid", "phone_number"]
                    .iter()
                    .copied()
                    .chain(FIELDS.iter().copied()),
            );
            for r in &rows {
                let number = r.number.map(|n| n.to_string()).unwrap_or_default();
                let values: Vec<String> = r.values.iter().map(i64::to_string).collect();
                let svc = svc.to_string();
                let head = [r.day.as_str(), svc.as_str(), number.as_str()];
                out.push_str(&csv_line(
                    head.into_iter().chain(values.iter().map(String::as_str)),
                ));
            }
            Ok(csv_response(out, &format!("{svc}-daily.csv")))
        }
        Format::Json => {
            let pg = Paging::from_query(p)?;
            let start = offset(&pg)?.min(rows.len());
            let end = (start + pg.size).min(rows.len());
            let items: Vec<Value> = rows[start..end]
                .iter()
                .map(|r| daily_json(st, svc, r))
                .collect();
            let bounds = (start < end).then(|| (start as u64, end as u64 - 1));
            let v = page_envelope(&url, "reports", items, &pg, bounds, end < rows.len());
            Ok(json_response(StatusCode::OK, &v))
        }
    }
}

fn daily_json(st: &Shared, svc: Sid, r: &DailyRow) -> Value {
    let mut m = Map::new();
    m.insert("account_sid".into(), json!(st.account_sid));
    m.insert("service_sid".into(), json!(svc.to_string()));
    m.insert("date".into(), json!(r.day));
    m.insert(
        "phone_number".into(),
        r.number.map_or(Value::Null, |n| json!(n.to_string())),
    );
    for (f, v) in FIELDS.iter().zip(&r.values) {
        m.insert((*f).into(), json!(v));
    }
    Value::Object(m)
}

async fn contacts(st: &Shared, svc: Sid, p: &Params, format: Format) -> ApiResult {
    let proxy = phone_filter(p)?;
    let store = st.engine.store().clone();
    let url = format!("{}/Reports/Contacts", st.service_url(svc));
    match format {
        Format::Csv => {
            let q = ContactQuery {
                service: svc,
                proxy,
                offset: 0,
                limit: CSV_CONTACTS,
            };
            let rows = blocking(move || store.contacts(&q)).await?;
            let mut out = csv_line(CONTACT_COLUMNS.iter().copied());
            for c in &rows {
                let v = contact_values(c);
                out.push_str(&csv_line(v.iter().map(String::as_str)));
            }
            Ok(csv_response(out, &format!("{svc}-contacts.csv")))
        }
        Format::Json => {
            let pg = Paging::from_query(p)?;
            let start = offset(&pg)?;
            let q = ContactQuery {
                service: svc,
                proxy,
                offset: start,
                limit: pg.size + 1,
            };
            let mut rows = blocking(move || store.contacts(&q)).await?;
            let more = rows.len() > pg.size;
            rows.truncate(pg.size);
            let items: Vec<Value> = rows
                .iter()
                .map(|c| {
                    let mut m = Map::new();
                    m.insert("account_sid".into(), json!(st.account_sid));
                    m.insert("service_sid".into(), json!(svc.to_string()));
                    for (k, v) in CONTACT_COLUMNS.iter().zip(contact_values(c)) {
                        let v = match *k {
                            "messages" | "calls" => json!(v.parse::<u64>().unwrap_or(0)),
                            "session_sid" if v.is_empty() => Value::Null,
                            _ => json!(v),
                        };
                        m.insert((*k).into(), v);
                    }
                    Value::Object(m)
                })
                .collect();
            let bounds =
                (!rows.is_empty()).then(|| (start as u64, (start + rows.len()) as u64 - 1));
            let v = page_envelope(&url, "contacts", items, &pg, bounds, more);
            Ok(json_response(StatusCode::OK, &v))
        }
    }
}

const CONTACT_COLUMNS: &[&str] = &[
    "proxy_number",
    "sender",
    "first_contact",
    "last_contact",
    "messages",
    "calls",
    "session_sid",
];

fn contact_values(c: &Contact) -> Vec<String> {
    vec![
        c.proxy.to_string(),
        c.sender.to_string(),
        datetime::format(c.first_at),
        datetime::format(c.last_at),
        c.messages.to_string(),
        c.calls.to_string(),
        c.session.map(|s| s.to_string()).unwrap_or_default(),
    ]
}

/// One CSV record (RFC 4180): fields with a comma, quote or line break are quoted; a field
/// a spreadsheet would take for a formula is prefixed with a quote mark.
fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut line = String::new();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            line.push(',');
        }
        let f = if f.starts_with(['=', '@']) {
            format!("'{f}")
        } else {
            f.to_string()
        };
        if f.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&f);
        }
    }
    line.push_str("\r\n");
    line
}

fn csv_response(body: String, filename: &str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let line = csv_line(["a", "b,c", "say \"hi\"", "=1+1", "+1555"].into_iter());
        assert_eq!(line, "a,\"b,c\",\"say \"\"hi\"\"\",'=1+1,+1555\r\n");
    }

    #[test]
    fn a_range_defaults_to_31_days_and_is_bounded() {
        let today = 1_800_000_000; // 2027-01-15T08:00:00Z
        let p = Params::parse(b"");
        assert_eq!(
            days(&p, today).unwrap(),
            ("2026-12-16".to_string(), "2027-01-15".to_string())
        );
        let p = Params::parse(b"StartDate=2026-01-01&EndDate=2027-01-15");
        assert!(days(&p, today).is_err(), "over a year");
        let p = Params::parse(b"StartDate=yesterday");
        assert!(days(&p, today).is_err());
        let p = Params::parse(b"StartDate=2027-01-10&EndDate=2027-01-09");
        assert!(days(&p, today).is_err(), "start after end");
    }
}
