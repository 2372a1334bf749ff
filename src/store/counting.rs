//! SQLite's report counters for interactions, counted by the writer itself: every message
//! and call is written several times (created, then each status), and SQL triggers doing
//! that counting halved the SMS plane's throughput (BENCHMARKS.md, Issue 16). The writer
//! remembers what it last wrote of each recent interaction and the proxy number of each
//! participant (reading the store only for what it does not remember), adds the changes up
//! per batch in memory, and writes each counter once per batch, in the batch's transaction.
//! The meaning is `core::reports`' and the same as PostgreSQL's triggers
//! (`store/postgres/reports.rs`); the store contract test holds both to it.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Transaction};

use crate::core::model::{Interaction, InteractionType, ResourceStatus, Timestamp};
use crate::core::sid::Sid;
use crate::core::store::WriteOp;

/// Entries remembered before the memory starts again (each is a few dozen bytes).
const REMEMBER: usize = 200_000;

/// What counting an interaction's change needs of it.
#[derive(Clone, Debug)]
struct Seen {
    service: Sid,
    kind: InteractionType,
    /// The proxy numbers of its inbound (dialled) and outbound legs.
    dialled: Option<u64>,
    sent_from: Option<u64>,
    created: Timestamp,
    status: Option<ResourceStatus>,
    /// A call's length as its `data` says (0 for messages).
    duration: i64,
}

/// An upper bound of every stored interaction's `seq`, once the store's `load` has read it
/// (`u64::MAX` until then): an interaction stamped above it is new, without a read.
pub(super) type SeqBound = std::sync::Arc<std::sync::atomic::AtomicU64>;

pub(super) fn seq_bound() -> SeqBound {
    std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX))
}

pub(super) struct Counting {
    bound: SeqBound,
    /// The bound as this writer keeps it up (`None`: not known yet).
    max_seq: Option<u64>,
    /// The largest `seq` this writer has written (rows it wrote before `load` ran are
    /// above the bound `load` read only if they were not committed yet).
    written_max: u64,
    seen: Map<Sid, Seen>,
    proxies: Map<Sid, u64>,
    /// (service, day number, proxy number, counter) → change, for this batch.
    deltas: Map<(Sid, i64, u64, Counter), i64>,
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A counter, named when written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Counter {
    Named(&'static str),
    MessagesOut(ResourceStatus),
    Calls(ResourceStatus),
}

impl Counter {
    fn name(self) -> String {
        let status = |s: ResourceStatus| s.as_str().replace('-', "_");
        match self {
            Counter::Named(n) => n.to_string(),
            Counter::MessagesOut(s) => format!("messages_out_{}", status(s)),
            Counter::Calls(s) => format!("calls_{}", status(s)),
        }
    }
}

impl Counting {
    pub(super) fn new(bound: SeqBound) -> Counting {
        Counting {
            bound,
            max_seq: None,
            written_max: 0,
            seen: Map::default(),
            proxies: Map::default(),
            deltas: Map::default(),
        }
    }
}

impl Counting {
    /// Notes what `op` will change, before it is applied in `tx`.
    pub(super) fn before(&mut self, tx: &Transaction<'_>, op: &WriteOp) -> rusqlite::Result<()> {
        match op {
            WriteOp::PutParticipant(p) => {
                self.remember_proxy(p.sid, p.proxy.as_u64());
            }
            WriteOp::PutInteraction(v) => self.interaction(tx, v)?,
            WriteOp::SetOutboundStatus {
                interaction,
                status,
                ..
            } => self.outbound(tx, *interaction, *status)?,
            WriteOp::DeleteInteraction(sid) => {
                self.seen.remove(sid);
            }
            WriteOp::DeleteService(svc) => {
                // Its counters go with it: none of this batch's may come back.
                self.deltas.retain(|k, _| k.0 != *svc);
                self.seen.clear();
            }
            WriteOp::DeleteSession(_) => {
                // Their rows go; what is remembered of them is simply never asked again,
                // but a SID is never reused, so forgetting everything is only tidier.
                self.seen.clear();
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes this batch's changes to the counters.
    pub(super) fn flush(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.deltas.is_empty() {
            return Ok(());
        }
        let mut st = tx.prepare_cached(
            "INSERT INTO report_counts VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO UPDATE SET value = value + excluded.value",
        )?;
        for ((service, day, number, counter), value) in self.deltas.drain() {
            if value != 0 {
                let day = crate::core::datetime::format(day * 86_400)[..10].to_string();
                let field = counter.name();
                st.execute(params![
                    service.to_string(),
                    day,
                    number as i64,
                    field,
                    value
                ])?;
            }
        }
        Ok(())
    }

    /// The batch did not commit: what was noted of it is wrong.
    pub(super) fn reset(&mut self) {
        self.seen.clear();
        self.proxies.clear();
        self.deltas.clear();
    }

    fn remember_proxy(&mut self, participant: Sid, proxy: u64) {
        if self.proxies.len() >= REMEMBER {
            self.proxies.clear();
        }
        self.proxies.insert(participant, proxy);
    }

    fn proxy(&mut self, tx: &Transaction<'_>, p: Option<Sid>) -> rusqlite::Result<Option<u64>> {
        let Some(p) = p else { return Ok(None) };
        if let Some(n) = self.proxies.get(&p) {
            return Ok(Some(*n));
        }
        let found: Option<i64> = tx
            .prepare_cached("SELECT proxy FROM participants WHERE sid = ?1")?
            .query_row([p.to_string()], |r| r.get(0))
            .optional()?;
        if let Some(n) = found {
            self.remember_proxy(p, n as u64);
        }
        Ok(found.map(|n| n as u64))
    }

    fn bump(&mut self, service: Sid, at: Timestamp, number: Option<u64>, field: Counter, v: i64) {
        if let Some(n) = number {
            *self
                .deltas
                .entry((service, at.div_euclid(86_400), n, field))
                .or_default() += v;
        }
    }

    fn remember(&mut self, sid: Sid, seen: Seen) {
        if self.seen.len() >= REMEMBER {
            self.seen.clear();
        }
        self.seen.insert(sid, seen);
    }

    fn interaction(&mut self, tx: &Transaction<'_>, v: &Interaction) -> rusqlite::Result<()> {
        if self.max_seq.is_none() {
            let b = self.bound.load(std::sync::atomic::Ordering::Acquire);
            self.max_seq = (b != u64::MAX).then_some(b.max(self.written_max));
        }
        let fresh = self.max_seq.is_some_and(|m| v.seq > m);
        if let Some(m) = self.max_seq.as_mut() {
            *m = (*m).max(v.seq);
        }
        self.written_max = self.written_max.max(v.seq);
        // Whether the row is there, and its status, as last written.
        let before: Option<Option<ResourceStatus>> = match self.seen.get(&v.sid) {
            Some(s) => Some(s.status),
            None if fresh => None,
            None => tx
                .prepare_cached("SELECT out_status FROM interactions WHERE sid = ?1")?
                .query_row([v.sid.to_string()], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .map(|s| s.as_deref().and_then(ResourceStatus::parse)),
        };
        let seen = Seen {
            service: v.service_sid,
            kind: v.kind,
            dialled: self.proxy(tx, v.inbound.participant_sid)?,
            sent_from: self.proxy(tx, v.outbound.participant_sid)?,
            created: v.date_created,
            status: v.outbound.resource_status,
            duration: match v.kind {
                InteractionType::Voice => duration_of(&v.data),
                _ => 0,
            },
        };
        let svc = v.service_sid;
        let old = match before {
            None => {
                let (inbound, outbound) = match v.kind {
                    InteractionType::Message => ("messages_in", "messages_out"),
                    InteractionType::Voice => ("calls_in", "calls_out"),
                    InteractionType::Unknown => ("", ""),
                };
                if !inbound.is_empty() {
                    self.bump(svc, seen.created, seen.dialled, Counter::Named(inbound), 1);
                    self.bump(
                        svc,
                        seen.created,
                        seen.sent_from,
                        Counter::Named(outbound),
                        1,
                    );
                }
                None
            }
            Some(old) => old,
        };
        self.moved(&seen, old);
        // A call that ended changes no more: forgetting it keeps this memory to the calls
        // under way (a later change would read the row back, as for one never seen).
        let ended = matches!(
            seen.status,
            Some(
                ResourceStatus::Completed
                    | ResourceStatus::Busy
                    | ResourceStatus::Canceled
                    | ResourceStatus::Failed
                    | ResourceStatus::NoAnswer
            )
        );
        if seen.kind == InteractionType::Voice && ended {
            self.seen.remove(&v.sid);
        } else {
            self.remember(v.sid, seen);
        }
        Ok(())
    }

    fn outbound(
        &mut self,
        tx: &Transaction<'_>,
        sid: Sid,
        status: ResourceStatus,
    ) -> rusqlite::Result<()> {
        let seen = match self.seen.get(&sid) {
            Some(s) => s.clone(),
            None => {
                let row = tx
                    .prepare_cached(
                        "SELECT type, in_participant, out_participant, date_created, out_status,
                                service_sid, data FROM interactions WHERE sid = ?1",
                    )?
                    .query_row([sid.to_string()], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                        ))
                    })
                    .optional()?;
                // No such interaction: the update changes nothing.
                let Some((kind, inp, outp, created, old, service, data)) = row else {
                    return Ok(());
                };
                let sid_of = |t: Option<String>| t.and_then(|t| Sid::parse_any(&t));
                let Some(service) = sid_of(Some(service)) else {
                    return Ok(());
                };
                let seen = Seen {
                    service,
                    kind: InteractionType::parse(&kind).unwrap_or(InteractionType::Unknown),
                    dialled: self.proxy(tx, sid_of(inp))?,
                    sent_from: self.proxy(tx, sid_of(outp))?,
                    created,
                    status: old.as_deref().and_then(ResourceStatus::parse),
                    duration: duration_of(&data),
                };
                seen
            }
        };
        let old = seen.status;
        let now = Seen {
            status: Some(status),
            ..seen
        };
        self.moved(&now, old);
        self.remember(sid, now);
        Ok(())
    }

    /// The outbound leg went from `old` to `now.status`: it leaves the old status's counter
    /// and joins the new one (the day it began); a completed call adds its length.
    fn moved(&mut self, now: &Seen, old: Option<ResourceStatus>) {
        let duration = now.duration;
        if old == now.status {
            return;
        }
        let svc = now.service;
        let (counter, number): (fn(ResourceStatus) -> Counter, _) = match now.kind {
            InteractionType::Message => (Counter::MessagesOut, now.sent_from),
            InteractionType::Voice => (Counter::Calls, now.dialled),
            InteractionType::Unknown => return,
        };
        if let Some(s) = now.status {
            self.bump(svc, now.created, number, counter(s), 1);
        }
        if let Some(s) = old {
            self.bump(svc, now.created, number, counter(s), -1);
        }
        if now.kind == InteractionType::Voice
            && now.status == Some(ResourceStatus::Completed)
            && duration > 0
        {
            self.bump(
                svc,
                now.created,
                number,
                Counter::Named("call_seconds"),
                duration,
            );
            let minutes = (duration + 59) / 60;
            self.bump(
                svc,
                now.created,
                number,
                Counter::Named("call_minutes"),
                minutes,
            );
        }
    }
}

/// A call's length in seconds from its interaction's `data` (`{"duration": "61"}`).
fn duration_of(data: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|d| d.get("duration")?.as_str()?.parse::<i64>().ok())
        .unwrap_or(0)
}
