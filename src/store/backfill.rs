//! The report counters of what a database held before it had them (schema version 7), in
//! SQL both backends speak but for the day of a Unix time and a call's length: counted once,
//! in the migration's transaction, by the same rules as `core::reports` (statuses as they
//! are now, on the day the message or call began). Contacts were not kept before: none.

/// The statements (grouped by column position: PostgreSQL refuses a constant in GROUP BY,
/// and a positional 4th column is the counter's name when it is computed); `day(expr)` is the backend's `YYYY-MM-DD` (UTC) of Unix seconds `expr`,
/// `seconds` its call length of an interaction row aliased `i` (0 when there is none).
pub(crate) fn statements(day: fn(&str) -> String, seconds: &str) -> Vec<String> {
    let upsert = "ON CONFLICT (service_sid, day, number, field)
        DO UPDATE SET value = report_counts.value + excluded.value";
    let closed_at = day("COALESCE(s.date_ended, s.date_updated)");
    let mut out = vec![
        format!(
            "INSERT INTO report_counts
             SELECT s.service_sid, {d}, 0, 'sessions_created', COUNT(*) FROM sessions s
             WHERE true GROUP BY 1, 2 {upsert}",
            d = day("s.date_created")
        ),
        format!(
            "INSERT INTO report_counts
             SELECT s.service_sid, {closed_at}, 0, 'sessions_closed_' || s.closed_reason, COUNT(*)
             FROM sessions s WHERE s.status = 'closed'
             GROUP BY 1, 2, 4 {upsert}"
        ),
        format!(
            "INSERT INTO report_counts
             SELECT s.service_sid, {closed_at}, p.proxy, 'sessions_closed_' || s.closed_reason,
                    COUNT(DISTINCT s.sid)
             FROM sessions s JOIN participants p ON p.session_sid = s.sid
             WHERE s.status = 'closed'
             GROUP BY 1, 2, 3, 4 {upsert}"
        ),
        format!(
            "INSERT INTO report_counts
             SELECT p.service_sid, {d}, p.proxy, 'sessions_created', COUNT(*) FROM participants p
             WHERE true GROUP BY 1, 2, 3 {upsert}",
            d = day("p.date_created")
        ),
    ];
    let began = day("i.date_created");
    // (interaction type, leg, counter, whose proxy number)
    for (kind, leg, field) in [
        ("message", "in_participant", "'messages_in'"),
        ("message", "out_participant", "'messages_out'"),
        ("voice", "in_participant", "'calls_in'"),
        ("voice", "out_participant", "'calls_out'"),
        (
            "message",
            "out_participant",
            "'messages_out_' || replace(i.out_status, '-', '_')",
        ),
        (
            "voice",
            "in_participant",
            "'calls_' || replace(i.out_status, '-', '_')",
        ),
    ] {
        out.push(format!(
            "INSERT INTO report_counts
             SELECT i.service_sid, {began}, p.proxy, {field}, COUNT(*)
             FROM interactions i JOIN participants p ON p.sid = i.{leg}
             WHERE i.type = '{kind}' AND ({field}) IS NOT NULL
             GROUP BY 1, 2, 3, 4 {upsert}"
        ));
    }
    for (field, value) in [
        ("call_seconds", format!("SUM({seconds})")),
        ("call_minutes", format!("SUM(({seconds} + 59) / 60)")),
    ] {
        out.push(format!(
            "INSERT INTO report_counts
             SELECT i.service_sid, {began}, p.proxy, '{field}', {value}
             FROM interactions i JOIN participants p ON p.sid = i.in_participant
             WHERE i.type = 'voice' AND i.out_status = 'completed' AND {seconds} > 0
             GROUP BY 1, 2, 3 {upsert}"
        ));
    }
    out
}
