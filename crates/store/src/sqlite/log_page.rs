//! A page of the log by conversation, read on several connections at once.
//!
//! A conversation's events lie at scattered places in the log (the log is kept in `seq` order,
//! and a conversation's events are interleaved with every other conversation's), so a page of
//! 100 is 100 separate lookups, each likely to touch a page of the file no one has touched
//! for a while — a page fault, and on a large log a read from the disk. One connection does
//! them one after another; here the conversation index gives the page's `seq`s first, and the
//! lookups are shared out among the pooled readers, so their faults and disk reads overlap.
//!
//! The lookups run in later snapshots than the index read. That returns the same page: a
//! logged event is never changed or removed, so every `seq` the index gave is there, as it was.

use parley_core::Uuid;
use rusqlite::Connection;

use super::conn::{log_entry, query_log, LOG_COLUMNS};
use crate::model::{LogEntry, LogQuery};
use crate::StoreError;

/// Fewer lookups than this are not worth another connection.
pub(super) const LOOKUPS_PER_READER: usize = 25;

/// Whether a query is a plain page by conversation: the only kind read this way. Filters by
/// time or type are decided on the event row itself, so those pages are read in one go.
pub(super) fn shares_out(q: &LogQuery) -> bool {
    !q.conversation_ids.is_empty() && q.since.is_none() && q.until.is_none() && q.types.is_empty()
}

/// The page's `seq`s, from the conversation index alone.
pub(super) fn seqs(db: &Connection, account: Uuid, q: &LogQuery) -> Result<Vec<i64>, StoreError> {
    query_log(db, account, q, "seq", |row| row.get(0))
}

/// The events at `seqs`, in that order.
pub(super) fn events_at(db: &Connection, account: Uuid, seqs: &[i64]) -> Result<Vec<LogEntry>, StoreError> {
    let mut stmt =
        db.prepare_cached(&format!("SELECT {LOG_COLUMNS} FROM events WHERE account_id = ?1 AND seq = ?2"))?;
    seqs.iter()
        .map(|seq| {
            stmt.query_row(rusqlite::params![account, seq], log_entry)
                .map_err(|e| StoreError::Backend(format!("logged event {seq} could not be read: {e}")))
        })
        .collect()
}

/// `seqs` cut into at most `readers` runs of at least [`LOOKUPS_PER_READER`], in order.
pub(super) fn shares(seqs: Vec<i64>, readers: usize) -> Vec<Vec<i64>> {
    let parts = seqs.len().div_ceil(LOOKUPS_PER_READER).clamp(1, readers.max(1));
    let size = seqs.len().div_ceil(parts).max(1);
    seqs.chunks(size).map(<[i64]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_keep_order_and_respect_the_bounds() {
        let seqs: Vec<i64> = (1..=100).collect();
        let parts = shares(seqs.clone(), 4);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.concat(), seqs);
        assert_eq!(shares((1..=30).collect(), 4).len(), 2);
        assert_eq!(shares((1..=10).collect(), 4), vec![(1..=10).collect::<Vec<_>>()]);
        assert_eq!(shares((1..=1000).collect(), 4).len(), 4);
        assert!(shares(Vec::new(), 4).concat().is_empty());
    }
}
