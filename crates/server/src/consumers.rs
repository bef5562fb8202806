//! Log consumers whose work must happen once, however many nodes run.
//!
//! For each account, a consumer holds a lease in the database (`consumer:<name>:<account>`).
//! One transaction renews the lease, reads the events after the consumer's cursor, applies the
//! handler's effects and advances the cursor: effects and progress commit together, so an event
//! is handled exactly once. A node that dies stops renewing; when its lease runs out another
//! node takes the account over from the cursor. (The webhook dispatcher, the trigger runner and
//! the router are built on this.)

use std::sync::Arc;
use std::time::Duration;

use parley_core::event::EventType;
use parley_core::Uuid;
use parley_store::{LogEntry, LogQuery, Store, StoreError, StoreExt, Tx};
use tokio::sync::{watch, Notify};

const BATCH: usize = 200;

pub trait Handler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Whether the account has nothing for this consumer to do (its cursor then just moves to
    /// the end of the log, without reading it).
    fn idle(&self, _tx: &dyn Tx, _account: Uuid) -> Result<bool, StoreError> {
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
    pub poll: Duration,
    /// Rung when there is work sooner than the next poll.
    pub wake: Option<Arc<Notify>>,
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
        while !*shutdown.borrow() {
            match self.round(&handler, &mut held).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, consumer = handler.name(), "consumer round failed; retrying"),
            }
            let woken = async {
                match &self.wake {
                    Some(wake) => wake.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = woken => {}
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

    /// One pass over every account: the ones whose lease this node holds (or can take) advance.
    async fn round(&self, handler: &Arc<dyn Handler>, held: &mut Vec<Uuid>) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let accounts = self.store.read(move |r| r.account_ids(after, 1000)).await?;
            for account in &accounts {
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
            match accounts.last() {
                Some(last) if accounts.len() == 1000 => after = Some(*last),
                _ => return Ok(()),
            }
        }
    }

    /// Renews (or takes) the account's lease and handles the next batch, in one transaction.
    async fn batch(&self, handler: Arc<dyn Handler>, account: Uuid) -> Result<(bool, usize), StoreError> {
        let (node, lease_secs) = (self.node.clone(), self.lease_secs);
        self.store
            .write(move |tx| {
                let name = handler.name();
                let now = tx.now();
                if !tx.acquire_lease(&lease_name(name, account), &node, now, lease_secs)? {
                    return Ok((false, 0));
                }
                let after = tx.cursor(name, account)?;
                // Every event up to `end` has committed (an account's events commit in `seq` order).
                let end = tx.last_seq(account)?;
                if end <= after {
                    return Ok((true, 0));
                }
                if handler.idle(tx, account)? {
                    tx.advance_cursor(name, account, end)?;
                    return Ok((true, 0));
                }
                let wanted = LogQuery { after, limit: BATCH, types: handler.wants().to_vec(), ..LogQuery::default() };
                let batch = tx.log(account, &wanted)?;
                if !batch.is_empty() {
                    handler.handle(tx, account, &batch)?;
                }
                // A short batch holds every wanted event up to `end` (and past it, if more committed
                // since it was read); a full one may not.
                let reached = match batch.last() {
                    Some(last) if batch.len() == BATCH => last.seq,
                    Some(last) => last.seq.max(end),
                    None => end,
                };
                tx.advance_cursor(name, account, reached)?;
                Ok((true, batch.len()))
            })
            .await
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
