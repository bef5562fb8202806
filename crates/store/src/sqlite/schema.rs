//! The SQLite schema, applied in order at start. A migration never changes once released:
//! later changes are new entries.
//!
//! Entities are stored as a JSON document (`body`) beside the columns that queries filter or
//! sort on; the log keeps its envelope JSON so reads return stored bytes without re-encoding.

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE accounts (
    id BLOB PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);

CREATE TABLE api_keys (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE INDEX api_keys_account ON api_keys (account_id, id);

CREATE TABLE agents (id BLOB PRIMARY KEY, account_id BLOB NOT NULL, body TEXT NOT NULL);
CREATE INDEX agents_account ON agents (account_id, id);

CREATE TABLE groups (id BLOB PRIMARY KEY, account_id BLOB NOT NULL, body TEXT NOT NULL);
CREATE INDEX groups_account ON groups (account_id, id);

CREATE TABLE integrations (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX integrations_account ON integrations (account_id, id);

CREATE TABLE customers (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    external_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX customers_account ON customers (account_id, id);
CREATE UNIQUE INDEX customers_external ON customers (account_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE conversations (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    integration_id BLOB NOT NULL,
    customer_id BLOB NOT NULL,
    status TEXT NOT NULL,
    assignee_id BLOB,
    group_id BLOB,
    priority INTEGER NOT NULL,
    queued_at INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX conversations_account ON conversations (account_id, id);
CREATE INDEX conversations_status ON conversations (account_id, status, id);
CREATE INDEX conversations_assignee ON conversations (account_id, assignee_id, id);
CREATE INDEX conversations_group ON conversations (account_id, group_id, status, id);
CREATE INDEX conversations_customer ON conversations (account_id, customer_id, integration_id, id);

CREATE TABLE conversation_tags (
    conversation_id BLOB NOT NULL,
    account_id BLOB NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (conversation_id, tag)
) WITHOUT ROWID;
CREATE INDEX conversation_tags_tag ON conversation_tags (account_id, tag, conversation_id);

CREATE TABLE messages (
    conversation_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    id BLOB NOT NULL UNIQUE,
    account_id BLOB NOT NULL,
    author_type TEXT NOT NULL,
    author_id BLOB,
    client_message_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_client_id ON messages (conversation_id, client_message_id)
    WHERE client_message_id IS NOT NULL;

CREATE TABLE read_positions (
    conversation_id BLOB NOT NULL,
    reader_type TEXT NOT NULL,
    reader_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, reader_type, reader_id)
) WITHOUT ROWID;

CREATE TABLE events (
    account_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    id BLOB NOT NULL,
    type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    conversation_id BLOB,
    body TEXT NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_conversation ON events (account_id, conversation_id, seq);
CREATE INDEX events_time ON events (account_id, occurred_at, seq);

CREATE TABLE consumer_cursors (
    consumer TEXT NOT NULL,
    account_id BLOB NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (consumer, account_id)
) WITHOUT ROWID;

CREATE TABLE schedule (
    id BLOB PRIMARY KEY,
    account_id BLOB,
    kind TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    lease_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX schedule_due ON schedule (due_at);
CREATE INDEX schedule_kind ON schedule (kind, account_id);
"#,
    r#"
CREATE TABLE signing_keys (
    integration_id BLOB NOT NULL,
    kid TEXT NOT NULL,
    account_id BLOB NOT NULL,
    secret TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (integration_id, kid)
) WITHOUT ROWID;

CREATE TABLE sdk_sessions (
    hash TEXT PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    account_id BLOB NOT NULL,
    customer_id BLOB NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX sdk_sessions_customer ON sdk_sessions (account_id, customer_id);
"#,
    r#"
CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE consumer_receipts (
    consumer TEXT NOT NULL,
    event_id BLOB NOT NULL,
    account_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    handled_by TEXT NOT NULL,
    handled_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
"#,
    r#"
CREATE TABLE agent_connections (
    agent_id BLOB NOT NULL,
    node TEXT NOT NULL,
    account_id BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, node)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE webhooks (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_until INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX webhooks_account ON webhooks (account_id, id);
CREATE TABLE webhook_deliveries (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    webhook_id BLOB NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
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
ALTER TABLE conversations ADD COLUMN first_response_at INTEGER;
CREATE INDEX conversations_first_response ON conversations (account_id, group_id, first_response_at);
CREATE INDEX conversations_queue ON conversations (account_id, status, assignee_id, priority, queued_at);
"#,
    r#"
CREATE INDEX conversations_load ON conversations (account_id, assignee_id, status);
CREATE TABLE routing_offers (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    conversation_id BLOB NOT NULL,
    agent_id BLOB NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX routing_offers_conversation ON routing_offers (conversation_id, status);
CREATE INDEX routing_offers_agent ON routing_offers (agent_id, status);
CREATE INDEX routing_offers_account ON routing_offers (account_id, status);
"#,
    r#"
CREATE TABLE triggers (
    id BLOB PRIMARY KEY,
    account_id BLOB NOT NULL,
    event TEXT NOT NULL,
    position INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX triggers_account ON triggers (account_id, id);
CREATE INDEX triggers_event ON triggers (account_id, event, enabled, position);
CREATE TABLE trigger_runs (
    trigger_id BLOB NOT NULL,
    conversation_id BLOB NOT NULL,
    account_id BLOB NOT NULL,
    PRIMARY KEY (trigger_id, conversation_id)
);
"#,
    r#"
CREATE INDEX conversations_queue_position
    ON conversations (account_id, group_id, status, assignee_id, priority, queued_at, id);
"#,
    // The tags as one text (space-separated; a tag has no spaces), so a write can tell that the
    // tag set is unchanged without reading it. NULL (rows written before) never compares equal.
    r#"
ALTER TABLE conversations ADD COLUMN tag_list TEXT;
"#,
    // Messages move into the rows of the events that carry them (`sqlite/messages.rs`): one
    // place per message in each commit instead of two. `events_message_marks`' condition is
    // `messages::mark!()`, word for word.
    r#"
ALTER TABLE events ADD COLUMN message_seq INTEGER;
ALTER TABLE events ADD COLUMN message_id BLOB;
ALTER TABLE events ADD COLUMN client_message_id TEXT;
ALTER TABLE events ADD COLUMN author_type TEXT;
ALTER TABLE events ADD COLUMN author_id BLOB;
UPDATE events SET message_seq = m.seq, message_id = m.id, client_message_id = m.client_message_id,
    author_type = m.author_type, author_id = m.author_id
FROM messages AS m
WHERE events.type IN ('message_received', 'message_sent')
    AND m.conversation_id = events.conversation_id
    AND m.seq = json_extract(events.body, '$.data.message.seq')
    AND m.id = unhex(replace(json_extract(events.body, '$.data.message.id'), '-', ''));
DROP TABLE messages;
DROP INDEX events_conversation;
CREATE INDEX events_conversation ON events (account_id, conversation_id, seq, message_seq);
CREATE INDEX events_message_marks ON events (account_id, conversation_id, message_seq) WHERE message_seq % 64 = 1;
CREATE INDEX events_message_id ON events (message_id) WHERE message_id IS NOT NULL;
CREATE UNIQUE INDEX events_client_message ON events (conversation_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
"#,
    // Each conversation's events linked newest to oldest instead of indexed by conversation
    // (`sqlite/chains.rs`). `events_conversation_marks`' condition is `chains::mark!()`, word
    // for word.
    r#"
ALTER TABLE events ADD COLUMN conversation_prev INTEGER;
ALTER TABLE events ADD COLUMN conversation_n INTEGER;
ALTER TABLE conversations ADD COLUMN last_event_seq INTEGER;
ALTER TABLE conversations ADD COLUMN event_count INTEGER NOT NULL DEFAULT 0;
UPDATE events SET conversation_prev = w.prev, conversation_n = w.n
FROM (SELECT account_id, seq,
        LAG(seq) OVER (PARTITION BY account_id, conversation_id ORDER BY seq) AS prev,
        ROW_NUMBER() OVER (PARTITION BY account_id, conversation_id ORDER BY seq) AS n
      FROM events WHERE conversation_id IS NOT NULL) AS w
WHERE events.account_id = w.account_id AND events.seq = w.seq;
UPDATE conversations SET last_event_seq = h.last, event_count = h.n
FROM (SELECT account_id, conversation_id, MAX(seq) AS last, COUNT(*) AS n
      FROM events WHERE conversation_id IS NOT NULL GROUP BY account_id, conversation_id) AS h
WHERE conversations.id = h.conversation_id AND conversations.account_id = h.account_id;
DROP INDEX events_conversation;
CREATE INDEX events_conversation_marks ON events (account_id, conversation_id, seq) WHERE conversation_n % 16 = 1;
"#,
    // What a message changes in a conversation, in a narrow row of its own (`sqlite/activity.rs`).
    // The documents keep their counts and times: a row without `updated_at` overrides nothing.
    r#"
CREATE TABLE conversation_activity (
    id BLOB PRIMARY KEY,
    messages_count INTEGER,
    updated_at INTEGER,
    last_customer_message_at INTEGER,
    last_event_seq INTEGER,
    event_count INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO conversation_activity (id, last_event_seq, event_count)
SELECT id, last_event_seq, event_count FROM conversations WHERE last_event_seq IS NOT NULL;
ALTER TABLE conversations DROP COLUMN last_event_seq;
ALTER TABLE conversations DROP COLUMN event_count;
"#,
    // The log keyed by one integer, the account's number above the event's seq
    // (`sqlite/keys.rs`). An event whose account is gone keeps its row, under a key of its own.
    // The old table is read in its own order, (account_id, seq): accounts are numbered in the
    // order of their rowids, which for ids made by Parley (UUIDv7, in time order) is the same,
    // so the rows go in at the end of the new table and nothing is sorted (an ORDER BY held the
    // whole log in memory). It rewrites the log once, outside the WAL (`migrate_to`): 53 s for
    // 10.8 million events on the benchmark machine, the file twice its size until new events
    // fill the old table's freed pages.
    r#"
ALTER TABLE accounts ADD COLUMN number INTEGER;
UPDATE accounts SET number = rowid;
CREATE UNIQUE INDEX accounts_number ON accounts (number);
CREATE TABLE events_keyed (
    k INTEGER PRIMARY KEY,
    account_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    id BLOB NOT NULL,
    type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    conversation_id BLOB,
    body TEXT NOT NULL,
    message_seq INTEGER,
    message_id BLOB,
    client_message_id TEXT,
    author_type TEXT,
    author_id BLOB,
    conversation_prev INTEGER,
    conversation_n INTEGER
);
INSERT INTO events_keyed (k, account_id, seq, id, type, occurred_at, conversation_id, body, message_seq, message_id,
    client_message_id, author_type, author_id, conversation_prev, conversation_n)
SELECT ((SELECT number FROM accounts a WHERE a.id = e.account_id) << 40) | e.seq, e.account_id, e.seq, e.id, e.type,
    e.occurred_at, e.conversation_id, e.body, e.message_seq, e.message_id, e.client_message_id, e.author_type,
    e.author_id, e.conversation_prev, e.conversation_n
FROM events e;
DROP TABLE events;
ALTER TABLE events_keyed RENAME TO events;
CREATE INDEX events_time ON events (account_id, occurred_at, seq);
CREATE INDEX events_message_marks ON events (account_id, conversation_id, message_seq) WHERE message_seq % 64 = 1;
CREATE INDEX events_message_id ON events (message_id) WHERE message_id IS NOT NULL;
CREATE UNIQUE INDEX events_client_message ON events (conversation_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
CREATE INDEX events_conversation_marks ON events (account_id, conversation_id, seq) WHERE conversation_n % 16 = 1;
"#,
];

/// The schema version this binary brings a database to.
pub(super) const VERSION: usize = MIGRATIONS.len();

/// Applies every migration the database has not seen, each in its own transaction.
pub fn migrate(db: &mut Connection) -> Result<(), StoreError> {
    migrate_to(db, VERSION)
}

/// Applies the first `version` migrations (tests start from an older schema with it).
pub(super) fn migrate_to(db: &mut Connection, version: usize) -> Result<(), StoreError> {
    db.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")?;
    let applied: i64 = db.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    let pending = applied < version.min(MIGRATIONS.len()) as i64;
    // Migrations run with a rollback journal instead of the WAL: one that rewrites the log then
    // writes it once, into the database file, where through the WAL it wrote it twice (and the
    // WAL, as large as the log, was still to be copied back once the server had started). With
    // another process on the file the switch does not happen and they run through the WAL.
    let switched = pending
        && journal_mode(db, None)? == "wal"
        && journal_mode(db, Some("delete")).is_ok_and(|mode| mode == "delete");
    let migrated = apply(db, applied, version);
    if switched {
        let mode = journal_mode(db, Some("wal"))?;
        if mode != "wal" {
            return Err(StoreError::Backend(format!(
                "cannot switch back to WAL mode after migrating (left in {mode})"
            )));
        }
    }
    migrated?;
    if applied > MIGRATIONS.len() as i64 {
        return Err(StoreError::Backend(format!(
            "the database has schema version {applied}, newer than this binary knows ({}); upgrade Parley",
            MIGRATIONS.len()
        )));
    }
    Ok(())
}

/// Sets the journal mode (`None`: leaves it) and answers the mode the database is in after it.
fn journal_mode(db: &Connection, mode: Option<&str>) -> Result<String, StoreError> {
    let sql = match mode {
        Some(mode) => format!("PRAGMA journal_mode = {mode}"),
        None => "PRAGMA journal_mode".to_string(),
    };
    Ok(db.query_row(&sql, [], |r| r.get::<_, String>(0))?.to_lowercase())
}

/// The migrations after `applied`, up to `version`, each in its own transaction.
fn apply(db: &mut Connection, applied: i64, version: usize) -> Result<(), StoreError> {
    for (i, sql) in MIGRATIONS.iter().enumerate().take(version) {
        let version = i as i64 + 1;
        if version <= applied {
            continue;
        }
        // Said first: a migration that rewrites the log runs for minutes on a large one.
        tracing::info!(version, "applying migration");
        let tx = db.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [version])?;
        tx.commit()?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}
