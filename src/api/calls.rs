//! Twilio's 2010-04-01 Call resource, read-only, over maskd's voice interactions: each call
//! through maskd has two legs, each a Call (`CA…`) that an Interaction names in its
//! `inbound_resource_sid`/`outbound_resource_sid` and `*_resource_url`. `GET
//! /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` shows one leg with Twilio's field
//! names and formats: the inbound leg is `direction: inbound` from the caller to the proxy
//! number it dialled, the outbound leg `outbound-dial` from the proxy number the callee
//! sees to the callee, its `parent_call_sid` the inbound leg. Listing, creating and
//! updating calls are not served (maskd places calls only for sessions).

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{json_response, Shared};
use crate::core::datetime;
use crate::core::model::{Interaction, InteractionType, ResourceStatus};
use crate::core::{Sid, SidKind};

const API_VERSION: &str = "2010-04-01";

pub fn routes() -> Router<Shared> {
    Router::new().route("/2010-04-01/Accounts/{account}/Calls/{call}", get(fetch))
}

fn not_found(uri: &Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        20404,
        format!("The requested resource {} was not found", uri.path()),
    )
}

/// Twilio's call status for a leg's resource status.
fn call_status(s: Option<ResourceStatus>) -> &'static str {
    match s {
        Some(ResourceStatus::Ringing) => "ringing",
        Some(ResourceStatus::InProgress | ResourceStatus::Answered) => "in-progress",
        Some(ResourceStatus::Completed) => "completed",
        Some(ResourceStatus::Busy) => "busy",
        Some(ResourceStatus::NoAnswer) => "no-answer",
        Some(ResourceStatus::Canceled) => "canceled",
        Some(ResourceStatus::Failed) => "failed",
        _ => "queued",
    }
}

fn ended(status: &str) -> bool {
    matches!(
        status,
        "completed" | "busy" | "no-answer" | "canceled" | "failed"
    )
}

async fn fetch(
    State(st): State<Shared>,
    Path((acc, file)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    if acc != st.account_sid {
        return Err(not_found(&uri));
    }
    let sid = file
        .strip_suffix(".json")
        .and_then(|s| Sid::parse(SidKind::Call, s))
        .ok_or_else(|| not_found(&uri))?
        .to_string();
    let store = st.engine.store().clone();
    let key = sid.clone();
    let found = tokio::task::spawn_blocking(move || store.call_interaction(&key))
        .await
        .map_err(|_| not_found(&uri))??;
    let i = found
        .filter(|i| i.kind == InteractionType::Voice)
        .ok_or_else(|| not_found(&uri))?;
    Ok(json_response(StatusCode::OK, &st.call_json(&i, &sid)))
}

impl super::ApiState {
    /// The leg `sid` of the voice interaction `i` as a Twilio Call.
    pub fn call_json(&self, i: &Interaction, sid: &str) -> Value {
        let inbound = i.inbound.resource_sid.as_deref() == Some(sid);
        let leg = if inbound { &i.inbound } else { &i.outbound };
        // The participant's number and the proxy number on its side, while the participant
        // exists (a deleted participant's numbers are gone with it).
        let numbers = leg.participant_sid.and_then(|p| {
            self.engine
                .participant(i.session_sid, p)
                .ok()
                .map(|p| (p.identifier.to_string(), p.proxy.to_string(), p.proxy_sid))
        });
        let (from, to) = match &numbers {
            Some((person, proxy, _)) if inbound => (json!(person), json!(proxy)),
            Some((person, proxy, _)) => (json!(proxy), json!(person)),
            None => (Value::Null, Value::Null),
        };
        let status = call_status(leg.resource_status);
        let d = datetime::format_rfc2822;
        let duration = serde_json::from_str::<Value>(&i.data)
            .ok()
            .and_then(|v| v.get("duration").and_then(Value::as_str).map(String::from));
        let uri = format!("/{API_VERSION}/Accounts/{}/Calls/{sid}", self.account_sid);
        json!({
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "parent_call_sid": if inbound { Value::Null } else { json!(i.inbound.resource_sid) },
            "direction": if inbound { "inbound" } else { "outbound-dial" },
            "from": from,
            "from_formatted": from,
            "to": to,
            "to_formatted": to,
            "phone_number_sid": numbers.as_ref().map(|n| n.2.to_string()),
            "status": status,
            "start_time": d(i.date_created),
            "end_time": if ended(status) { json!(d(i.date_updated)) } else { Value::Null },
            "duration": if ended(status) { json!(duration.unwrap_or_else(|| "0".into())) } else { Value::Null },
            "date_created": d(i.date_created),
            "date_updated": d(i.date_updated),
            "price": null,
            "price_unit": "USD",
            "answered_by": null,
            "annotation": null,
            "caller_name": null,
            "forwarded_from": null,
            "group_sid": null,
            "queue_time": "0",
            "trunk_sid": null,
            "uri": format!("{uri}.json"),
            "subresource_uris": {
                "recordings": format!("{uri}/Recordings.json"),
            },
        })
    }
}
