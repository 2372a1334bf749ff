//! This node's own writes to what the nodes follow (services, numbers, sessions), as the
//! follower must see them. A row read from the store for another node's change is older
//! than this node's memory when this node has changed that row meanwhile: its write still on
//! its way, or committed after the read's snapshot began. Such a row must not replace
//! memory (it would undo the local change there for good: a node never applies its own
//! changes from the log); it is read again once the local write is committed.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::ops::changed;
use crate::core::sid::Sid;
use crate::core::store::WriteOp;

#[derive(Default)]
struct Inner {
    /// Groups committed so far (each commit of the writer is one).
    epoch: u64,
    /// Per row: this node's writes of it submitted and not yet committed.
    pending: HashMap<Sid, u32>,
    /// Per row: the epoch its last local write was committed in, kept only while a read
    /// is under way (`marks`): a read that begins later sees those commits.
    settled: HashMap<Sid, u64>,
    /// Reads of followed rows under way (between `mark` and the end of their install).
    marks: usize,
}

#[derive(Default)]
pub(super) struct LocalWrites {
    inner: Mutex<Inner>,
    /// Woken after each commit.
    settled: Notify,
}

/// The followed rows `ops` write. (A session's touch that others do not follow only moves
/// its last activity forward, which a stale read can set back here for a moment: the
/// store's conditional close then refuses to close it early, and it is read again.)
fn rows(ops: &[WriteOp]) -> Vec<Sid> {
    let mut sids: Vec<Sid> = ops
        .iter()
        .filter_map(|op| changed(op).map(|(_, sid)| sid))
        .collect();
    sids.sort_unstable();
    sids.dedup();
    sids
}

impl LocalWrites {
    /// A job is about to be queued for the writer (called by the engine with its state
    /// locked, after it changed memory).
    /// Returns the rows it writes, for `abandoned`.
    pub(super) fn submitted(&self, ops: &[WriteOp]) -> Vec<Sid> {
        let sids = rows(ops);
        if !sids.is_empty() {
            let mut g = self.inner.lock();
            for sid in &sids {
                *g.pending.entry(*sid).or_default() += 1;
            }
        }
        sids
    }

    /// The writer did not take a job `submitted` announced (it gave up a touch while the
    /// store was down, or it has stopped).
    pub(super) fn abandoned(&self, sids: &[Sid]) {
        let mut g = self.inner.lock();
        for sid in sids {
            if let Some(n) = g.pending.get_mut(sid) {
                *n -= 1;
                if *n == 0 {
                    g.pending.remove(sid);
                }
            }
        }
    }

    /// The writer is done with these jobs (committed, refused, or failed for good).
    pub(super) fn done<'a>(&self, jobs: impl Iterator<Item = &'a [WriteOp]>) {
        {
            let mut g = self.inner.lock();
            g.epoch += 1;
            let epoch = g.epoch;
            for ops in jobs {
                for sid in rows(ops) {
                    if let Some(n) = g.pending.get_mut(&sid) {
                        *n -= 1;
                        if *n == 0 {
                            g.pending.remove(&sid);
                        }
                    }
                    if g.marks > 0 {
                        g.settled.insert(sid, epoch);
                    }
                }
            }
        }
        self.settled.notify_waiters();
    }

    /// Taken before a read of followed rows begins, held until they are installed: what
    /// this node committed up to now is in what the read sees.
    pub(super) fn mark(&self) -> Mark<'_> {
        let mut g = self.inner.lock();
        g.marks += 1;
        Mark {
            epoch: g.epoch,
            local: self,
        }
    }

    /// Whether a row read after `mark` is older than this node's memory of it.
    pub(super) fn newer_here(&self, sid: Sid, mark: u64) -> bool {
        let g = self.inner.lock();
        g.pending.contains_key(&sid) || g.settled.get(&sid).is_some_and(|at| *at > mark)
    }

    /// Waits (at most `limit`) until none of `sids` has a local write on its way.
    pub(super) async fn wait_settled(&self, sids: &[Sid], limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.settled.notified();
            if !sids
                .iter()
                .any(|s| self.inner.lock().pending.contains_key(s))
            {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// A read under way (see `LocalWrites::mark`); the last one ending forgets the commits.
pub(super) struct Mark<'a> {
    pub(super) epoch: u64,
    local: &'a LocalWrites,
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        let mut g = self.local.inner.lock();
        g.marks -= 1;
        if g.marks == 0 {
            g.settled.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sid::SidKind;

    fn touch(sid: Sid) -> Vec<WriteOp> {
        vec![WriteOp::TouchSession {
            session: sid,
            at: 1,
            follow: true,
        }]
    }

    #[test]
    fn a_row_written_here_after_the_mark_or_still_on_its_way_is_newer_here() {
        let l = LocalWrites::default();
        let (a, b) = (
            Sid::generate(SidKind::Session),
            Sid::generate(SidKind::Session),
        );
        // Written and committed before the mark: the read sees it.
        l.submitted(&touch(a));
        l.done([touch(a).as_slice()].into_iter());
        let mark = l.mark();
        assert!(!l.newer_here(a, mark.epoch));
        // On its way: newer here.
        l.submitted(&touch(b));
        assert!(l.newer_here(b, mark.epoch));
        // Committed after the mark: the read may not have seen it.
        l.done([touch(b).as_slice()].into_iter());
        assert!(l.newer_here(b, mark.epoch));
        // A later read sees it.
        let later = l.mark();
        assert!(!l.newer_here(b, later.epoch));
        assert!(!l.newer_here(a, later.epoch));
    }

    #[test]
    fn two_writes_of_a_row_on_their_way_keep_it_newer_here_until_both_are_committed() {
        let l = LocalWrites::default();
        let a = Sid::generate(SidKind::Session);
        l.submitted(&touch(a));
        l.submitted(&touch(a));
        l.done([touch(a).as_slice()].into_iter());
        let mark = l.mark();
        assert!(l.newer_here(a, mark.epoch));
        l.done([touch(a).as_slice()].into_iter());
        assert!(l.newer_here(a, mark.epoch));
        assert!(!l.newer_here(a, l.mark().epoch));
    }

    #[test]
    fn a_write_the_writer_did_not_take_leaves_the_row_to_the_store() {
        let l = LocalWrites::default();
        let a = Sid::generate(SidKind::Session);
        let sids = l.submitted(&touch(a));
        let mark = l.mark();
        assert!(l.newer_here(a, mark.epoch));
        l.abandoned(&sids);
        assert!(!l.newer_here(a, mark.epoch));
        // A touch others do not follow is not tracked.
        let quiet = vec![WriteOp::TouchSession {
            session: a,
            at: 2,
            follow: false,
        }];
        assert!(l.submitted(&quiet).is_empty());
    }

    #[test]
    fn commits_are_remembered_only_while_a_read_is_under_way() {
        let l = LocalWrites::default();
        let a = Sid::generate(SidKind::Session);
        l.submitted(&touch(a));
        l.done([touch(a).as_slice()].into_iter());
        assert!(l.inner.lock().settled.is_empty(), "no read under way");
        let mark = l.mark();
        l.submitted(&touch(a));
        l.done([touch(a).as_slice()].into_iter());
        assert!(l.newer_here(a, mark.epoch));
        drop(mark);
        assert!(
            l.inner.lock().settled.is_empty(),
            "forgotten with the last read"
        );
    }
}
