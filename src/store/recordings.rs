//! The `recordings` table: one row per recorded call, written by the group-commit writer
//! (`put`) and read by the API (`fetch`, `query`). SQL only; files are the engine's.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::sqlite::{enum_col, sid_col};
use crate::core::model::{Recording, RecordingStatus};
use crate::core::sid::Sid;
use crate::core::store::RecordingQuery;

pub(super) fn put(tx: &Transaction<'_>, v: &Recording) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO recordings VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
    )?
    .execute(params![
        v.sid.to_string(),
        v.seq as i64,
        v.session_sid.to_string(),
        v.service_sid.to_string(),
        v.call_sid,
        v.status.as_str(),
        v.start_ms,
        v.duration.map(|d| d as i64),
        v.error_code,
        v.reason,
        v.date_created,
        v.date_updated
    ])?;
    Ok(())
}

fn row(r: &Row<'_>) -> rusqlite::Result<Recording> {
    Ok(Recording {
        sid: sid_col(r, 0)?,
        seq: r.get::<_, i64>(1)? as u64,
        session_sid: sid_col(r, 2)?,
        service_sid: sid_col(r, 3)?,
        call_sid: r.get(4)?,
        status: enum_col(r, 5, RecordingStatus::parse)?,
        start_ms: r.get(6)?,
        duration: r.get::<_, Option<i64>>(7)?.map(|d| d.max(0) as u64),
        error_code: r.get(8)?,
        reason: r.get(9)?,
        date_created: r.get(10)?,
        date_updated: r.get(11)?,
    })
}

pub(super) fn fetch(conn: &Connection, sid: Sid) -> rusqlite::Result<Option<Recording>> {
    conn.prepare_cached("SELECT * FROM recordings WHERE sid = ?1")?
        .query_row([sid.to_string()], row)
        .optional()
}

/// Newest first; with `above_seq` the rows just above it are taken oldest first and turned
/// around, so a previous page is the one that led here.
pub(super) fn query(conn: &Connection, q: &RecordingQuery) -> rusqlite::Result<Vec<Recording>> {
    let mut sql = String::from("SELECT * FROM recordings WHERE 1");
    let mut args: Vec<Value> = Vec::new();
    let mut cond = |clause: &str, v: Value| {
        args.push(v);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(c) = &q.call_sid {
        cond("call_sid =", Value::Text(c.clone()));
    }
    if let Some(sid) = q.session {
        cond("session_sid =", Value::Text(sid.to_string()));
    }
    if let Some(s) = q.status {
        cond("status =", Value::Text(s.as_str().into()));
    }
    if let Some(t) = q.created_from {
        cond("date_created >=", Value::Integer(t));
    }
    if let Some(t) = q.created_before {
        cond("date_created <", Value::Integer(t));
    }
    if let Some(t) = q.started_before_ms {
        cond("start_ms <", Value::Integer(t));
    }
    if let Some(s) = q.below_seq {
        cond(
            "seq <",
            Value::Integer(i64::try_from(s).unwrap_or(i64::MAX)),
        );
    }
    if let Some(s) = q.above_seq {
        cond(
            "seq >",
            Value::Integer(i64::try_from(s).unwrap_or(i64::MAX)),
        );
    }
    let ascending = q.above_seq.is_some() && q.below_seq.is_none();
    sql.push_str(if ascending {
        " ORDER BY seq ASC"
    } else {
        " ORDER BY seq DESC"
    });
    args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    sql.push_str(&format!(" LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt
        .query_map(rusqlite::params_from_iter(args), row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if ascending {
        rows.reverse();
    }
    Ok(rows)
}
