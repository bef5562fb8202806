//! The store conformance suite: behaviour every backend must show. Each test takes a fresh
//! store from a factory, so the same tests run against every backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_core::account::Role;
use parley_core::agent::NewAgent;
use parley_core::conversation::Status;
use parley_core::customer::CustomerRef;
use parley_core::event::{Actor, EventDraft, EventType};
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

/// An event of conversation `c` carrying `n` in its data, for a test to find in the log.
fn numbered_note(c: Uuid, n: usize) -> EventDraft {
    EventDraft {
        event_type: EventType::TagsChanged,
        conversation_id: Some(c),
        channel: None,
        actor: Actor::system(),
        data: json!({"n": n}),
    }
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

#[tokio::test]
async fn a_reader_paging_by_cursor_misses_and_repeats_nothing_while_many_write() {
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let limits = Arc::new(Limits::default());
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (store, limits) = (store.clone(), limits.clone());
                tokio::spawn(async move {
                    for i in 0..40 {
                        let limits = limits.clone();
                        let text = format!("w{w} m{i}");
                        store
                            .write(move |tx| {
                                messages::send_message(tx, account, c, customer_text(&text), Actor::system(), &limits)
                            })
                            .await
                            .expect("send");
                    }
                })
            })
            .collect();
        let mut seen: Vec<i64> = Vec::new();
        let mut after = 0;
        let mut idle = 0;
        while idle < 30 {
            let page = store
                .read(move |r| r.log(account, &LogQuery { after, limit: 7, ..LogQuery::default() }))
                .await
                .expect("page");
            if page.is_empty() {
                idle += if writers.iter().all(|w| w.is_finished()) { 1 } else { 0 };
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            after = page.last().expect("event").seq;
            seen.extend(page.iter().map(|e| e.seq));
        }
        for w in writers {
            w.await.expect("writer");
        }
        let last = store.read(move |r| r.last_seq(account)).await.expect("seq");
        assert_eq!(seen, (1..=last).collect::<Vec<_>>(), "every event exactly once, in order");
        store.close().await;
    }
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires() {
    for backend in backends() {
        let store = backend.open(quiet());
        let now = store.write(|tx| Ok(tx.now())).await.expect("now");
        let take = |who: &'static str, at: Timestamp| {
            let store = store.clone();
            async move { store.write(move |tx| tx.acquire_lease("work", who, at, 10)).await.expect("lease") }
        };
        assert!(take("a", now).await, "a free lease is taken");
        assert!(!take("b", now).await, "a held lease is not");
        assert!(take("a", now.plus_secs(5)).await, "the holder renews it once half of it has run");
        assert!(take("a", now.plus_secs(7)).await, "and holds it still, not renewed again before half has run");
        assert!(!take("b", now.plus_secs(12)).await, "the renewal counts from the renewal");
        assert!(take("b", now.plus_secs(16)).await, "an expired lease is taken over (renewed at 5, not at 7)");
        let holder = store.read(|r| r.lease_holder("work")).await.expect("holder");
        assert_eq!(holder.map(|(h, _)| h).as_deref(), Some("b"));
        store.write(|tx| tx.release_lease("work", "b")).await.expect("release");
        assert!(take("a", now.plus_secs(16)).await, "a released lease is free at once");
        // Racing takers: exactly one wins.
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let who = format!("racer-{i}");
                    store.write(move |tx| tx.acquire_lease("race", &who, now, 10)).await.expect("lease")
                })
            })
            .collect();
        let mut winners = 0;
        for r in racers {
            if r.await.expect("racer") {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        store.close().await;
    }
}

#[tokio::test]
async fn a_consumer_is_behind_only_in_the_accounts_with_events_past_its_cursor() {
    for backend in backends() {
        let store = backend.open(quiet());
        let (a, _) = seed(store.as_ref()).await;
        let (b, _) = seed(store.as_ref()).await;
        let behind = |consumer: &'static str, after: Option<Uuid>, limit: usize| {
            let store = store.clone();
            async move { store.read(move |r| r.accounts_behind(consumer, after, limit)).await.expect("behind") }
        };
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(
            behind("c", None, 1000).await,
            both,
            "a consumer that never ran is behind wherever there are events"
        );
        let end = store.read(move |r| r.last_seq(a)).await.expect("seq");
        assert!(end > 0);
        store.write(move |tx| tx.advance_cursor("c", a, end)).await.expect("advance");
        assert_eq!(behind("c", None, 1000).await, vec![b], "an account it has caught up with is not listed");
        assert_eq!(behind("other", None, 1000).await, both, "each consumer has its own cursors");
        assert_eq!(behind("other", None, 1).await, vec![both[0]], "a page at a time");
        assert_eq!(behind("other", Some(both[0]), 1000).await, vec![both[1]], "after the last of a page");
        store.close().await;
    }
}

#[tokio::test]
async fn routing_state_reads_the_same_on_every_backend() {
    use parley_core::agent::AgentStatus;
    use parley_core::routing::{Offer, OfferStatus};
    use parley_store::ops::routing::{route, RoutingPolicy};
    use parley_store::OfferFilter;
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let limits = Arc::new(Limits::default());
        let agent = store
            .write(move |tx| {
                let agent = agents::create_agent(
                    tx,
                    account,
                    NewAgent { kind: None, name: "Ana".into(), email: None, capacity: Some(2) },
                )?;
                messages::send_message(tx, account, c, customer_text("hello"), Actor::system(), &limits)?;
                Ok(agent.id)
            })
            .await
            .expect("seed routing");
        let queued = store.read(move |r| r.queue_of(account, None, 10)).await.expect("queue");
        assert_eq!(queued.iter().map(|c| c.id).collect::<Vec<_>>(), vec![c], "no group: the account-wide queue");
        assert!(store.read(move |r| r.queue_of(account, Some(Uuid::now_v7()), 10)).await.expect("queue").is_empty());

        let routed = store
            .write(move |tx| {
                agents::set_agent_status(tx, account, agent, AgentStatus::Online, Actor::system())?;
                route(tx, account, &RoutingPolicy::default())
            })
            .await
            .expect("route");
        assert_eq!(routed.assigned, 1);
        assert_eq!(store.read(move |r| r.active_count(account, agent)).await.expect("count"), 1);
        assert!(store.read(move |r| r.queue_of(account, None, 10)).await.expect("queue").is_empty());

        let mut offer = Offer {
            id: Uuid::now_v7(),
            conversation_id: c,
            agent_id: agent,
            group_id: None,
            status: OfferStatus::Pending,
            offered_at: Timestamp::from_millis(1),
            expires_at: Timestamp::from_millis(2),
            queued_at: None,
        };
        let written = offer.clone();
        store.write(move |tx| tx.put_offer(account, &written)).await.expect("offer");
        let read = |filter: OfferFilter| {
            let store = store.clone();
            async move { store.read(move |r| r.offers(account, filter)).await.expect("offers") }
        };
        assert_eq!(read(OfferFilter::PendingInAccount).await, vec![offer.clone()]);
        assert_eq!(read(OfferFilter::PendingOfAgent(agent)).await, vec![offer.clone()]);
        assert!(read(OfferFilter::PendingOfAgent(Uuid::now_v7())).await.is_empty());
        offer.status = OfferStatus::Expired;
        let written = offer.clone();
        store.write(move |tx| tx.put_offer(account, &written)).await.expect("offer ends");
        assert!(read(OfferFilter::PendingInAccount).await.is_empty());
        assert_eq!(read(OfferFilter::Conversation(c)).await, vec![offer]);
        store.close().await;
    }
}

/// A page of the log (of the account, or by conversation) is exactly the account's log
/// filtered: whatever the conversations (none, one, several, repeated), the position, the page
/// size, the types and the time range (events share instants here), including pages that start
/// or end between two of a conversation's marks.
#[tokio::test]
async fn a_page_of_the_log_by_time_or_conversation_is_the_accounts_log_filtered() {
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, first) = seed(store.as_ref()).await;
        let integration =
            store.read(move |r| r.conversation(account, first)).await.expect("read").expect("seeded").integration_id;
        let mut conversations = vec![first];
        for name in ["b", "c"] {
            let customer = CustomerRef { external_id: Some(name.into()), ..Default::default() };
            let made = store
                .write(move |tx| {
                    conversations::create_conversation(tx, account, integration, customer, Actor::system())
                })
                .await
                .expect("conversation");
            conversations.push(made.id);
        }
        // 400 events over the three conversations, unevenly, with a tag change now and then;
        // a few commands write to two conversations at once.
        let limits = Arc::new(Limits { tags_per_conversation: 1000, ..Limits::default() });
        let mut state = 17u64;
        for i in 0..200u64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (one, other) = (conversations[(state >> 33) as usize % 3], conversations[(state >> 40) as usize % 2]);
            let written = limits.clone();
            store
                .write(move |tx| {
                    let limits = written;
                    messages::send_message(
                        tx,
                        account,
                        one,
                        customer_text(&format!("m{i}")),
                        Actor::system(),
                        &limits,
                    )?;
                    if i % 5 == 0 {
                        conversations::change_tags(
                            tx,
                            account,
                            other,
                            &[format!("t{i}")],
                            &[],
                            Actor::system(),
                            &limits,
                        )?;
                    }
                    if i % 3 == 0 {
                        messages::send_message(tx, account, other, customer_text("also"), Actor::system(), &limits)?;
                    }
                    Ok(())
                })
                .await
                .expect("write");
            if i % 37 == 0 {
                // A command that appends to a conversation and then fails leaves no link behind.
                let limits = limits.clone();
                let refused = store
                    .write(move |tx| {
                        messages::send_message(tx, account, one, customer_text("undone"), Actor::system(), &limits)?;
                        Err::<(), _>(StoreError::not_found("something"))
                    })
                    .await;
                assert!(refused.is_err());
            }
        }
        let everything = store
            .read(move |r| r.log(account, &LogQuery { limit: 100_000, ..LogQuery::default() }))
            .await
            .expect("the account's log");
        let at = |fraction: usize| everything[everything.len() * fraction / 4].clone();
        let ranges = [
            (None, None),
            (Some(at(1).occurred_at), None),
            (None, Some(at(2).occurred_at)),
            (Some(at(1).occurred_at), Some(at(3).occurred_at)),
        ];
        let (a, b, c) = (conversations[0], conversations[1], conversations[2]);
        let sets = [vec![], vec![a], vec![b], vec![b, c], vec![c, a, c], vec![a, b, c]];
        let kinds =
            [vec![], vec![EventType::MessageReceived], vec![EventType::TagsChanged, EventType::ConversationCreated]];
        let mut checked = 0;
        for ids in &sets {
            for types in &kinds {
                for (since, until) in ranges {
                    for after in [0, at(1).seq, at(2).seq + 1, at(3).seq, everything.len() as i64 + 5] {
                        for limit in [1, 7, 16, 17, 100] {
                            let q = LogQuery {
                                conversation_ids: ids.clone(),
                                since,
                                until,
                                types: types.clone(),
                                after,
                                limit,
                            };
                            let expected: Vec<i64> = everything
                                .iter()
                                .filter(|e| e.seq > after && q.matches(e))
                                .take(limit)
                                .map(|e| e.seq)
                                .collect();
                            let page = store.read(move |r| r.log(account, &q)).await.expect("page");
                            let got: Vec<i64> = page.iter().map(|e| e.seq).collect();
                            assert_eq!(got, expected, "{ids:?} {types:?} {since:?}..{until:?} after {after}, {limit}");
                            checked += usize::from(!expected.is_empty());
                        }
                    }
                }
            }
        }
        assert!(checked > 500, "most queries find something ({checked})");
        // Paged through 7 at a time, a conversation's log is all of its events, once each.
        let mut seen = Vec::new();
        loop {
            let q = LogQuery {
                conversation_ids: vec![b],
                after: seen.last().copied().unwrap_or(0),
                limit: 7,
                ..LogQuery::default()
            };
            let page = store.read(move |r| r.log(account, &q)).await.expect("page");
            if page.is_empty() {
                break;
            }
            seen.extend(page.iter().map(|e| e.seq));
        }
        let all_of_b: Vec<i64> = everything.iter().filter(|e| e.conversation_id == Some(b)).map(|e| e.seq).collect();
        assert!(all_of_b.len() > 100);
        assert_eq!(seen, all_of_b);
        // Another account's conversation reads as nothing.
        let (stranger, _) = seed(store.as_ref()).await;
        let q = LogQuery { conversation_ids: vec![a], limit: 100, ..LogQuery::default() };
        assert!(store.read(move |r| r.log(stranger, &q)).await.expect("page").is_empty());
        store.close().await;
    }
}

#[tokio::test]
async fn a_long_conversation_reads_its_messages_by_any_window() {
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let limits = Arc::new(Limits { tags_per_conversation: 1000, ..Limits::default() });
        // 300 messages; other events of the conversation between some of them, and a
        // client_message_id on every tenth.
        let mut ids = Vec::new();
        for i in 1..=300i64 {
            let limits = limits.clone();
            let sent = store
                .write(move |tx| {
                    if i % 7 == 0 {
                        conversations::change_tags(tx, account, c, &[format!("t{i}")], &[], Actor::system(), &limits)?;
                    }
                    let mut new = customer_text(&format!("m{i}"));
                    new.client_message_id = (i % 10 == 0).then(|| format!("client-{i}"));
                    messages::send_message(tx, account, c, new, Actor::system(), &limits)
                })
                .await
                .expect("send");
            assert_eq!(sent.message.seq, i);
            ids.push(sent.message.id);
        }
        let window = |w: parley_store::MessageWindow, limit: usize| {
            let store = store.clone();
            async move {
                let page = store.read(move |r| r.messages(c, w, limit)).await.expect("read");
                page.iter().map(|m| m.seq).collect::<Vec<i64>>()
            }
        };
        use parley_store::MessageWindow::{After, Before, First};
        assert_eq!(window(First, 50).await, (1..=50).collect::<Vec<_>>());
        for n in [0, 1, 63, 64, 65, 100, 128, 129, 250, 290, 299, 300, 400] {
            let expected: Vec<i64> = (n + 1..=(n + 20).min(300)).collect();
            assert_eq!(window(After(n), 20).await, expected, "after {n}");
        }
        assert!(window(After(i64::MAX), 20).await.is_empty(), "after the largest position");
        for n in [1, 2, 20, 64, 65, 66, 129, 130, 300, 301, i64::MAX] {
            let expected: Vec<i64> = ((n.min(301) - 20).max(1)..n.min(301)).collect();
            assert_eq!(window(Before(n), 20).await, expected, "before {n}");
        }
        for i in [0usize, 63, 64, 199, 299] {
            let id = ids[i];
            let found = store.read(move |r| r.message(c, id)).await.expect("read").expect("found by id");
            assert_eq!(
                (found.seq, found.content.clone()),
                (i as i64 + 1, customer_text(&format!("m{}", i + 1)).content)
            );
        }
        let (other, sixth) = (Uuid::now_v7(), ids[5]);
        assert!(store.read(move |r| r.message(other, sixth)).await.expect("read").is_none(), "another conversation");
        let by_client = store.read(move |r| r.message_by_client_id(c, "client-150")).await.expect("read");
        assert_eq!(by_client.map(|m| m.seq), Some(150));
        assert!(store.read(move |r| r.message_by_client_id(c, "client-151")).await.expect("read").is_none());
        // Sent again with a known client_message_id: the earlier message is answered.
        let again = store
            .write(move |tx| {
                let mut new = customer_text("again");
                new.client_message_id = Some("client-20".into());
                messages::send_message(tx, account, c, new, Actor::system(), &Limits::default())
            })
            .await
            .expect("send again");
        assert_eq!((again.message.seq, again.created), (20, false));
        let agent = parley_store::ReaderRef { kind: AuthorType::Agent, id: Uuid::now_v7() };
        assert_eq!(store.read(move |r| r.count_unread(c, agent)).await.expect("count"), 300);
        for (read, unread) in [(100, 200), (129, 171), (300, 0)] {
            let mid = ids[read - 1];
            let state = store
                .write(move |tx| conversations::mark_read(tx, account, c, agent, Some(mid), Actor::system()))
                .await
                .expect("mark read");
            assert_eq!((state.last_read_seq, state.unread_count), (read as i64, unread));
        }
        store.close().await;
    }
}

/// What a command wrote and then gave up is not seen by the next, and a change committed by
/// another store on the same database (another process, on SQLite) is seen by this one's writes.
#[tokio::test]
async fn writes_read_what_is_committed_not_what_was_undone_or_what_was_seen_before() {
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let tags_seen_by_a_write = |store: Arc<dyn Store>| async move {
            store
                .write(move |tx| Ok(tx.conversation(account, c)?.map(|c| c.tags).unwrap_or_default()))
                .await
                .expect("read in a write")
        };
        let tag = |name: &str| vec![name.to_string()];
        let given_up = store
            .write(move |tx| {
                conversations::change_tags(tx, account, c, &tag("undone"), &[], Actor::system(), &Limits::default())?;
                Err::<(), _>(StoreError::Backend("the command gives up after writing".into()))
            })
            .await;
        assert!(given_up.is_err());
        assert!(tags_seen_by_a_write(store.clone()).await.is_empty(), "the undone write is not seen");

        let other = backend.open(quiet());
        other
            .write(move |tx| {
                conversations::change_tags(tx, account, c, &tag("elsewhere"), &[], Actor::system(), &Limits::default())
            })
            .await
            .expect("another store writes");
        assert_eq!(tags_seen_by_a_write(store.clone()).await, tag("elsewhere"), "the other store's commit is seen");
        other.close().await;
        store.close().await;
    }
}

#[tokio::test]
async fn every_event_takes_the_next_seq_whatever_was_undone_or_written_elsewhere() {
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let note = move |n: usize| numbered_note(c, n);
        // Commands sent at once share batches; every third appends two events and then gives up.
        let writes = (0..60).map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |tx| {
                        tx.append(account, note(n))?;
                        if n % 3 == 0 {
                            tx.append(account, note(n))?;
                            return Err(StoreError::Backend("gives up after appending".into()));
                        }
                        Ok(())
                    })
                    .await
            })
        });
        let mut kept = 0;
        for write in writes.collect::<Vec<_>>() {
            kept += usize::from(write.await.expect("joins").is_ok());
        }
        assert_eq!(kept, 40);
        let other = backend.open(quiet());
        other.write(move |tx| tx.append(account, note(1000)).map(|_| ())).await.expect("another store appends");
        store.write(move |tx| tx.append(account, note(1001)).map(|_| ())).await.expect("the first store appends again");
        other.close().await;

        let log =
            store.read(move |r| r.log(account, &LogQuery { limit: 1000, ..LogQuery::default() })).await.expect("log");
        let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
        let expected: Vec<i64> = (1..=log.len() as i64).collect();
        assert_eq!(seqs, expected, "one seq after another: none lost to an undone command, none taken twice");
        let notes = log.iter().filter(|e| e.event_type == EventType::TagsChanged).count();
        assert_eq!(notes, 42, "the kept commands' events, the other store's and the last one");
        let last = log.len() as i64;
        assert_eq!(store.read(move |r| r.last_seq(account)).await.expect("read"), last);
        assert_eq!(store.write(move |tx| tx.last_seq(account)).await.expect("write"), last);
        store.close().await;
    }
}

/// A conversation reads the same by every path after messages — in a write and in a read, alone,
/// in the list, as its customer's latest, waiting in its queue, and after the store reopens —
/// with the count and times of the messages that were kept: not of one undone, and with those
/// sent by another store on the same database, beside a change of another kind in the same
/// command; and a command reads its own message's count back.
#[tokio::test]
async fn a_conversation_reads_its_messages_count_and_times_by_every_path() {
    for backend in backends() {
        let mut store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let limits = Arc::new(Limits::default());
        let send = |store: Arc<dyn Store>, tag: Option<&'static str>, give_up: bool| {
            let limits = limits.clone();
            async move {
                store
                    .write(move |tx| {
                        if let Some(tag) = tag {
                            conversations::change_tags(tx, account, c, &[tag.into()], &[], Actor::system(), &limits)?;
                        }
                        let sent =
                            messages::send_message(tx, account, c, customer_text("hi"), Actor::system(), &limits)?;
                        if give_up {
                            return Err(StoreError::Backend("the command gives up after sending".into()));
                        }
                        Ok(sent.message.created_at)
                    })
                    .await
            }
        };
        for _ in 0..3 {
            send(store.clone(), None, false).await.expect("send");
        }
        assert!(send(store.clone(), None, true).await.is_err());
        send(store.clone(), Some("vip"), false).await.expect("tag and send");
        let other = backend.open(quiet());
        send(other.clone(), None, false).await.expect("another store sends");
        other.close().await;
        // In one command: a message, the conversation read back with SQL, a change of another kind.
        let seen_in_command = {
            let limits = limits.clone();
            store
                .write_again(move |tx| {
                    messages::send_message(tx, account, c, customer_text("in one"), Actor::system(), &limits)?;
                    // A change of its activity alone, with no event after it.
                    let mut touched = tx.conversation(account, c)?.expect("stored");
                    touched.updated_at = touched.updated_at.plus_millis(1);
                    tx.put_conversation(account, &touched)?;
                    let filter = parley_store::ConversationFilter { limit: 10, ..Default::default() };
                    let (listed, waiting) = (tx.conversations(account, &filter)?, tx.waiting(account, 10)?);
                    assert_eq!(listed[0].updated_at, touched.updated_at, "the list inside the command");
                    assert_eq!(waiting[0].updated_at, touched.updated_at, "the queue inside the command");
                    let counts = (listed[0].messages_count, waiting[0].messages_count);
                    conversations::change_tags(tx, account, c, &["late".into()], &[], Actor::system(), &limits)?;
                    Ok(counts)
                })
                .await
                .expect("one command")
        };
        assert_eq!(seen_in_command, (6, 6), "the command's own message, read back inside it");
        let last = send(store.clone(), None, false).await.expect("send after the other store");

        for reopened in [false, true] {
            if reopened {
                store.close().await;
                store = backend.open(quiet());
            }
            let in_write = store.write(move |tx| tx.conversation(account, c)).await.expect("read").expect("stored");
            assert_eq!(in_write.messages_count, 7, "three, one with a tag change, one from elsewhere, two more");
            assert_eq!(in_write.last_customer_message_at, Some(last));
            assert!(in_write.updated_at >= last);
            let mut tags = in_write.tags.clone();
            tags.sort();
            assert_eq!(tags, vec!["late".to_string(), "vip".to_string()]);
            let (customer, integration) = (in_write.customer_id, in_write.integration_id);
            let read = store
                .read(move |r| {
                    let list = r.conversations(
                        account,
                        &parley_store::ConversationFilter { limit: 10, ..Default::default() },
                    )?;
                    Ok((
                        r.conversation(account, c)?,
                        list,
                        r.latest_conversation(account, customer, integration)?,
                        r.waiting(account, 10)?,
                        r.queue_of(account, in_write.group_id, 10)?,
                    ))
                })
                .await
                .expect("read");
            let (alone, list, latest, waiting, queued) = read;
            assert_eq!(alone.as_ref(), Some(&in_write), "by id");
            assert_eq!(list, vec![in_write.clone()], "in the list");
            assert_eq!(latest.as_ref(), Some(&in_write), "as the customer's latest");
            assert_eq!(waiting, vec![in_write.clone()], "waiting");
            assert_eq!(queued, vec![in_write.clone()], "in its queue");
        }
        store.close().await;
    }
}

/// Commands that may be run again share a commit with each other and with commands that may
/// not; some fail or panic after writing. Whatever a backend does with them (the embedded one
/// runs a row of them under one savepoint and, when one fails, undoes the row and runs the
/// others again), each kept command's writes are there once, with the answer it was given, and
/// nothing of a failed one is.
#[tokio::test]
async fn a_command_that_fails_among_others_that_may_run_again_leaves_no_trace() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    for backend in backends() {
        let store = backend.open(quiet());
        let (account, c) = seed(store.as_ref()).await;
        let limits = Arc::new(Limits { tags_per_conversation: 1000, ..Limits::default() });
        let note = move |n: usize| numbered_note(c, n);
        // What command n does: 0 may run again and is kept, 1 may run again and fails (or
        // panics) after writing, 2 runs once. The first 90 mix all three; in the last 60 every
        // batch holds only commands that may run again, so each begins with a row of them.
        let kind = |n: usize| if n < 90 { n % 3 } else { n % 2 };
        let runs = Arc::new(AtomicUsize::new(0));
        let mut answers = Vec::new();
        for round in [0..90usize, 90..150] {
            // A command that holds the writer, so that the others queue up and share batches.
            let hold = {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .write(|_| {
                            std::thread::sleep(Duration::from_millis(100));
                            Ok(())
                        })
                        .await
                })
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
            let commands = round.map(|n| {
                let (store, limits, runs) = (store.clone(), limits.clone(), runs.clone());
                let command = tokio::spawn(async move {
                    match kind(n) {
                        0 => {
                            store
                                .write_again(move |tx| {
                                    runs.fetch_add(1, Ordering::Relaxed);
                                    conversations::change_tags(
                                        tx,
                                        account,
                                        c,
                                        &[format!("t{n}")],
                                        &[],
                                        Actor::system(),
                                        &limits,
                                    )?;
                                    Ok(tx.append(account, note(n))?.seq)
                                })
                                .await
                        }
                        1 => {
                            store
                                .write_again(move |tx| {
                                    conversations::change_tags(
                                        tx,
                                        account,
                                        c,
                                        &["failed".into()],
                                        &[],
                                        Actor::system(),
                                        &limits,
                                    )?;
                                    tx.append(account, note(n))?;
                                    if n % 10 == 1 {
                                        panic!("a command panics after writing");
                                    }
                                    Err(StoreError::Backend("gives up after writing".into()))
                                })
                                .await
                        }
                        _ => store.write(move |tx| Ok(tx.append(account, note(n))?.seq)).await,
                    }
                });
                (n, command)
            });
            for (n, command) in commands.collect::<Vec<_>>() {
                answers.push((n, command.await.expect("joins")));
            }
            hold.await.expect("joins").expect("the holding command");
        }

        let log =
            store.read(move |r| r.log(account, &LogQuery { limit: 1000, ..LogQuery::default() })).await.expect("log");
        let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>(), "one seq after another, none lost or repeated");
        let noted: Vec<(i64, u64)> = log
            .iter()
            .filter(|e| e.event_type == EventType::TagsChanged)
            .filter_map(|e| {
                let body: serde_json::Value = serde_json::from_str(&e.json).expect("json");
                body["data"]["n"].as_u64().map(|n| (e.seq, n))
            })
            .collect();
        let mut kept = Vec::new();
        for (n, answer) in answers {
            match (kind(n), answer) {
                (1, answer) => assert!(answer.is_err(), "command {n} failed"),
                (_, Ok(seq)) => kept.push((seq, n as u64)),
                (_, Err(e)) => panic!("command {n} should have been kept: {e}"),
            }
        }
        kept.sort_unstable();
        assert_eq!(noted, kept, "each kept command's event once, at the seq it was answered with");
        let tags = store.read(move |r| r.conversation(account, c)).await.expect("read").expect("stored").tags;
        let mut expected: Vec<String> = (0..150).filter(|&n| kind(n) == 0).map(|n| format!("t{n}")).collect();
        expected.sort();
        let mut tags = tags;
        tags.sort();
        assert_eq!(tags, expected, "the kept commands' tags, none of a failed one");
        eprintln!("{} runs of the 60 commands that may run again and are kept", runs.load(Ordering::Relaxed));
        store.close().await;
    }
}
