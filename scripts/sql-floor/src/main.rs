//! The SQL one `ingest` message costs the SQLite writer, with nothing else: no HTTP, no JSON, no
//! domain logic, no consumers. It writes messages as `parley bench ingest` does (64 clients
//! over 1,000 conversations, about 30 messages a commit) with the writer's statements and
//! settings of `crates/store/src/sqlite` (schema after every migration, `conn.rs`'s
//! conversation update, `messages.rs`'s event insert, a savepoint around each command, the
//! account's `last_seq` once a commit), a checkpointer thread copying the WAL back, and the WAL
//! starting over about every 50,000 pages as `checkpointer.rs` has it. It prints the writer's
//! and the checkpointer's CPU time per message. `CACHE_KIB` sets the writer's page cache.
//!
//! A variant leaves one part out or changes it, to show what that part costs:
//!
//! | variant     | what changes                                                           |
//! |-------------|------------------------------------------------------------------------|
//! | `all`       | nothing: the server's statements as they are                           |
//! | `nosave`    | no savepoint around each command                                       |
//! | `noconv`    | no conversation row written at all (neither its document nor its link)  |
//! | `onerow`    | the document and the link to the last event set by one `UPDATE`, not two |
//! | `narrow`    | what a message changes (count, times, link) in a narrow row of a table of its own; the wide row untouched |
//! | `narrow2`   | `narrow` by two statements: the count and times, then the link (as the server has it) |
//! | `notime`    | no time index (`events_time`)                                          |
//! | `nomid`     | no message-id index (`events_message_id`)                              |
//! | `page1k`, `page2k` | `all` with pages of 1,024 or 2,048 bytes instead of 4,096       |
//!
//! Two settings change any variant: `SAVEPOINTS=0` runs the commands without a savepoint each
//! (as the server's writer runs a batch of messages since step 25), and `EVENTS` the log's
//! table: `keyed` by one integer, the account's number above the seq (the server's since
//! step 29, `sqlite/keys.rs`), `rowid` by SQLite's own rowid with `(account_id, seq)` unique
//! beside it; unset, by `(account_id, seq)` without a rowid (the server's before step 29).
//!
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection};

const CONVERSATIONS: usize = 1000;
const BATCH: usize = 30;
/// The bodies' sizes in a `parley bench ingest` database (average `length(body)`).
const EVENT_BODY: usize = 817;
const CONVERSATION_BODY: usize = 459;
/// Commits between two starts of the WAL from its beginning.
const START_OVER_EVERY: u64 = 1000;

const SCHEMA: &str = "
CREATE TABLE conversations (id BLOB PRIMARY KEY, account_id BLOB NOT NULL, integration_id BLOB NOT NULL,
    customer_id BLOB NOT NULL, status TEXT NOT NULL, assignee_id BLOB, group_id BLOB, priority INTEGER NOT NULL,
    queued_at INTEGER, body TEXT NOT NULL, first_response_at INTEGER, tag_list TEXT, last_event_seq INTEGER,
    event_count INTEGER NOT NULL DEFAULT 0);
CREATE INDEX conversations_account ON conversations (account_id, id);
CREATE INDEX conversations_status ON conversations (account_id, status, id);
CREATE INDEX conversations_assignee ON conversations (account_id, assignee_id, id);
CREATE INDEX conversations_group ON conversations (account_id, group_id, status, id);
CREATE INDEX conversations_customer ON conversations (account_id, customer_id, integration_id, id);
CREATE INDEX conversations_first_response ON conversations (account_id, group_id, first_response_at);
CREATE INDEX conversations_queue ON conversations (account_id, status, assignee_id, priority, queued_at);
CREATE INDEX conversations_load ON conversations (account_id, assignee_id, status);
CREATE INDEX conversations_queue_position
    ON conversations (account_id, group_id, status, assignee_id, priority, queued_at, id);
CREATE TABLE events (account_id BLOB NOT NULL, seq INTEGER NOT NULL, id BLOB NOT NULL, type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL, conversation_id BLOB, body TEXT NOT NULL, message_seq INTEGER, message_id BLOB,
    client_message_id TEXT, author_type TEXT, author_id BLOB, conversation_prev INTEGER, conversation_n INTEGER,
    PRIMARY KEY (account_id, seq)) WITHOUT ROWID;
CREATE INDEX events_time ON events (account_id, occurred_at, seq);
CREATE INDEX events_message_marks ON events (account_id, conversation_id, message_seq) WHERE message_seq % 64 = 1;
CREATE INDEX events_message_id ON events (message_id) WHERE message_id IS NOT NULL;
CREATE UNIQUE INDEX events_client_message ON events (conversation_id, client_message_id)
    WHERE client_message_id IS NOT NULL;
CREATE INDEX events_conversation_marks ON events (account_id, conversation_id, seq) WHERE conversation_n % 16 = 1;
CREATE TABLE accounts (id BLOB PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE conversation_heads (id BLOB PRIMARY KEY, messages_count INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    last_customer_message_at INTEGER, last_event_seq INTEGER, event_count INTEGER NOT NULL) WITHOUT ROWID;
";

/// The indexes a variant drops.
fn dropped(variant: &str) -> &'static [&'static str] {
    match variant {
        "notime" => &["events_time"],
        "nomid" => &["events_message_id"],
        _ => &[],
    }
}

const UPDATE_CONVERSATION: &str = "UPDATE conversations SET body = ?10
    WHERE id = ?1 AND account_id = ?2 AND integration_id = ?3 AND customer_id = ?4 AND status = ?5
    AND assignee_id IS ?6 AND group_id IS ?7 AND priority = ?8 AND queued_at IS ?9
    AND first_response_at IS ?11 AND tag_list = ?12";
const UPDATE_CONVERSATION_AND_LINK: &str = "UPDATE conversations SET body = ?10, last_event_seq = ?13, event_count = ?14
    WHERE id = ?1 AND account_id = ?2 AND integration_id = ?3 AND customer_id = ?4 AND status = ?5
    AND assignee_id IS ?6 AND group_id IS ?7 AND priority = ?8 AND queued_at IS ?9
    AND first_response_at IS ?11 AND tag_list = ?12";
const UPDATE_LINK: &str = "UPDATE conversations SET last_event_seq = ?2, event_count = ?3 WHERE id = ?1";
const UPDATE_HEAD: &str = "UPDATE conversation_heads SET messages_count = ?2, updated_at = ?3,
    last_customer_message_at = ?3, last_event_seq = ?4, event_count = ?5 WHERE id = ?1";
const UPDATE_ACTIVITY: &str =
    "UPDATE conversation_heads SET messages_count = ?2, updated_at = ?3, last_customer_message_at = ?3 WHERE id = ?1";
const UPDATE_HEAD_LINK: &str = "UPDATE conversation_heads SET last_event_seq = ?2, event_count = ?3 WHERE id = ?1";
const INSERT_EVENT: &str = "INSERT INTO events (account_id, seq, id, type, occurred_at, conversation_id, body,
    message_seq, message_id, client_message_id, author_type, author_id, conversation_prev, conversation_n)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

const INSERT_KEYED: &str = "INSERT INTO events (account_id, seq, id, type, occurred_at, conversation_id, body,
    message_seq, message_id, client_message_id, author_type, author_id, conversation_prev, conversation_n, k)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// 16 pseudo-random bytes (ids at random places, as UUIDs are in the indexes that lead with one).
fn random_id(state: &mut u64) -> Vec<u8> {
    let mut id = Vec::with_capacity(16);
    for _ in 0..2 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        id.extend_from_slice(&state.to_le_bytes());
    }
    id
}

struct Conversation {
    id: Vec<u8>,
    integration: Vec<u8>,
    customer: Vec<u8>,
    messages: i64,
    last_event: i64,
}

fn main() -> rusqlite::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).cloned().unwrap_or_else(|| "all".into());
    let messages: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("parley-sql-floor-{variant}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("floor.db");

    let db = Connection::open(&path)?;
    let page_size = match variant.as_str() {
        "page1k" => 1024,
        "page2k" => 2048,
        _ => 4096,
    };
    db.execute_batch(&format!("PRAGMA page_size = {page_size}"))?;
    db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    // The writer's settings (`sqlite/mod.rs`); the checkpointer thread below copies the WAL back.
    // `CACHE_KIB` tries another size of the writer's page cache (the server's is 4,000 KiB).
    let cache_kib: u64 = std::env::var("CACHE_KIB").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    db.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{cache_kib}; PRAGMA mmap_size = 1099511627776;
         PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;"
    ))?;
    let events = std::env::var("EVENTS").unwrap_or_default();
    let schema = match events.as_str() {
        "rowid" => SCHEMA.replace("PRIMARY KEY (account_id, seq)) WITHOUT ROWID;", "UNIQUE (account_id, seq));"),
        "keyed" => SCHEMA
            .replace("CREATE TABLE events (account_id", "CREATE TABLE events (k INTEGER PRIMARY KEY, account_id")
            .replace(",\n    PRIMARY KEY (account_id, seq)) WITHOUT ROWID;", ");"),
        _ => SCHEMA.to_string(),
    };
    db.execute_batch(&schema)?;
    for index in dropped(&variant) {
        db.execute_batch(&format!("DROP INDEX {index}"))?;
    }
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let account = random_id(&mut rng);
    db.execute("INSERT INTO accounts (id, last_seq) VALUES (?1, 0)", [&account])?;
    let (conversation_body, event_body) = ("c".repeat(CONVERSATION_BODY), "e".repeat(EVENT_BODY));
    let mut conversations: Vec<Conversation> = (0..CONVERSATIONS)
        .map(|_| Conversation {
            id: random_id(&mut rng),
            integration: random_id(&mut rng),
            customer: random_id(&mut rng),
            messages: 0,
            last_event: 0,
        })
        .collect();
    for c in &conversations {
        db.execute(
            "INSERT INTO conversation_heads (id, messages_count, updated_at, event_count) VALUES (?1, 0, 0, 0)",
            [&c.id],
        )?;
        db.execute(
            "INSERT INTO conversations (id, account_id, integration_id, customer_id, status, priority, queued_at, body, tag_list)
             VALUES (?1, ?2, ?3, ?4, 'open', 0, 1, ?5, '')",
            params![c.id, account, c.integration, c.customer, conversation_body],
        )?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let checkpointer = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || -> rusqlite::Result<f64> {
            let db = Connection::open(&path)?;
            db.execute_batch("PRAGMA mmap_size = 1099511627776;")?;
            let started = thread_cpu_seconds();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            }
            Ok(thread_cpu_seconds() - started)
        })
    };

    let savepoints = variant != "nosave" && std::env::var("SAVEPOINTS").as_deref() != Ok("0");
    let no_id: Option<Vec<u8>> = None;
    let started = thread_cpu_seconds();
    // The writer's own passes that let the WAL start over (counted as checkpointing).
    let (mut commits, mut writer_checkpoints) = (0u64, 0f64);
    let (mut seq, mut next) = (0i64, 0usize);
    while seq < messages {
        db.execute_batch("BEGIN IMMEDIATE")?;
        for _ in 0..BATCH {
            // The bench's clients walk the conversations with a stride of 7919.
            next = (next + 7919) % CONVERSATIONS;
            let c = &mut conversations[next];
            c.messages += 1;
            seq += 1;
            let now = 1_700_000_000_000i64 + seq / 20;
            if savepoints {
                db.prepare_cached("SAVEPOINT command")?.execute([])?;
            }
            match variant.as_str() {
                "noconv" => {}
                "narrow" => {
                    db.prepare_cached(UPDATE_HEAD)?.execute(params![c.id, c.messages, now, seq, c.messages])?;
                }
                "narrow2" => {
                    db.prepare_cached(UPDATE_ACTIVITY)?.execute(params![c.id, c.messages, now])?;
                    db.prepare_cached(UPDATE_HEAD_LINK)?.execute(params![c.id, seq, c.messages])?;
                }
                _ => {
                    // The document changes with every message (its count, its times), and SQLite
                    // writes a row's page only when the row's bytes change.
                    let body = format!("{:0>width$}", c.messages, width = CONVERSATION_BODY);
                    let row = params![
                        c.id, account, c.integration, c.customer, "open", no_id, no_id, 0, 1, body, None::<i64>, "",
                        seq, c.messages
                    ];
                    if variant == "onerow" {
                        db.prepare_cached(UPDATE_CONVERSATION_AND_LINK)?.execute(row)?;
                    } else {
                        db.prepare_cached(UPDATE_CONVERSATION)?.execute(&row[..12])?;
                        db.prepare_cached(UPDATE_LINK)?.execute(params![c.id, seq, c.messages])?;
                    }
                }
            }
            let message_id = [seq.to_be_bytes(), [0u8; 8]].concat();
            let prev = (c.last_event > 0).then_some(c.last_event);
            let insert = if events == "keyed" { INSERT_KEYED } else { INSERT_EVENT };
            let columns = if events == "keyed" { 15 } else { 14 };
            db.prepare_cached(insert)?.execute(&params![
                account,
                seq,
                random_id(&mut rng),
                "message_received",
                1_700_000_000_000i64 + seq / 20,
                c.id,
                event_body,
                c.messages,
                message_id,
                None::<String>,
                "customer",
                c.customer,
                prev,
                c.messages,
                (1i64 << 40) | seq
            ][..columns])?;
            c.last_event = seq;
            if savepoints {
                db.prepare_cached("RELEASE command")?.execute([])?;
            }
        }
        // The account's last seq, once a batch (`seqs.rs`).
        db.prepare_cached("UPDATE accounts SET last_seq = ?2 WHERE id = ?1")?.execute(params![account, seq])?;
        db.execute_batch("COMMIT")?;
        commits += 1;
        // As the server's writer does past 50,000 WAL pages (about 1,100 commits here): copy
        // back what the checkpointer has not, so the next commit writes the WAL from its start
        // instead of growing it.
        if commits % START_OVER_EVERY == 0 {
            let before = thread_cpu_seconds();
            // Busy while the checkpointer's own pass runs: wait for it, as the server's writer does.
            loop {
                let (busy, log, copied): (i64, i64, i64) =
                    db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                if busy == 0 && log == copied {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            writer_checkpoints += thread_cpu_seconds() - before;
        }
    }
    let writer = thread_cpu_seconds() - started - writer_checkpoints;
    stop.store(true, Ordering::Relaxed);
    let checkpointer = checkpointer.join().expect("the checkpointer thread")? + writer_checkpoints;
    let wal_bytes = std::fs::metadata(dir.join("floor.db-wal")).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    let per_message = |seconds: f64| seconds * 1e6 / messages as f64;
    println!(
        "{variant}: {messages} messages, {BATCH} a commit, cache {cache_kib} KiB: writer {:.1} µs of CPU per message, checkpointer {:.1} (WAL at the end {} KiB)",
        per_message(writer),
        per_message(checkpointer),
        wal_bytes / 1024
    );
    Ok(())
}
