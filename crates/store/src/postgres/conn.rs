//! `Reads` and `Tx` over one PostgreSQL connection.
//!
//! A write command takes its account's row lock (`SELECT … FOR UPDATE`) the first time it
//! touches the account: writes of one account are serialised across every node, so a command
//! decides on current state and `seq` is given out in commit order.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use parley_core::account::{Account, ApiKey};
use parley_core::agent::Agent;
use parley_core::conversation::Conversation;
use parley_core::customer::Customer;
use parley_core::event::{Event, EventDraft, EventType};
use parley_core::group::Group;
use parley_core::integration::{Integration, SigningKey};
use parley_core::message::Message;
use parley_core::webhook::{Attempt, Delivery, DeliveryStatus, Webhook};
use parley_core::{Timestamp, Uuid};
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::model::{
    ClaimedDelivery, ConversationFilter, LogEntry, LogQuery, MessageWindow, OfferFilter, Page, ReaderRef, ScheduledJob,
    SdkSession, WebhookSecrets,
};
use crate::sql::lease_renewal;
use crate::tx::{Reads, Tx};
use crate::StoreError;
use parley_core::routing::Offer;
use parley_core::trigger::{Trigger, TriggerEvent};

type R<T> = Result<T, StoreError>;
type Arg<'a> = &'a (dyn ToSql + Sync);

/// A connection with its prepared statements.
pub(crate) struct PgClient {
    pub client: Client,
    statements: HashMap<String, Statement>,
}

impl PgClient {
    pub fn new(client: Client) -> Self {
        PgClient { client, statements: HashMap::new() }
    }

    fn statement(&mut self, sql: &str) -> R<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

pub(crate) struct PgConn<'a> {
    db: RefCell<&'a mut PgClient>,
    /// Inside a write transaction: lock accounts on first touch, stamp events.
    writing: bool,
    locked: RefCell<Vec<Uuid>>,
    pub now: Timestamp,
    pub appended: Vec<LogEntry>,
}

impl<'a> PgConn<'a> {
    pub fn reader(db: &'a mut PgClient) -> Self {
        PgConn {
            db: RefCell::new(db),
            writing: false,
            locked: RefCell::default(),
            now: Timestamp::default(),
            appended: Vec::new(),
        }
    }

    pub fn writer(db: &'a mut PgClient, now: Timestamp) -> Self {
        PgConn { db: RefCell::new(db), writing: true, locked: RefCell::default(), now, appended: Vec::new() }
    }

    fn rows(&self, sql: &str, args: &[Arg]) -> R<Vec<Row>> {
        let mut db = self.db.borrow_mut();
        let st = db.statement(sql)?;
        Ok(db.client.query(&st, args)?)
    }

    fn exec(&self, sql: &str, args: &[Arg]) -> R<u64> {
        let mut db = self.db.borrow_mut();
        let st = db.statement(sql)?;
        Ok(db.client.execute(&st, args)?)
    }

    /// Serialises this command with every other write of `account`, on any node.
    fn guard(&self, account: Uuid) -> R<()> {
        if !self.writing || self.locked.borrow().contains(&account) {
            return Ok(());
        }
        self.rows("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&account])?;
        self.locked.borrow_mut().push(account);
        Ok(())
    }

    fn one_doc<T: DeserializeOwned>(&self, sql: &str, args: &[Arg]) -> R<Option<T>> {
        match self.rows(sql, args)?.first() {
            Some(row) => Ok(Some(from_doc(row, 0)?)),
            None => Ok(None),
        }
    }

    fn docs<T: DeserializeOwned>(&self, sql: &str, args: &[Arg]) -> R<Vec<T>> {
        self.rows(sql, args)?.iter().map(|row| from_doc(row, 0)).collect()
    }

    fn scalar<T: for<'r> postgres::types::FromSql<'r>>(&self, sql: &str, args: &[Arg]) -> R<Option<T>> {
        match self.rows(sql, args)?.first() {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    fn page_of<T: DeserializeOwned>(&self, table: &str, account: Uuid, page: &Page) -> R<Vec<T>> {
        self.guard(account)?;
        let sql = format!(
            "SELECT body FROM {table} WHERE account_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        );
        self.docs(&sql, &[&account, &page.after_id, &(page.limit as i64)])
    }
}

fn from_doc<T: DeserializeOwned>(row: &Row, idx: usize) -> R<T> {
    let text: String = row.try_get(idx)?;
    Ok(serde_json::from_str(&text)?)
}

fn to_doc<T: Serialize>(value: &T) -> R<String> {
    Ok(serde_json::to_string(value)?)
}

fn unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(msg) if msg.contains("duplicate key"))
}

fn duplicate(result: R<u64>, field: &'static str, detail: &str) -> R<()> {
    match result {
        Err(e) if unique_violation(&e) => Err(StoreError::Duplicate { field, detail: detail.to_string() }),
        other => other.map(|_| ()),
    }
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_type, status, next_attempt_at, created_at, attempts";

fn delivery_row(row: &Row) -> R<Delivery> {
    let status: String = row.try_get(4)?;
    let attempts: String = row.try_get(7)?;
    Ok(Delivery {
        id: row.try_get(0)?,
        webhook_id: row.try_get(1)?,
        event_id: row.try_get(2)?,
        event_type: row.try_get(3)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        next_attempt_at: row.try_get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(row.try_get(6)?),
        attempts: serde_json::from_str(&attempts)?,
    })
}

fn log_entry(row: &Row) -> R<LogEntry> {
    let type_name: String = row.try_get(2)?;
    let event_type =
        EventType::parse(&type_name).ok_or_else(|| StoreError::Backend(format!("unknown event type {type_name}")))?;
    let json: String = row.try_get(5)?;
    Ok(LogEntry {
        account_id: row.try_get(0)?,
        seq: row.try_get(1)?,
        event_type,
        conversation_id: row.try_get(3)?,
        occurred_at: Timestamp::from_millis(row.try_get(4)?),
        json: Arc::from(json),
    })
}

impl Reads for PgConn<'_> {
    fn setting(&self, key: &str) -> R<Option<String>> {
        self.scalar("SELECT value FROM settings WHERE key = $1", &[&key])
    }

    fn account(&self, id: Uuid) -> R<Option<Account>> {
        self.one_doc("SELECT body FROM accounts WHERE id = $1", &[&id])
    }

    fn api_key_by_hash(&self, hash: &str) -> R<Option<(Uuid, ApiKey)>> {
        match self.rows("SELECT account_id, body FROM api_keys WHERE hash = $1", &[&hash])?.first() {
            Some(row) => Ok(Some((row.try_get(0)?, from_doc(row, 1)?))),
            None => Ok(None),
        }
    }

    fn api_keys(&self, account: Uuid, page: &Page) -> R<Vec<ApiKey>> {
        self.page_of("api_keys", account, page)
    }

    fn agent(&self, account: Uuid, id: Uuid) -> R<Option<Agent>> {
        self.guard(account)?;
        self.one_doc("SELECT body FROM agents WHERE id = $1 AND account_id = $2", &[&id, &account])
    }

    fn agents(&self, account: Uuid, page: &Page) -> R<Vec<Agent>> {
        self.page_of("agents", account, page)
    }

    fn group(&self, account: Uuid, id: Uuid) -> R<Option<Group>> {
        self.guard(account)?;
        self.one_doc("SELECT body FROM groups WHERE id = $1 AND account_id = $2", &[&id, &account])
    }

    fn groups(&self, account: Uuid, page: &Page) -> R<Vec<Group>> {
        self.page_of("groups", account, page)
    }

    fn integration(&self, account: Uuid, id: Uuid) -> R<Option<Integration>> {
        self.guard(account)?;
        self.one_doc("SELECT body FROM integrations WHERE id = $1 AND account_id = $2", &[&id, &account])
    }

    fn integration_by_id(&self, id: Uuid) -> R<Option<(Uuid, Integration)>> {
        match self.rows("SELECT account_id, body FROM integrations WHERE id = $1", &[&id])?.first() {
            Some(row) => Ok(Some((row.try_get(0)?, from_doc(row, 1)?))),
            None => Ok(None),
        }
    }

    fn integrations(&self, account: Uuid, page: &Page) -> R<Vec<Integration>> {
        self.page_of("integrations", account, page)
    }

    fn count_integrations(&self, account: Uuid) -> R<i64> {
        self.guard(account)?;
        Ok(self
            .scalar("SELECT COUNT(*) FROM integrations WHERE account_id = $1 AND NOT deleted", &[&account])?
            .unwrap_or(0))
    }

    fn customer(&self, account: Uuid, id: Uuid) -> R<Option<Customer>> {
        self.guard(account)?;
        self.one_doc("SELECT body FROM customers WHERE id = $1 AND account_id = $2", &[&id, &account])
    }

    fn customer_by_external_id(&self, account: Uuid, external_id: &str) -> R<Option<Customer>> {
        self.guard(account)?;
        self.one_doc("SELECT body FROM customers WHERE account_id = $1 AND external_id = $2", &[&account, &external_id])
    }

    fn customers(&self, account: Uuid, page: &Page) -> R<Vec<Customer>> {
        self.page_of("customers", account, page)
    }

    fn conversation(&self, account: Uuid, id: Uuid) -> R<Option<Conversation>> {
        self.guard(account)?;
        self.one_doc("SELECT body FROM conversations WHERE id = $1 AND account_id = $2", &[&id, &account])
    }

    fn conversations(&self, account: Uuid, f: &ConversationFilter) -> R<Vec<Conversation>> {
        self.guard(account)?;
        let (sql, values) =
            crate::sql::conversations("SELECT c.body FROM conversations c", account, f, |n| format!("${n}"));
        let values: Vec<Box<dyn ToSql + Sync>> = values
            .into_iter()
            .map(|v| -> Box<dyn ToSql + Sync> {
                match v {
                    crate::sql::SqlValue::Uuid(u) => Box::new(u),
                    crate::sql::SqlValue::Text(t) => Box::new(t),
                    crate::sql::SqlValue::Int(i) => Box::new(i),
                }
            })
            .collect();
        let args: Vec<Arg> = values.iter().map(|v| v.as_ref() as Arg).collect();
        self.docs(&sql, &args)
    }

    fn queue_position(&self, account: Uuid, c: &Conversation) -> R<i64> {
        self.guard(account)?;
        let queued = c.queued_at.unwrap_or(c.created_at).millis();
        let ahead: i64 = self
            .scalar(
                "SELECT COUNT(*) FROM conversations WHERE account_id = $1 AND group_id IS NOT DISTINCT FROM $2
                 AND status = 'open' AND assignee_id IS NULL AND id != $3
                 AND (priority > $4 OR (priority = $4 AND (queued_at < $5 OR (queued_at = $5 AND id < $3))))",
                &[&account, &c.group_id, &c.id, &c.priority, &queued],
            )?
            .unwrap_or(0);
        Ok(ahead + 1)
    }

    fn latest_conversation(&self, account: Uuid, customer: Uuid, integration: Uuid) -> R<Option<Conversation>> {
        self.guard(account)?;
        self.one_doc(
            "SELECT body FROM conversations WHERE account_id = $1 AND customer_id = $2 AND integration_id = $3
             ORDER BY id DESC LIMIT 1",
            &[&account, &customer, &integration],
        )
    }

    fn message(&self, conversation: Uuid, id: Uuid) -> R<Option<Message>> {
        self.one_doc("SELECT body FROM messages WHERE id = $1 AND conversation_id = $2", &[&id, &conversation])
    }

    fn message_by_client_id(&self, conversation: Uuid, client_message_id: &str) -> R<Option<Message>> {
        self.one_doc(
            "SELECT body FROM messages WHERE conversation_id = $1 AND client_message_id = $2",
            &[&conversation, &client_message_id],
        )
    }

    fn messages(&self, conversation: Uuid, window: MessageWindow, limit: usize) -> R<Vec<Message>> {
        let limit = limit as i64;
        match window {
            MessageWindow::First => self.docs(
                "SELECT body FROM messages WHERE conversation_id = $1 ORDER BY seq LIMIT $2",
                &[&conversation, &limit],
            ),
            MessageWindow::After(seq) => self.docs(
                "SELECT body FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&conversation, &seq, &limit],
            ),
            MessageWindow::Before(seq) => {
                let mut page: Vec<Message> = self.docs(
                    "SELECT body FROM messages WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                    &[&conversation, &seq, &limit],
                )?;
                page.reverse();
                Ok(page)
            }
        }
    }

    fn read_position(&self, conversation: Uuid, reader: ReaderRef) -> R<i64> {
        Ok(self
            .scalar(
                "SELECT seq FROM read_positions WHERE conversation_id = $1 AND reader_type = $2 AND reader_id = $3",
                &[&conversation, &reader.kind.as_str(), &reader.id],
            )?
            .unwrap_or(0))
    }

    fn count_unread(&self, conversation: Uuid, reader: ReaderRef) -> R<i64> {
        Ok(self
            .scalar(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = $1
                 AND seq > COALESCE((SELECT seq FROM read_positions
                                     WHERE conversation_id = $1 AND reader_type = $2 AND reader_id = $3), 0)
                 AND NOT (author_type = $2 AND author_id IS NOT DISTINCT FROM $3)",
                &[&conversation, &reader.kind.as_str(), &reader.id],
            )?
            .unwrap_or(0))
    }

    fn log(&self, account: Uuid, q: &LogQuery) -> R<Vec<LogEntry>> {
        let since = q.since.map(Timestamp::millis);
        let until = q.until.map(Timestamp::millis);
        let types: Vec<String> = q.types.iter().map(|t| t.as_str().to_string()).collect();
        let limit = q.limit as i64;
        let mut sql = String::from(
            "SELECT account_id, seq, type, conversation_id, occurred_at, body FROM events WHERE account_id = $1 AND seq > $2",
        );
        let mut args: Vec<Arg> = vec![&account, &q.after];
        if !q.conversation_ids.is_empty() {
            sql.push_str(&format!(" AND conversation_id = ANY(${})", args.len() + 1));
            args.push(&q.conversation_ids);
        }
        if let Some(s) = &since {
            sql.push_str(&format!(" AND occurred_at >= ${}", args.len() + 1));
            args.push(s);
        }
        if let Some(u) = &until {
            sql.push_str(&format!(" AND occurred_at < ${}", args.len() + 1));
            args.push(u);
        }
        if !types.is_empty() {
            sql.push_str(&format!(" AND type = ANY(${})", args.len() + 1));
            args.push(&types);
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", args.len() + 1));
        args.push(&limit);
        self.rows(&sql, &args)?.iter().map(log_entry).collect()
    }

    fn last_seq(&self, account: Uuid) -> R<i64> {
        Ok(self.scalar("SELECT last_seq FROM accounts WHERE id = $1", &[&account])?.unwrap_or(0))
    }

    fn cursor(&self, consumer: &str, account: Uuid) -> R<i64> {
        Ok(self
            .scalar(
                "SELECT position FROM consumer_cursors WHERE consumer = $1 AND account_id = $2",
                &[&consumer, &account],
            )?
            .unwrap_or(0))
    }

    fn signing_keys(&self, account: Uuid, integration: Uuid) -> R<Vec<SigningKey>> {
        self.guard(account)?;
        self.docs(
            "SELECT body FROM signing_keys WHERE account_id = $1 AND integration_id = $2 ORDER BY kid",
            &[&account, &integration],
        )
    }

    fn signing_secret(&self, account: Uuid, integration: Uuid, kid: &str) -> R<Option<String>> {
        self.scalar(
            "SELECT secret FROM signing_keys WHERE account_id = $1 AND integration_id = $2 AND kid = $3",
            &[&account, &integration, &kid],
        )
    }

    fn sdk_session_by_hash(&self, hash: &str) -> R<Option<SdkSession>> {
        self.one_doc("SELECT body FROM sdk_sessions WHERE hash = $1", &[&hash])
    }

    fn accounts_behind(&self, consumer: &str, after: Option<Uuid>, limit: usize) -> R<Vec<Uuid>> {
        self.rows(
            "SELECT a.id FROM accounts a LEFT JOIN consumer_cursors c ON c.consumer = $1 AND c.account_id = a.id
             WHERE ($2::uuid IS NULL OR a.id > $2) AND a.last_seq > COALESCE(c.position, 0) ORDER BY a.id LIMIT $3",
            &[&consumer, &after, &(limit as i64)],
        )?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    fn lease_holder(&self, name: &str) -> R<Option<(String, Timestamp)>> {
        match self.rows("SELECT holder, expires_at FROM leases WHERE name = $1", &[&name])?.first() {
            Some(r) => Ok(Some((r.try_get(0)?, Timestamp::from_millis(r.try_get(1)?)))),
            None => Ok(None),
        }
    }

    fn agent_connected_elsewhere(&self, agent: Uuid, node: &str, now: Timestamp) -> R<bool> {
        Ok(!self
            .rows(
                "SELECT 1 FROM agent_connections WHERE agent_id = $1 AND node != $2 AND expires_at > $3",
                &[&agent, &node, &now.millis()],
            )?
            .is_empty())
    }

    fn waiting(&self, account: Uuid, limit: usize) -> R<Vec<Conversation>> {
        self.guard(account)?;
        self.docs(
            "SELECT body FROM conversations WHERE account_id = $1 AND status = 'open' AND assignee_id IS NULL
             ORDER BY group_id, priority DESC, queued_at, id LIMIT $2",
            &[&account, &(limit as i64)],
        )
    }

    fn queue_of(&self, account: Uuid, group: Option<Uuid>, limit: usize) -> R<Vec<Conversation>> {
        self.guard(account)?;
        self.docs(
            "SELECT body FROM conversations WHERE account_id = $1 AND group_id IS NOT DISTINCT FROM $2
             AND status = 'open' AND assignee_id IS NULL ORDER BY priority DESC, queued_at, id LIMIT $3",
            &[&account, &group, &(limit as i64)],
        )
    }

    fn first_response_waits(&self, account: Uuid, group: Uuid, since: Timestamp) -> R<Vec<i64>> {
        let list: Vec<Conversation> = self.docs(
            "SELECT body FROM conversations WHERE account_id = $1 AND group_id = $2 AND first_response_at >= $3",
            &[&account, &group, &since.millis()],
        )?;
        Ok(crate::model::waits(&list))
    }

    fn active_count(&self, account: Uuid, agent: Uuid) -> R<i64> {
        self.guard(account)?;
        Ok(self
            .scalar(
                "SELECT COUNT(*) FROM conversations WHERE account_id = $1 AND assignee_id = $2
                 AND status IN ('created', 'open', 'in_progress', 'on_hold')",
                &[&account, &agent],
            )?
            .unwrap_or(0))
    }

    fn queue_size(&self, account: Uuid) -> R<i64> {
        self.guard(account)?;
        Ok(self
            .scalar(
                "SELECT COUNT(*) FROM conversations WHERE account_id = $1 AND status = 'open' AND assignee_id IS NULL",
                &[&account],
            )?
            .unwrap_or(0))
    }

    fn handled_conversations(&self, account: Uuid, customer: Uuid, except: Uuid, cap: i64) -> R<i64> {
        self.guard(account)?;
        Ok(self
            .scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM conversations WHERE account_id = $1 AND customer_id = $2
                 AND id != $3 AND assignee_id IS NOT NULL LIMIT $4) handled",
                &[&account, &customer, &except, &cap],
            )?
            .unwrap_or(0))
    }

    fn trigger(&self, account: Uuid, id: Uuid) -> R<Option<Trigger>> {
        self.guard(account)?;
        self.one_doc("SELECT body FROM triggers WHERE id = $1 AND account_id = $2", &[&id, &account])
    }

    fn triggers(&self, account: Uuid, page: &Page) -> R<Vec<Trigger>> {
        self.page_of("triggers", account, page)
    }

    fn triggers_for(&self, account: Uuid, event: TriggerEvent) -> R<Vec<Trigger>> {
        self.guard(account)?;
        self.docs(
            "SELECT body FROM triggers WHERE account_id = $1 AND event = $2 AND enabled ORDER BY position, id",
            &[&account, &event.as_str()],
        )
    }

    fn trigger_count(&self, account: Uuid) -> R<(i64, i64)> {
        self.guard(account)?;
        let rows = self.rows(
            "SELECT COUNT(*), COALESCE(MAX(position), 0)::BIGINT FROM triggers WHERE account_id = $1",
            &[&account],
        )?;
        let row = rows.first().ok_or_else(|| StoreError::Backend("no count".into()))?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    fn trigger_ran(&self, trigger: Uuid, conversation: Uuid) -> R<bool> {
        Ok(!self
            .rows(
                "SELECT 1 FROM trigger_runs WHERE trigger_id = $1 AND conversation_id = $2",
                &[&trigger, &conversation],
            )?
            .is_empty())
    }

    fn group_active_count(&self, account: Uuid, group: Uuid) -> R<i64> {
        self.guard(account)?;
        Ok(self
            .scalar(
                "SELECT COUNT(*) FROM conversations WHERE account_id = $1 AND group_id = $2
                 AND status IN ('created', 'open', 'in_progress', 'on_hold') AND assignee_id IS NOT NULL",
                &[&account, &group],
            )?
            .unwrap_or(0))
    }

    fn offers(&self, account: Uuid, filter: OfferFilter) -> R<Vec<Offer>> {
        self.guard(account)?;
        let (condition, id) = filter.condition();
        let sql =
            format!("SELECT body FROM routing_offers WHERE account_id = $1 AND {}", condition.replace("{}", "$2"));
        match id {
            Some(id) => self.docs(&sql, &[&account, &id]),
            None => self.docs(&sql, &[&account]),
        }
    }

    fn webhook(&self, account: Uuid, id: Uuid) -> R<Option<Webhook>> {
        self.one_doc("SELECT body FROM webhooks WHERE id = $1 AND account_id = $2", &[&id, &account])
    }

    fn webhooks(&self, account: Uuid, page: &Page) -> R<Vec<Webhook>> {
        self.page_of("webhooks", account, page)
    }

    fn webhook_secrets(&self, account: Uuid, id: Uuid) -> R<Option<WebhookSecrets>> {
        let rows = self.rows(
            "SELECT secret, previous_secret, previous_until FROM webhooks WHERE id = $1 AND account_id = $2",
            &[&id, &account],
        )?;
        match rows.first() {
            Some(r) => {
                let previous: Option<String> = r.try_get(1)?;
                let until: Option<i64> = r.try_get(2)?;
                Ok(Some(WebhookSecrets {
                    current: r.try_get(0)?,
                    previous: previous.zip(until.map(Timestamp::from_millis)),
                }))
            }
            None => Ok(None),
        }
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
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE account_id = $1 AND webhook_id = $2
             AND ($3::text IS NULL OR status = $3) AND ($4::uuid IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
        );
        let status = status.map(|s| s.as_str());
        self.rows(&sql, &[&account, &webhook, &status, &before, &(limit as i64)])?.iter().map(delivery_row).collect()
    }

    fn delivery(&self, account: Uuid, webhook: Uuid, id: Uuid) -> R<Option<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 AND account_id = $2 AND webhook_id = $3"
        );
        self.rows(&sql, &[&id, &account, &webhook])?.first().map(delivery_row).transpose()
    }

    fn receipts(&self, consumer: &str, account: Uuid) -> R<Vec<(i64, String)>> {
        self.rows(
            "SELECT seq, handled_by FROM consumer_receipts WHERE consumer = $1 AND account_id = $2 ORDER BY seq",
            &[&consumer, &account],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }
}

impl Tx for PgConn<'_> {
    fn now(&self) -> Timestamp {
        self.now
    }

    fn put_setting(&mut self, key: &str, value: &str) -> R<()> {
        self.exec(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn insert_account(&mut self, account: &Account) -> R<()> {
        self.exec("INSERT INTO accounts (id, body) VALUES ($1, $2)", &[&account.id, &to_doc(account)?])?;
        self.guard(account.id)
    }

    fn insert_api_key(&mut self, account: Uuid, key: &ApiKey, hash: &str) -> R<()> {
        self.guard(account)?;
        self.exec(
            "INSERT INTO api_keys (id, account_id, hash, body) VALUES ($1, $2, $3, $4)",
            &[&key.id, &account, &hash, &to_doc(key)?],
        )?;
        Ok(())
    }

    fn delete_api_key(&mut self, account: Uuid, id: Uuid) -> R<bool> {
        self.guard(account)?;
        Ok(self.exec("DELETE FROM api_keys WHERE id = $1 AND account_id = $2", &[&id, &account])? > 0)
    }

    fn put_agent(&mut self, account: Uuid, agent: &Agent) -> R<()> {
        self.guard(account)?;
        self.exec(
            "INSERT INTO agents (id, account_id, body) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            &[&agent.id, &account, &to_doc(agent)?],
        )?;
        Ok(())
    }

    fn put_offer(&mut self, account: Uuid, offer: &Offer) -> R<()> {
        self.guard(account)?;
        self.exec(
            "INSERT INTO routing_offers (id, account_id, conversation_id, agent_id, status, body)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body",
            &[&offer.id, &account, &offer.conversation_id, &offer.agent_id, &offer.status.as_str(), &to_doc(offer)?],
        )?;
        Ok(())
    }

    fn put_trigger(&mut self, account: Uuid, t: &Trigger) -> R<()> {
        self.guard(account)?;
        self.exec(
            "INSERT INTO triggers (id, account_id, event, position, enabled, body) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET event = excluded.event, position = excluded.position,
                enabled = excluded.enabled, body = excluded.body",
            &[&t.id, &account, &t.event.as_str(), &t.position, &t.enabled, &to_doc(t)?],
        )?;
        Ok(())
    }

    fn delete_trigger(&mut self, account: Uuid, id: Uuid) -> R<bool> {
        self.guard(account)?;
        let deleted = self.exec("DELETE FROM triggers WHERE id = $1 AND account_id = $2", &[&id, &account])?;
        if deleted > 0 {
            self.exec("DELETE FROM trigger_runs WHERE trigger_id = $1", &[&id])?;
        }
        Ok(deleted > 0)
    }

    fn insert_trigger_run(&mut self, account: Uuid, trigger: Uuid, conversation: Uuid) -> R<()> {
        self.guard(account)?;
        self.exec(
            "INSERT INTO trigger_runs (trigger_id, conversation_id, account_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&trigger, &conversation, &account],
        )?;
        Ok(())
    }

    fn put_group(&mut self, account: Uuid, group: &Group) -> R<()> {
        self.guard(account)?;
        self.exec(
            "INSERT INTO groups (id, account_id, body) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            &[&group.id, &account, &to_doc(group)?],
        )?;
        Ok(())
    }

    fn put_integration(&mut self, account: Uuid, i: &Integration) -> R<()> {
        self.guard(account)?;
        self.exec(
            "INSERT INTO integrations (id, account_id, deleted, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET deleted = excluded.deleted, body = excluded.body",
            &[&i.id, &account, &i.is_deleted(), &to_doc(i)?],
        )?;
        Ok(())
    }

    fn put_customer(&mut self, account: Uuid, c: &Customer) -> R<()> {
        self.guard(account)?;
        let result = self.exec(
            "INSERT INTO customers (id, account_id, external_id, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET external_id = excluded.external_id, body = excluded.body",
            &[&c.id, &account, &c.external_id, &to_doc(c)?],
        );
        duplicate(result, "external_id", "another customer of this account has this external_id")
    }

    fn put_conversation(&mut self, account: Uuid, c: &Conversation) -> R<()> {
        self.guard(account)?;
        let queued = c.queued_at.map(Timestamp::millis);
        self.exec(
            "INSERT INTO conversations (id, account_id, integration_id, customer_id, status, assignee_id, group_id,
                priority, queued_at, body, first_response_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, status = excluded.status,
                first_response_at = excluded.first_response_at,
                assignee_id = excluded.assignee_id, group_id = excluded.group_id, priority = excluded.priority,
                queued_at = excluded.queued_at, body = excluded.body",
            &[
                &c.id,
                &account,
                &c.integration_id,
                &c.customer_id,
                &c.status.as_str(),
                &c.assignee.map(|a| a.id),
                &c.group_id,
                &c.priority,
                &queued,
                &to_doc(c)?,
                &c.first_response_at.map(Timestamp::millis),
            ],
        )?;
        self.exec("DELETE FROM conversation_tags WHERE conversation_id = $1", &[&c.id])?;
        for tag in &c.tags {
            self.exec(
                "INSERT INTO conversation_tags (conversation_id, account_id, tag) VALUES ($1, $2, $3)",
                &[&c.id, &account, tag],
            )?;
        }
        Ok(())
    }

    fn insert_message(&mut self, account: Uuid, m: &Message) -> R<()> {
        self.guard(account)?;
        let result = self.exec(
            "INSERT INTO messages (conversation_id, seq, id, account_id, author_type, author_id, client_message_id, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &m.conversation_id,
                &m.seq,
                &m.id,
                &account,
                &m.author.author_type.as_str(),
                &m.author.id,
                &m.client_message_id,
                &to_doc(m)?,
            ],
        );
        duplicate(result, "client_message_id", "a message with this client_message_id already exists")
    }

    fn advance_read_position(&mut self, conversation: Uuid, reader: ReaderRef, seq: i64) -> R<bool> {
        let changed = self.exec(
            "INSERT INTO read_positions (conversation_id, reader_type, reader_id, seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT (conversation_id, reader_type, reader_id) DO UPDATE SET seq = excluded.seq
             WHERE excluded.seq > read_positions.seq",
            &[&conversation, &reader.kind.as_str(), &reader.id, &seq],
        )?;
        Ok(changed > 0)
    }

    fn append(&mut self, account: Uuid, draft: EventDraft) -> R<Event> {
        self.guard(account)?;
        let now = self.now.millis();
        let rows = self.rows(
            "UPDATE accounts SET last_seq = last_seq + 1, last_at = GREATEST(last_at, $2) WHERE id = $1
             RETURNING last_seq, last_at",
            &[&account, &now],
        )?;
        let row = rows.first().ok_or_else(|| StoreError::not_found("account"))?;
        let (seq, at): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let event = Event::stamp(draft, Uuid::now_v7(), seq, account, Timestamp::from_millis(at));
        let json: Arc<str> = Arc::from(serde_json::to_string(&event)?);
        self.exec(
            "INSERT INTO events (account_id, seq, id, type, occurred_at, conversation_id, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&account, &seq, &event.id, &event.event_type.as_str(), &at, &event.conversation_id, &&*json],
        )?;
        self.appended.push(LogEntry::of(&event, json));
        Ok(event)
    }

    fn advance_cursor(&mut self, consumer: &str, account: Uuid, position: i64) -> R<()> {
        self.exec(
            "INSERT INTO consumer_cursors (consumer, account_id, position) VALUES ($1, $2, $3)
             ON CONFLICT (consumer, account_id) DO UPDATE SET position = excluded.position
             WHERE excluded.position > consumer_cursors.position",
            &[&consumer, &account, &position],
        )?;
        Ok(())
    }

    fn schedule(&mut self, account: Option<Uuid>, kind: &str, due_at: Timestamp, payload: &Value) -> R<Uuid> {
        let id = Uuid::now_v7();
        self.exec(
            "INSERT INTO schedule (id, account_id, kind, due_at, payload) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &account, &kind, &due_at.millis(), &payload.to_string()],
        )?;
        Ok(id)
    }

    fn claim_due(&mut self, now: Timestamp, limit: usize, lease_secs: i64) -> R<Vec<ScheduledJob>> {
        // SKIP LOCKED: several nodes claim at once, each job goes to one of them.
        let rows = self.rows(
            "UPDATE schedule SET lease_until = $2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM schedule WHERE due_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                          ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, account_id, kind, due_at, payload, attempts",
            &[&now.millis(), &now.plus_secs(lease_secs).millis(), &(limit as i64)],
        )?;
        let mut jobs = rows
            .iter()
            .map(|r| {
                let payload: String = r.try_get(4)?;
                Ok(ScheduledJob {
                    id: r.try_get(0)?,
                    account_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    due_at: Timestamp::from_millis(r.try_get(3)?),
                    payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                    attempts: r.try_get(5)?,
                })
            })
            .collect::<R<Vec<_>>>()?;
        jobs.sort_by_key(|j| (j.due_at, j.id));
        Ok(jobs)
    }

    fn complete_job(&mut self, id: Uuid) -> R<bool> {
        Ok(self.exec("DELETE FROM schedule WHERE id = $1", &[&id])? > 0)
    }

    fn insert_signing_key(&mut self, account: Uuid, integration: Uuid, key: &SigningKey, secret: &str) -> R<()> {
        self.guard(account)?;
        self.exec(
            "INSERT INTO signing_keys (integration_id, kid, account_id, secret, body) VALUES ($1, $2, $3, $4, $5)",
            &[&integration, &key.kid, &account, &secret, &to_doc(key)?],
        )?;
        Ok(())
    }

    fn delete_signing_key(&mut self, account: Uuid, integration: Uuid, kid: &str) -> R<bool> {
        self.guard(account)?;
        Ok(self.exec(
            "DELETE FROM signing_keys WHERE account_id = $1 AND integration_id = $2 AND kid = $3",
            &[&account, &integration, &kid],
        )? > 0)
    }

    fn acquire_lease(&mut self, name: &str, holder: &str, now: Timestamp, ttl_secs: i64) -> R<bool> {
        // Row-locked: of two nodes racing, the second sees the first's lease and does not take it.
        // A row not updated is locked all the same, so the check after it sees what it saw.
        let (until, now, renew_from) = (now.plus_secs(ttl_secs).millis(), now.millis(), lease_renewal(now, ttl_secs));
        let rows = self.rows(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at <= $4 OR (leases.holder = excluded.holder AND leases.expires_at <= $5)
             RETURNING holder",
            &[&name, &holder, &until, &now, &renew_from],
        )?;
        if !rows.is_empty() {
            return Ok(true);
        }
        let held = self.rows(
            "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND expires_at > $3",
            &[&name, &holder, &now],
        )?;
        Ok(!held.is_empty())
    }

    fn release_lease(&mut self, name: &str, holder: &str) -> R<()> {
        self.exec("DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder])?;
        Ok(())
    }

    fn insert_receipt(&mut self, consumer: &str, entry: &LogEntry, handled_by: &str) -> R<bool> {
        let event_id = crate::model::entry_id(entry)?;
        let changed = self.exec(
            "INSERT INTO consumer_receipts (consumer, event_id, account_id, seq, handled_by, handled_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[&consumer, &event_id, &entry.account_id, &entry.seq, &handled_by, &self.now.millis()],
        )?;
        Ok(changed > 0)
    }

    fn touch_agent_connection(&mut self, account: Uuid, agent: Uuid, node: &str, until: Timestamp) -> R<()> {
        self.exec(
            "INSERT INTO agent_connections (agent_id, node, account_id, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (agent_id, node) DO UPDATE SET expires_at = excluded.expires_at",
            &[&agent, &node, &account, &until.millis()],
        )?;
        Ok(())
    }

    fn drop_agent_connection(&mut self, agent: Uuid, node: &str) -> R<()> {
        self.exec("DELETE FROM agent_connections WHERE agent_id = $1 AND node = $2", &[&agent, &node])?;
        Ok(())
    }

    fn put_webhook(&mut self, account: Uuid, webhook: &Webhook) -> R<()> {
        self.exec(
            "INSERT INTO webhooks (id, account_id, secret, body) VALUES ($1, $2, '', $3)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            &[&webhook.id, &account, &to_doc(webhook)?],
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
        let until = previous_until.map(Timestamp::millis);
        self.exec(
            "UPDATE webhooks SET previous_secret = CASE WHEN $4::bigint IS NULL THEN NULL ELSE secret END,
                previous_until = $4, secret = $3 WHERE id = $1 AND account_id = $2",
            &[&id, &account, &secret, &until],
        )?;
        Ok(())
    }

    fn delete_webhook(&mut self, account: Uuid, id: Uuid) -> R<bool> {
        let deleted = self.exec("DELETE FROM webhooks WHERE id = $1 AND account_id = $2", &[&id, &account])?;
        if deleted > 0 {
            self.exec("DELETE FROM webhook_deliveries WHERE webhook_id = $1", &[&id])?;
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
        let inserted = self.exec(
            "INSERT INTO webhook_deliveries (id, account_id, webhook_id, event_id, event_type, payload, status,
                next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7) ON CONFLICT DO NOTHING",
            &[&id, &account, &webhook, &event_id, &event_type, &payload, &self.now.millis()],
        )?;
        Ok((inserted > 0).then_some(id))
    }

    fn claim_deliveries(
        &mut self,
        now: Timestamp,
        per_endpoint: i64,
        limit: usize,
        lease_ms: i64,
    ) -> R<Vec<ClaimedDelivery>> {
        // Endpoint by endpoint, through the queue indexes; SKIP LOCKED so nodes claiming at
        // once take different deliveries.
        let webhooks: Vec<Uuid> =
            self.rows("SELECT id FROM webhooks", &[])?.iter().map(|r| Ok(r.try_get(0)?)).collect::<R<_>>()?;
        let mut claimed = Vec::new();
        for webhook in webhooks {
            if claimed.len() >= limit {
                break;
            }
            let inflight: i64 = self
                .scalar(
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending' AND lease_until > $2",
                    &[&webhook, &now.millis()],
                )?
                .unwrap_or(0);
            let room = (per_endpoint - inflight).min((limit - claimed.len()) as i64);
            if room <= 0 {
                continue;
            }
            let rows = self.rows(
                "UPDATE webhook_deliveries SET lease_until = $4 WHERE id IN (
                    SELECT id FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending'
                    AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2)
                    ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, account_id, webhook_id, event_id, payload, attempt_count",
                &[&webhook, &now.millis(), &room, &(now.millis() + lease_ms)],
            )?;
            for r in &rows {
                claimed.push(ClaimedDelivery {
                    id: r.try_get(0)?,
                    account_id: r.try_get(1)?,
                    webhook_id: r.try_get(2)?,
                    event_id: r.try_get(3)?,
                    payload: r.try_get(4)?,
                    attempts: r.try_get(5)?,
                });
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
        let Some(attempts) =
            self.scalar::<String>("SELECT attempts FROM webhook_deliveries WHERE id = $1 FOR UPDATE", &[&id])?
        else {
            return Ok(());
        };
        let mut list: Vec<Attempt> = serde_json::from_str(&attempts)?;
        list.push(attempt.clone());
        let next = next.map(Timestamp::millis);
        self.exec(
            "UPDATE webhook_deliveries SET attempts = $2, attempt_count = $3, status = $4, next_attempt_at = $5,
                lease_until = NULL WHERE id = $1",
            &[&id, &to_doc(&list)?, &(list.len() as i64), &status.as_str(), &next],
        )?;
        Ok(())
    }

    fn retry_delivery(&mut self, account: Uuid, webhook: Uuid, id: Uuid, now: Timestamp) -> R<bool> {
        Ok(self.exec(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, lease_until = NULL
             WHERE id = $1 AND account_id = $2 AND webhook_id = $3",
            &[&id, &account, &webhook, &now.millis()],
        )? > 0)
    }

    fn fail_pending_deliveries(&mut self, webhook: Uuid) -> R<u64> {
        self.exec(
            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL
             WHERE webhook_id = $1 AND status = 'pending'",
            &[&webhook],
        )
    }

    fn insert_sdk_session(&mut self, session: &SdkSession, hash: &str) -> R<()> {
        self.guard(session.account_id)?;
        self.exec(
            "INSERT INTO sdk_sessions (hash, id, account_id, customer_id, body) VALUES ($1, $2, $3, $4, $5)",
            &[&hash, &session.id, &session.account_id, &session.customer_id, &to_doc(session)?],
        )?;
        Ok(())
    }
}
