//! Following one account's log live without a gap or a duplicate, whatever order commits reach
//! this process in (several writer connections, several nodes).
//!
//! `seen` is a promise: every event with `seq ≤ seen` has been passed on or filtered out. A
//! live event just after `seen` is taken; one further ahead means something is still on its
//! way, so the tail reads storage from `seen` (every lower `seq` has committed by then, since
//! an account's events commit in `seq` order); one at or below `seen` was already passed.

use std::sync::Arc;

use parley_core::Uuid;
use parley_store::{LogEntry, LogQuery, Store, StoreError, StoreExt};

pub const PAGE: usize = 500;

pub struct Tail {
    pub account: Uuid,
    /// The filters; its `after` is not used (`seen` is).
    pub query: LogQuery,
    pub seen: i64,
}

/// What to do with a live event.
pub enum Step {
    /// Pass it on.
    Deliver,
    /// Already passed, or filtered out.
    Skip,
    /// Events before it are missing here: catch up from storage.
    Gap,
}

impl Tail {
    pub fn new(account: Uuid, query: LogQuery, seen: i64) -> Self {
        Tail { account, query, seen }
    }

    pub fn offer(&mut self, entry: &LogEntry) -> Step {
        if entry.seq <= self.seen {
            return Step::Skip;
        }
        if entry.seq > self.seen + 1 {
            return Step::Gap;
        }
        self.seen = entry.seq;
        if self.query.matches(entry) {
            Step::Deliver
        } else {
            Step::Skip
        }
    }

    /// The next page of matching events after `seen`, from one storage snapshot, and whether
    /// more follow. `seen` moves to the end of what the snapshot covered.
    pub async fn catch_up(&mut self, store: &Arc<dyn Store>) -> Result<(Vec<LogEntry>, bool), StoreError> {
        let account = self.account;
        let query = LogQuery { after: self.seen, limit: PAGE, ..self.query.clone() };
        let (page, last) = store.read(move |r| Ok((r.log(account, &query)?, r.last_seq(account)?))).await?;
        let more = page.len() >= PAGE;
        let end = page.last().map_or(self.seen, |e| e.seq);
        self.seen = if more { end } else { end.max(last).max(self.seen) };
        Ok((page, more))
    }

    /// The position of the log's end now: where a subscription "from now" starts.
    pub async fn log_end(store: &Arc<dyn Store>, account: Uuid) -> Result<i64, StoreError> {
        store.read(move |r| r.last_seq(account)).await
    }
}
