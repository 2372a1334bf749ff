//! Twilio Proxy's three callbacks, as data: the status callback's queue item and the
//! parameters of each callback (names and casing as Twilio sends them). Pure code; sending
//! is the net layer's job (`net/webhook.rs`).

use super::datetime;
use super::model::{
    Interaction, InteractionType, Leg, Participant, ResourceStatus, Session, Timestamp,
};
use super::Sid;

/// One status callback in the durable queue. Its parameters are captured when the status
/// changes (`params`), or, for a change that only moves the outbound leg (`outbound`), the
/// interaction is read back when it is sent and the change applied to it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackItem {
    /// Queue order (engine sequence numbers): callbacks of one interaction go in this order.
    pub id: u64,
    pub interaction: Sid,
    /// The service's `callback_url` when the change was made; `None`: look it up when sent.
    pub url: Option<String>,
    pub params: Option<Vec<(String, String)>>,
    pub outbound: Option<(ResourceStatus, Option<String>, Timestamp)>,
    pub created: Timestamp,
}

fn kind_title(k: InteractionType) -> &'static str {
    match k {
        InteractionType::Message => "Message",
        InteractionType::Voice => "Voice",
        InteractionType::Unknown => "Unknown",
    }
}

fn leg_params(out: &mut Vec<(String, String)>, prefix: &str, l: &Leg) {
    let mut put = |name: &str, v: Option<String>| {
        out.push((format!("{prefix}{name}"), v.unwrap_or_default()));
    };
    put("ParticipantSid", l.participant_sid.map(|s| s.to_string()));
    put("ResourceSid", l.resource_sid.as_deref().map(str::to_string));
    put(
        "ResourceStatus",
        l.resource_status.map(|s| s.as_str().to_string()),
    );
    put(
        "ResourceType",
        l.resource_type.as_deref().map(str::to_string),
    );
    put("ResourceUrl", l.resource_url.as_deref().map(str::to_string));
}

/// The interaction fields both the status and the intercept callback carry (reference
/// §4.8.1), with the outbound leg only when `outbound`.
pub fn interaction_params(i: &Interaction, account: &str, outbound: bool) -> Vec<(String, String)> {
    let mut p = vec![
        ("interactionSid".to_string(), i.sid.to_string()),
        (
            "interactionSessionSid".to_string(),
            i.session_sid.to_string(),
        ),
        (
            "interactionServiceSid".to_string(),
            i.service_sid.to_string(),
        ),
        ("interactionAccountSid".to_string(), account.to_string()),
        (
            "interactionType".to_string(),
            kind_title(i.kind).to_string(),
        ),
        ("interactionData".to_string(), i.data.to_string()),
        (
            "interactionDateCreated".to_string(),
            datetime::format(i.date_created),
        ),
        (
            "interactionDateUpdated".to_string(),
            datetime::format(i.date_updated),
        ),
    ];
    leg_params(&mut p, "inbound", &i.inbound);
    if outbound {
        leg_params(&mut p, "outbound", &i.outbound);
    }
    p
}

/// Applies an outbound-leg change recorded as `SetOutboundStatus` to the interaction read
/// back from the store.
pub fn apply_outbound(i: &mut Interaction, change: &(ResourceStatus, Option<String>, Timestamp)) {
    i.outbound.resource_status = Some(change.0);
    if let Some(r) = &change.1 {
        i.outbound.resource_sid = Some(r.as_str().into());
    }
    i.date_updated = change.2;
}

/// The session and participant fields of the out-of-session callback (reference §4.8.3,
/// part 2 and 3): the most recent session for the pair and both its participants.
pub fn session_params(
    s: &Session,
    inbound: Option<&Participant>,
    outbound: Option<&Participant>,
    account: &str,
) -> Vec<(String, String)> {
    let d = |t: Option<Timestamp>| t.map(datetime::format).unwrap_or_default();
    let mut p = vec![
        ("sessionSid".to_string(), s.sid.to_string()),
        (
            "sessionUniqueName".to_string(),
            s.unique_name.clone().unwrap_or_default(),
        ),
        ("sessionAccountSid".to_string(), account.to_string()),
        ("sessionServiceSid".to_string(), s.service_sid.to_string()),
        ("sessionStatus".to_string(), s.status.as_str().to_string()),
        ("sessionMode".to_string(), s.mode.as_str().to_string()),
        (
            "sessionClosedReason".to_string(),
            s.closed_reason.as_str().to_string(),
        ),
        (
            "sessionDateCreated".to_string(),
            datetime::format(s.date_created),
        ),
        (
            "sessionDateUpdated".to_string(),
            datetime::format(s.date_updated),
        ),
        ("sessionDateEnded".to_string(), d(s.date_ended)),
        ("sessionDateStarted".to_string(), d(s.date_started)),
        (
            "sessionDateLastInteraction".to_string(),
            d(s.date_last_interaction),
        ),
        ("ttl".to_string(), s.ttl.to_string()),
    ];
    for (prefix, part) in [
        ("inboundParticipant", inbound),
        ("outboundParticipant", outbound),
    ] {
        let Some(x) = part else { continue };
        for (name, v) in [
            ("Sid", x.sid.to_string()),
            ("Identifier", x.identifier.to_string()),
            ("FriendlyName", x.friendly_name.clone().unwrap_or_default()),
            ("ProxyIdentifier", x.proxy.to_string()),
            ("ProxyIdentifierSid", x.proxy_sid.to_string()),
            ("AccountSid", account.to_string()),
            ("ServiceSid", x.service_sid.to_string()),
            ("SessionSid", x.session_sid.to_string()),
            ("DateCreated", datetime::format(x.date_created)),
            ("DateUpdated", datetime::format(x.date_updated)),
        ] {
            p.push((format!("{prefix}{name}"), v));
        }
    }
    p
}

/// Form-encodes parameters (the callback body, and how the queue stores them).
pub fn encode(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn decode(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
