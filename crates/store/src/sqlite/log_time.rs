//! A time range of an account's log, found in the log itself instead of in an index by time.
//!
//! The commit clock never runs backwards (the writer resumes it from the newest event, and each
//! batch takes the later of it and the wall clock), so an account's events are in time order
//! when they are in `seq` order. The first event at or after an instant is then found by a
//! binary search over `seq` — about 24 lookups by primary key in a log of 10 million — and a
//! page of a time range is a range of the primary key. An index by time cost every message an
//! entry (2.6 µs of the writer's ~32 µs of SQL, BENCHMARKS.md, "What the SQL alone costs").

use parley_core::{Timestamp, Uuid};
use rusqlite::{params, Connection, OptionalExtension};

use crate::StoreError;

/// The first event of `account` with `seq` at or past `from`: its `seq` and time.
fn first_from(db: &Connection, account: Uuid, from: i64) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(db
        .prepare_cached("SELECT seq, occurred_at FROM events WHERE account_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT 1")?
        .query_row(params![account, from], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The `seq` of the account's first event that occurred at or after `at`; one past the last
/// event when there is none.
pub(super) fn first_at_or_after(db: &Connection, account: Uuid, at: Timestamp) -> Result<i64, StoreError> {
    let last: Option<i64> =
        db.prepare_cached("SELECT MAX(seq) FROM events WHERE account_id = ?1")?.query_row([account], |r| r.get(0))?;
    let Some(last) = last else { return Ok(1) };
    let at = at.millis();
    // The smallest `x` in 1..=last + 1 whose first event at or past it occurred at or after
    // `at` (true of last + 1 by definition): a property that, once true, stays true.
    let (mut low, mut high) = (1i64, last + 1);
    while low < high {
        let mid = low + (high - low) / 2;
        match first_from(db, account, mid)? {
            Some((_, occurred_at)) if occurred_at < at => low = mid + 1,
            _ => high = mid,
        }
    }
    Ok(first_from(db, account, low)?.map_or(last + 1, |(seq, _)| seq))
}
