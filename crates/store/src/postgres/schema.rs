//! The PostgreSQL schema, applied in order at start under an advisory lock (several nodes may
//! start at once). Same shape as the SQLite schema: JSON documents beside the columns queries
//! use; the log keeps its envelope JSON as text so reads return the stored bytes.

use postgres::Client;

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id UUID PRIMARY KEY,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_at BIGINT NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE TABLE api_keys (id UUID PRIMARY KEY, account_id UUID NOT NULL, hash TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE INDEX api_keys_account ON api_keys (account_id, id);
CREATE TABLE agents (id UUID PRIMARY KEY, account_id UUID NOT NULL, body TEXT NOT NULL);
CREATE INDEX agents_account ON agents (account_id, id);
CREATE TABLE groups (id UUID PRIMARY KEY, account_id UUID NOT NULL, body TEXT NOT NULL);
CREATE INDEX groups_account ON groups (account_id, id);
CREATE TABLE integrations (id UUID PRIMARY KEY, account_id UUID NOT NULL, deleted BOOLEAN NOT NULL, body TEXT NOT NULL);
CREATE INDEX integrations_account ON integrations (account_id, id);
CREATE TABLE customers (id UUID PRIMARY KEY, account_id UUID NOT NULL, external_id TEXT, body TEXT NOT NULL);
CREATE INDEX customers_account ON customers (account_id, id);
CREATE UNIQUE INDEX customers_external ON customers (account_id, external_id) WHERE external_id IS NOT NULL;
CREATE TABLE conversations (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL,
    integration_id UUID NOT NULL,
    customer_id UUID NOT NULL,
    status TEXT NOT NULL,
    assignee_id UUID,
    group_id UUID,
    priority BIGINT NOT NULL,
    queued_at BIGINT,
    body TEXT NOT NULL
);
CREATE INDEX conversations_account ON conversations (account_id, id);
CREATE INDEX conversations_status ON conversations (account_id, status, id);
CREATE INDEX conversations_assignee ON conversations (account_id, assignee_id, id);
CREATE INDEX conversations_group ON conversations (account_id, group_id, status, id);
CREATE INDEX conversations_customer ON conversations (account_id, customer_id, integration_id, id);
CREATE TABLE conversation_tags (
    conversation_id UUID NOT NULL,
    account_id UUID NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (conversation_id, tag)
);
CREATE INDEX conversation_tags_tag ON conversation_tags (account_id, tag, conversation_id);
CREATE TABLE messages (
    conversation_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    id UUID NOT NULL UNIQUE,
    account_id UUID NOT NULL,
    author_type TEXT NOT NULL,
    author_id UUID,
    client_message_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_client_id ON messages (conversation_id, client_message_id) WHERE client_message_id IS NOT NULL;
CREATE TABLE read_positions (
    conversation_id UUID NOT NULL,
    reader_type TEXT NOT NULL,
    reader_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, reader_type, reader_id)
);
CREATE TABLE events (
    account_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    id UUID NOT NULL,
    type TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    conversation_id UUID,
    body TEXT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX events_conversation ON events (account_id, conversation_id, seq);
CREATE INDEX events_time ON events (account_id, occurred_at, seq);
CREATE TABLE consumer_cursors (
    consumer TEXT NOT NULL,
    account_id UUID NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (consumer, account_id)
);
CREATE TABLE schedule (
    id UUID PRIMARY KEY,
    account_id UUID,
    kind TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    payload TEXT NOT NULL,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX schedule_due ON schedule (due_at);
CREATE INDEX schedule_kind ON schedule (kind, account_id);
"#,
    r#"
CREATE TABLE signing_keys (
    integration_id UUID NOT NULL,
    kid TEXT NOT NULL,
    account_id UUID NOT NULL,
    secret TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (integration_id, kid)
);
CREATE TABLE sdk_sessions (
    hash TEXT PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    account_id UUID NOT NULL,
    customer_id UUID NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX sdk_sessions_customer ON sdk_sessions (account_id, customer_id);
"#,
    r#"
CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL);
CREATE TABLE consumer_receipts (
    consumer TEXT NOT NULL,
    event_id UUID NOT NULL,
    account_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    handled_by TEXT NOT NULL,
    handled_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
"#,
    r#"
CREATE TABLE agent_connections (
    agent_id UUID NOT NULL,
    node TEXT NOT NULL,
    account_id UUID NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, node)
);
"#,
    r#"
CREATE TABLE webhooks (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until BIGINT,
    body TEXT NOT NULL
);
CREATE INDEX webhooks_account ON webhooks (account_id, id);
CREATE TABLE webhook_deliveries (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL,
    webhook_id UUID NOT NULL,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt_count BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    attempts TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (webhook_id, event_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (webhook_id, id);
"#,
    r#"
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (webhook_id, status, next_attempt_at);
CREATE INDEX webhook_deliveries_inflight ON webhook_deliveries (webhook_id, status, lease_until);
DROP INDEX webhook_deliveries_due;
"#,
    r#"
ALTER TABLE conversations ADD COLUMN first_response_at BIGINT;
CREATE INDEX conversations_first_response ON conversations (account_id, group_id, first_response_at);
CREATE INDEX conversations_queue ON conversations (account_id, status, assignee_id, priority, queued_at);
"#,
    r#"
CREATE INDEX conversations_load ON conversations (account_id, assignee_id, status);
CREATE TABLE routing_offers (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL,
    conversation_id UUID NOT NULL,
    agent_id UUID NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX routing_offers_conversation ON routing_offers (conversation_id, status);
CREATE INDEX routing_offers_agent ON routing_offers (agent_id, status);
CREATE INDEX routing_offers_account ON routing_offers (account_id, status);
"#,
    r#"
CREATE TABLE triggers (
    id UUID PRIMARY KEY,
    account_id UUID NOT NULL,
    event TEXT NOT NULL,
    position BIGINT NOT NULL,
    enabled BOOLEAN NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX triggers_account ON triggers (account_id, id);
CREATE INDEX triggers_event ON triggers (account_id, event, enabled, position);
CREATE TABLE trigger_runs (
    trigger_id UUID NOT NULL,
    conversation_id UUID NOT NULL,
    account_id UUID NOT NULL,
    PRIMARY KEY (trigger_id, conversation_id)
);
"#,
    r#"
CREATE INDEX conversations_queue_position
    ON conversations (account_id, group_id, status, assignee_id, priority, queued_at, id);
"#,
];

/// An arbitrary constant naming Parley's migration lock.
const MIGRATION_LOCK: i64 = 0x7061_726c_6579;

pub fn migrate(db: &mut Client) -> Result<(), StoreError> {
    db.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = apply(db);
    let _ = db.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}

fn apply(db: &mut Client) -> Result<(), StoreError> {
    db.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")?;
    let applied: i64 = db.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.get(0);
    if applied > MIGRATIONS.len() as i64 {
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied}, newer than this binary knows ({}); upgrade Parley",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= applied {
            continue;
        }
        let mut tx = db.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version])?;
        tx.commit()?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}
