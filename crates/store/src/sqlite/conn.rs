//! `Reads` and `Tx` over one SQLite connection.

use std::cell::RefCell;
use std::sync::Arc;

use parley_core::account::{Account, ApiKey};
use parley_core::agent::Agent;
use parley_core::conversation::Conversation;
use parley_core::customer::Customer;
use parley_core::event::{Event, EventDraft, EventType};
use parley_core::group::Group;
use parley_core::integration::Integration;
use parley_core::message::Message;
use parley_core::{Timestamp, Uuid};
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::activity::{self, select_conversations};
use super::cache::{Kept, WriterCache};
use super::chains;
use super::keys;
use super::messages;
use super::queues::{Place, Queues};
use super::seqs::{self, Seqs};
use super::WriterMemory;
use crate::model::{
    entry_id, waits, ClaimedDelivery, ConversationFilter, LogEntry, LogQuery, MessageWindow, OfferFilter, Page,
    ReaderRef, ScheduledJob, SdkSession, WebhookSecrets,
};
use crate::sql::lease_renewal;
use crate::tx::{Reads, Tx};
use crate::StoreError;
use parley_core::integration::SigningKey;
use parley_core::routing::Offer;
use parley_core::trigger::{Trigger, TriggerEvent};
use parley_core::webhook::{Attempt, Delivery, DeliveryStatus, Webhook};

type R<T> = Result<T, StoreError>;

/// Anything that lends a connection gets every read.
pub(crate) trait HasConn {
    fn conn(&self) -> &Connection;

    /// The writer's copies of documents (`cache.rs`); readers have none.
    fn cache(&self) -> Option<&RefCell<WriterCache>> {
        None
    }

    /// The writer's last `seq` of each account (`seqs.rs`), ahead of the rows until its batch
    /// commits; readers read the rows.
    fn seqs(&self) -> Option<&RefCell<Seqs>> {
        None
    }

    /// The writer's count of each queue's waiting conversations (`queues.rs`); readers count.
    fn queues(&self) -> Option<&RefCell<Queues>> {
        None
    }

    /// Before a read of conversations with SQL: writes what the writer held back of their
    /// activity (`activity.rs`); readers hold nothing back.
    fn settle(&self) -> R<()> {
        Ok(())
    }
}

pub(crate) struct ReadConn<'a>(pub &'a Connection);

impl HasConn for ReadConn<'_> {
    fn conn(&self) -> &Connection {
        self.0
    }
}

/// The writer's view of one command inside the batch transaction.
pub(crate) struct WriteConn<'a> {
    pub db: &'a Connection,
    pub now: Timestamp,
    /// Events appended so far in this batch, handed to the commit sink after COMMIT.
    pub appended: &'a mut Vec<LogEntry>,
    /// A message stored by the command, until the event that carries it is appended.
    pub message: Option<messages::Pending>,
    pub memory: &'a WriterMemory,
}

impl HasConn for WriteConn<'_> {
    fn conn(&self) -> &Connection {
        self.db
    }

    fn cache(&self) -> Option<&RefCell<WriterCache>> {
        Some(&self.memory.cache)
    }

    fn seqs(&self) -> Option<&RefCell<Seqs>> {
        Some(&self.memory.seqs)
    }

    fn queues(&self) -> Option<&RefCell<Queues>> {
        Some(&self.memory.queues)
    }

    fn settle(&self) -> R<()> {
        self.memory.activity.borrow_mut().settle(self.db)
    }
}

pub(super) fn doc<T: DeserializeOwned>(row: &Row, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

fn to_doc<T: Serialize>(value: &T) -> R<String> {
    Ok(serde_json::to_string(value)?)
}

fn one_doc<T: DeserializeOwned>(db: &Connection, sql: &str, args: &[&dyn ToSql]) -> R<Option<T>> {
    Ok(db.prepare_cached(sql)?.query_row(args, |r| doc(r, 0)).optional()?)
}

fn docs<T: DeserializeOwned>(db: &Connection, sql: &str, args: &[&dyn ToSql]) -> R<Vec<T>> {
    let mut stmt = db.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| doc(r, 0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Conversations, by a query that starts with [`select_conversations!`].
fn conversation_docs(on: &impl HasConn, sql: &str, args: &[&dyn ToSql]) -> R<Vec<Conversation>> {
    on.settle()?;
    let mut stmt = on.conn().prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| activity::read(r, 0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A page of an account's documents from `table`, in id (creation) order.
fn page_of<T: DeserializeOwned>(db: &Connection, table: &str, account: Uuid, page: &Page) -> R<Vec<T>> {
    let sql =
        format!("SELECT body FROM {table} WHERE account_id = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3");
    docs(db, &sql, &[&account, &page.after_id, &(page.limit as i64)])
}

pub(super) fn log_entry(row: &Row) -> rusqlite::Result<LogEntry> {
    let type_name: String = row.get(2)?;
    let event_type = EventType::parse(&type_name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown event type {type_name}").into(),
        )
    })?;
    let json: String = row.get(5)?;
    Ok(LogEntry {
        account_id: row.get(0)?,
        seq: row.get(1)?,
        event_type,
        conversation_id: row.get(3)?,
        occurred_at: Timestamp::from_millis(row.get(4)?),
        json: Arc::from(json),
    })
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_type, status, next_attempt_at, created_at, attempts";

fn delivery_row(row: &Row) -> rusqlite::Result<Delivery> {
    let status: String = row.get(4)?;
    Ok(Delivery {
        id: row.get(0)?,
        webhook_id: row.get(1)?,
        event_id: row.get(2)?,
        event_type: row.get(3)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        next_attempt_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(row.get(6)?),
        attempts: doc(row, 7)?,
    })
}

/// A document by id: from the writer's cache when it holds it, else from its table (and then
/// kept for next time).
fn kept_doc<T: Kept>(on: &impl HasConn, account: Uuid, id: Uuid) -> R<Option<T>> {
    let cache = on.cache();
    if let Some(doc) = cache.and_then(|c| c.borrow_mut().get::<T>(account, id)) {
        return Ok(Some(doc));
    }
    on.settle()?;
    let found: Option<T> = on.conn().prepare_cached(T::SELECT)?.query_row(params![id, account], T::read).optional()?;
    if let (Some(cache), Some(doc)) = (cache, &found) {
        cache.borrow_mut().keep(account, doc);
    }
    Ok(found)
}

/// Where the conversation `id` waits as stored: from the writer's cache when it holds the
/// conversation (it does after the command loaded it), else from its row.
fn stored_place(on: &impl HasConn, account: Uuid, id: Uuid) -> R<Option<Place>> {
    match on.cache().and_then(|cache| cache.borrow_mut().get::<Conversation>(account, id)) {
        Some(stored) => Ok(Place::of(account, &stored)),
        None => Ok(Place::stored(on.conn(), account, id)?),
    }
}

fn in_list(column: &str, n: usize, first_param: usize) -> String {
    let marks: Vec<String> = (0..n).map(|i| format!("?{}", first_param + i)).collect();
    format!("{column} IN ({})", marks.join(", "))
}

impl<T: HasConn> Reads for T {
    fn setting(&self, key: &str) -> R<Option<String>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn account(&self, id: Uuid) -> R<Option<Account>> {
        one_doc(self.conn(), "SELECT body FROM accounts WHERE id = ?1", &[&id])
    }

    fn api_key_by_hash(&self, hash: &str) -> R<Option<(Uuid, ApiKey)>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT account_id, body FROM api_keys WHERE hash = ?1")?
            .query_row([hash], |r| Ok((r.get(0)?, doc(r, 1)?)))
            .optional()?)
    }

    fn api_keys(&self, account: Uuid, page: &Page) -> R<Vec<ApiKey>> {
        page_of(self.conn(), "api_keys", account, page)
    }

    fn agent(&self, account: Uuid, id: Uuid) -> R<Option<Agent>> {
        one_doc(self.conn(), "SELECT body FROM agents WHERE id = ?1 AND account_id = ?2", &[&id, &account])
    }

    fn agents(&self, account: Uuid, page: &Page) -> R<Vec<Agent>> {
        page_of(self.conn(), "agents", account, page)
    }

    fn group(&self, account: Uuid, id: Uuid) -> R<Option<Group>> {
        one_doc(self.conn(), "SELECT body FROM groups WHERE id = ?1 AND account_id = ?2", &[&id, &account])
    }

    fn groups(&self, account: Uuid, page: &Page) -> R<Vec<Group>> {
        page_of(self.conn(), "groups", account, page)
    }

    fn integration(&self, account: Uuid, id: Uuid) -> R<Option<Integration>> {
        kept_doc(self, account, id)
    }

    fn integration_by_id(&self, id: Uuid) -> R<Option<(Uuid, Integration)>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT account_id, body FROM integrations WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, doc(r, 1)?)))
            .optional()?)
    }

    fn integrations(&self, account: Uuid, page: &Page) -> R<Vec<Integration>> {
        page_of(self.conn(), "integrations", account, page)
    }

    fn count_integrations(&self, account: Uuid) -> R<i64> {
        Ok(self
            .conn()
            .prepare_cached("SELECT COUNT(*) FROM integrations WHERE account_id = ?1 AND deleted = 0")?
            .query_row([account], |r| r.get(0))?)
    }

    fn customer(&self, account: Uuid, id: Uuid) -> R<Option<Customer>> {
        kept_doc(self, account, id)
    }

    fn customer_by_external_id(&self, account: Uuid, external_id: &str) -> R<Option<Customer>> {
        one_doc(
            self.conn(),
            "SELECT body FROM customers WHERE account_id = ?1 AND external_id = ?2",
            &[&account, &external_id],
        )
    }

    fn customers(&self, account: Uuid, page: &Page) -> R<Vec<Customer>> {
        page_of(self.conn(), "customers", account, page)
    }

    fn conversation(&self, account: Uuid, id: Uuid) -> R<Option<Conversation>> {
        kept_doc(self, account, id)
    }

    fn conversations(&self, account: Uuid, f: &ConversationFilter) -> R<Vec<Conversation>> {
        let (sql, values) = crate::sql::conversations(select_conversations!(), account, f, |n| format!("?{n}"));
        let values: Vec<rusqlite::types::Value> = values
            .into_iter()
            .map(|v| match v {
                crate::sql::SqlValue::Uuid(u) => rusqlite::types::Value::Blob(u.as_bytes().to_vec()),
                crate::sql::SqlValue::Text(t) => rusqlite::types::Value::Text(t),
                crate::sql::SqlValue::Int(i) => rusqlite::types::Value::Integer(i),
            })
            .collect();
        let args: Vec<&dyn ToSql> = values.iter().map(|v| v as &dyn ToSql).collect();
        conversation_docs(self, &sql, &args)
    }

    fn queue_position(&self, account: Uuid, c: &Conversation) -> R<i64> {
        if let Some(queues) = self.queues() {
            let stored = stored_place(self, account, c.id)?;
            return Ok(queues.borrow_mut().ahead_of(self.conn(), account, c, stored)? + 1);
        }
        let queued = c.queued_at.unwrap_or(c.created_at).millis();
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM conversations WHERE account_id = ?1 AND group_id IS ?2 AND status = 'open'
                 AND assignee_id IS NULL AND id != ?3
                 AND (priority > ?4 OR (priority = ?4 AND (queued_at < ?5 OR (queued_at = ?5 AND id < ?3))))",
            )?
            .query_row(params![account, c.group_id, c.id, c.priority, queued], |r| r.get::<_, i64>(0))?
            + 1)
    }

    fn latest_conversation(&self, account: Uuid, customer: Uuid, integration: Uuid) -> R<Option<Conversation>> {
        self.settle()?;
        Ok(self
            .conn()
            .prepare_cached(concat!(
                select_conversations!(),
                " WHERE c.account_id = ?1 AND c.customer_id = ?2 AND c.integration_id = ?3 ORDER BY c.id DESC LIMIT 1"
            ))?
            .query_row(params![account, customer, integration], |r| activity::read(r, 0))
            .optional()?)
    }

    fn message(&self, conversation: Uuid, id: Uuid) -> R<Option<Message>> {
        messages::by_id(self.conn(), conversation, id)
    }

    fn message_by_client_id(&self, conversation: Uuid, client_message_id: &str) -> R<Option<Message>> {
        messages::by_client_id(self.conn(), conversation, client_message_id)
    }

    fn messages(&self, conversation: Uuid, window: MessageWindow, limit: usize) -> R<Vec<Message>> {
        messages::window(self.conn(), conversation, window, limit)
    }

    fn read_position(&self, conversation: Uuid, reader: ReaderRef) -> R<i64> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT seq FROM read_positions WHERE conversation_id = ?1 AND reader_type = ?2 AND reader_id = ?3",
            )?
            .query_row(params![conversation, reader.kind.as_str(), reader.id], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    fn count_unread(&self, conversation: Uuid, reader: ReaderRef) -> R<i64> {
        let read = self.read_position(conversation, reader)?;
        messages::count_unread(self.conn(), conversation, read, reader)
    }

    fn log(&self, account: Uuid, q: &LogQuery) -> R<Vec<LogEntry>> {
        // A page by conversation walks the conversations' chains (`chains.rs`). Left to itself
        // the planner walks the whole log in `seq` order and filters, which is linear in the
        // log's size; a page by time reads the time index — in `occurred_at, seq` order, which
        // is `seq` order (the commit clock never runs backwards) — so it stops at `limit`.
        if !q.conversation_ids.is_empty() {
            return chains::log(self.conn(), account, q);
        }
        let by_time = q.since.is_some() || q.until.is_some();
        // By time: the time index; in `seq` order: the account's range of keys (`keys.rs`).
        let range;
        let (mut sql, mut args): (String, Vec<&dyn ToSql>) = if by_time {
            let sql =
                "SELECT account_id, seq, type, conversation_id, occurred_at, body FROM events INDEXED BY events_time
                 WHERE account_id = ?1 AND seq > ?2";
            (sql.to_string(), vec![&account, &q.after])
        } else {
            let Some(number) = keys::number(self.conn(), account)? else {
                return Ok(Vec::new());
            };
            range = keys::after(number, q.after)?;
            let sql = "SELECT account_id, seq, type, conversation_id, occurred_at, body FROM events
                 WHERE k > ?1 AND k <= ?2";
            (sql.to_string(), vec![&range.0, &range.1])
        };
        let since = q.since.map(Timestamp::millis);
        let until = q.until.map(Timestamp::millis);
        let types: Vec<&str> = q.types.iter().map(|t| t.as_str()).collect();
        let limit = q.limit as i64;
        if let Some(s) = &since {
            sql.push_str(&format!(" AND occurred_at >= ?{}", args.len() + 1));
            args.push(s);
        }
        if let Some(u) = &until {
            sql.push_str(&format!(" AND occurred_at < ?{}", args.len() + 1));
            args.push(u);
        }
        if !types.is_empty() {
            sql.push_str(" AND ");
            sql.push_str(&in_list("type", types.len(), args.len() + 1));
            args.extend(types.iter().map(|t| t as &dyn ToSql));
        }
        let order = if by_time { "occurred_at, seq" } else { "k" };
        sql.push_str(&format!(" ORDER BY {order} LIMIT ?{}", args.len() + 1));
        args.push(&limit);
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(args.as_slice(), log_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn last_seq(&self, account: Uuid) -> R<i64> {
        let last = match self.seqs() {
            Some(seqs) => seqs.borrow_mut().current(self.conn(), account)?,
            None => seqs::stored(self.conn(), account)?,
        };
        Ok(last.unwrap_or(0))
    }

    fn cursor(&self, consumer: &str, account: Uuid) -> R<i64> {
        Ok(self
            .conn()
            .prepare_cached("SELECT position FROM consumer_cursors WHERE consumer = ?1 AND account_id = ?2")?
            .query_row(params![consumer, account], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    fn signing_keys(&self, account: Uuid, integration: Uuid) -> R<Vec<SigningKey>> {
        docs(
            self.conn(),
            "SELECT body FROM signing_keys WHERE account_id = ?1 AND integration_id = ?2 ORDER BY kid",
            &[&account, &integration],
        )
    }

    fn signing_secret(&self, account: Uuid, integration: Uuid, kid: &str) -> R<Option<String>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT secret FROM signing_keys WHERE account_id = ?1 AND integration_id = ?2 AND kid = ?3",
            )?
            .query_row(params![account, integration, kid], |r| r.get(0))
            .optional()?)
    }

    fn sdk_session_by_hash(&self, hash: &str) -> R<Option<SdkSession>> {
        one_doc(self.conn(), "SELECT body FROM sdk_sessions WHERE hash = ?1", &[&hash])
    }

    fn accounts_behind(&self, consumer: &str, after: Option<Uuid>, limit: usize) -> R<Vec<Uuid>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT a.id FROM accounts a LEFT JOIN consumer_cursors c ON c.consumer = ?1 AND c.account_id = a.id
             WHERE (?2 IS NULL OR a.id > ?2) AND a.last_seq > COALESCE(c.position, 0) ORDER BY a.id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![consumer, after, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn lease_holder(&self, name: &str) -> R<Option<(String, Timestamp)>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT holder, expires_at FROM leases WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, Timestamp::from_millis(r.get(1)?))))
            .optional()?)
    }

    fn agent_connected_elsewhere(&self, agent: Uuid, node: &str, now: Timestamp) -> R<bool> {
        Ok(self
            .conn()
            .prepare_cached("SELECT 1 FROM agent_connections WHERE agent_id = ?1 AND node != ?2 AND expires_at > ?3")?
            .query_row(params![agent, node, now.millis()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn waiting(&self, account: Uuid, limit: usize) -> R<Vec<Conversation>> {
        conversation_docs(
            self,
            concat!(
                select_conversations!(),
                " WHERE c.account_id = ?1 AND c.status = 'open' AND c.assignee_id IS NULL
                 ORDER BY c.group_id, c.priority DESC, c.queued_at, c.id LIMIT ?2"
            ),
            &[&account, &(limit as i64)],
        )
    }

    fn queue_of(&self, account: Uuid, group: Option<Uuid>, limit: usize) -> R<Vec<Conversation>> {
        conversation_docs(
            self,
            concat!(
                select_conversations!(),
                " WHERE c.account_id = ?1 AND c.group_id IS ?2 AND c.status = 'open'
                 AND c.assignee_id IS NULL ORDER BY c.priority DESC, c.queued_at, c.id LIMIT ?3"
            ),
            &[&account, &group, &(limit as i64)],
        )
    }

    fn first_response_waits(&self, account: Uuid, group: Uuid, since: Timestamp) -> R<Vec<i64>> {
        let list = conversation_docs(
            self,
            concat!(
                select_conversations!(),
                " WHERE c.account_id = ?1 AND c.group_id = ?2 AND c.first_response_at >= ?3"
            ),
            &[&account, &group, &since.millis()],
        )?;
        Ok(waits(&list))
    }

    fn active_count(&self, account: Uuid, agent: Uuid) -> R<i64> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM conversations WHERE account_id = ?1 AND assignee_id = ?2
                 AND status IN ('created', 'open', 'in_progress', 'on_hold')",
            )?
            .query_row(params![account, agent], |r| r.get(0))?)
    }

    fn queue_size(&self, account: Uuid) -> R<i64> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM conversations WHERE account_id = ?1 AND status = 'open' AND assignee_id IS NULL",
            )?
            .query_row([account], |r| r.get(0))?)
    }

    fn handled_conversations(&self, account: Uuid, customer: Uuid, except: Uuid, cap: i64) -> R<i64> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM conversations WHERE account_id = ?1 AND customer_id = ?2
                 AND id != ?3 AND assignee_id IS NOT NULL LIMIT ?4)",
            )?
            .query_row(params![account, customer, except, cap], |r| r.get(0))?)
    }

    fn trigger(&self, account: Uuid, id: Uuid) -> R<Option<Trigger>> {
        one_doc(self.conn(), "SELECT body FROM triggers WHERE id = ?1 AND account_id = ?2", &[&id, &account])
    }

    fn triggers(&self, account: Uuid, page: &Page) -> R<Vec<Trigger>> {
        page_of(self.conn(), "triggers", account, page)
    }

    fn triggers_for(&self, account: Uuid, event: TriggerEvent) -> R<Vec<Trigger>> {
        docs(
            self.conn(),
            "SELECT body FROM triggers WHERE account_id = ?1 AND event = ?2 AND enabled = 1 ORDER BY position, id",
            &[&account, &event.as_str()],
        )
    }

    fn trigger_count(&self, account: Uuid) -> R<(i64, i64)> {
        Ok(self
            .conn()
            .prepare_cached("SELECT COUNT(*), COALESCE(MAX(position), 0) FROM triggers WHERE account_id = ?1")?
            .query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    fn trigger_ran(&self, trigger: Uuid, conversation: Uuid) -> R<bool> {
        Ok(self
            .conn()
            .prepare_cached("SELECT 1 FROM trigger_runs WHERE trigger_id = ?1 AND conversation_id = ?2")?
            .query_row([trigger, conversation], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn group_active_count(&self, account: Uuid, group: Uuid) -> R<i64> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM conversations WHERE account_id = ?1 AND group_id = ?2
                 AND status IN ('created', 'open', 'in_progress', 'on_hold') AND assignee_id IS NOT NULL",
            )?
            .query_row(params![account, group], |r| r.get(0))?)
    }

    fn offers(&self, account: Uuid, filter: OfferFilter) -> R<Vec<Offer>> {
        let (condition, id) = filter.condition();
        let sql =
            format!("SELECT body FROM routing_offers WHERE account_id = ?1 AND {}", condition.replace("{}", "?2"));
        match id {
            Some(id) => docs(self.conn(), &sql, &[&account, &id]),
            None => docs(self.conn(), &sql, &[&account]),
        }
    }

    fn webhook(&self, account: Uuid, id: Uuid) -> R<Option<Webhook>> {
        one_doc(self.conn(), "SELECT body FROM webhooks WHERE id = ?1 AND account_id = ?2", &[&id, &account])
    }

    fn webhooks(&self, account: Uuid, page: &Page) -> R<Vec<Webhook>> {
        page_of(self.conn(), "webhooks", account, page)
    }

    fn webhook_secrets(&self, account: Uuid, id: Uuid) -> R<Option<WebhookSecrets>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT secret, previous_secret, previous_until FROM webhooks WHERE id = ?1 AND account_id = ?2",
            )?
            .query_row(params![id, account], |r| {
                let previous: Option<String> = r.get(1)?;
                let until: Option<i64> = r.get(2)?;
                Ok(WebhookSecrets { current: r.get(0)?, previous: previous.zip(until.map(Timestamp::from_millis)) })
            })
            .optional()?)
    }

    fn deliveries(
        &self,
        account: Uuid,
        webhook: Uuid,
        status: Option<DeliveryStatus>,
        before: Option<Uuid>,
        limit: usize,
    ) -> R<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE account_id = ?1 AND webhook_id = ?2
             AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows =
            stmt.query_map(params![account, webhook, status.map(|s| s.as_str()), before, limit as i64], delivery_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delivery(&self, account: Uuid, webhook: Uuid, id: Uuid) -> R<Option<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1 AND account_id = ?2 AND webhook_id = ?3"
        );
        Ok(self.conn().prepare_cached(&sql)?.query_row(params![id, account, webhook], delivery_row).optional()?)
    }

    fn receipts(&self, consumer: &str, account: Uuid) -> R<Vec<(i64, String)>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT seq, handled_by FROM consumer_receipts WHERE consumer = ?1 AND account_id = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![consumer, account], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl WriteConn<'_> {
    fn write_conversation(&mut self, account: Uuid, c: &Conversation) -> R<()> {
        // Most writes (a message) change only the conversation's activity: its narrow row is
        // then all there is to write (`activity.rs`). The writer's copy of the conversation is
        // what is stored, when it holds one.
        let stored = self.memory.cache.borrow_mut().get::<Conversation>(account, c.id);
        if stored.is_some_and(|stored| activity::only_activity_differs(stored, c)) {
            return self.memory.activity.borrow_mut().defer(self.db, c);
        }
        // Anything held back is older than what follows.
        self.memory.activity.borrow_mut().settle(self.db)?;
        let status = c.status.as_str();
        let assignee = c.assignee.map(|a| a.id);
        let queued_at = c.queued_at.map(Timestamp::millis);
        let first_response_at = c.first_response_at.map(Timestamp::millis);
        let tag_list = c.tags.join(" ");
        let body = to_doc(c)?;
        let row = params![
            c.id,
            account,
            c.integration_id,
            c.customer_id,
            status,
            assignee,
            c.group_id,
            c.priority,
            queued_at,
            body,
            first_response_at,
            tag_list
        ];
        // SQLite rewrites the entries of every index whose columns an UPDATE sets, changed or
        // not, so when the indexed columns and the tags are as stored, only the document is
        // written.
        let only_body = self
            .db
            .prepare_cached(
                "UPDATE conversations SET body = ?10
                 WHERE id = ?1 AND account_id = ?2 AND integration_id = ?3 AND customer_id = ?4 AND status = ?5
                    AND assignee_id IS ?6 AND group_id IS ?7 AND priority = ?8 AND queued_at IS ?9
                    AND first_response_at IS ?11 AND tag_list = ?12",
            )?
            .execute(row)?;
        if only_body > 0 {
            return activity::write(self.db, c);
        }
        let before = stored_place(self, account, c.id)?;
        self.db
            .prepare_cached(
                "INSERT INTO conversations (id, account_id, integration_id, customer_id, status, assignee_id, group_id,
                    priority, queued_at, body, first_response_at, tag_list)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, status = excluded.status,
                    first_response_at = excluded.first_response_at, assignee_id = excluded.assignee_id,
                    group_id = excluded.group_id, priority = excluded.priority, queued_at = excluded.queued_at,
                    body = excluded.body, tag_list = excluded.tag_list",
            )?
            .execute(row)?;
        // Tags are few per conversation: replace the set.
        self.db.prepare_cached("DELETE FROM conversation_tags WHERE conversation_id = ?1")?.execute([c.id])?;
        let mut insert = self
            .db
            .prepare_cached("INSERT INTO conversation_tags (conversation_id, account_id, tag) VALUES (?1, ?2, ?3)")?;
        for tag in &c.tags {
            insert.execute(params![c.id, account, tag])?;
        }
        activity::write(self.db, c)?;
        self.memory.queues.borrow_mut().moved(before, Place::of(account, c));
        Ok(())
    }
}

impl Tx for WriteConn<'_> {
    fn now(&self) -> Timestamp {
        self.now
    }

    fn put_setting(&mut self, key: &str, value: &str) -> R<()> {
        self.db.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn insert_account(&mut self, account: &Account) -> R<()> {
        self.db.execute(
            &format!("INSERT INTO accounts (id, body, number) VALUES (?1, ?2, {})", keys::NEXT_NUMBER),
            params![account.id, to_doc(account)?],
        )?;
        Ok(())
    }

    fn insert_api_key(&mut self, account: Uuid, key: &ApiKey, hash: &str) -> R<()> {
        self.db.execute(
            "INSERT INTO api_keys (id, account_id, hash, body) VALUES (?1, ?2, ?3, ?4)",
            params![key.id, account, hash, to_doc(key)?],
        )?;
        Ok(())
    }

    fn delete_api_key(&mut self, account: Uuid, id: Uuid) -> R<bool> {
        Ok(self.db.execute("DELETE FROM api_keys WHERE id = ?1 AND account_id = ?2", params![id, account])? > 0)
    }

    fn put_agent(&mut self, account: Uuid, agent: &Agent) -> R<()> {
        self.db.execute(
            "INSERT INTO agents (id, account_id, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            params![agent.id, account, to_doc(agent)?],
        )?;
        Ok(())
    }

    fn put_offer(&mut self, account: Uuid, offer: &Offer) -> R<()> {
        self.db
            .prepare_cached(
                "INSERT INTO routing_offers (id, account_id, conversation_id, agent_id, status, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body",
            )?
            .execute(params![
                offer.id,
                account,
                offer.conversation_id,
                offer.agent_id,
                offer.status.as_str(),
                to_doc(offer)?
            ])?;
        Ok(())
    }

    fn put_trigger(&mut self, account: Uuid, t: &Trigger) -> R<()> {
        self.db.execute(
            "INSERT INTO triggers (id, account_id, event, position, enabled, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET event = excluded.event, position = excluded.position,
                enabled = excluded.enabled, body = excluded.body",
            params![t.id, account, t.event.as_str(), t.position, t.enabled, to_doc(t)?],
        )?;
        Ok(())
    }

    fn delete_trigger(&mut self, account: Uuid, id: Uuid) -> R<bool> {
        let deleted =
            self.db.execute("DELETE FROM triggers WHERE id = ?1 AND account_id = ?2", params![id, account])?;
        if deleted > 0 {
            self.db.execute("DELETE FROM trigger_runs WHERE trigger_id = ?1", [id])?;
        }
        Ok(deleted > 0)
    }

    fn insert_trigger_run(&mut self, account: Uuid, trigger: Uuid, conversation: Uuid) -> R<()> {
        self.db.execute(
            "INSERT INTO trigger_runs (trigger_id, conversation_id, account_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![trigger, conversation, account],
        )?;
        Ok(())
    }

    fn put_group(&mut self, account: Uuid, group: &Group) -> R<()> {
        self.db.execute(
            "INSERT INTO groups (id, account_id, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            params![group.id, account, to_doc(group)?],
        )?;
        Ok(())
    }

    fn put_integration(&mut self, account: Uuid, i: &Integration) -> R<()> {
        let result = self.db.execute(
            "INSERT INTO integrations (id, account_id, deleted, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET deleted = excluded.deleted, body = excluded.body",
            params![i.id, account, i.is_deleted(), to_doc(i)?],
        );
        self.memory.cache.borrow_mut().wrote(account, i, result.is_ok());
        result?;
        Ok(())
    }

    fn put_customer(&mut self, account: Uuid, c: &Customer) -> R<()> {
        let result = self.db.execute(
            "INSERT INTO customers (id, account_id, external_id, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET external_id = excluded.external_id, body = excluded.body",
            params![c.id, account, c.external_id, to_doc(c)?],
        );
        self.memory.cache.borrow_mut().wrote(account, c, result.is_ok());
        match result {
            Err(e) if unique_violation(&e) => Err(StoreError::Duplicate {
                field: "external_id",
                detail: "another customer of this account has this external_id".into(),
            }),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    fn put_conversation(&mut self, account: Uuid, c: &Conversation) -> R<()> {
        let result = self.write_conversation(account, c);
        self.memory.cache.borrow_mut().wrote(account, c, result.is_ok());
        result
    }

    fn insert_message(&mut self, _account: Uuid, m: &Message) -> R<()> {
        // Written with the event that carries it (`append`); see `messages.rs`.
        if self.message.is_some() {
            return Err(StoreError::Backend("a second message before the first one's event".into()));
        }
        self.message = Some(messages::Pending::of(m));
        Ok(())
    }

    fn advance_read_position(&mut self, conversation: Uuid, reader: ReaderRef, seq: i64) -> R<bool> {
        let changed = self.db.execute(
            "INSERT INTO read_positions (conversation_id, reader_type, reader_id, seq) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (conversation_id, reader_type, reader_id) DO UPDATE SET seq = excluded.seq
             WHERE excluded.seq > read_positions.seq",
            params![conversation, reader.kind.as_str(), reader.id, seq],
        )?;
        Ok(changed > 0)
    }

    fn append(&mut self, account: Uuid, draft: EventDraft) -> R<Event> {
        let (seq, number) = self
            .memory
            .seqs
            .borrow_mut()
            .take_next(self.db, account)?
            .ok_or_else(|| StoreError::not_found("account"))?;
        let key = keys::key(number, seq)?;
        let event = Event::stamp(draft, Uuid::now_v7(), seq, account, self.now);
        let json: Arc<str> = Arc::from(serde_json::to_string(&event)?);
        let message = match self.message.take() {
            Some(m) if m.carried_by(event.event_type, &event.data) => Some(m),
            other => {
                self.message = other;
                None
            }
        };
        let link = match event.conversation_id {
            Some(c) => Some(self.memory.heads.borrow_mut().next_link(self.db, account, c)?),
            None => None,
        };
        let (conversation_prev, conversation_n) = (link.and_then(|l| l.0), link.map(|l| l.1));
        if conversation_prev.is_some_and(|prev| prev >= seq) {
            return Err(StoreError::Backend(format!("event {seq} would link forward, to {conversation_prev:?}")));
        }
        let null = rusqlite::types::Null;
        let [message_seq, message_id, client_message_id, author_type, author_id] = match &message {
            Some(m) => m.columns(),
            None => [&null as &dyn ToSql; 5],
        };
        let inserted = self.db.prepare_cached(messages::INSERT_EVENT)?.execute(params![
            account,
            seq,
            event.id,
            event.event_type.as_str(),
            event.occurred_at.millis(),
            event.conversation_id,
            json,
            message_seq,
            message_id,
            client_message_id,
            author_type,
            author_id,
            conversation_prev,
            conversation_n,
            key
        ]);
        match inserted {
            Err(e) if message.is_some() && unique_violation(&e) => {
                return Err(StoreError::Duplicate {
                    field: "client_message_id",
                    detail: "a message with this client_message_id already exists".into(),
                })
            }
            other => other?,
        };
        if let (Some(conversation), Some(n)) = (event.conversation_id, conversation_n) {
            let mut held = self.memory.activity.borrow_mut();
            self.memory.heads.borrow_mut().advance(self.db, &mut held, account, conversation, seq, n)?;
        }
        self.appended.push(LogEntry::of(&event, json));
        Ok(event)
    }

    fn advance_cursor(&mut self, consumer: &str, account: Uuid, position: i64) -> R<()> {
        // Every consumer's every batch: prepared once.
        self.db
            .prepare_cached(
                "INSERT INTO consumer_cursors (consumer, account_id, position) VALUES (?1, ?2, ?3)
                 ON CONFLICT (consumer, account_id) DO UPDATE SET position = excluded.position
                 WHERE excluded.position > consumer_cursors.position",
            )?
            .execute(params![consumer, account, position])?;
        Ok(())
    }

    fn schedule(&mut self, account: Option<Uuid>, kind: &str, due_at: Timestamp, payload: &Value) -> R<Uuid> {
        let id = Uuid::now_v7();
        self.db.execute(
            "INSERT INTO schedule (id, account_id, kind, due_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, account, kind, due_at.millis(), payload.to_string()],
        )?;
        Ok(id)
    }

    fn claim_due(&mut self, now: Timestamp, limit: usize, lease_secs: i64) -> R<Vec<ScheduledJob>> {
        let mut stmt = self.db.prepare_cached(
            "UPDATE schedule SET lease_until = ?2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM schedule WHERE due_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)
                          ORDER BY due_at LIMIT ?3)
             RETURNING id, account_id, kind, due_at, payload, attempts",
        )?;
        let rows = stmt.query_map(params![now.millis(), now.plus_secs(lease_secs).millis(), limit as i64], |r| {
            let payload: String = r.get(4)?;
            Ok(ScheduledJob {
                id: r.get(0)?,
                account_id: r.get(1)?,
                kind: r.get(2)?,
                due_at: Timestamp::from_millis(r.get(3)?),
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                attempts: r.get(5)?,
            })
        })?;
        let mut jobs: Vec<ScheduledJob> = rows.collect::<Result<_, _>>()?;
        jobs.sort_by_key(|j| (j.due_at, j.id));
        Ok(jobs)
    }

    fn complete_job(&mut self, id: Uuid) -> R<bool> {
        Ok(self.db.execute("DELETE FROM schedule WHERE id = ?1", [id])? > 0)
    }

    fn insert_signing_key(&mut self, account: Uuid, integration: Uuid, key: &SigningKey, secret: &str) -> R<()> {
        self.db.execute(
            "INSERT INTO signing_keys (integration_id, kid, account_id, secret, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![integration, key.kid, account, secret, to_doc(key)?],
        )?;
        Ok(())
    }

    fn delete_signing_key(&mut self, account: Uuid, integration: Uuid, kid: &str) -> R<bool> {
        Ok(self.db.execute(
            "DELETE FROM signing_keys WHERE account_id = ?1 AND integration_id = ?2 AND kid = ?3",
            params![account, integration, kid],
        )? > 0)
    }

    fn acquire_lease(&mut self, name: &str, holder: &str, now: Timestamp, ttl_secs: i64) -> R<bool> {
        let (until, now, renew_from) = (now.plus_secs(ttl_secs).millis(), now.millis(), lease_renewal(now, ttl_secs));
        let changed = self
            .db
            .prepare_cached(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at <= ?4 OR (leases.holder = excluded.holder AND leases.expires_at <= ?5)",
            )?
            .execute(params![name, holder, until, now, renew_from])?;
        if changed > 0 {
            return Ok(true);
        }
        let held = self
            .db
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM leases WHERE name = ?1 AND holder = ?2 AND expires_at > ?3)")?
            .query_row(params![name, holder, now], |r| r.get(0))?;
        Ok(held)
    }

    fn release_lease(&mut self, name: &str, holder: &str) -> R<()> {
        self.db.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", params![name, holder])?;
        Ok(())
    }

    fn insert_receipt(&mut self, consumer: &str, entry: &LogEntry, handled_by: &str) -> R<bool> {
        let event_id = entry_id(entry)?;
        let changed = self.db.execute(
            "INSERT INTO consumer_receipts (consumer, event_id, account_id, seq, handled_by, handled_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            params![consumer, event_id, entry.account_id, entry.seq, handled_by, self.now.millis()],
        )?;
        Ok(changed > 0)
    }

    fn touch_agent_connection(&mut self, account: Uuid, agent: Uuid, node: &str, until: Timestamp) -> R<()> {
        self.db.execute(
            "INSERT INTO agent_connections (agent_id, node, account_id, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (agent_id, node) DO UPDATE SET expires_at = excluded.expires_at",
            params![agent, node, account, until.millis()],
        )?;
        Ok(())
    }

    fn drop_agent_connection(&mut self, agent: Uuid, node: &str) -> R<()> {
        self.db.execute("DELETE FROM agent_connections WHERE agent_id = ?1 AND node = ?2", params![agent, node])?;
        Ok(())
    }

    fn put_webhook(&mut self, account: Uuid, webhook: &Webhook) -> R<()> {
        self.db.execute(
            "INSERT INTO webhooks (id, account_id, secret, body) VALUES (?1, ?2, '', ?3)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            params![webhook.id, account, to_doc(webhook)?],
        )?;
        Ok(())
    }

    fn set_webhook_secret(
        &mut self,
        account: Uuid,
        id: Uuid,
        secret: &str,
        previous_until: Option<Timestamp>,
    ) -> R<()> {
        self.db.execute(
            "UPDATE webhooks SET previous_secret = CASE WHEN ?4 IS NULL THEN NULL ELSE secret END,
                previous_until = ?4, secret = ?3 WHERE id = ?1 AND account_id = ?2",
            params![id, account, secret, previous_until.map(Timestamp::millis)],
        )?;
        Ok(())
    }

    fn delete_webhook(&mut self, account: Uuid, id: Uuid) -> R<bool> {
        let deleted =
            self.db.execute("DELETE FROM webhooks WHERE id = ?1 AND account_id = ?2", params![id, account])?;
        if deleted > 0 {
            self.db.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", [id])?;
        }
        Ok(deleted > 0)
    }

    fn insert_delivery(
        &mut self,
        account: Uuid,
        webhook: Uuid,
        event_id: Uuid,
        event_type: &str,
        payload: &str,
    ) -> R<Option<Uuid>> {
        let id = Uuid::now_v7();
        let inserted = self
            .db
            .prepare_cached(
                "INSERT INTO webhook_deliveries (id, account_id, webhook_id, event_id, event_type, payload, status,
                    next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7) ON CONFLICT DO NOTHING",
            )?
            .execute(params![id, account, webhook, event_id, event_type, payload, self.now.millis()])?;
        Ok((inserted > 0).then_some(id))
    }

    fn claim_deliveries(
        &mut self,
        now: Timestamp,
        per_endpoint: i64,
        limit: usize,
        lease_ms: i64,
    ) -> R<Vec<ClaimedDelivery>> {
        // Endpoint by endpoint, through the queue indexes: each gets what room it has left.
        let webhooks: Vec<Uuid> = {
            let mut stmt = self.db.prepare_cached("SELECT id FROM webhooks")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut claimed = Vec::new();
        for webhook in webhooks {
            if claimed.len() >= limit {
                break;
            }
            let inflight: i64 = self
                .db
                .prepare_cached(
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = ?1 AND status = 'pending' AND lease_until > ?2",
                )?
                .query_row(params![webhook, now.millis()], |r| r.get(0))?;
            let room = (per_endpoint - inflight).min((limit - claimed.len()) as i64);
            if room <= 0 {
                continue;
            }
            let mut stmt = self.db.prepare_cached(
                "UPDATE webhook_deliveries SET lease_until = ?4 WHERE id IN (
                    SELECT id FROM webhook_deliveries WHERE webhook_id = ?1 AND status = 'pending'
                    AND next_attempt_at <= ?2 AND (lease_until IS NULL OR lease_until <= ?2)
                    ORDER BY next_attempt_at LIMIT ?3)
                 RETURNING id, account_id, webhook_id, event_id, payload, attempt_count",
            )?;
            let rows = stmt.query_map(params![webhook, now.millis(), room, now.millis() + lease_ms], |r| {
                Ok(ClaimedDelivery {
                    id: r.get(0)?,
                    account_id: r.get(1)?,
                    webhook_id: r.get(2)?,
                    event_id: r.get(3)?,
                    payload: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?;
            for row in rows {
                claimed.push(row?);
            }
        }
        Ok(claimed)
    }

    fn record_attempt(
        &mut self,
        id: Uuid,
        attempt: &Attempt,
        status: DeliveryStatus,
        next: Option<Timestamp>,
    ) -> R<()> {
        let attempts: Option<String> = self
            .db
            .prepare_cached("SELECT attempts FROM webhook_deliveries WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let Some(attempts) = attempts else { return Ok(()) };
        let mut list: Vec<Attempt> = serde_json::from_str(&attempts)?;
        list.push(attempt.clone());
        self.db
            .prepare_cached(
                "UPDATE webhook_deliveries SET attempts = ?2, attempt_count = ?3, status = ?4, next_attempt_at = ?5,
                    lease_until = NULL WHERE id = ?1",
            )?
            .execute(params![id, to_doc(&list)?, list.len() as i64, status.as_str(), next.map(Timestamp::millis)])?;
        Ok(())
    }

    fn retry_delivery(&mut self, account: Uuid, webhook: Uuid, id: Uuid, now: Timestamp) -> R<bool> {
        Ok(self.db.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?4, lease_until = NULL
             WHERE id = ?1 AND account_id = ?2 AND webhook_id = ?3",
            params![id, account, webhook, now.millis()],
        )? > 0)
    }

    fn fail_pending_deliveries(&mut self, webhook: Uuid) -> R<u64> {
        Ok(self.db.execute(
            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL
             WHERE webhook_id = ?1 AND status = 'pending'",
            [webhook],
        )? as u64)
    }

    fn insert_sdk_session(&mut self, session: &SdkSession, hash: &str) -> R<()> {
        self.db.execute(
            "INSERT INTO sdk_sessions (hash, id, account_id, customer_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash, session.id, session.account_id, session.customer_id, to_doc(session)?],
        )?;
        Ok(())
    }
}
