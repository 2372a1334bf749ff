//! Rows back into core types. A value the schema cannot hold (a bad SID, an unknown enum
//! spelling, a negative count) is `StoreError::Corrupt` naming the column, never a panic.

use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use crate::core::callback::CallbackItem;
use crate::core::e164::E164;
use crate::core::model::*;
use crate::core::sid::Sid;
use crate::core::store::{OutboundItem, RemoteRef, StoreError};
use crate::store::parse_origin;

fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i).map_err(|e| {
        let name = r.columns().get(i).map_or("?", |c| c.name());
        StoreError::Corrupt(format!("column {name}: {e}"))
    })
}

fn bad(r: &Row, i: usize) -> StoreError {
    let name = r.columns().get(i).map_or("?", |c| c.name());
    StoreError::Corrupt(format!("column {name}: a value maskd does not know"))
}

fn sid(r: &Row, i: usize) -> Result<Sid, StoreError> {
    Sid::parse_any(get::<&str>(r, i)?).ok_or_else(|| bad(r, i))
}
fn opt_sid(r: &Row, i: usize) -> Result<Option<Sid>, StoreError> {
    get::<Option<&str>>(r, i)?
        .map(|t| Sid::parse_any(t).ok_or_else(|| bad(r, i)))
        .transpose()
}
fn text(r: &Row, i: usize) -> Result<Option<crate::core::model::Text>, StoreError> {
    Ok(get::<Option<&str>>(r, i)?.map(Into::into))
}
fn unsigned(r: &Row, i: usize) -> Result<u64, StoreError> {
    u64::try_from(get::<i64>(r, i)?).map_err(|_| bad(r, i))
}
fn e164(r: &Row, i: usize) -> Result<E164, StoreError> {
    E164::from_u64(unsigned(r, i)?).ok_or_else(|| bad(r, i))
}
fn enumerated<T>(r: &Row, i: usize, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(get::<&str>(r, i)?).ok_or_else(|| bad(r, i))
}
fn opt_status(r: &Row, i: usize) -> Result<Option<ResourceStatus>, StoreError> {
    get::<Option<&str>>(r, i)?
        .map(|t| ResourceStatus::parse(t).ok_or_else(|| bad(r, i)))
        .transpose()
}

pub(super) fn service(r: &Row) -> Result<Service, StoreError> {
    Ok(Service {
        sid: sid(r, 0)?,
        seq: unsigned(r, 1)?,
        unique_name: get(r, 2)?,
        callback_url: get(r, 3)?,
        default_ttl: unsigned(r, 4)?,
        geo_match_level: enumerated(r, 5, GeoMatchLevel::parse)?,
        number_selection_behavior: enumerated(r, 6, NumberSelection::parse)?,
        intercept_callback_url: get(r, 7)?,
        out_of_session_callback_url: get(r, 8)?,
        chat_instance_sid: get(r, 9)?,
        cooloff: unsigned(r, 10)?,
        date_created: get(r, 11)?,
        date_updated: get(r, 12)?,
        record: get(r, 13)?,
    })
}

pub(super) fn number(r: &Row) -> Result<PhoneNumber, StoreError> {
    Ok(PhoneNumber {
        sid: sid(r, 0)?,
        seq: unsigned(r, 1)?,
        service_sid: sid(r, 2)?,
        number: e164(r, 3)?,
        friendly_name: get(r, 4)?,
        is_reserved: get(r, 5)?,
        carrier: get(r, 8)?,
        in_use: 0,
        date_created: get(r, 6)?,
        date_updated: get(r, 7)?,
    })
}

pub(super) fn session(r: &Row) -> Result<Session, StoreError> {
    Ok(Session {
        sid: sid(r, 0)?,
        seq: unsigned(r, 1)?,
        service_sid: sid(r, 2)?,
        unique_name: get(r, 3)?,
        status: enumerated(r, 4, SessionStatus::parse)?,
        mode: enumerated(r, 5, Mode::parse)?,
        ttl: unsigned(r, 6)?,
        date_expiry: get(r, 7)?,
        date_started: get(r, 8)?,
        date_ended: get(r, 9)?,
        date_last_interaction: get(r, 10)?,
        closed_reason: enumerated(r, 11, ClosedReason::parse)?,
        date_created: get(r, 12)?,
        date_updated: get(r, 13)?,
        record: get(r, 14)?,
    })
}

pub(super) fn participant(r: &Row) -> Result<Participant, StoreError> {
    Ok(Participant {
        sid: sid(r, 0)?,
        seq: unsigned(r, 1)?,
        session_sid: sid(r, 2)?,
        service_sid: sid(r, 3)?,
        identifier: e164(r, 4)?,
        friendly_name: get(r, 5)?,
        proxy: e164(r, 6)?,
        proxy_sid: sid(r, 7)?,
        date_deleted: get(r, 8)?,
        date_created: get(r, 9)?,
        date_updated: get(r, 10)?,
    })
}

pub(super) fn interaction(r: &Row) -> Result<Interaction, StoreError> {
    Ok(Interaction {
        sid: sid(r, 0)?,
        seq: unsigned(r, 1)?,
        session_sid: sid(r, 2)?,
        service_sid: sid(r, 3)?,
        data: get::<String>(r, 4)?.into(),
        kind: enumerated(r, 5, InteractionType::parse)?,
        inbound: Leg {
            participant_sid: opt_sid(r, 6)?,
            resource_sid: text(r, 7)?,
            resource_status: opt_status(r, 8)?,
            resource_type: text(r, 9)?,
            resource_url: text(r, 10)?,
        },
        outbound: Leg {
            participant_sid: opt_sid(r, 11)?,
            resource_sid: text(r, 12)?,
            resource_status: opt_status(r, 13)?,
            resource_type: text(r, 14)?,
            resource_url: text(r, 15)?,
        },
        message_participant_sid: opt_sid(r, 16)?,
        date_created: get(r, 17)?,
        date_updated: get(r, 18)?,
    })
}

pub(super) fn outbound(r: &Row) -> Result<OutboundItem, StoreError> {
    Ok(OutboundItem {
        id: unsigned(r, 0)?,
        interaction: sid(r, 1)?,
        from: e164(r, 2)?,
        to: e164(r, 3)?,
        via: get(r, 4)?,
        origin: get::<Option<&str>>(r, 5)?.and_then(parse_origin),
        payload: get(r, 6)?,
        created: get(r, 7)?,
    })
}

pub(super) fn remote_ref(r: &Row) -> Result<RemoteRef, StoreError> {
    Ok(RemoteRef {
        peer: get(r, 0)?,
        remote_id: get(r, 1)?,
        interaction: sid(r, 2)?,
        origin: get::<Option<&str>>(r, 3)?.and_then(parse_origin),
    })
}

pub(super) fn callback(r: &Row) -> Result<CallbackItem, StoreError> {
    let outbound = match get::<Option<&str>>(r, 4)? {
        Some(status) => Some((
            ResourceStatus::parse(status).ok_or_else(|| bad(r, 4))?,
            get::<Option<String>>(r, 5)?,
            get::<i64>(r, 6)?,
        )),
        None => None,
    };
    Ok(CallbackItem {
        id: unsigned(r, 0)?,
        interaction: sid(r, 1)?,
        url: get(r, 2)?,
        params: get::<Option<&str>>(r, 3)?.map(crate::core::callback::decode),
        outbound,
        created: get(r, 7)?,
    })
}

pub(super) fn recording(r: &Row) -> Result<Recording, StoreError> {
    Ok(Recording {
        sid: sid(r, 0)?,
        seq: unsigned(r, 1)?,
        session_sid: sid(r, 2)?,
        service_sid: sid(r, 3)?,
        call_sid: get(r, 4)?,
        status: enumerated(r, 5, RecordingStatus::parse)?,
        start_ms: get(r, 6)?,
        duration: get::<Option<i64>>(r, 7)?.map(|d| d.max(0) as u64),
        error_code: get::<Option<i64>>(r, 8)?
            .map(|c| u32::try_from(c).map_err(|_| bad(r, 8)))
            .transpose()?,
        reason: get(r, 9)?,
        date_created: get(r, 10)?,
        date_updated: get(r, 11)?,
    })
}

pub(super) fn key(r: &Row) -> Result<crate::core::model::ApiKey, StoreError> {
    Ok(crate::core::model::ApiKey {
        sid: sid(r, 0)?,
        seq: unsigned(r, 1)?,
        friendly_name: get(r, 2)?,
        secret_hash: get(r, 3)?,
        date_created: get(r, 4)?,
        date_updated: get(r, 5)?,
    })
}
