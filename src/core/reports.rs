//! Daily reports and lead attribution (a maskd extension): the counters the store keeps per
//! service, UTC day and proxy number as what they count is committed, and the out-of-session
//! contacts (a stranger reaching a pool number). Plain data; the store computes the counts in
//! the same transaction as the rows they count, so they survive restarts and every node's
//! writes count once.

use super::e164::E164;
use super::model::{InteractionType, Timestamp};
use super::sid::Sid;

/// Every counter, in the order of the CSV columns. Sessions on a number row are the
/// sessions that got a participant on that number; on the service row (no number), the
/// sessions created. A session's close counts on the service row and on each of its proxy
/// numbers. Messages count on the proxy number they arrived at (`messages_in`) or left from
/// (`messages_out`, and by the status each is in now: a day's statuses add up to its
/// messages out); calls on the number dialled (`calls_in`, by outcome, seconds and minutes
/// rounded up per call) and on the number the callee saw (`calls_out`). Statuses, outcomes
/// and lengths count on the day the message or call began; a status without a column of its
/// own (`accepted`, `delivery-unknown`; a call still ringing or up) counts under `_other`. `leads` are strangers first reaching a number that day,
/// `leads_converted` those of them later in a session of the service.
pub const FIELDS: &[&str] = &[
    "sessions_created",
    "sessions_closed_api",
    "sessions_closed_ttl",
    "sessions_closed_expiry",
    "messages_in",
    "messages_out",
    "messages_out_queued",
    "messages_out_sent",
    "messages_out_delivered",
    "messages_out_undelivered",
    "messages_out_failed",
    "messages_out_other",
    "calls_in",
    "calls_out",
    "calls_completed",
    "calls_busy",
    "calls_no_answer",
    "calls_failed",
    "calls_canceled",
    "calls_other",
    "call_seconds",
    "call_minutes",
    "out_of_session_messages",
    "out_of_session_calls",
    "leads",
    "leads_converted",
];

/// Days `from..=to` (`YYYY-MM-DD`, UTC) of one service.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    pub service: Sid,
    pub from_day: String,
    pub to_day: String,
}

/// One counter as the store holds it; `number` 0 is the service's own row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportCount {
    pub day: String,
    pub number: u64,
    pub field: String,
    pub value: i64,
}

/// A day's counters for a service (`number: None`) or one of its proxy numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRow {
    pub day: String,
    pub number: Option<E164>,
    /// In `FIELDS` order.
    pub values: Vec<i64>,
}

/// Gathers counters into rows, by day, the service's row first and then its numbers in
/// order. Counters under names maskd does not report are left out.
pub fn pivot(counts: Vec<ReportCount>) -> Vec<DailyRow> {
    let mut rows: std::collections::BTreeMap<(String, u64), Vec<i64>> = Default::default();
    for c in counts {
        let field = match FIELDS.iter().position(|f| *f == c.field) {
            Some(i) => Some(i),
            None if c.field.starts_with("messages_out_") => {
                FIELDS.iter().position(|f| *f == "messages_out_other")
            }
            None if c.field.starts_with("calls_") => {
                FIELDS.iter().position(|f| *f == "calls_other")
            }
            None => None,
        };
        let Some(i) = field else {
            continue;
        };
        rows.entry((c.day, c.number))
            .or_insert_with(|| vec![0; FIELDS.len()])[i] += c.value;
    }
    rows.into_iter()
        .map(|((day, number), values)| DailyRow {
            day,
            number: if number == 0 {
                None
            } else {
                E164::from_u64(number)
            },
            values,
        })
        .collect()
}

/// A stranger reached `proxy` of `service` with no session: logged as it happens.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactEvent {
    pub service: Sid,
    pub proxy: E164,
    pub sender: E164,
    pub kind: InteractionType,
    pub at: Timestamp,
}

/// Everything one stranger did on one proxy number of a service, and the first session of
/// the service that had them as a participant afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub proxy: E164,
    pub sender: E164,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    pub messages: u64,
    pub calls: u64,
    pub session: Option<Sid>,
}

/// A page of a service's contacts, most recent first.
#[derive(Debug, Clone)]
pub struct ContactQuery {
    pub service: Sid,
    pub proxy: Option<E164>,
    pub offset: usize,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_rows_by_day_service_row_first() {
        let c = |day: &str, number, field: &str, value| ReportCount {
            day: day.into(),
            number,
            field: field.into(),
            value,
        };
        let rows = pivot(vec![
            c("2026-12-02", 15_550_000_001, "messages_in", 2),
            c("2026-12-01", 15_550_000_001, "calls_in", 1),
            c("2026-12-01", 0, "sessions_created", 3),
            c("2026-12-01", 0, "something_else", 9),
            c("2026-12-01", 15_550_000_001, "calls_in", 1),
            c("2026-12-01", 15_550_000_001, "calls_ringing", 1),
            c(
                "2026-12-01",
                15_550_000_001,
                "messages_out_delivery_unknown",
                2,
            ),
        ]);
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].day.as_str(), rows[0].number), ("2026-12-01", None));
        assert_eq!(
            rows[0].values.iter().sum::<i64>(),
            3,
            "unknown names left out"
        );
        let at = |name| FIELDS.iter().position(|f| *f == name).unwrap();
        assert_eq!(rows[1].values[at("calls_in")], 2);
        assert_eq!(
            rows[1].values[at("calls_other")],
            1,
            "a status of no column"
        );
        assert_eq!(rows[1].values[at("messages_out_other")], 2);
        assert_eq!(rows[2].day, "2026-12-02");
    }
}
