//! The trigger runner: a log consumer (lease + cursor, so each event is handled once across
//! nodes) that, for each firing event, evaluates the account's enabled triggers of that event in
//! `position` order and carries out the actions of those that match — in the same transaction
//! as its cursor, so a trigger fires exactly once per event. Each trigger sees the effects of the
//! ones before it (the facts are read again after one fires). Actions after a `wait` go to the
//! durable schedule and run when it is over ([`resume`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_core::limits::Limits;
use parley_core::trigger::{CompiledTrigger, Facts, Trigger, TriggerEvent, MAX_CHAIN};
use parley_core::{DomainError, Timestamp, Uuid};
use parley_store::ops::triggers::{facts, log_fired, run_actions, Occasion, Pending};
use parley_store::{LogEntry, Reads, Store, StoreError, Tx};
use tokio::sync::watch;

use crate::consumers::{Handler, Runner};
use crate::hub::Hub;

/// Events that can fire a trigger.
pub fn fires(entry: &LogEntry) -> bool {
    TriggerEvent::of(entry.event_type).is_some()
}

/// Compiled triggers, kept while they are unchanged (patterns are compiled once).
#[derive(Default)]
struct Compiled {
    by_id: Mutex<HashMap<Uuid, (Timestamp, Arc<CompiledTrigger>)>>,
}

impl Compiled {
    fn get(&self, trigger: &Trigger) -> Option<Arc<CompiledTrigger>> {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, compiled)) = by_id.get(&trigger.id) {
            if *at == trigger.updated_at {
                return Some(compiled.clone());
            }
        }
        match trigger.compile() {
            Ok(compiled) => {
                let compiled = Arc::new(compiled);
                by_id.insert(trigger.id, (trigger.updated_at, compiled.clone()));
                Some(compiled)
            }
            Err(e) => {
                tracing::warn!(trigger = %trigger.id, error = %e, "a saved trigger no longer compiles; skipped");
                None
            }
        }
    }
}

pub struct TriggerRunner {
    limits: Arc<Limits>,
    compiled: Compiled,
}

impl TriggerRunner {
    /// Fires the account's triggers of `occasion`'s event, in order.
    fn fire(&self, tx: &mut dyn Tx, account: Uuid, occasion: &Occasion) -> Result<(), StoreError> {
        if occasion.chain.len() >= MAX_CHAIN {
            return Ok(());
        }
        let triggers = tx.triggers_for(account, occasion.event)?;
        let mut seen: Option<Facts> = None;
        for trigger in triggers {
            // A trigger never fires again on what its own actions caused.
            if occasion.chain.contains(&trigger.id) {
                continue;
            }
            if trigger.run_once_per_conversation && tx.trigger_ran(trigger.id, occasion.conversation_id)? {
                continue;
            }
            let Some(compiled) = self.compiled.get(&trigger) else { continue };
            let current = match seen.take() {
                Some(f) => f,
                None => match facts(tx, account, occasion, tx.now()) {
                    Ok(f) => f,
                    Err(StoreError::Domain(DomainError::NotFound { .. })) => return Ok(()),
                    Err(e) => return Err(e),
                },
            };
            let verdict = compiled.evaluate(&current);
            for c in verdict.conditions.iter().filter_map(|c| c.outcome.error.as_ref()) {
                tracing::warn!(trigger = %trigger.id, conversation = %occasion.conversation_id, "{c}");
            }
            if !verdict.matched {
                seen = Some(current);
                continue;
            }
            if trigger.run_once_per_conversation {
                tx.insert_trigger_run(account, trigger.id, occasion.conversation_id)?;
            }
            let pending = Pending {
                trigger_id: trigger.id,
                trigger_name: trigger.name.clone(),
                occasion: occasion.clone(),
                actions: trigger.actions.clone(),
            };
            let done = run_actions(tx, account, &pending, &current, &self.limits)?;
            log_fired(tx, account, &pending, &done)?;
            // `seen` stays empty: the next trigger reads the facts again, after these effects.
        }
        Ok(())
    }
}

impl Handler for TriggerRunner {
    fn name(&self) -> &'static str {
        "triggers"
    }

    /// An account without triggers has nothing to evaluate.
    fn idle(&self, reads: &dyn Reads, account: Uuid) -> Result<bool, StoreError> {
        Ok(reads.trigger_count(account)?.0 == 0)
    }

    fn handle(&self, tx: &mut dyn Tx, account: Uuid, batch: &[LogEntry]) -> Result<(), StoreError> {
        for entry in batch.iter().filter(|e| fires(e)) {
            if let Some(occasion) = Occasion::of(entry) {
                self.fire(tx, account, &occasion)?;
            }
        }
        Ok(())
    }
}

/// Runs the actions a `wait` held back (a scheduled job), with the facts of now.
pub fn resume(tx: &mut dyn Tx, account: Uuid, pending: &Pending, limits: &Limits) -> Result<(), StoreError> {
    let current = match facts(tx, account, &pending.occasion, tx.now()) {
        Ok(f) => f,
        Err(StoreError::Domain(DomainError::NotFound { .. })) => return Ok(()),
        Err(e) => return Err(e),
    };
    let done = run_actions(tx, account, pending, &current, limits)?;
    log_fired(tx, account, pending, &done)
}

/// Starts the runner; it stops when `shutdown` flips.
pub fn start(
    store: Arc<dyn Store>,
    hub: &Hub,
    node: String,
    lease_secs: i64,
    limits: Arc<Limits>,
    shutdown: watch::Receiver<bool>,
) {
    let runner = Runner { store, node, lease_secs, poll: Duration::from_millis(500), wake: Some(hub.watch(fires)) };
    runner.spawn(Arc::new(TriggerRunner { limits, compiled: Compiled::default() }), shutdown);
}
