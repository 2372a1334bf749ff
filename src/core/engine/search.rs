//! What the operators' console asks of memory: sessions found by SID, unique name or a
//! participant's number, and each pool's use now.

use std::collections::BinaryHeap;

use super::*;

/// A pool's use at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolUse {
    pub service: Sid,
    pub unique_name: String,
    pub size: u64,
    /// Numbers with at least one active participant.
    pub in_use: u64,
    pub active_sessions: u64,
}

/// A session found, with its participants (deleted ones included).
pub type Found = (Session, Vec<Participant>);

impl Engine {
    /// Sessions matching `query`, newest first, at most `limit`: a session SID; a phone
    /// number (a participant's identifier or proxy number, E.164 or its last four digits and
    /// more); else part of a unique name (case-insensitive). An empty query: the newest.
    pub fn find_sessions(&self, query: &str, limit: usize) -> Vec<Found> {
        let q = query.trim();
        let st = self.state.lock();
        let with_parts = |ss: &state::SessionState| -> Found {
            let parts = ss
                .participants
                .iter()
                .filter_map(|p| st.participants.get(p).map(|b| (**b).clone()))
                .collect();
            (ss.session.clone(), parts)
        };
        if let Some(sid) = Sid::parse(SidKind::Session, q) {
            return st
                .sessions
                .get(&sid)
                .map(|ss| with_parts(ss))
                .into_iter()
                .collect();
        }
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        let by_number = digits.len() >= 4
            && q.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
        // The digits as a number and the power of ten that cuts a number's last ones.
        let suffix = (digits.len() <= 15)
            .then(|| Some((digits.parse::<u64>().ok()?, 10u64.pow(digits.len() as u32))))
            .flatten();
        let ends_with = |n: E164| suffix.is_some_and(|(want, m)| n.as_u64() % m == want);
        let needle = q.as_bytes();
        let matches = |ss: &state::SessionState| -> bool {
            if by_number {
                return ss.participants.iter().any(|p| {
                    st.participants
                        .get(p)
                        .is_some_and(|p| ends_with(p.identifier) || ends_with(p.proxy))
                });
            }
            // Part of the name, ASCII letters in any case, without a copy per session.
            ss.session.unique_name.as_deref().is_some_and(|n| {
                n.as_bytes()
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle))
            })
        };
        if q.is_empty() {
            // The newest of each service's index, then the newest of those.
            let mut newest: Vec<Sid> = st
                .service_sessions
                .values()
                .flat_map(|index| index.values().rev().take(limit).copied())
                .collect();
            newest.sort_unstable_by_key(|sid| {
                std::cmp::Reverse(st.sessions.get(sid).map_or(0, |ss| ss.session.seq))
            });
            return newest
                .iter()
                .take(limit)
                .filter_map(|sid| st.sessions.get(sid).map(|ss| with_parts(ss)))
                .collect();
        }
        // One pass over memory keeping only the newest `limit` matches (a heap whose top is
        // the oldest kept).
        let mut kept: BinaryHeap<std::cmp::Reverse<(u64, Sid)>> = BinaryHeap::new();
        for ss in st.sessions.values() {
            if !matches(ss) {
                continue;
            }
            let key = std::cmp::Reverse((ss.session.seq, ss.session.sid));
            if kept.len() < limit {
                kept.push(key);
            } else if kept.peek().is_some_and(|top| key < *top) {
                kept.pop();
                kept.push(key);
            }
        }
        let mut found: Vec<(u64, Sid)> = kept.into_iter().map(|r| r.0).collect();
        found.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        found
            .iter()
            .filter_map(|(_, sid)| st.sessions.get(sid).map(|ss| with_parts(ss)))
            .collect()
    }

    /// Every pool's use now, in the services' creation order.
    pub fn pool_use(&self) -> Vec<PoolUse> {
        let st = self.state.lock();
        let mut active: HashMap<Sid, u64> = HashMap::new();
        for ss in st.sessions.values() {
            if ss.session.status.is_active() {
                *active.entry(ss.session.service_sid).or_default() += 1;
            }
        }
        st.service_order
            .values()
            .filter_map(|sid| {
                let s = st.services.get(sid)?;
                let pool = st.pools.get(sid)?;
                Some(PoolUse {
                    service: *sid,
                    unique_name: s.unique_name.clone(),
                    size: pool.len() as u64,
                    in_use: pool
                        .values()
                        .filter(|n| st.numbers.get(n).is_some_and(|n| n.in_use > 0))
                        .count() as u64,
                    active_sessions: active.get(sid).copied().unwrap_or(0),
                })
            })
            .collect()
    }
}
