//! Records and queries that cross the store boundary.

use std::sync::Arc;

use parley_core::conversation::Status;
use parley_core::event::EventType;
use parley_core::message::AuthorType;
use parley_core::{Timestamp, Uuid};
use serde_json::Value;

/// One log event as stored: the indexed fields, and the envelope JSON serialised once, so every
/// reader, stream and export sends the same bytes without re-encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub account_id: Uuid,
    pub seq: i64,
    pub event_type: EventType,
    pub conversation_id: Option<Uuid>,
    pub occurred_at: Timestamp,
    pub json: Arc<str>,
}

impl LogEntry {
    /// The entry of a stamped event and its serialised envelope.
    pub fn of(event: &parley_core::event::Event, json: Arc<str>) -> Self {
        LogEntry {
            account_id: event.account_id,
            seq: event.seq,
            event_type: event.event_type,
            conversation_id: event.conversation_id,
            occurred_at: event.occurred_at,
            json,
        }
    }
}

/// A read of the log: every filter of `GET /v1/log`.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub conversation_ids: Vec<Uuid>,
    /// Inclusive.
    pub since: Option<Timestamp>,
    /// Exclusive.
    pub until: Option<Timestamp>,
    pub types: Vec<EventType>,
    /// Events with `seq` greater than this.
    pub after: i64,
    pub limit: usize,
}

impl LogQuery {
    /// Whether `entry` passes every filter but the cursor and the limit.
    pub fn matches(&self, entry: &LogEntry) -> bool {
        (self.conversation_ids.is_empty() || entry.conversation_id.is_some_and(|c| self.conversation_ids.contains(&c)))
            && self.since.is_none_or(|s| entry.occurred_at >= s)
            && self.until.is_none_or(|u| entry.occurred_at < u)
            && (self.types.is_empty() || self.types.contains(&entry.event_type))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub status: Option<Status>,
    pub assignee_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub integration_id: Option<Uuid>,
    pub tag: Option<String>,
    /// Cursor: conversations created before this one (the list is newest first).
    pub before_id: Option<Uuid>,
    pub limit: usize,
}

/// Which way a page of messages runs from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageWindow {
    /// From the start of the conversation.
    First,
    /// Messages with a sequence number greater than this.
    After(i64),
    /// The messages just before this sequence number.
    Before(i64),
}

/// A page of a list in creation order: `after_id` is the id-cursor of the next page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub after_id: Option<Uuid>,
    pub limit: usize,
}

/// A durable timer: due-time work that survives restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledJob {
    pub id: Uuid,
    pub account_id: Option<Uuid>,
    pub kind: String,
    pub due_at: Timestamp,
    pub payload: Value,
    /// How many times it was claimed (1 on the first run).
    pub attempts: i64,
}

/// A webhook's signing secrets: the current one, and during a rotation the previous one until
/// it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSecrets {
    pub current: String,
    pub previous: Option<(String, Timestamp)>,
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub account_id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    /// The exact body, the same on every attempt.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// A reader of a conversation: the customer, an agent or a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderRef {
    pub kind: AuthorType,
    pub id: Uuid,
}

/// A customer's device session, made by the SDK session endpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SdkSession {
    pub id: Uuid,
    pub account_id: Uuid,
    pub integration_id: Uuid,
    pub customer_id: Uuid,
    /// Made from a JWT the business signed (not anonymous).
    pub verified: bool,
    pub created_at: Timestamp,
}

/// The event id of a log entry, read from its JSON.
pub fn entry_id(entry: &LogEntry) -> Result<Uuid, crate::StoreError> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Uuid,
    }
    Ok(serde_json::from_str::<Id>(&entry.json)?.id)
}

/// Each conversation's wait from entering the queue (or starting) to its first response, in ms.
pub fn waits(list: &[parley_core::conversation::Conversation]) -> Vec<i64> {
    list.iter()
        .filter_map(|c| {
            let answered = c.first_response_at?;
            Some(answered.millis() - c.queued_at.unwrap_or(c.created_at).millis())
        })
        .collect()
}

/// Which routing offers to read.
#[derive(Debug, Clone, Copy)]
pub enum OfferFilter {
    /// Every offer ever made of a conversation, oldest first.
    Conversation(Uuid),
    /// The offers an agent has not answered yet.
    PendingOfAgent(Uuid),
    /// Every offer of the account not answered yet.
    PendingInAccount,
}

impl OfferFilter {
    /// The statement's condition and its one optional id argument (beside the account).
    pub fn condition(self) -> (&'static str, Option<Uuid>) {
        match self {
            OfferFilter::Conversation(id) => ("conversation_id = {} ORDER BY id", Some(id)),
            OfferFilter::PendingOfAgent(id) => ("agent_id = {} AND status = 'pending' ORDER BY id", Some(id)),
            OfferFilter::PendingInAccount => ("status = 'pending' ORDER BY id", None),
        }
    }
}
