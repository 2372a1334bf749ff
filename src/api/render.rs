//! JSON representations of each resource (snake_case, every field present, `null` for
//! absent values, dates as `YYYY-MM-DDTHH:MM:SSZ`), their `url`/`links`, and the paging
//! envelope.

use serde_json::{json, Value};

use super::params::Paging;
use super::ApiState;
use crate::core::datetime;
use crate::core::engine::Cursor;
use crate::core::model::*;
use crate::core::Sid;

fn date(t: Timestamp) -> Value {
    Value::String(datetime::format(t))
}
fn opt_date(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, date)
}
fn opt_sid(s: Option<Sid>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_string()))
}

impl ApiState {
    pub fn services_url(&self) -> String {
        format!("{}/v1/Services", self.public_url)
    }
    pub fn service_url(&self, svc: Sid) -> String {
        format!("{}/v1/Services/{svc}", self.public_url)
    }
    pub fn session_url(&self, svc: Sid, sess: Sid) -> String {
        format!("{}/Sessions/{sess}", self.service_url(svc))
    }
    pub fn participant_url(&self, svc: Sid, sess: Sid, part: Sid) -> String {
        format!("{}/Participants/{part}", self.session_url(svc, sess))
    }

    pub fn service_json(&self, s: &Service) -> Value {
        let url = self.service_url(s.sid);
        json!({
            "sid": s.sid.to_string(),
            "unique_name": s.unique_name,
            "account_sid": self.account_sid,
            "chat_instance_sid": s.chat_instance_sid,
            "callback_url": s.callback_url,
            "default_ttl": s.default_ttl,
            "number_selection_behavior": s.number_selection_behavior.as_str(),
            "geo_match_level": s.geo_match_level.as_str(),
            "intercept_callback_url": s.intercept_callback_url,
            "out_of_session_callback_url": s.out_of_session_callback_url,
            "date_created": date(s.date_created),
            "date_updated": date(s.date_updated),
            "url": url,
            "links": {
                "sessions": format!("{url}/Sessions"),
                "phone_numbers": format!("{url}/PhoneNumbers"),
            },
        })
    }

    pub fn number_json(&self, n: &PhoneNumber) -> Value {
        json!({
            "sid": n.sid.to_string(),
            "account_sid": self.account_sid,
            "service_sid": n.service_sid.to_string(),
            "date_created": date(n.date_created),
            "date_updated": date(n.date_updated),
            "phone_number": n.number.to_string(),
            "friendly_name": n.friendly_name,
            "iso_country": n.number.iso_country(),
            "capabilities": { "fax": false, "mms": false, "sms": true, "voice": true },
            "url": format!("{}/PhoneNumbers/{}", self.service_url(n.service_sid), n.sid),
            "is_reserved": n.is_reserved,
            "in_use": n.in_use,
            // maskd extension (README "Carriers"): null when untagged.
            "carrier": n.carrier,
        })
    }

    pub fn session_json(&self, s: &Session) -> Value {
        let url = self.session_url(s.service_sid, s.sid);
        let mut v = json!({
            "sid": s.sid.to_string(),
            "service_sid": s.service_sid.to_string(),
            "account_sid": self.account_sid,
            "date_started": opt_date(s.date_started),
            "date_ended": opt_date(s.date_ended),
            "date_last_interaction": opt_date(s.date_last_interaction),
            "date_expiry": opt_date(s.date_expiry),
            "unique_name": s.unique_name,
            "status": s.status.as_str(),
            "closed_reason": s.closed_reason.as_str(),
            "ttl": s.ttl,
            "mode": s.mode.as_str(),
            "date_created": date(s.date_created),
            "date_updated": date(s.date_updated),
            "url": url,
            "links": {
                "interactions": format!("{url}/Interactions"),
                "participants": format!("{url}/Participants"),
            },
        });
        // maskd extension, shown only when set (SDKs ignore fields they do not know; a
        // session without it looks exactly like Twilio's).
        if let (Some(r), Some(obj)) = (s.record, v.as_object_mut()) {
            obj.insert("record".into(), Value::Bool(r));
        }
        v
    }

    /// The 2010-04-01 Call URL of a voice leg (`CA…`), as Twilio Proxy gives it.
    fn call_url(&self, call_sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls/{call_sid}.json",
            self.public_url, self.account_sid
        )
    }

    pub fn participant_json(&self, p: &Participant) -> Value {
        let url = self.participant_url(p.service_sid, p.session_sid, p.sid);
        json!({
            "sid": p.sid.to_string(),
            "session_sid": p.session_sid.to_string(),
            "service_sid": p.service_sid.to_string(),
            "account_sid": self.account_sid,
            "friendly_name": p.friendly_name,
            "identifier": p.identifier.to_string(),
            "proxy_identifier": p.proxy.to_string(),
            "proxy_identifier_sid": p.proxy_sid.to_string(),
            "date_deleted": opt_date(p.date_deleted),
            "date_created": date(p.date_created),
            "date_updated": date(p.date_updated),
            "url": url,
            "links": { "message_interactions": format!("{url}/MessageInteractions") },
        })
    }

    /// An Interaction; as a MessageInteraction (`via_participant`) it gains
    /// `participant_sid` and its URL sits under the participant.
    pub fn interaction_json(&self, i: &Interaction, via_participant: Option<Sid>) -> Value {
        let leg = |l: &Leg| {
            (
                opt_sid(l.participant_sid),
                l.resource_sid.clone(),
                l.resource_status.map(ResourceStatus::as_str),
                l.resource_type.clone(),
                l.resource_url.clone().or_else(|| match &l.resource_sid {
                    Some(ca) if i.kind == InteractionType::Voice && ca.starts_with("CA") => {
                        Some(self.call_url(ca).into())
                    }
                    _ => None,
                }),
            )
        };
        let (ip, ir, is, it, iu) = leg(&i.inbound);
        let (op, or, os, ot, ou) = leg(&i.outbound);
        let url = match via_participant {
            Some(p) => format!(
                "{}/MessageInteractions/{}",
                self.participant_url(i.service_sid, i.session_sid, p),
                i.sid
            ),
            None => format!(
                "{}/Interactions/{}",
                self.session_url(i.service_sid, i.session_sid),
                i.sid
            ),
        };
        let mut v = json!({
            "sid": i.sid.to_string(),
            "session_sid": i.session_sid.to_string(),
            "service_sid": i.service_sid.to_string(),
            "account_sid": self.account_sid,
            "data": i.data,
            "type": i.kind.as_str(),
            "inbound_participant_sid": ip,
            "inbound_resource_sid": ir,
            "inbound_resource_status": is,
            "inbound_resource_type": it,
            "inbound_resource_url": iu,
            "outbound_participant_sid": op,
            "outbound_resource_sid": or,
            "outbound_resource_status": os,
            "outbound_resource_type": ot,
            "outbound_resource_url": ou,
            "date_created": date(i.date_created),
            "date_updated": date(i.date_updated),
            "url": url,
        });
        if let (Some(p), Some(obj)) = (via_participant, v.as_object_mut()) {
            obj.insert("participant_sid".into(), Value::String(p.to_string()));
        }
        v
    }
}

/// Twilio's v1 list envelope. `first_seq`/`last_seq` are the creation stamps of the first
/// and last item on this page (tokens point at them).
pub fn page_envelope(
    collection_url: &str,
    key: &str,
    items: Vec<Value>,
    paging: &Paging,
    bounds: Option<(u64, u64)>,
    more_after: bool,
) -> Value {
    let base = format!("{collection_url}?PageSize={}", paging.size);
    let url = match paging.cursor {
        Cursor::Start => format!("{base}&Page={}", paging.page),
        Cursor::After(s) => format!("{base}&Page={}&PageToken=PA{s}", paging.page),
        Cursor::Before(s) => format!("{base}&Page={}&PageToken=PB{s}", paging.page),
    };
    let next = match bounds {
        Some((_, last)) if more_after => Value::String(format!(
            "{base}&Page={}&PageToken=PA{last}",
            paging.page.saturating_add(1)
        )),
        _ => Value::Null,
    };
    let previous = match bounds {
        Some((first, _)) if paging.page > 0 => Value::String(format!(
            "{base}&Page={}&PageToken=PB{first}",
            paging.page - 1
        )),
        _ => Value::Null,
    };
    json!({
        key: items,
        "meta": {
            "page": paging.page,
            "page_size": paging.size,
            "first_page_url": format!("{base}&Page=0"),
            "previous_page_url": previous,
            "next_page_url": next,
            "url": url,
            "key": key,
        }
    })
}
