//! Messages, kept in the log: the embedded store has no table of messages.
//!
//! Every message is written with the `message_received` / `message_sent` event that carries it
//! whole, so the event's row is the message's row. A separate table ordered by conversation put
//! a second page at a random place in every commit for each message (its conversation's last
//! page of messages, beside its last page of the log index), with the message's body a second
//! time. As a log row with a few more columns, `ingest` went from 11,000–12,200 to
//! 15,200–17,900 messages/s (BENCHMARKS.md, `ingest`, step 7).
//!
//! The columns a message adds to its event row (`message_seq`, `message_id`,
//! `client_message_id`, `author_type`, `author_id`), and how each read finds it:
//! - a page of a conversation's messages walks the conversation's chain of events back
//!   (`chains.rs`; log order is message order too) from a mark: `events_message_marks` indexes
//!   every 64th message, so a page after or before message `n` starts at most 64 messages past
//!   its end, whatever the conversation's length; the newest page starts at the conversation's
//!   last event;
//! - an unread count walks back from the last event to the reader's position;
//! - a message by id or by `client_message_id`: a partial index each (message ids are UUIDv7,
//!   so the first is appended at its end).

use parley_core::event::EventType;
use parley_core::message::Message;
use parley_core::Uuid;
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Deserialize;
use serde_json::Value;

use super::{chains, keys};
use crate::model::{MessageWindow, ReaderRef};
use crate::StoreError;

type R<T> = Result<T, StoreError>;

/// A mark: the condition of `events_message_marks` (marks are messages 1, 65, 129, …), word
/// for word, as the planner needs it to use that partial index.
macro_rules! mark {
    () => {
        "message_seq % 64 = 1"
    };
}

/// The event of the first mark at or after message `?3` of conversation `?2` (in account `?1`).
const MARK_AT_OR_AFTER: &str = concat!(
    "SELECT seq FROM events INDEXED BY events_message_marks WHERE account_id = ?1 AND conversation_id = ?2 AND ",
    mark!(),
    " AND message_seq >= ?3 ORDER BY message_seq LIMIT 1"
);

/// One event of a conversation's chain, with what a message read needs of it (its link last).
const CHAIN_EVENT: &str = "SELECT body, message_seq, author_type, author_id, conversation_prev
     FROM events WHERE k = ?1";

/// An event's row, with the message's columns last (NULL for an event that carries none).
/// The conversation's link (`sqlite/chains.rs`) after them.
pub(super) const INSERT_EVENT: &str =
    "INSERT INTO events (account_id, seq, id, type, occurred_at, conversation_id, body,
        message_seq, message_id, client_message_id, author_type, author_id, conversation_prev, conversation_n, k)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// A message stored by `insert_message`, waiting for the event that carries it.
#[derive(Debug)]
pub(super) struct Pending {
    id: Uuid,
    seq: i64,
    client_message_id: Option<String>,
    author_type: &'static str,
    author_id: Option<Uuid>,
}

impl Pending {
    pub(super) fn of(message: &Message) -> Self {
        Pending {
            id: message.id,
            seq: message.seq,
            client_message_id: message.client_message_id.clone(),
            author_type: message.author.author_type.as_str(),
            author_id: message.author.id,
        }
    }

    /// Whether an event of this type and data carries this message.
    pub(super) fn carried_by(&self, event_type: EventType, data: &Value) -> bool {
        if !matches!(event_type, EventType::MessageReceived | EventType::MessageSent) {
            return false;
        }
        let id = data.get("message").and_then(|m| m.get("id")).and_then(Value::as_str);
        id.and_then(|id| id.parse::<Uuid>().ok()) == Some(self.id)
    }

    /// The event row's message columns, in the order of [`INSERT_EVENT`].
    pub(super) fn columns(&self) -> [&dyn ToSql; 5] {
        [&self.seq, &self.id, &self.client_message_id, &self.author_type, &self.author_id]
    }
}

/// The part of a message event that is the message.
#[derive(Deserialize)]
struct Carrier {
    data: CarrierData,
}

#[derive(Deserialize)]
struct CarrierData {
    message: Message,
}

fn message(row: &Row) -> rusqlite::Result<Message> {
    let text: String = row.get(0)?;
    serde_json::from_str::<Carrier>(&text)
        .map(|c| c.data.message)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn one(db: &Connection, sql: &str, args: &[&dyn ToSql]) -> R<Option<Message>> {
    Ok(db.prepare_cached(sql)?.query_row(args, message).optional()?)
}

pub(super) fn by_id(db: &Connection, conversation: Uuid, id: Uuid) -> R<Option<Message>> {
    one(
        db,
        "SELECT body FROM events INDEXED BY events_message_id WHERE message_id = ?2 AND conversation_id = ?1",
        &[&conversation, &id],
    )
}

pub(super) fn by_client_id(db: &Connection, conversation: Uuid, client_message_id: &str) -> R<Option<Message>> {
    one(
        db,
        "SELECT body FROM events INDEXED BY events_client_message
         WHERE conversation_id = ?1 AND client_message_id = ?2",
        &[&conversation, &client_message_id],
    )
}

pub(super) fn window(db: &Connection, conversation: Uuid, window: MessageWindow, limit: usize) -> R<Vec<Message>> {
    let Some(head) = chains::head(db, conversation)? else { return Ok(Vec::new()) };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let number = keys::existing_number(db, head.account)?;
    let limit = limit as i64;
    let mut page = Vec::new();
    match window {
        MessageWindow::First | MessageWindow::After(_) => {
            let after = match window {
                MessageWindow::After(seq) => seq,
                _ => 0,
            };
            let upto = after.saturating_add(limit);
            // From the first mark past the page (at most 64 messages past it), or the last event.
            let from = mark_at_or_after(db, head.account, conversation, upto.saturating_add(1))?.or(head.last);
            chains::walk_back(db, CHAIN_EVENT, number, from, 0, |row| {
                let Some(seq) = row.get::<_, Option<i64>>(1)? else { return Ok(true) };
                if seq <= upto && seq > after {
                    page.push(message(row)?);
                }
                // Message `after + 1` is the page's first: nothing before it belongs to the page.
                Ok(seq > after.saturating_add(1))
            })?;
        }
        MessageWindow::Before(before) => {
            let from = mark_at_or_after(db, head.account, conversation, before)?.or(head.last);
            chains::walk_back(db, CHAIN_EVENT, number, from, 0, |row| {
                let Some(seq) = row.get::<_, Option<i64>>(1)? else { return Ok(true) };
                if seq < before {
                    page.push(message(row)?);
                }
                Ok((page.len() as i64) < limit)
            })?;
        }
    }
    page.reverse();
    Ok(page)
}

/// The event of the first message mark at or after message `message_seq`.
fn mark_at_or_after(db: &Connection, account: Uuid, conversation: Uuid, message_seq: i64) -> R<Option<i64>> {
    Ok(db
        .prepare_cached(MARK_AT_OR_AFTER)?
        .query_row(params![account, conversation, message_seq], |r| r.get(0))
        .optional()?)
}

/// Messages after `read` (a message seq) not written by `reader`: walked back from the last.
pub(super) fn count_unread(db: &Connection, conversation: Uuid, read: i64, reader: ReaderRef) -> R<i64> {
    let Some(head) = chains::head(db, conversation)? else { return Ok(0) };
    let number = keys::existing_number(db, head.account)?;
    let mut unread = 0;
    chains::walk_back(db, CHAIN_EVENT, number, head.last, 0, |row| {
        let Some(seq) = row.get::<_, Option<i64>>(1)? else { return Ok(true) };
        if seq <= read {
            return Ok(false);
        }
        let author_type: Option<String> = row.get(2)?;
        let author_id: Option<Uuid> = row.get(3)?;
        if !(author_type.as_deref() == Some(reader.kind.as_str()) && author_id == Some(reader.id)) {
            unread += 1;
        }
        Ok(true)
    })?;
    Ok(unread)
}

#[cfg(test)]
mod tests {
    use parley_core::message::{Author, AuthorType, Content, TextContent};
    use parley_core::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::model::LogQuery;
    use crate::sqlite::schema;

    fn text(conversation: Uuid, seq: i64, client_message_id: Option<&str>) -> Message {
        Message {
            id: Uuid::now_v7(),
            conversation_id: conversation,
            seq,
            author: Author { author_type: AuthorType::Customer, id: None, name: None },
            content: Content::Text(TextContent { text: format!("m{seq}"), actions: vec![], payload: None }),
            client_message_id: client_message_id.map(str::to_string),
            created_at: Timestamp::from_millis(seq),
        }
    }

    /// A database written before messages moved into the log keeps every message.
    #[test]
    fn messages_of_the_old_table_are_read_from_the_log_and_linked_after_the_migrations() {
        let mut db = Connection::open_in_memory().expect("open");
        schema::migrate_to(&mut db, 11).expect("the schema before messages moved into the log");
        let (account, conversation) = (Uuid::now_v7(), Uuid::now_v7());
        db.execute("INSERT INTO accounts (id, body) VALUES (?1, '{}')", [account]).expect("account");
        db.execute(
            "INSERT INTO conversations (id, account_id, integration_id, customer_id, status, priority, body)
             VALUES (?1, ?2, ?3, ?4, 'open', 0, '{}')",
            params![conversation, account, Uuid::now_v7(), Uuid::now_v7()],
        )
        .expect("conversation");
        let other = Uuid::now_v7();
        db.execute(
            "INSERT INTO conversations (id, account_id, integration_id, customer_id, status, priority, body)
             VALUES (?1, ?2, ?3, ?4, 'open', 0, '{}')",
            params![other, account, Uuid::now_v7(), Uuid::now_v7()],
        )
        .expect("another conversation");
        let sent = [text(conversation, 1, None), text(conversation, 2, Some("c2")), text(conversation, 3, None)];
        let mut seq = 0;
        for m in &sent {
            seq += 1;
            let body = json!({"seq": seq, "type": "message_received", "data": {"message": m, "direction": "in"}});
            db.execute(
                "INSERT INTO events (account_id, seq, id, type, occurred_at, conversation_id, body)
                 VALUES (?1, ?2, ?3, 'message_received', ?2, ?4, ?5)",
                params![account, seq, Uuid::now_v7(), conversation, body.to_string()],
            )
            .expect("event");
            db.execute(
                "INSERT INTO messages (conversation_id, seq, id, account_id, author_type, author_id, client_message_id, body)
                 VALUES (?1, ?2, ?3, ?4, 'customer', NULL, ?5, ?6)",
                params![conversation, m.seq, m.id, account, m.client_message_id, serde_json::to_string(m).expect("json")],
            )
            .expect("message");
            // Another event of this conversation, then one of the other.
            for c in [conversation, other] {
                seq += 1;
                db.execute(
                    "INSERT INTO events (account_id, seq, id, type, occurred_at, conversation_id, body)
                     VALUES (?1, ?2, ?3, 'tags_changed', ?2, ?4, '{}')",
                    params![account, seq, Uuid::now_v7(), c],
                )
                .expect("another event");
            }
        }
        schema::migrate(&mut db).expect("migrates");

        let all = window(&db, conversation, MessageWindow::First, 10).expect("read");
        assert_eq!(all, sent.to_vec());
        let last = window(&db, conversation, MessageWindow::Before(i64::MAX), 1).expect("read");
        assert_eq!(last, vec![sent[2].clone()]);
        assert_eq!(by_id(&db, conversation, sent[1].id).expect("read"), Some(sent[1].clone()));
        assert_eq!(by_client_id(&db, conversation, "c2").expect("read"), Some(sent[1].clone()));
        let agent = ReaderRef { kind: AuthorType::Agent, id: Uuid::now_v7() };
        assert_eq!(count_unread(&db, conversation, 1, agent).expect("count"), 2);
        // Each conversation's events are linked, in order, and its row knows its last.
        for (c, seqs) in [(conversation, vec![1, 2, 4, 5, 7, 8]), (other, vec![3, 6, 9])] {
            let q = LogQuery { conversation_ids: vec![c], limit: 100, ..LogQuery::default() };
            let log = chains::log(&db, account, &q).expect("log");
            assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
            let head = chains::head(&db, c).expect("head").expect("stored");
            assert_eq!((head.last, head.count), (seqs.last().copied(), seqs.len() as i64));
        }
        let left: i64 = db
            .query_row("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'messages'", [], |r| r.get(0))
            .expect("schema");
        assert_eq!(left, 0, "the table of messages is gone");
    }
}
