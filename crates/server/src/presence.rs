//! Who is connected live, in this process: agents (whose status drops to `offline` when their
//! last connection has been gone for the grace period) and customers (`customer_joined` when
//! their first connection opens, `customer_left` when their last one closes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_core::agent::AgentStatus;
use parley_core::event::Actor;
use parley_core::Uuid;
use parley_store::ops::agents::set_agent_status;
use parley_store::{Store, StoreExt};

type Key = (Uuid, Uuid);

pub struct Presence {
    agents: Mutex<HashMap<Key, u32>>,
    customers: Mutex<HashMap<Key, u32>>,
    grace: Duration,
}

fn bump(map: &Mutex<HashMap<Key, u32>>, key: Key, up: bool) -> u32 {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let count = map.entry(key).or_insert(0);
    if up {
        *count += 1;
    } else {
        *count = count.saturating_sub(1);
    }
    let now = *count;
    if now == 0 {
        map.remove(&key);
    }
    now
}

fn count(map: &Mutex<HashMap<Key, u32>>, key: Key) -> u32 {
    map.lock().map(|m| m.get(&key).copied().unwrap_or(0)).unwrap_or(0)
}

impl Presence {
    pub fn new(grace: Duration) -> Self {
        Presence { agents: Mutex::default(), customers: Mutex::default(), grace }
    }

    pub fn agent_connected(&self, account: Uuid, agent: Uuid) {
        bump(&self.agents, (account, agent), true);
    }

    /// After the grace period with no connection, the agent becomes `offline` (logged).
    pub fn agent_disconnected(self: &Arc<Self>, store: Arc<dyn Store>, account: Uuid, agent: Uuid) {
        if bump(&self.agents, (account, agent), false) > 0 {
            return;
        }
        let presence = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(presence.grace).await;
            if count(&presence.agents, (account, agent)) > 0 {
                return;
            }
            let actor = Actor { name: Some("presence".into()), ..Actor::system() };
            let result = store
                .write(move |tx| {
                    let current = tx.agent(account, agent)?;
                    match current {
                        Some(a) if a.status != AgentStatus::Offline => {
                            set_agent_status(tx, account, agent, AgentStatus::Offline, actor).map(|_| ())
                        }
                        _ => Ok(()),
                    }
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, %agent, "could not mark a disconnected agent offline");
            }
        });
    }

    /// Answers whether this is the customer's first live connection.
    pub fn customer_connected(&self, account: Uuid, customer: Uuid) -> bool {
        bump(&self.customers, (account, customer), true) == 1
    }

    /// Answers whether this was the customer's last live connection.
    pub fn customer_disconnected(&self, account: Uuid, customer: Uuid) -> bool {
        bump(&self.customers, (account, customer), false) == 0
    }
}
