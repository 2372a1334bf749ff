//! What each write op becomes on PostgreSQL: the statements the writer prepares on every
//! connection (by index), their SQL, and the statements and parameters of one op. Also which
//! ops the change log records. SQL only.

use tokio_postgres::types::ToSql;

use super::schema;
use crate::core::model::ResourceStatus;
use crate::core::sid::Sid;
use crate::core::store::WriteOp;
use crate::store::origin_text;

pub(super) type Param = Box<dyn ToSql + Sync + Send>;

macro_rules! params {
    ($($v:expr),* $(,)?) => { vec![$(Box::new($v) as Param),*] };
}

/// Statements the writer prepares on every connection, by index.
#[derive(Clone, Copy)]
pub(super) enum W {
    PutService,
    PutNumber,
    DeleteNumber,
    PutSession,
    PutParticipant,
    PutInteraction,
    DeleteInteraction,
    PutOutbound,
    DeleteOutbound,
    SetOutboundStatus,
    PutRemoteRef,
    PutCallback,
    DeleteCallback,
    PutRecording,
    DeleteRecording,
    // A service's rows, then a session's: what DeleteService and DeleteSession become.
    ServiceOutbound,
    ServiceRemoteRefs,
    ServiceInteractions,
    ServiceParticipants,
    ServiceSessions,
    ServiceNumbers,
    ServiceRow,
    SessionOutbound,
    SessionRemoteRefs,
    SessionInteractions,
    SessionParticipants,
    SessionRow,
    // The change log: ordered by the lock, then the rows, then the wake-up.
    ChangesLock,
    Changes,
    Notify,
    TouchSession,
    ExpireSession,
    ReleaseOutbound,
    // Route keys: a session's as its rows now say; the service's and session's removal.
    SyncKeys,
    ServiceKeys,
    SessionKeys,
    // Reports: a stranger's contact; a deleted service's counters and contacts.
    PutContact,
    PutKey,
    UpdateKey,
    DeleteKey,
    ServiceReportCounts,
    ServiceReportDeltas,
    ServiceContacts,
}

pub(super) fn sql(w: W) -> String {
    use schema::*;
    let of_service = "SELECT sid FROM interactions WHERE service_sid = $1";
    let of_session = "SELECT sid FROM interactions WHERE session_sid = $1";
    match w {
        W::PutService => upsert("services", SERVICES, &["sid"]),
        W::PutNumber => upsert("numbers", NUMBERS, &["sid"]),
        W::DeleteNumber => "DELETE FROM numbers WHERE sid = $1".into(),
        W::PutSession => upsert("sessions", SESSIONS, &["sid"]),
        W::PutParticipant => upsert("participants", PARTICIPANTS, &["sid"]),
        W::PutInteraction => upsert("interactions", INTERACTIONS, &["sid"]),
        W::DeleteInteraction => "DELETE FROM interactions WHERE sid = $1".into(),
        W::PutOutbound => upsert("outbound", OUTBOUND, &["id"]),
        W::DeleteOutbound => "DELETE FROM outbound WHERE id = $1".into(),
        W::SetOutboundStatus => "UPDATE interactions SET out_status = $2,
            out_resource_sid = COALESCE($3, out_resource_sid), date_updated = $4 WHERE sid = $1"
            .into(),
        W::PutRemoteRef => upsert("remote_refs", REMOTE_REFS, &["peer", "remote_id"]),
        W::PutCallback => upsert("callbacks", CALLBACKS, &["id"]),
        W::DeleteCallback => "DELETE FROM callbacks WHERE id = $1".into(),
        W::PutRecording => upsert("recordings", RECORDINGS, &["sid"]),
        W::DeleteRecording => "DELETE FROM recordings WHERE sid = $1".into(),
        W::ServiceOutbound => {
            format!("DELETE FROM outbound WHERE interaction_sid IN ({of_service})")
        }
        W::ServiceRemoteRefs => {
            format!("DELETE FROM remote_refs WHERE interaction_sid IN ({of_service})")
        }
        W::ServiceInteractions => "DELETE FROM interactions WHERE service_sid = $1".into(),
        W::ServiceParticipants => "DELETE FROM participants WHERE service_sid = $1".into(),
        W::ServiceSessions => "DELETE FROM sessions WHERE service_sid = $1".into(),
        W::ServiceNumbers => "DELETE FROM numbers WHERE service_sid = $1".into(),
        W::ServiceRow => "DELETE FROM services WHERE sid = $1".into(),
        W::SessionOutbound => {
            format!("DELETE FROM outbound WHERE interaction_sid IN ({of_session})")
        }
        W::SessionRemoteRefs => {
            format!("DELETE FROM remote_refs WHERE interaction_sid IN ({of_session})")
        }
        W::SessionInteractions => "DELETE FROM interactions WHERE session_sid = $1".into(),
        W::SessionParticipants => "DELETE FROM participants WHERE session_sid = $1".into(),
        W::SessionRow => "DELETE FROM sessions WHERE sid = $1".into(),
        W::ChangesLock => format!("SELECT pg_advisory_xact_lock({})", schema::CHANGES_LOCK),
        W::Changes => "INSERT INTO changes (node, kind, sid)
            SELECT $1, k, s FROM unnest($2::text[], $3::text[]) AS t(k, s)"
            .into(),
        W::Notify => format!("SELECT pg_notify('{}', $1::int::text)", schema::CHANNEL),
        W::TouchSession => crate::store::sqlite::TOUCH_SESSION.replace('?', "$"),
        W::ReleaseOutbound => {
            "UPDATE outbound SET owner = NULL, next_hop = $2 WHERE id = $1".into()
        }
        W::ExpireSession => EXPIRE_SESSION.into(),
        W::SyncKeys => SYNC_KEYS.into(),
        W::ServiceKeys => "DELETE FROM route_keys WHERE session_sid IN
            (SELECT sid FROM sessions WHERE service_sid = $1)"
            .into(),
        W::SessionKeys => "DELETE FROM route_keys WHERE session_sid = $1".into(),
        W::PutContact => super::reports::PUT_CONTACT.into(),
        W::PutKey => format!(
            "INSERT INTO api_keys ({}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sid) DO NOTHING",
            API_KEYS.join(", ")
        ),
        W::UpdateKey => {
            "UPDATE api_keys SET friendly_name = $2, date_updated = $3 WHERE sid = $1".into()
        }
        W::DeleteKey => "DELETE FROM api_keys WHERE sid = $1".into(),
        W::ServiceReportDeltas => super::reports::DELETE_SERVICE[0].into(),
        W::ServiceReportCounts => super::reports::DELETE_SERVICE[1].into(),
        W::ServiceContacts => super::reports::DELETE_SERVICE[2].into(),
    }
}

pub(super) const ALL: &[W] = &[
    W::PutService,
    W::PutNumber,
    W::DeleteNumber,
    W::PutSession,
    W::PutParticipant,
    W::PutInteraction,
    W::DeleteInteraction,
    W::PutOutbound,
    W::DeleteOutbound,
    W::SetOutboundStatus,
    W::PutRemoteRef,
    W::PutCallback,
    W::DeleteCallback,
    W::PutRecording,
    W::DeleteRecording,
    W::ServiceOutbound,
    W::ServiceRemoteRefs,
    W::ServiceInteractions,
    W::ServiceParticipants,
    W::ServiceSessions,
    W::ServiceNumbers,
    W::ServiceRow,
    W::SessionOutbound,
    W::SessionRemoteRefs,
    W::SessionInteractions,
    W::SessionParticipants,
    W::SessionRow,
    W::ChangesLock,
    W::Changes,
    W::Notify,
    W::TouchSession,
    W::ExpireSession,
    W::ReleaseOutbound,
    W::SyncKeys,
    W::ServiceKeys,
    W::SessionKeys,
    W::PutContact,
    W::PutKey,
    W::UpdateKey,
    W::DeleteKey,
    W::ServiceReportCounts,
    W::ServiceReportDeltas,
    W::ServiceContacts,
];

/// A close by the timer wheel, applied only while the session is still active and its
/// deadline, by the row as committed, has passed ($4 is the close time, Unix seconds).
const EXPIRE_SESSION: &str = "UPDATE sessions SET status = $2, closed_reason = $3,
    date_ended = $4, date_updated = $5
  WHERE sid = $1 AND status IN ('open', 'in-progress')
    AND (CASE WHEN date_expiry IS NOT NULL THEN date_expiry
              WHEN ttl > 0 THEN COALESCE(date_last_interaction, date_created) + ttl END) <= $4";

/// Makes `route_keys` hold exactly the keys of session $1's live participants while it is
/// active: keys it no longer uses go, the others are claimed. Answers how many it could not
/// claim because another session holds them (the unique key refuses; a claim another
/// transaction is making waits for it to end).
const SYNC_KEYS: &str = "
WITH want AS (
  SELECT p.proxy, p.identifier FROM participants p JOIN sessions s ON s.sid = p.session_sid
  WHERE s.sid = $1 AND s.status IN ('open', 'in-progress') AND p.date_deleted IS NULL),
gone AS (
  DELETE FROM route_keys r WHERE r.session_sid = $1 AND NOT EXISTS
    (SELECT 1 FROM want w WHERE w.proxy = r.proxy AND w.identifier = r.identifier)),
mine AS (
  SELECT count(*) AS n FROM route_keys r JOIN want w
    ON w.proxy = r.proxy AND w.identifier = r.identifier WHERE r.session_sid = $1),
claimed AS (
  INSERT INTO route_keys (proxy, identifier, session_sid) SELECT proxy, identifier, $1 FROM want
  ON CONFLICT (proxy, identifier) DO NOTHING RETURNING 1)
SELECT (SELECT count(*) FROM want) - (SELECT n FROM mine) - (SELECT count(*) FROM claimed)";

/// What the change log says an op changed: `(kind, sid)`, a participant being its session.
pub(super) fn changed(op: &WriteOp) -> Option<(&'static str, Sid)> {
    Some(match op {
        WriteOp::PutService(v) => (KIND_SERVICE, v.sid),
        WriteOp::DeleteService(sid) => (KIND_SERVICE, *sid),
        WriteOp::PutNumber(v) => (KIND_NUMBER, v.sid),
        WriteOp::DeleteNumber(sid) => (KIND_NUMBER, *sid),
        WriteOp::PutSession(v) | WriteOp::ExpireSession(v) => (KIND_SESSION, v.sid),
        WriteOp::TouchSession {
            session,
            follow: true,
            ..
        } => (KIND_SESSION, *session),
        WriteOp::DeleteSession(sid) => (KIND_SESSION, *sid),
        WriteOp::PutParticipant(v) => (KIND_SESSION, v.session_sid),
        WriteOp::PutKey(v) => (KIND_KEY, v.sid),
        WriteOp::UpdateKey { sid, .. } => (KIND_KEY, *sid),
        WriteOp::DeleteKey(sid) => (KIND_KEY, *sid),
        _ => return None,
    })
}

pub(super) const KIND_SERVICE: &str = "service";
pub(super) const KIND_NUMBER: &str = "number";
pub(super) const KIND_SESSION: &str = "session";
pub(super) const KIND_KEY: &str = "key";

pub(super) fn s(sid: &Sid) -> String {
    sid.to_string()
}
fn os(sid: &Option<Sid>) -> Option<String> {
    sid.as_ref().map(Sid::to_string)
}
fn st(status: &Option<ResourceStatus>) -> Option<&'static str> {
    status.map(ResourceStatus::as_str)
}
fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The statements one op becomes, in order.
pub(super) fn statements(op: &WriteOp, out: &mut Vec<(W, Vec<Param>)>) {
    match op {
        WriteOp::PutService(v) => out.push((
            W::PutService,
            params![
                s(&v.sid),
                big(v.seq),
                v.unique_name.clone(),
                v.callback_url.clone(),
                big(v.default_ttl),
                v.geo_match_level.as_str(),
                v.number_selection_behavior.as_str(),
                v.intercept_callback_url.clone(),
                v.out_of_session_callback_url.clone(),
                v.chat_instance_sid.clone(),
                big(v.cooloff),
                v.date_created,
                v.date_updated,
                v.record
            ],
        )),
        WriteOp::DeleteService(sid) => {
            for w in [
                W::ServiceKeys,
                W::ServiceOutbound,
                W::ServiceRemoteRefs,
                W::ServiceInteractions,
                W::ServiceParticipants,
                W::ServiceSessions,
                W::ServiceNumbers,
                W::ServiceRow,
                W::ServiceReportDeltas,
                W::ServiceReportCounts,
                W::ServiceContacts,
            ] {
                out.push((w, params![s(sid)]));
            }
        }
        WriteOp::PutNumber(v) => out.push((
            W::PutNumber,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.service_sid),
                big(v.number.as_u64()),
                v.friendly_name.clone(),
                v.is_reserved,
                v.date_created,
                v.date_updated,
                v.carrier.clone()
            ],
        )),
        WriteOp::DeleteNumber(sid) => out.push((W::DeleteNumber, params![s(sid)])),
        WriteOp::PutSession(v) => out.push((
            W::PutSession,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.service_sid),
                v.unique_name.clone(),
                v.status.as_str(),
                v.mode.as_str(),
                big(v.ttl),
                v.date_expiry,
                v.date_started,
                v.date_ended,
                v.date_last_interaction,
                v.closed_reason.as_str(),
                v.date_created,
                v.date_updated,
                v.record
            ],
        )),
        WriteOp::TouchSession { session, at, .. } => {
            out.push((W::TouchSession, params![s(session), *at]))
        }
        WriteOp::ExpireSession(v) => out.push((
            W::ExpireSession,
            params![
                s(&v.sid),
                v.status.as_str(),
                v.closed_reason.as_str(),
                v.date_ended.unwrap_or(v.date_updated),
                v.date_updated
            ],
        )),
        WriteOp::DeleteSession(sid) => {
            // The queue and receipt rows of its messages hold real numbers: they go too.
            for w in [
                W::SessionKeys,
                W::SessionOutbound,
                W::SessionRemoteRefs,
                W::SessionInteractions,
                W::SessionParticipants,
                W::SessionRow,
            ] {
                out.push((w, params![s(sid)]));
            }
        }
        WriteOp::PutParticipant(v) => out.push((
            W::PutParticipant,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.session_sid),
                s(&v.service_sid),
                big(v.identifier.as_u64()),
                v.friendly_name.clone(),
                big(v.proxy.as_u64()),
                s(&v.proxy_sid),
                v.date_deleted,
                v.date_created,
                v.date_updated
            ],
        )),
        WriteOp::PutInteraction(v) => out.push((
            W::PutInteraction,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.session_sid),
                s(&v.service_sid),
                v.data.to_string(),
                v.kind.as_str(),
                os(&v.inbound.participant_sid),
                v.inbound.resource_sid.as_deref().map(str::to_string),
                st(&v.inbound.resource_status),
                v.inbound.resource_type.as_deref().map(str::to_string),
                v.inbound.resource_url.as_deref().map(str::to_string),
                os(&v.outbound.participant_sid),
                v.outbound.resource_sid.as_deref().map(str::to_string),
                st(&v.outbound.resource_status),
                v.outbound.resource_type.as_deref().map(str::to_string),
                v.outbound.resource_url.as_deref().map(str::to_string),
                os(&v.message_participant_sid),
                v.date_created,
                v.date_updated
            ],
        )),
        WriteOp::DeleteInteraction(sid) => out.push((W::DeleteInteraction, params![s(sid)])),
        WriteOp::PutOutbound(o) => out.push((
            W::PutOutbound,
            params![
                big(o.id),
                s(&o.interaction),
                big(o.from.as_u64()),
                big(o.to.as_u64()),
                o.via.clone(),
                o.origin.as_ref().map(origin_text),
                o.payload.clone(),
                o.created,
                // The owner, filled in by `PgWriter::statements_of`.
                0i32
            ],
        )),
        WriteOp::DeleteOutbound(id) => out.push((W::DeleteOutbound, params![big(*id)])),
        WriteOp::ReleaseOutbound { id, via } => {
            out.push((W::ReleaseOutbound, params![big(*id), via.clone()]))
        }
        WriteOp::SetOutboundStatus {
            interaction,
            status,
            resource_sid,
            at,
        } => out.push((
            W::SetOutboundStatus,
            params![s(interaction), status.as_str(), resource_sid.clone(), *at],
        )),
        WriteOp::PutRemoteRef(r) => out.push((
            W::PutRemoteRef,
            params![
                r.peer.clone(),
                r.remote_id.clone(),
                s(&r.interaction),
                r.origin.as_ref().map(origin_text)
            ],
        )),
        WriteOp::PutCallback(c) => out.push((
            W::PutCallback,
            params![
                big(c.id),
                s(&c.interaction),
                c.url.clone(),
                c.params.as_deref().map(crate::core::callback::encode),
                c.outbound.as_ref().map(|o| o.0.as_str()),
                c.outbound.as_ref().and_then(|o| o.1.clone()),
                c.outbound.as_ref().map(|o| o.2),
                c.created,
                // The owner, filled in by `PgWriter::statements_of`.
                0i32
            ],
        )),
        WriteOp::DeleteCallback(id) => out.push((W::DeleteCallback, params![big(*id)])),
        WriteOp::PutRecording(v) => out.push((
            W::PutRecording,
            params![
                s(&v.sid),
                big(v.seq),
                s(&v.session_sid),
                s(&v.service_sid),
                v.call_sid.clone(),
                v.status.as_str(),
                v.start_ms,
                v.duration.map(big),
                v.error_code.map(i64::from),
                v.reason.clone(),
                v.date_created,
                v.date_updated
            ],
        )),
        WriteOp::DeleteRecording(sid) => out.push((W::DeleteRecording, params![s(sid)])),
        WriteOp::PutKey(k) => out.push((
            W::PutKey,
            params![
                s(&k.sid),
                k.seq as i64,
                k.friendly_name.clone(),
                k.secret_hash.clone(),
                k.date_created,
                k.date_updated
            ],
        )),
        WriteOp::UpdateKey {
            sid,
            friendly_name,
            at,
        } => out.push((W::UpdateKey, params![s(sid), friendly_name.clone(), *at])),
        WriteOp::DeleteKey(sid) => out.push((W::DeleteKey, params![s(sid)])),
        WriteOp::PutContact(c) => {
            let voice = c.kind == crate::core::model::InteractionType::Voice;
            out.push((
                W::PutContact,
                params![
                    s(&c.service),
                    c.proxy.as_u64() as i64,
                    c.sender.as_u64() as i64,
                    c.at,
                    i64::from(!voice),
                    i64::from(voice)
                ],
            ))
        }
    }
}
