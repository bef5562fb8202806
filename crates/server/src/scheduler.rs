//! The worker of the durable schedule: it claims due jobs (leased, so a job runs on one node,
//! and runs again if that node dies before finishing it) and runs each in the transaction that
//! completes it, so its effects and its removal commit together.

use std::sync::Arc;
use std::time::Duration;

use parley_core::limits::Limits;
use parley_store::ops::routing::{route, RoutingPolicy, ROUTE_JOB};
use parley_store::ops::triggers::{Pending, ACTIONS_JOB};
use parley_store::{ScheduledJob, Store, StoreError, StoreExt, Tx};
use tokio::sync::watch;

const CLAIM_BATCH: usize = 64;
/// A claimed job not completed within this time is handed out again.
const JOB_LEASE_SECS: i64 = 30;

/// What the jobs need to run.
#[derive(Clone)]
pub struct Jobs {
    pub routing: RoutingPolicy,
    pub limits: Arc<Limits>,
}

fn run_job(tx: &mut dyn Tx, job: &ScheduledJob, jobs: &Jobs) -> Result<(), StoreError> {
    match (job.kind.as_str(), job.account_id) {
        (ROUTE_JOB, Some(account)) => route(tx, account, &jobs.routing).map(|_| ()),
        (ACTIONS_JOB, Some(account)) => match serde_json::from_value::<Pending>(job.payload.clone()) {
            Ok(pending) => crate::trigger_runner::resume(tx, account, &pending, &jobs.limits),
            Err(e) => {
                tracing::warn!(id = %job.id, error = %e, "unreadable held-back trigger actions are dropped");
                Ok(())
            }
        },
        (kind, _) => {
            tracing::warn!(kind, id = %job.id, "a scheduled job of no known kind is dropped");
            Ok(())
        }
    }
}

pub async fn run(store: Arc<dyn Store>, jobs: Jobs, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        let claimed = store
            .write(|tx| {
                let now = tx.now();
                tx.claim_due(now, CLAIM_BATCH, JOB_LEASE_SECS)
            })
            .await;
        let claimed = claimed.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not claim scheduled jobs");
            Vec::new()
        });
        let full = claimed.len() == CLAIM_BATCH;
        for job in claimed {
            let jobs = jobs.clone();
            let result = store
                .write(move |tx| {
                    run_job(tx, &job, &jobs)?;
                    tx.complete_job(job.id)?;
                    Ok(())
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "a scheduled job failed; it runs again when its claim expires");
            }
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
