//! Log consumers whose work must happen once, however many nodes run.
//!
//! For each account, a consumer holds a lease in the database (`consumer:<name>:<account>`).
//! One transaction renews the lease, reads the events after the consumer's cursor, applies the
//! handler's effects and advances the cursor: effects and progress commit together, so an event
//! is handled exactly once. A consumer more than a batch behind reads the batch on a reader
//! first, and its transaction handles it only if the cursor has not moved since. A node that
//! dies stops renewing; when its lease runs out another node takes the account over from the
//! cursor. (The webhook dispatcher, the trigger runner and the router are built on this.)

use std::sync::Arc;
use std::time::Duration;

use parley_core::event::EventType;
use parley_core::Uuid;
use parley_store::{LogEntry, LogQuery, Reads, Store, StoreError, StoreExt, Tx};
use tokio::sync::watch;

use crate::hub::Wake;

const BATCH: usize = 200;

pub trait Handler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Whether the account has nothing for this consumer to do (its cursor then just moves to
    /// the end of the log, without reading it).
    fn idle(&self, _reads: &dyn Reads, _account: Uuid) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// The event types the handler acts on (empty: every type). The others are passed over
    /// without being read out of the log; the cursor moves past them all the same.
    fn wants(&self) -> &'static [EventType] {
        &[]
    }
    /// Applies the effects of a batch of one account's events inside the consumer's transaction.
    fn handle(&self, tx: &mut dyn Tx, account: Uuid, batch: &[LogEntry]) -> Result<(), StoreError>;
}

#[derive(Clone)]
pub struct Runner {
    pub store: Arc<dyn Store>,
    /// This node's name in leases and receipts.
    pub node: String,
    pub lease_secs: i64,
    /// How often every account is looked at, rung or not.
    pub poll: Duration,
    /// Rung, with the accounts concerned, when there is work sooner than the next poll.
    pub wake: Option<Arc<Wake>>,
}

fn lease_name(consumer: &str, account: Uuid) -> String {
    format!("consumer:{consumer}:{account}")
}

impl Runner {
    pub fn spawn(self, handler: Arc<dyn Handler>, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(handler, shutdown))
    }

    async fn run(self, handler: Arc<dyn Handler>, mut shutdown: watch::Receiver<bool>) {
        let mut held: Vec<Uuid> = Vec::new();
        // A ring names the accounts to advance; every `poll` all that have work are (a lease to
        // take over, work another node's ring did not reach). Listing them is a read of its own,
        // too dear to repeat at every commit.
        let mut rung: Option<Vec<Uuid>> = None;
        let mut next_round = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            let passed = match rung.take() {
                Some(accounts) if tokio::time::Instant::now() < next_round => {
                    self.advance_all(&handler, &accounts, &mut held).await
                }
                _ => {
                    next_round = tokio::time::Instant::now() + self.poll;
                    self.round(&handler, &mut held).await
                }
            };
            if let Err(e) = passed {
                tracing::warn!(error = %e, consumer = handler.name(), "consumer round failed; retrying");
            }
            let woken = async {
                match &self.wake {
                    Some(wake) => Some(wake.rung().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next_round) => {}
                accounts = woken => rung = accounts,
                _ = shutdown.changed() => {}
            }
        }
        // Hand the work over at once instead of letting the leases run out.
        let (name, node) = (handler.name(), self.node.clone());
        let _ = self
            .store
            .write(move |tx| {
                for account in held {
                    tx.release_lease(&lease_name(name, account), &node)?;
                }
                Ok(())
            })
            .await;
    }

    /// One pass over every account with events past this consumer's cursor: the ones whose
    /// lease this node holds (or can take) advance. An account with nothing new costs the round
    /// no write (each is a transaction on the one writer, and an idle server with many
    /// accounts would otherwise keep it busy).
    async fn round(&self, handler: &Arc<dyn Handler>, held: &mut Vec<Uuid>) -> Result<(), StoreError> {
        let mut after = None;
        let name = handler.name();
        loop {
            let accounts = self.store.read(move |r| r.accounts_behind(name, after, 1000)).await?;
            self.advance_all(handler, &accounts, held).await?;
            match accounts.last() {
                Some(last) if accounts.len() == 1000 => after = Some(*last),
                _ => return Ok(()),
            }
        }
    }

    /// Each account, if this node holds (or can take) its lease, handled up to the end of its log.
    async fn advance_all(
        &self,
        handler: &Arc<dyn Handler>,
        accounts: &[Uuid],
        held: &mut Vec<Uuid>,
    ) -> Result<(), StoreError> {
        for account in accounts {
            loop {
                let (holds, handled) = self.batch(handler.clone(), *account).await?;
                match (holds, held.contains(account)) {
                    (true, false) => held.push(*account),
                    (false, true) => held.retain(|a| a != account),
                    _ => {}
                }
                if !holds || handled < BATCH {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Renews (or takes) the account's lease and handles the next batch, in one write when the
    /// consumer is at most [`INLINE_LAG`] events behind. Further behind, the batch is read on a
    /// reader first, off the one writer (the router reading past every message since its last
    /// pass was 5 % of the writer under load, and a consumer catching up read 200 events at a
    /// time on it): the events up to the log's end have committed and never change. The write
    /// that handles it goes on only if the cursor is still where the batch was read from, so
    /// effects and progress still commit together and an event is handled once.
    async fn batch(&self, handler: Arc<dyn Handler>, account: Uuid) -> Result<(bool, usize), StoreError> {
        if let Some(done) = self.take(handler.clone(), account, None).await? {
            return Ok(done);
        }
        let (reading, node) = (handler.clone(), self.node.clone());
        let Some(next) = self.store.read(move |r| Next::read(r, &*reading, &node, account)).await? else {
            return Ok((false, 0));
        };
        // Given a batch, `take` always decides.
        Ok(self.take(handler, account, Some(next)).await?.unwrap_or((true, 0)))
    }

    /// The write of [`Runner::batch`]: renews the lease and handles `read` unless the cursor
    /// moved since it was read; without one, reads the batch itself, or answers `None` when the
    /// consumer is too far behind for that (the batch is then to be read on a reader).
    async fn take(
        &self,
        handler: Arc<dyn Handler>,
        account: Uuid,
        read: Option<Next>,
    ) -> Result<Option<(bool, usize)>, StoreError> {
        let (node, lease_secs) = (self.node.clone(), self.lease_secs);
        // A handler acts only through `tx`, so its batch may run again (`write_again`): it then
        // shares a savepoint with the messages around it.
        self.store
            .write_again(move |tx| {
                let name = handler.name();
                let now = tx.now();
                if !tx.acquire_lease(&lease_name(name, account), &node, now, lease_secs)? {
                    return Ok(Some((false, 0)));
                }
                let after = tx.cursor(name, account)?;
                let inline;
                let next = match &read {
                    // Moved by the account's previous holder since the batch was read: the next
                    // round reads again from where it is.
                    Some(next) if next.after != after => return Ok(Some((true, 0))),
                    Some(next) => next,
                    None => {
                        let end = tx.last_seq(account)?;
                        if end - after > INLINE_LAG {
                            return Ok(None);
                        }
                        inline = Next::between(&*tx, &*handler, account, after, end)?;
                        &inline
                    }
                };
                if !next.batch.is_empty() {
                    handler.handle(tx, account, &next.batch)?;
                }
                if next.reached > next.after {
                    tx.advance_cursor(name, account, next.reached)?;
                }
                Ok(Some((true, next.batch.len())))
            })
            .await
    }
}

/// Events past its cursor that a consumer reads in the write that handles them; past this, it
/// reads them on a reader first.
const INLINE_LAG: i64 = BATCH as i64;

/// A consumer's next step for one account.
struct Next {
    /// The cursor the batch was read after.
    after: i64,
    /// The wanted events after it (at most [`BATCH`]).
    batch: Vec<LogEntry>,
    /// Where the cursor goes once the batch is handled.
    reached: i64,
}

impl Next {
    /// Read on a reader: `None` when another node holds the account's lease (its write would
    /// only find that out).
    fn read(r: &dyn Reads, handler: &dyn Handler, node: &str, account: Uuid) -> Result<Option<Next>, StoreError> {
        let name = handler.name();
        if let Some((holder, expires_at)) = r.lease_holder(&lease_name(name, account))? {
            if holder != node && expires_at > crate::routes::now() {
                return Ok(None);
            }
        }
        let after = r.cursor(name, account)?;
        let end = r.last_seq(account)?;
        Next::between(r, handler, account, after, end).map(Some)
    }

    /// The batch after `after`, where every event up to `end` has committed (an account's events
    /// commit in `seq` order).
    fn between(r: &dyn Reads, handler: &dyn Handler, account: Uuid, after: i64, end: i64) -> Result<Next, StoreError> {
        if end <= after || handler.idle(r, account)? {
            return Ok(Next { after, batch: Vec::new(), reached: end.max(after) });
        }
        let wanted = LogQuery { after, limit: BATCH, types: handler.wants().to_vec(), ..LogQuery::default() };
        let batch = r.log(account, &wanted)?;
        // A short batch holds every wanted event up to `end` (and past it, if more committed
        // since `end` was read); a full one may not.
        let reached = match batch.last() {
            Some(last) if batch.len() == BATCH => last.seq,
            Some(last) => last.seq.max(end),
            None => end,
        };
        Ok(Next { after, batch, reached })
    }
}

/// Records a receipt for every event: a consumer with no other effect, to verify (and let an
/// operator watch) that work is claimed once across nodes.
pub struct Audit {
    pub node: String,
}

impl Handler for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn handle(&self, tx: &mut dyn Tx, _account: Uuid, batch: &[LogEntry]) -> Result<(), StoreError> {
        for entry in batch {
            if !tx.insert_receipt(self.name(), entry, &self.node)? {
                tracing::error!(seq = entry.seq, "an event was handled twice by the audit consumer");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use parley_core::account::Role;
    use parley_core::event::{Actor, EventDraft};
    use parley_store::ops::accounts::{create_account, NewKey};
    use parley_store::sqlite::{Durability, SqliteConfig, SqliteStore};

    use super::*;
    use crate::hub::Hub;

    /// A store in `dir` whose commits go to `sink`.
    fn open(dir: &tempfile::TempDir, sink: parley_store::CommitSink) -> Arc<dyn Store> {
        let config = SqliteConfig { path: dir.path().join("p.db"), durability: Durability::Normal };
        Arc::new(SqliteStore::open(config, sink).expect("store"))
    }

    /// A new account with `events` events in its log (seq 1 to `events`).
    async fn account_with_events(store: &Arc<dyn Store>, events: usize) -> Uuid {
        let key = NewKey { name: "k".into(), role: Role::Admin, agent_id: None, hash: "h".into(), prefix: "p".into() };
        let (account, _) = store.write(move |tx| create_account(tx, "a".into(), key)).await.expect("account");
        let account = account.id;
        store
            .write(move |tx| {
                for _ in 0..events {
                    let draft = EventDraft {
                        event_type: EventType::CustomerUpdated,
                        conversation_id: None,
                        channel: None,
                        actor: Actor::system(),
                        data: serde_json::json!({}),
                    };
                    tx.append(account, draft)?;
                }
                Ok(())
            })
            .await
            .expect("events");
        account
    }

    /// A runner that only moves when called (or rung through `wake`).
    fn runner(store: &Arc<dyn Store>, wake: Option<Arc<Wake>>) -> Runner {
        Runner { store: store.clone(), node: "n1".into(), lease_secs: 30, poll: Duration::from_secs(3600), wake }
    }

    async fn receipts(store: &Arc<dyn Store>, account: Uuid) -> Vec<i64> {
        let receipts = store.read(move |r| r.receipts("audit", account)).await.expect("receipts");
        receipts.iter().map(|(seq, _)| *seq).collect()
    }

    #[tokio::test]
    async fn a_rung_account_is_handled_at_once_though_it_was_made_after_the_last_round() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hub = Arc::new(Hub::default());
        let sink = hub.clone();
        let store = open(&dir, Arc::new(move |e: &[LogEntry]| sink.publish(e)));
        // A poll far longer than the test: only the doorbell can bring the runner to the account.
        let (stop, shutdown) = watch::channel(false);
        let task = runner(&store, Some(hub.watch(|_| true))).spawn(Arc::new(Audit { node: "n1".into() }), shutdown);
        // The first round finds no account.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let account = account_with_events(&store, 2).await;
        let started = Instant::now();
        let handled = loop {
            let handled = receipts(&store, account).await;
            if handled.len() == 2 || started.elapsed() > Duration::from_secs(10) {
                break handled;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(handled, [1, 2], "both events, in order");
        let _ = stop.send(true);
        let _ = task.await;
        store.close().await;
    }

    /// A batch read on a reader before the write that handles it: if the account's previous
    /// holder moved the cursor in between, the batch is dropped, not handled a second time.
    #[tokio::test]
    async fn a_batch_read_before_the_cursor_moved_is_not_handled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(&dir, Arc::new(|_: &[LogEntry]| {}));
        let account = account_with_events(&store, 1).await;
        let runner = runner(&store, None);
        let handler: Arc<dyn Handler> = Arc::new(Audit { node: "n1".into() });

        let reading = handler.clone();
        let next =
            store.read(move |r| Next::read(r, &*reading, "n1", account)).await.expect("read").expect("no holder");
        assert_eq!(next.batch.len(), 1);
        store.write(move |tx| tx.advance_cursor("audit", account, 1)).await.expect("moved by another holder");

        let taken = runner.take(handler.clone(), account, Some(next)).await.expect("take");
        assert_eq!(taken, Some((true, 0)), "the lease is taken, nothing handled");
        assert!(receipts(&store, account).await.is_empty());
        assert_eq!(store.read(move |r| r.cursor("audit", account)).await.expect("cursor"), 1);

        // Read again from where the cursor is, nothing is left.
        assert_eq!(runner.batch(handler, account).await.expect("batch"), (true, 0));
        assert!(receipts(&store, account).await.is_empty());
        store.close().await;
    }

    /// A consumer far behind reads its batch on a reader, then handles it in a write; close
    /// behind, it reads the batch in that write. Either way every event is handled once, in order.
    #[tokio::test]
    async fn far_behind_the_batch_is_read_first_and_close_behind_in_the_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(&dir, Arc::new(|_: &[LogEntry]| {}));
        let events = BATCH + 50;
        let account = account_with_events(&store, events).await;
        let runner = runner(&store, None);
        let handler: Arc<dyn Handler> = Arc::new(Audit { node: "n1".into() });

        assert_eq!(runner.take(handler.clone(), account, None).await.expect("take"), None, "too far behind");
        assert_eq!(runner.batch(handler.clone(), account).await.expect("read first"), (true, BATCH));
        assert_eq!(runner.take(handler.clone(), account, None).await.expect("take"), Some((true, 50)), "in the write");
        assert_eq!(receipts(&store, account).await, (1..=events as i64).collect::<Vec<_>>());
        store.close().await;
    }
}
