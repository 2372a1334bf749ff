//! The console's JSON: what each page shows, built from the engine's rows, the report
//! counters, the recent callback failures and the health gauges.

use prometheus::core::Collector;
use serde_json::{json, Value};

use super::shown;
use crate::api::ApiState;
use crate::core::callback::CallbackItem;
use crate::core::datetime::format;
use crate::core::model::{
    Interaction, InteractionType, Participant, PhoneNumber, Recording, Session,
};
use crate::core::reports::{DailyRow, FIELDS};

fn field(row: &DailyRow, name: &str) -> i64 {
    FIELDS
        .iter()
        .position(|f| *f == name)
        .map_or(0, |i| row.values[i])
}

/// Per proxy number: its use now and its load per day over the last `days` days.
pub(super) fn numbers(pool: &[PhoneNumber], rows: &[DailyRow], today: i64, days: i64) -> Value {
    let dates: Vec<String> = (0..days)
        .rev()
        .map(|k| format(today - k * 86_400)[..10].to_string())
        .collect();
    let list: Vec<Value> = pool
        .iter()
        .map(|n| {
            let per_day: Vec<Value> = dates
                .iter()
                .map(|d| {
                    let row = rows.iter().find(|r| r.number == Some(n.number) && &r.day == d);
                    let get = |f| row.map_or(0, |r| field(r, f));
                    json!({
                        "date": d,
                        "sessions": get("sessions_created"),
                        "messages": get("messages_in") + get("messages_out"),
                        "calls": get("calls_in") + get("calls_out"),
                        "minutes": get("call_minutes"),
                        "out_of_session": get("out_of_session_messages") + get("out_of_session_calls"),
                    })
                })
                .collect();
            let total = |k: &str| per_day.iter().map(|d| d[k].as_i64().unwrap_or(0)).sum::<i64>();
            json!({
                "sid": n.sid.to_string(),
                "phone_number": n.number.to_string(),
                "in_use": n.in_use,
                "is_reserved": n.is_reserved,
                "carrier": n.carrier,
                "days": per_day,
                "totals": {
                    "sessions": total("sessions"),
                    "messages": total("messages"),
                    "calls": total("calls"),
                    "minutes": total("minutes"),
                    "out_of_session": total("out_of_session"),
                },
            })
        })
        .collect();
    json!({ "dates": dates, "numbers": list })
}

fn participant(p: &Participant, reveal: bool) -> Value {
    json!({
        "sid": p.sid.to_string(),
        "identifier": shown(p.identifier, reveal),
        "proxy_identifier": p.proxy.to_string(),
        "friendly_name": p.friendly_name,
        "deleted": p.date_deleted.is_some(),
    })
}

/// A session as the search lists it.
pub(super) fn session(st: &ApiState, s: &Session, parts: &[Participant], reveal: bool) -> Value {
    let service = st
        .engine
        .service(s.service_sid)
        .map(|v| v.unique_name)
        .unwrap_or_default();
    json!({
        "sid": s.sid.to_string(),
        "service_sid": s.service_sid.to_string(),
        "service": service,
        "unique_name": s.unique_name,
        "status": s.status.as_str(),
        "closed_reason": s.closed_reason.as_str(),
        "mode": s.mode.as_str(),
        "ttl": s.ttl,
        "date_created": format(s.date_created),
        "date_last_interaction": s.date_last_interaction.map(format),
        "date_ended": s.date_ended.map(format),
        "date_expiry": s.date_expiry.map(format),
        "participants": parts.iter().map(|p| participant(p, reveal)).collect::<Vec<_>>(),
    })
}

/// A session with its messages (and their text), calls and recordings, oldest first.
pub(super) fn timeline(
    st: &ApiState,
    s: &Session,
    parts: &[Participant],
    interactions: &[Interaction],
    recordings: &[Recording],
    reveal: bool,
) -> Value {
    let who = |sid: Option<crate::core::Sid>| -> Value {
        match sid.and_then(|p| parts.iter().find(|x| x.sid == p)) {
            Some(p) => json!({"number": shown(p.identifier, reveal), "proxy": p.proxy.to_string()}),
            None => Value::Null,
        }
    };
    let events: Vec<Value> = interactions
        .iter()
        .map(|i| {
            let data: Value = serde_json::from_str(&i.data).unwrap_or(Value::Null);
            let status = |s: Option<crate::core::model::ResourceStatus>| s.map(|s| s.as_str());
            json!({
                "sid": i.sid.to_string(),
                "type": match i.kind {
                    InteractionType::Message => "message",
                    InteractionType::Voice => "call",
                    InteractionType::Unknown => "unknown",
                },
                "at": format(i.date_created),
                "updated": format(i.date_updated),
                "from": who(i.inbound.participant_sid),
                "to": who(i.outbound.participant_sid),
                "body": data.get("body").cloned().unwrap_or(Value::Null),
                "duration": data.get("duration").and_then(|d| d.as_str()?.parse::<u64>().ok()),
                "status": status(i.outbound.resource_status),
                "inbound_status": status(i.inbound.resource_status),
                "call_sids": [i.inbound.resource_sid, i.outbound.resource_sid],
            })
        })
        .collect();
    let recs: Vec<Value> = recordings
        .iter()
        .rev()
        .map(|r| {
            json!({
                "sid": r.sid.to_string(),
                "call_sid": r.call_sid,
                "status": r.status.as_str(),
                "duration": r.duration,
                "reason": r.reason,
                "date_created": format(r.date_created),
                "media_url": format!("/console/api/recordings/{}.wav", r.sid),
            })
        })
        .collect();
    let mut v = session(st, s, parts, reveal);
    if let Some(o) = v.as_object_mut() {
        o.insert("events".into(), Value::Array(events));
        o.insert("recordings".into(), Value::Array(recs));
    }
    v
}

/// (labels, value) of every series of a gauge family.
fn series(c: &dyn Collector) -> Vec<(Vec<(String, String)>, f64)> {
    let mut out = Vec::new();
    for family in c.collect() {
        for m in family.get_metric() {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            out.push((labels, m.get_gauge().get_value()));
        }
    }
    out
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The callback queue's head, the last failures, carriers' trunks and SMPP binds.
pub(super) fn health(peers: &[String], oldest: &[CallbackItem]) -> Value {
    let m = crate::metrics::get();
    let trunks: Vec<Value> = series(&m.sip_trunk_up)
        .iter()
        .map(|(l, v)| json!({"carrier": label(l, "carrier"), "trunk": label(l, "trunk"), "up": *v >= 1.0}))
        .collect();
    let binds_now = series(&m.smpp_binds);
    let bound = |peer: &str| {
        binds_now
            .iter()
            .filter(|(l, _)| label(l, "peer") == peer)
            .map(|(_, v)| *v as i64)
            .sum::<i64>()
    };
    let mut names: Vec<String> = peers.to_vec();
    for (l, _) in &binds_now {
        let p = label(l, "peer").to_string();
        if !names.contains(&p) {
            names.push(p);
        }
    }
    let binds: Vec<Value> = names
        .iter()
        .map(|p| json!({"peer": p, "binds": bound(p)}))
        .collect();
    let failures: Vec<Value> = crate::metrics::recent::callback_failures()
        .iter()
        .map(|f| json!({"at": format(f.at), "kind": f.kind, "url": f.url, "outcome": f.outcome}))
        .collect();
    json!({
        "callbacks": {
            "queued": m.callback_queue_depth.get(),
            "oldest": oldest.iter().map(|c| json!({
                "id": c.id,
                "interaction_sid": c.interaction.to_string(),
                "created": format(c.created),
                "status": c.outbound.as_ref().map(|o| o.0.as_str()),
            })).collect::<Vec<_>>(),
        },
        "callback_failures": failures,
        "trunks": trunks,
        "binds": binds,
    })
}
