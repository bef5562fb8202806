//! Each conversation's events, linked newest to oldest, in place of an index of the log by
//! conversation.
//!
//! An index by conversation puts each event on its conversation's page of that index. A
//! commit's messages are spread over many conversations, so that was a page of its own per
//! message — journalled by the command's savepoint, written to the WAL, copied back by the
//! checkpointer, and split every few dozen entries: with the conversation's row, two thirds of
//! what SQLite spends on a message (BENCHMARKS.md, "What the SQL alone costs"). Instead each
//! event of a conversation carries the `seq` of that conversation's previous event
//! (`conversation_prev`) and its own number in the conversation (`conversation_n`), and the
//! conversation's narrow row of activity (`activity.rs`) — on a page the command writes
//! already — its last event and their count (`last_event_seq`, `event_count`). Every 16th event
//! of a conversation is a mark, in a partial index (`events_conversation_marks`: one entry for
//! 16 events).
//!
//! Reads walk the links, a lookup by primary key per event, as reading the events' bodies
//! through the index did:
//! - backwards (the newest messages, an unread count) from the conversation's last event, or
//!   from a mark past the place to start;
//! - forwards (a page of the log after a position, [`log`]) a run at a time: the marks after the
//!   position cut the conversation into runs of at most 16 events, each walked back from its
//!   end and put in order, so a page reads at most 15 events past its last.
//!
//! Links are never changed once written (the log is append-only), so a walk that reads the
//! head and then the events in separate statements sees a consistent chain.

use std::collections::HashMap;

use parley_core::Uuid;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::conn::log_entry;
use super::keys;
use crate::model::{LogEntry, LogQuery};
use crate::StoreError;

type R<T> = Result<T, StoreError>;

/// A mark: the condition of `events_conversation_marks` (events 1, 17, 33, … of a
/// conversation), word for word, as the planner needs it to use that partial index.
macro_rules! mark {
    () => {
        "conversation_n % 16 = 1"
    };
}

/// Marks fetched at once by a forward walk: enough for a page of 100 in one statement.
const MARKS_AT_ONCE: usize = 8;

/// Where a conversation's chain ends.
#[derive(Clone, Copy)]
pub(super) struct Head {
    pub account: Uuid,
    /// The conversation's last event; `None` before its first.
    pub last: Option<i64>,
    /// How many events the conversation has.
    pub count: i64,
}

/// The conversation's head; `None` when there is no such conversation.
pub(super) fn head(db: &Connection, conversation: Uuid) -> R<Option<Head>> {
    Ok(db
        .prepare_cached(
            "SELECT c.account_id, a.last_event_seq, COALESCE(a.event_count, 0)
             FROM conversations c LEFT JOIN conversation_activity a ON a.id = c.id WHERE c.id = ?1",
        )?
        .query_row([conversation], |r| Ok(Head { account: r.get(0)?, last: r.get(1)?, count: r.get(2)? }))
        .optional()?)
}

/// Past this many conversations, the writer's heads start over empty (as its documents do).
const MAX_HEADS: usize = 16_384;

/// The heads of the conversations the writer appended to, so that appending reads no row:
/// kept, like the writer's documents (`cache.rs`), only while nothing else can have moved them —
/// forgotten with the rest of the writer's memory when a command is undone, a batch lost, or
/// another connection committed.
#[derive(Default)]
pub(crate) struct Heads(HashMap<Uuid, Head>);

impl Heads {
    pub(crate) fn forget(&mut self) {
        self.0.clear();
    }

    /// The link a new event of `conversation` (in `account`) carries: its previous event and
    /// its number.
    pub(super) fn next_link(&mut self, db: &Connection, account: Uuid, conversation: Uuid) -> R<(Option<i64>, i64)> {
        let head = match self.0.get(&conversation) {
            Some(h) => Some(*h),
            None => head(db, conversation)?,
        };
        match head {
            Some(h) if h.account == account => Ok((h.last, h.count + 1)),
            _ => Err(StoreError::Backend(format!("an event of conversation {conversation}, which is not stored"))),
        }
    }

    /// Makes event `seq`, number `n` of `conversation` (in `account`), its last.
    pub(super) fn advance(
        &mut self,
        db: &Connection,
        held: &mut super::activity::Deferred,
        account: Uuid,
        conversation: Uuid,
        seq: i64,
        n: i64,
    ) -> R<()> {
        let written = held.link(db, conversation, seq, n);
        if written.is_err() {
            self.0.remove(&conversation);
        }
        written?;
        if self.0.len() >= MAX_HEADS && !self.0.contains_key(&conversation) {
            self.0.clear();
        }
        self.0.insert(conversation, Head { account, last: Some(seq), count: n });
        Ok(())
    }
}

/// Walks a chain back from event `from` (of the account numbered `number`, `keys.rs`) through
/// every event with a `seq` above `floor`, handing each row to `visit` until it answers `false`.
/// `sql` selects one event by its key (`k = ?1`), its `conversation_prev` as the last column.
pub(super) fn walk_back(
    db: &Connection,
    sql: &str,
    number: i64,
    from: Option<i64>,
    floor: i64,
    mut visit: impl FnMut(&Row) -> rusqlite::Result<bool>,
) -> R<()> {
    let mut stmt = db.prepare_cached(sql)?;
    let prev_column = stmt.column_count() - 1;
    let mut at = from;
    while let Some(seq) = at.filter(|s| *s > floor) {
        let step = stmt
            .query_row([keys::key(number, seq)?], |row| Ok((row.get::<_, Option<i64>>(prev_column)?, visit(row)?)))
            .optional()?;
        match step {
            // Links only go back: a damaged file that links forward or to itself is an error,
            // not an endless walk.
            Some((Some(prev), _)) if prev >= seq => {
                return Err(StoreError::Backend(format!("event {seq} of the log links forward, to {prev}")))
            }
            Some((prev, true)) => at = prev,
            Some((_, false)) => break,
            None => {
                return Err(StoreError::Backend(format!("the log has no event {seq}, which a conversation links to")))
            }
        }
    }
    Ok(())
}

/// One event of the log, as [`log_entry`] reads it, with its link last.
const LOG_EVENT: &str = "SELECT account_id, seq, type, conversation_id, occurred_at, body, conversation_prev
     FROM events WHERE k = ?1";

/// The first marks of `conversation` after `after`, in log order.
fn marks_after(db: &Connection, account: Uuid, conversation: Uuid, after: i64) -> R<Vec<i64>> {
    let mut stmt = db.prepare_cached(concat!(
        "SELECT seq FROM events INDEXED BY events_conversation_marks WHERE account_id = ?1 AND conversation_id = ?2 AND ",
        mark!(),
        " AND seq > ?3 ORDER BY seq LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![account, conversation, after, MARKS_AT_ONCE as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A page of the log of the query's conversations (`q.conversation_ids`, not empty): the
/// first `q.limit` events after `q.after` that pass its filters, in log order.
pub(super) fn log(db: &Connection, account: Uuid, q: &LogQuery) -> R<Vec<LogEntry>> {
    let mut conversations = q.conversation_ids.clone();
    conversations.sort_unstable();
    conversations.dedup();
    let mut entries = Vec::new();
    for conversation in conversations {
        entries.extend(log_of(db, account, conversation, q)?);
    }
    entries.sort_unstable_by_key(|e| e.seq);
    entries.truncate(q.limit);
    Ok(entries)
}

/// [`log`] for one conversation.
fn log_of(db: &Connection, account: Uuid, conversation: Uuid, q: &LogQuery) -> R<Vec<LogEntry>> {
    let last = match head(db, conversation)? {
        Some(Head { account: owner, last: Some(last), .. }) if owner == account => last,
        _ => return Ok(Vec::new()),
    };
    let number = keys::existing_number(db, account)?;
    let mut page = Vec::new();
    let mut floor = q.after;
    while floor < last {
        let marks = marks_after(db, account, conversation, floor)?;
        let ends_at_last = marks.len() < MARKS_AT_ONCE;
        let ends = marks.into_iter().chain(ends_at_last.then_some(last));
        for end in ends {
            if end <= floor {
                continue;
            }
            let mut run = Vec::new();
            // The log's order is its clock's (which never runs backwards): past `until` in one
            // run, nothing later can pass.
            let mut past_until = false;
            walk_back(db, LOG_EVENT, number, Some(end), floor, |row| {
                let entry = log_entry(row)?;
                past_until |= q.until.is_some_and(|u| entry.occurred_at >= u);
                if q.matches(&entry) {
                    run.push(entry);
                }
                Ok(true)
            })?;
            page.extend(run.into_iter().rev());
            floor = end;
            if page.len() >= q.limit || past_until {
                page.truncate(q.limit);
                return Ok(page);
            }
        }
        if ends_at_last {
            break;
        }
    }
    Ok(page)
}
