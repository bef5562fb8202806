//! The store conformance suite: behaviour every backend must show. Each test takes a fresh
//! store from a factory, so the same tests run against every backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_core::account::Role;
use parley_core::agent::NewAgent;
use parley_core::conversation::Status;
use parley_core::customer::CustomerRef;
use parley_core::event::Actor;
use parley_core::integration::{ChannelType, NewIntegration};
use parley_core::limits::Limits;
use parley_core::message::{Author, AuthorType, Content, TextContent};
use parley_core::{Timestamp, Uuid};
use parley_store::ops::{accounts, agents, conversations, integrations, messages};
use parley_store::sqlite::{Durability, SqliteConfig, SqliteStore};
use parley_store::{CommitSink, LogEntry, LogQuery, Store, StoreError, StoreExt};
use serde_json::json;

/// A backend under test: opens (and re-opens, for restarts) a store on one database.
trait Backend {
    fn open(&self, sink: CommitSink) -> Arc<dyn Store>;
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    fn open(&self, sink: CommitSink) -> Arc<dyn Store> {
        let config = SqliteConfig { path: self.0.path().join("parley.db"), durability: Durability::Normal };
        Arc::new(SqliteStore::open(config, sink).expect("store opens"))
    }
}

struct Postgres(String);

impl Backend for Postgres {
    fn open(&self, sink: CommitSink) -> Arc<dyn Store> {
        Arc::new(parley_store::postgres::PgStore::open(&self.0, sink).expect("the PostgreSQL store opens"))
    }
}

/// SQLite always; PostgreSQL when `PARLEY_TEST_POSTGRES_URL` names a server (then it must work).
fn backends() -> Vec<Box<dyn Backend>> {
    let mut all: Vec<Box<dyn Backend>> = vec![Box::new(Sqlite(tempfile::tempdir().expect("tempdir")))];
    match std::env::var("PARLEY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = format!("conformance_{}", Uuid::now_v7().simple());
            let url = parley_store::postgres::url_with_new_schema(&url, &schema)
                .unwrap_or_else(|e| panic!("PARLEY_TEST_POSTGRES_URL is set but PostgreSQL is unusable: {e}"));
            all.push(Box::new(Postgres(url)));
        }
        _ => eprintln!("PARLEY_TEST_POSTGRES_URL is not set: the PostgreSQL backend is skipped"),
    }
    all
}

fn quiet() -> CommitSink {
    Arc::new(|_| {})
}

fn key() -> accounts::NewKey {
    accounts::NewKey {
        name: "k".into(),
        role: Role::Admin,
        agent_id: None,
        hash: Uuid::now_v7().to_string(),
        prefix: "pk_".into(),
    }
}

/// An account with an `api` integration and one conversation.
async fn seed(store: &dyn Store) -> (Uuid, Uuid) {
    store
        .write(|tx| {
            let (account, _) = accounts::create_account(tx, "Acme".into(), key())?;
            let input = NewIntegration {
                name: "API".into(),
                channel_type: ChannelType::Api,
                brand: None,
                default_group_id: None,
                reopen_window_seconds: None,
                service_window_seconds: None,
                metadata: None,
                active: None,
            };
            let integration = integrations::create_integration(tx, account.id, input, &Limits::default())?;
            let c = conversations::create_conversation(
                tx,
                account.id,
                integration.id,
                CustomerRef::default(),
                Actor::system(),
            )?;
            Ok((account.id, c.id))
        })
        .await
        .expect("seed")
}

fn customer_text(text: &str) -> messages::NewMessage {
    messages::NewMessage {
        author: Author { author_type: AuthorType::Customer, id: None, name: None },
        content: Content::Text(TextContent { text: text.into(), actions: vec![], payload: None }),
        client_message_id: None,
    }
}

#[tokio::test]
async fn concurrent_commands_commit_together_and_a_refusal_leaves_no_trace() {
    for backend in backends() {
        let committed: Arc<Mutex<Vec<LogEntry>>> = Arc::default();
        let sink_log = committed.clone();
        let store = backend.open(Arc::new(move |entries| sink_log.lock().expect("lock").extend_from_slice(entries)));
        let (account, c) = seed(store.as_ref()).await;
        let limits = Arc::new(Limits::default());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            let limits = limits.clone();
            tasks.push(tokio::spawn(async move {
                let text = if i % 10 == 0 { String::new() } else { format!("m{i}") };
                store
                    .write(move |tx| {
                        messages::send_message(tx, account, c, customer_text(&text), Actor::system(), &limits)
                    })
                    .await
            }));
        }
        let mut ok = 0;
        let mut refused = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => ok += 1,
                Err(StoreError::Domain(_)) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!((ok, refused), (180, 20));
        let messages =
            store.read(move |r| r.messages(c, parley_store::MessageWindow::First, 1000)).await.expect("read");
        let seqs: Vec<i64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=180).collect::<Vec<_>>(), "refused commands took no sequence number");
        let log =
            store.read(move |r| r.log(account, &LogQuery { limit: 1000, ..LogQuery::default() })).await.expect("log");
        let log_seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(log_seqs, (1..=log.len() as i64).collect::<Vec<_>>(), "the log has no holes");
        let mut sunk: Vec<i64> =
            committed.lock().expect("lock").iter().filter(|e| e.account_id == account).map(|e| e.seq).collect();
        // Commits on several connections may reach the sink in any order (live followers
        // restore it by seq); each committed event reaches it exactly once.
        sunk.sort_unstable();
        assert_eq!(sunk, log_seqs, "the commit sink saw every committed event exactly once");
        store.close().await;
    }
}

#[tokio::test]
async fn consumer_cursors_are_durable_and_only_move_forward() {
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let limits = Arc::new(Limits::default());
        for i in 0..5 {
            let limits = limits.clone();
            store
                .write(move |tx| {
                    messages::send_message(tx, account, c, customer_text(&format!("m{i}")), Actor::system(), &limits)
                })
                .await
                .expect("send");
        }
        // A consumer reads from its cursor and advances it after its work.
        let consumer = "test-consumer";
        let position = store.read(move |r| r.cursor(consumer, account)).await.expect("cursor");
        assert_eq!(position, 0);
        let batch = store
            .read(move |r| r.log(account, &LogQuery { after: position, limit: 3, ..LogQuery::default() }))
            .await
            .expect("log");
        let last = batch.last().expect("events").seq;
        store.write(move |tx| tx.advance_cursor(consumer, account, last)).await.expect("advance");
        store.write(move |tx| tx.advance_cursor(consumer, account, 1)).await.expect("advance back");
        store.close().await;

        let store = backend.open(quiet());
        assert_eq!(
            store.read(move |r| r.cursor(consumer, account)).await.expect("cursor"),
            last,
            "survives a restart, never moves back"
        );
        let rest = store
            .read(move |r| r.log(account, &LogQuery { after: last, limit: 1000, ..LogQuery::default() }))
            .await
            .expect("log");
        assert_eq!(rest.first().map(|e| e.seq), Some(last + 1), "the consumer resumes right after its cursor");
        assert_eq!(
            store.read(move |r| r.cursor("other", account)).await.expect("cursor"),
            0,
            "cursors are per consumer"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn scheduled_jobs_survive_restarts_and_leases_expire() {
    for backend in backends() {
        let store = backend.open(quiet());
        let now = store.write(|tx| Ok(tx.now())).await.expect("now");
        let (soon, later) = store
            .write(move |tx| {
                let soon = tx.schedule(None, "wait", now.plus_secs(-1), &json!({"step": 2}))?;
                let later = tx.schedule(None, "wait", now.plus_secs(3600), &json!({"step": 3}))?;
                Ok((soon, later))
            })
            .await
            .expect("schedule");
        store.close().await;

        let store = backend.open(quiet());
        let claimed = store.write(move |tx| tx.claim_due(now, 10, 1)).await.expect("claim");
        assert_eq!(claimed.len(), 1, "only the due job");
        assert_eq!((claimed[0].id, claimed[0].attempts), (soon, 1));
        assert_eq!(claimed[0].payload, json!({"step": 2}));
        let again = store.write(move |tx| tx.claim_due(now, 10, 1)).await.expect("claim");
        assert!(again.is_empty(), "a leased job is not handed out twice");
        // The worker died without completing: after the lease, the job is due again.
        let after_lease = Timestamp::from_millis(now.millis() + 1500);
        let retried = store.write(move |tx| tx.claim_due(after_lease, 10, 1)).await.expect("claim");
        assert_eq!((retried.len(), retried[0].attempts), (1, 2));
        assert!(store.write(move |tx| tx.complete_job(soon)).await.expect("complete"));
        let done = store
            .write(move |tx| tx.claim_due(Timestamp::from_millis(now.millis() + 10_000), 10, 1))
            .await
            .expect("claim");
        assert!(done.is_empty(), "a completed job never runs again");
        let far = Timestamp::from_millis(now.millis() + 3_601_000);
        let last = store.write(move |tx| tx.claim_due(far, 10, 1)).await.expect("claim");
        assert_eq!(last.iter().map(|j| j.id).collect::<Vec<_>>(), vec![later]);
        store.close().await;
    }
}

#[tokio::test]
async fn state_and_events_commit_atomically() {
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let before = store.read(move |r| r.last_seq(account)).await.expect("seq");
        // A command that appends events and then fails leaves neither state nor events.
        let result = store
            .write(move |tx| {
                conversations::change_status(tx, account, c, Status::Ended, Actor::system())?;
                agents::create_agent(
                    tx,
                    account,
                    NewAgent { kind: None, name: String::new(), email: None, capacity: None },
                )
            })
            .await;
        assert!(matches!(result, Err(StoreError::Domain(_))));
        let conversation = store.read(move |r| r.conversation(account, c)).await.expect("read").expect("exists");
        assert_eq!(conversation.status, Status::Created);
        assert_eq!(store.read(move |r| r.last_seq(account)).await.expect("seq"), before);
        // A slow reader does not block the writer.
        let reader = store.read(|_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        });
        let writer = async {
            let started = std::time::Instant::now();
            store
                .write(move |tx| conversations::change_status(tx, account, c, Status::Ended, Actor::system()))
                .await
                .expect("end");
            started.elapsed()
        };
        let (_, waited) = tokio::join!(reader, writer);
        assert!(waited < Duration::from_millis(250), "the writer waited {waited:?} for a reader");
        store.close().await;
    }
}
