//! The primitives a backend implements. Commands ([`crate::ops`]) are written against these
//! traits only, so a backend never re-implements a business rule.

use parley_core::account::{Account, ApiKey};
use parley_core::agent::Agent;
use parley_core::conversation::Conversation;
use parley_core::customer::Customer;
use parley_core::event::{Event, EventDraft};
use parley_core::group::Group;
use parley_core::integration::Integration;
use parley_core::message::Message;
use parley_core::{Timestamp, Uuid};
use serde_json::Value;

use crate::model::{
    ClaimedDelivery, ConversationFilter, LogEntry, LogQuery, MessageWindow, OfferFilter, Page, ReaderRef, ScheduledJob,
    SdkSession, WebhookSecrets,
};
use crate::StoreError;
use parley_core::integration::SigningKey;
use parley_core::routing::Offer;
use parley_core::trigger::{Trigger, TriggerEvent};
use parley_core::webhook::{Attempt, Delivery, DeliveryStatus, Webhook};

type R<T> = Result<T, StoreError>;

/// Everything that can be read. Account-scoped lookups take the account id, so a row of
/// another account is simply not found.
pub trait Reads {
    fn setting(&self, key: &str) -> R<Option<String>>;

    fn account(&self, id: Uuid) -> R<Option<Account>>;
    fn api_key_by_hash(&self, hash: &str) -> R<Option<(Uuid, ApiKey)>>;
    fn api_keys(&self, account: Uuid, page: &Page) -> R<Vec<ApiKey>>;

    fn agent(&self, account: Uuid, id: Uuid) -> R<Option<Agent>>;
    fn agents(&self, account: Uuid, page: &Page) -> R<Vec<Agent>>;
    fn group(&self, account: Uuid, id: Uuid) -> R<Option<Group>>;
    fn groups(&self, account: Uuid, page: &Page) -> R<Vec<Group>>;
    fn integration(&self, account: Uuid, id: Uuid) -> R<Option<Integration>>;
    /// An integration by id alone, with its account: the SDK's entry point names only it.
    fn integration_by_id(&self, id: Uuid) -> R<Option<(Uuid, Integration)>>;
    fn integrations(&self, account: Uuid, page: &Page) -> R<Vec<Integration>>;
    /// Integrations not deleted.
    fn count_integrations(&self, account: Uuid) -> R<i64>;

    fn customer(&self, account: Uuid, id: Uuid) -> R<Option<Customer>>;
    fn customer_by_external_id(&self, account: Uuid, external_id: &str) -> R<Option<Customer>>;
    fn customers(&self, account: Uuid, page: &Page) -> R<Vec<Customer>>;

    fn conversation(&self, account: Uuid, id: Uuid) -> R<Option<Conversation>>;
    fn conversations(&self, account: Uuid, filter: &ConversationFilter) -> R<Vec<Conversation>>;
    /// The place (1 = next) `conversation` holds in its group's queue: open, unassigned
    /// conversations ordered by priority (highest first) then queue time.
    fn queue_position(&self, account: Uuid, conversation: &Conversation) -> R<i64>;
    /// The newest conversation of a customer on an integration.
    fn latest_conversation(&self, account: Uuid, customer: Uuid, integration: Uuid) -> R<Option<Conversation>>;

    fn message(&self, conversation: Uuid, id: Uuid) -> R<Option<Message>>;
    fn message_by_client_id(&self, conversation: Uuid, client_message_id: &str) -> R<Option<Message>>;
    /// A page of messages in ascending `seq` order.
    fn messages(&self, conversation: Uuid, window: MessageWindow, limit: usize) -> R<Vec<Message>>;
    fn read_position(&self, conversation: Uuid, reader: ReaderRef) -> R<i64>;
    /// Messages after `reader`'s read position written by anyone but `reader`.
    fn count_unread(&self, conversation: Uuid, reader: ReaderRef) -> R<i64>;

    /// A page of the log, ascending by `seq`.
    fn log(&self, account: Uuid, query: &LogQuery) -> R<Vec<LogEntry>>;
    /// The last `seq` given out in an account (0 when none).
    fn last_seq(&self, account: Uuid) -> R<i64>;

    /// Where a consumer stands in an account's log (0 before its first event).
    fn cursor(&self, consumer: &str, account: Uuid) -> R<i64>;

    fn signing_keys(&self, account: Uuid, integration: Uuid) -> R<Vec<SigningKey>>;
    /// The secret of key `kid` of an integration, to verify a customer's JWT.
    fn signing_secret(&self, account: Uuid, integration: Uuid, kid: &str) -> R<Option<String>>;
    fn sdk_session_by_hash(&self, hash: &str) -> R<Option<SdkSession>>;

    /// The accounts whose log holds events past `consumer`'s cursor, in id order, a page at a
    /// time: the accounts a consumer's round has work in (the others cost it nothing).
    fn accounts_behind(&self, consumer: &str, after: Option<Uuid>, limit: usize) -> R<Vec<Uuid>>;
    /// Who holds a lease now (even if expired).
    fn lease_holder(&self, name: &str) -> R<Option<(String, Timestamp)>>;
    /// A consumer's receipts in an account: (seq, node that handled it), by seq.
    fn receipts(&self, consumer: &str, account: Uuid) -> R<Vec<(i64, String)>>;
    /// Whether a node other than `node` holds a live connection of the agent at `now`.
    fn agent_connected_elsewhere(&self, agent: Uuid, node: &str, now: Timestamp) -> R<bool>;

    /// The conversations waiting for a human (open, unassigned), in queue order: by group,
    /// then priority (highest first), then the time they were queued.
    fn waiting(&self, account: Uuid, limit: usize) -> R<Vec<Conversation>>;
    /// One group's queue in order (`None`: the conversations waiting without a group).
    fn queue_of(&self, account: Uuid, group: Option<Uuid>, limit: usize) -> R<Vec<Conversation>>;
    /// A group's waits (queued → first response) of the conversations first answered since
    /// `since`, in milliseconds.
    fn first_response_waits(&self, account: Uuid, group: Uuid, since: Timestamp) -> R<Vec<i64>>;
    /// The conversations an agent handles now (assigned and not ended or blocked).
    fn active_count(&self, account: Uuid, agent: Uuid) -> R<i64>;
    /// The conversations of a group in agents' hands (assigned and not ended or blocked).
    fn group_active_count(&self, account: Uuid, group: Uuid) -> R<i64>;
    fn offers(&self, account: Uuid, filter: OfferFilter) -> R<Vec<Offer>>;
    /// Conversations waiting for a human in the whole account.
    fn queue_size(&self, account: Uuid) -> R<i64>;
    /// A customer's conversations other than `except` that an agent or bot handled, up to `cap`.
    fn handled_conversations(&self, account: Uuid, customer: Uuid, except: Uuid, cap: i64) -> R<i64>;

    fn trigger(&self, account: Uuid, id: Uuid) -> R<Option<Trigger>>;
    fn triggers(&self, account: Uuid, page: &Page) -> R<Vec<Trigger>>;
    /// The enabled triggers of one event, in `position` order (then creation).
    fn triggers_for(&self, account: Uuid, event: TriggerEvent) -> R<Vec<Trigger>>;
    /// How many triggers the account has, and the highest position (0 when none).
    fn trigger_count(&self, account: Uuid) -> R<(i64, i64)>;
    /// Whether the trigger already ran on the conversation (`run_once_per_conversation`).
    fn trigger_ran(&self, trigger: Uuid, conversation: Uuid) -> R<bool>;

    fn webhook(&self, account: Uuid, id: Uuid) -> R<Option<Webhook>>;
    fn webhooks(&self, account: Uuid, page: &Page) -> R<Vec<Webhook>>;
    fn webhook_secrets(&self, account: Uuid, id: Uuid) -> R<Option<WebhookSecrets>>;
    /// A webhook's deliveries, newest first, optionally of one status, before the `before` id.
    fn deliveries(
        &self,
        account: Uuid,
        webhook: Uuid,
        status: Option<DeliveryStatus>,
        before: Option<Uuid>,
        limit: usize,
    ) -> R<Vec<Delivery>>;
    fn delivery(&self, account: Uuid, webhook: Uuid, id: Uuid) -> R<Option<Delivery>>;
}

/// Writes, inside one transaction. Rows are written whole ("put"): the command computed the
/// new state with the core and hands it over.
pub trait Tx: Reads {
    /// The commit clock: never runs backwards within one store.
    fn now(&self) -> Timestamp;

    fn put_setting(&mut self, key: &str, value: &str) -> R<()>;

    fn insert_account(&mut self, account: &Account) -> R<()>;
    fn insert_api_key(&mut self, account: Uuid, key: &ApiKey, hash: &str) -> R<()>;
    fn delete_api_key(&mut self, account: Uuid, id: Uuid) -> R<bool>;

    fn put_agent(&mut self, account: Uuid, agent: &Agent) -> R<()>;
    fn put_group(&mut self, account: Uuid, group: &Group) -> R<()>;
    fn put_integration(&mut self, account: Uuid, integration: &Integration) -> R<()>;
    fn put_customer(&mut self, account: Uuid, customer: &Customer) -> R<()>;
    fn put_conversation(&mut self, account: Uuid, conversation: &Conversation) -> R<()>;
    fn put_offer(&mut self, account: Uuid, offer: &Offer) -> R<()>;
    fn put_trigger(&mut self, account: Uuid, trigger: &Trigger) -> R<()>;
    fn delete_trigger(&mut self, account: Uuid, id: Uuid) -> R<bool>;
    fn insert_trigger_run(&mut self, account: Uuid, trigger: Uuid, conversation: Uuid) -> R<()>;
    /// Stores a message. The same command must then append the `message_received` or
    /// `message_sent` event carrying it: the embedded store keeps the message in that event's
    /// row, and refuses a command that stores a message without it.
    fn insert_message(&mut self, account: Uuid, message: &Message) -> R<()>;
    /// Moves a read position forward (never back); answers whether it moved.
    fn advance_read_position(&mut self, conversation: Uuid, reader: ReaderRef, seq: i64) -> R<bool>;

    /// Appends an event to the account's log with the next `seq`, in this transaction.
    fn append(&mut self, account: Uuid, draft: EventDraft) -> R<Event>;

    /// Moves a consumer's cursor forward (never back).
    fn advance_cursor(&mut self, consumer: &str, account: Uuid, position: i64) -> R<()>;

    fn schedule(&mut self, account: Option<Uuid>, kind: &str, due_at: Timestamp, payload: &Value) -> R<Uuid>;
    /// Claims up to `limit` jobs due at `now` for `lease_secs`: a claimed job is not handed out
    /// again until its lease runs out, so a worker that dies mid-job is replaced, not doubled.
    fn claim_due(&mut self, now: Timestamp, limit: usize, lease_secs: i64) -> R<Vec<ScheduledJob>>;
    /// Removes a finished job; answers whether it existed.
    fn complete_job(&mut self, id: Uuid) -> R<bool>;

    fn insert_signing_key(&mut self, account: Uuid, integration: Uuid, key: &SigningKey, secret: &str) -> R<()>;
    fn delete_signing_key(&mut self, account: Uuid, integration: Uuid, kid: &str) -> R<bool>;
    fn insert_sdk_session(&mut self, session: &SdkSession, hash: &str) -> R<()>;

    /// Takes or renews lease `name` for `holder` until `now + ttl_secs`: it succeeds when the
    /// lease is free, expired, or already `holder`'s. Answers whether `holder` holds it now (and
    /// then until `now + ttl_secs / 2` at least). A lease of `holder`'s is renewed only once half
    /// of it has run, so a holder that asks at every poll writes once per half lease, not once
    /// per poll: on SQLite every commit makes each reader drop its map of the database file.
    fn acquire_lease(&mut self, name: &str, holder: &str, now: Timestamp, ttl_secs: i64) -> R<bool>;
    fn release_lease(&mut self, name: &str, holder: &str) -> R<()>;
    /// Records that `consumer` handled an event; false if it already had.
    fn insert_receipt(&mut self, consumer: &str, entry: &LogEntry, handled_by: &str) -> R<bool>;
    /// Notes that `node` holds a live connection of the agent until `until` (renewed while it does).
    fn touch_agent_connection(&mut self, account: Uuid, agent: Uuid, node: &str, until: Timestamp) -> R<()>;
    fn drop_agent_connection(&mut self, agent: Uuid, node: &str) -> R<()>;

    fn put_webhook(&mut self, account: Uuid, webhook: &Webhook) -> R<()>;
    /// Sets the signing secret; `previous_until` keeps the old one valid until then.
    fn set_webhook_secret(&mut self, account: Uuid, id: Uuid, secret: &str, previous_until: Option<Timestamp>)
        -> R<()>;
    fn delete_webhook(&mut self, account: Uuid, id: Uuid) -> R<bool>;
    /// Queues one event for one endpoint (once: a second insert of the pair is ignored).
    fn insert_delivery(
        &mut self,
        account: Uuid,
        webhook: Uuid,
        event_id: Uuid,
        event_type: &str,
        payload: &str,
    ) -> R<Option<Uuid>>;
    /// Claims due deliveries for `lease_ms`, at most `per_endpoint` in flight per endpoint.
    fn claim_deliveries(
        &mut self,
        now: Timestamp,
        per_endpoint: i64,
        limit: usize,
        lease_ms: i64,
    ) -> R<Vec<ClaimedDelivery>>;
    /// Records an attempt and what follows: succeeded, failed, or pending again at `next`.
    fn record_attempt(&mut self, id: Uuid, attempt: &Attempt, status: DeliveryStatus, next: Option<Timestamp>)
        -> R<()>;
    /// Makes a delivery due now again (a manual retry); false if there is no such delivery.
    fn retry_delivery(&mut self, account: Uuid, webhook: Uuid, id: Uuid, now: Timestamp) -> R<bool>;
    /// Ends an endpoint's pending deliveries as failed (it was disabled).
    fn fail_pending_deliveries(&mut self, webhook: Uuid) -> R<u64>;
}
