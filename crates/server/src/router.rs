//! The router: a log consumer (lease + cursor, so one node decides for an account at a time)
//! that runs a routing pass whenever an event may have changed who waits or who has room — a
//! conversation queued, closed, blocked or transferred, a handler leaving, an offer ending, an
//! agent's presence. It is woken by those commits instead of waiting for its next poll, so
//! waiting conversations are routed at once. The scheduler runs the passes that no event
//! announces (an offer running out, more capacity, new group members).

use std::sync::Arc;
use std::time::Duration;

use parley_core::event::EventType;
use parley_core::Uuid;
use parley_store::ops::routing::{route, RoutingPolicy};
use parley_store::{LogEntry, Store, StoreError, Tx};
use tokio::sync::watch;

use crate::consumers::{Handler, Runner};
use crate::hub::Hub;

/// Events after which the queue may move.
const QUEUE_MOVERS: &[EventType] = &[
    EventType::ConversationQueued,
    EventType::ConversationClosed,
    EventType::ConversationBlocked,
    EventType::ConversationTransferred,
    EventType::ConversationOfferWithdrawn,
    EventType::AgentLeft,
    EventType::AgentStatusChanged,
];

pub fn moves_queue(entry: &LogEntry) -> bool {
    QUEUE_MOVERS.contains(&entry.event_type)
}

struct Router {
    policy: RoutingPolicy,
}

impl Handler for Router {
    fn name(&self) -> &'static str {
        "router"
    }

    fn wants(&self) -> &'static [EventType] {
        QUEUE_MOVERS
    }

    fn handle(&self, tx: &mut dyn Tx, account: Uuid, batch: &[LogEntry]) -> Result<(), StoreError> {
        if batch.iter().any(moves_queue) {
            let routed = route(tx, account, &self.policy)?;
            if routed.assigned + routed.offered + routed.ended > 0 {
                tracing::debug!(%account, ?routed, "routing pass");
            }
        }
        Ok(())
    }
}

/// Starts the router and the scheduler (which also runs the trigger actions held by a `wait`);
/// both stop when `shutdown` flips.
pub fn start(
    store: Arc<dyn Store>,
    hub: &Hub,
    node: String,
    lease_secs: i64,
    policy: RoutingPolicy,
    limits: Arc<parley_core::limits::Limits>,
    shutdown: watch::Receiver<bool>,
) {
    let runner = Runner {
        store: store.clone(),
        node,
        lease_secs,
        poll: Duration::from_millis(500),
        wake: Some(hub.watch(moves_queue)),
    };
    runner.spawn(Arc::new(Router { policy }), shutdown.clone());
    let jobs = crate::scheduler::Jobs { routing: policy, limits };
    tokio::spawn(crate::scheduler::run(store, jobs, Duration::from_millis(100), shutdown));
}
