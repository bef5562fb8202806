//! What a message changes in its conversation — its count of messages, its times, its last
//! event and count of events — kept in a narrow row of a table of its own
//! (`conversation_activity`), beside the conversation's wide row.
//!
//! A conversation's row is about 500 bytes (its document and the columns its indexes need), so
//! a page holds eight of them, and a commit's messages, spread over many conversations, each
//! rewrote a page of its own: journalled by the command's savepoint, written to the WAL, copied
//! back by the checkpointer. A narrow row is about 50 bytes: the conversations a commit touches
//! share a few pages. `scripts/sql-floor` measured the SQLite writer at 8.9–9.1 µs of CPU per
//! message this way against 14.0–14.4 µs with the wide row rewritten (and the checkpointer at
//! 2.3 against 3.0; BENCHMARKS.md, step 20).
//!
//! So a command whose only change to a conversation is its activity (a message, for one)
//! writes the narrow row alone — held back to go with the link of the conversation's next
//! event, in one statement ([`Deferred`]) — and the wide row keeps the values of its own last
//! write. Every
//! read of a conversation's document therefore selects [`COLUMNS`] [`FROM`] both and builds it
//! with [`read`], which lays the narrow row over the document. A narrow row whose `updated_at`
//! is NULL — made by the migration, or by a link to an event before the conversation's first
//! write through [`write`] — overrides nothing: the document holds the values.
//!
//! Conformance: every test that reads a conversation after messages (its count, its times).

use parley_core::conversation::Conversation;
use parley_core::{Timestamp, Uuid};
use rusqlite::{params, Connection, Row};

use crate::StoreError;

/// `SELECT` of the columns [`read`] takes (the document, then the activity that overrides its
/// copies) from `c`, the conversations, and `a`, their activity; a literal, for `concat!`.
macro_rules! select_conversations {
    () => {
        "SELECT c.body, a.messages_count, a.updated_at, a.last_customer_message_at
         FROM conversations c LEFT JOIN conversation_activity a ON a.id = c.id"
    };
}
pub(super) use select_conversations;

/// A conversation from the columns of [`select_conversations!`], starting at column `first`.
pub(super) fn read(row: &Row, first: usize) -> rusqlite::Result<Conversation> {
    let mut c: Conversation = super::conn::doc(row, first)?;
    if let Some(updated_at) = row.get::<_, Option<i64>>(first + 2)? {
        c.updated_at = Timestamp::from_millis(updated_at);
        c.messages_count = row.get::<_, Option<i64>>(first + 1)?.unwrap_or(c.messages_count);
        c.last_customer_message_at = row.get::<_, Option<i64>>(first + 3)?.map(Timestamp::from_millis);
    }
    Ok(c)
}

/// Whether `new` differs from `stored` in its activity alone (or not at all), so that writing
/// the narrow row is writing all of it.
pub(super) fn only_activity_differs(mut stored: Conversation, new: &Conversation) -> bool {
    stored.messages_count = new.messages_count;
    stored.updated_at = new.updated_at;
    stored.last_customer_message_at = new.last_customer_message_at;
    stored == *new
}

/// Writes an activity (its link to its last event aside: `chains.rs` keeps that).
const WRITE: &str = "INSERT INTO conversation_activity (id, messages_count, updated_at, last_customer_message_at)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (id) DO UPDATE SET messages_count = excluded.messages_count, updated_at = excluded.updated_at,
        last_customer_message_at = excluded.last_customer_message_at";

/// Writes `c`'s activity now.
pub(super) fn write(db: &Connection, c: &Conversation) -> Result<(), StoreError> {
    Activity::of(c).write(db)
}

/// What a command changed in a conversation's activity, not yet written: it goes with the link
/// of that conversation's next event, one statement instead of two (0.6–0.8 µs of the writer per
/// message, `scripts/sql-floor`'s `narrow2`), or is written by [`Deferred::settle`] — at the end
/// of the command, and before the writer reads conversations with SQL. Forgotten with the rest
/// of the writer's memory when a command is undone.
#[derive(Default)]
pub(crate) struct Deferred(Option<Activity>);

#[derive(Clone, Copy)]
struct Activity {
    id: Uuid,
    messages_count: i64,
    updated_at: i64,
    last_customer_message_at: Option<i64>,
}

impl Activity {
    fn of(c: &Conversation) -> Self {
        Activity {
            id: c.id,
            messages_count: c.messages_count,
            updated_at: c.updated_at.millis(),
            last_customer_message_at: c.last_customer_message_at.map(Timestamp::millis),
        }
    }

    fn write(self, db: &Connection) -> Result<(), StoreError> {
        db.prepare_cached(WRITE)?.execute(params![
            self.id,
            self.messages_count,
            self.updated_at,
            self.last_customer_message_at
        ])?;
        Ok(())
    }
}

impl Deferred {
    /// Holds `c`'s activity back, writing another conversation's held before.
    pub(super) fn defer(&mut self, db: &Connection, c: &Conversation) -> Result<(), StoreError> {
        if self.0.is_some_and(|held| held.id != c.id) {
            self.settle(db)?;
        }
        self.0 = Some(Activity::of(c));
        Ok(())
    }

    /// Writes what is held back.
    pub(super) fn settle(&mut self, db: &Connection) -> Result<(), StoreError> {
        self.0.take().map_or(Ok(()), |held| held.write(db))
    }

    pub(super) fn forget(&mut self) {
        self.0 = None;
    }

    /// Makes event `seq`, number `n` of conversation `id`, its last, with the activity held
    /// back for it.
    pub(super) fn link(&mut self, db: &Connection, id: Uuid, seq: i64, n: i64) -> Result<(), StoreError> {
        let Some(a) = self.0.filter(|held| held.id == id) else { return link(db, id, seq, n) };
        self.0 = None;
        db.prepare_cached(
            "INSERT INTO conversation_activity (id, messages_count, updated_at, last_customer_message_at,
                last_event_seq, event_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET messages_count = excluded.messages_count,
                updated_at = excluded.updated_at, last_customer_message_at = excluded.last_customer_message_at,
                last_event_seq = excluded.last_event_seq, event_count = excluded.event_count",
        )?
        .execute(params![a.id, a.messages_count, a.updated_at, a.last_customer_message_at, seq, n])?;
        Ok(())
    }
}

/// Makes event `seq`, number `n` of conversation `id`, its last.
pub(super) fn link(db: &Connection, id: Uuid, seq: i64, n: i64) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT INTO conversation_activity (id, last_event_seq, event_count) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET last_event_seq = excluded.last_event_seq, event_count = excluded.event_count",
    )?
    .execute(params![id, seq, n])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use parley_core::conversation::{Conversation, Status};
    use parley_core::{Timestamp, Uuid};
    use rusqlite::{params, Connection};

    use super::*;
    use crate::sqlite::{chains, schema};

    fn stored(db: &Connection, id: Uuid) -> Conversation {
        db.query_row(concat!(select_conversations!(), " WHERE c.id = ?1"), [id], |r| read(r, 0)).expect("read")
    }

    /// A conversation written before its activity had a row of its own reads as it was, links
    /// to its last event included; from its first write on, the narrow row is read over it.
    #[test]
    fn a_conversation_of_the_schema_before_reads_as_it_was_then_with_its_activity() {
        let mut db = Connection::open_in_memory().expect("open");
        schema::migrate_to(&mut db, 13).expect("the schema before the narrow row");
        let (account, id) = (Uuid::now_v7(), Uuid::now_v7());
        let mut c: Conversation = serde_json::from_value(serde_json::json!({
            "id": id, "integration_id": Uuid::now_v7(), "customer_id": Uuid::now_v7(), "status": "open",
            "assignee": null, "group_id": null, "tags": [], "messages_count": 5, "priority": 0,
            "created_at": "2026-11-01T10:00:00Z", "updated_at": "2026-11-01T10:05:00Z",
            "first_response_at": null, "last_customer_message_at": "2026-11-01T10:04:00Z",
            "ended_at": null, "queued_at": null
        }))
        .expect("a conversation");
        db.execute(
            "INSERT INTO conversations (id, account_id, integration_id, customer_id, status, priority, body,
                tag_list, last_event_seq, event_count)
             VALUES (?1, ?2, ?3, ?4, 'open', 0, ?5, '', 42, 7)",
            params![id, account, c.integration_id, c.customer_id, serde_json::to_string(&c).expect("json")],
        )
        .expect("conversation");
        schema::migrate(&mut db).expect("migrates");

        assert_eq!(stored(&db, id), c, "the document's own count and times");
        let head = chains::head(&db, id).expect("head").expect("stored");
        assert_eq!((head.account, head.last, head.count), (account, Some(42), 7));

        c.messages_count = 6;
        c.updated_at = Timestamp::from_millis(c.updated_at.millis() + 1000);
        c.last_customer_message_at = None;
        c.status = Status::Open;
        write(&db, &c).expect("activity");
        assert_eq!(stored(&db, id), c, "the narrow row over the document");
        link(&db, id, 50, 8).expect("link");
        assert_eq!(stored(&db, id), c);
        let head = chains::head(&db, id).expect("head").expect("stored");
        assert_eq!((head.last, head.count), (Some(50), 8));
    }
}
