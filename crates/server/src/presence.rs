//! Who is connected live. Agents: each node records in the database which agents hold a live
//! connection to it (renewed every third of the grace period), and an agent whose connections
//! have all been gone — on every node — for the grace period becomes `offline`. Customers:
//! `customer_joined` when their first connection to this node opens, `customer_left` when their
//! last one closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_core::agent::AgentStatus;
use parley_core::event::Actor;
use parley_core::Uuid;
use parley_store::ops::agents::set_agent_status;
use parley_store::{Store, StoreExt};
use tokio::sync::watch;

type Key = (Uuid, Uuid);

pub struct Presence {
    agents: Mutex<HashMap<Key, u32>>,
    customers: Mutex<HashMap<Key, u32>>,
    grace: Duration,
    node: String,
    store: Arc<dyn Store>,
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
    pub fn new(grace: Duration, node: String, store: Arc<dyn Store>) -> Self {
        Presence { agents: Mutex::default(), customers: Mutex::default(), grace, node, store }
    }

    fn grace_ms(&self) -> i64 {
        self.grace.as_millis() as i64
    }

    async fn touch(&self, agents: Vec<Key>) {
        if agents.is_empty() {
            return;
        }
        let (node, grace) = (self.node.clone(), self.grace_ms());
        let result = self
            .store
            .write(move |tx| {
                let until = tx.now().plus_millis(grace.max(1000));
                for (account, agent) in agents {
                    tx.touch_agent_connection(account, agent, &node, until)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record live agent connections");
        }
    }

    /// Keeps this node's agent connections current until shutdown.
    pub fn spawn_renewal(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let presence = self.clone();
        tokio::spawn(async move {
            let every = (presence.grace / 3).max(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
                let connected: Vec<Key> =
                    presence.agents.lock().map(|m| m.keys().copied().collect()).unwrap_or_default();
                presence.touch(connected).await;
            }
        });
    }

    pub fn agent_connected(self: &Arc<Self>, account: Uuid, agent: Uuid) {
        if bump(&self.agents, (account, agent), true) == 1 {
            let presence = self.clone();
            tokio::spawn(async move { presence.touch(vec![(account, agent)]).await });
        }
    }

    /// After the grace period with no connection on any node, the agent becomes `offline`.
    pub fn agent_disconnected(self: &Arc<Self>, account: Uuid, agent: Uuid) {
        if bump(&self.agents, (account, agent), false) > 0 {
            return;
        }
        let presence = self.clone();
        tokio::spawn(async move {
            let node = presence.node.clone();
            let _ = presence.store.write(move |tx| tx.drop_agent_connection(agent, &node)).await;
            tokio::time::sleep(presence.grace).await;
            if count(&presence.agents, (account, agent)) > 0 {
                return;
            }
            let actor = Actor { name: Some("presence".into()), ..Actor::system() };
            let node = presence.node.clone();
            let result = presence
                .store
                .write(move |tx| {
                    if tx.agent_connected_elsewhere(agent, &node, tx.now())? {
                        return Ok(());
                    }
                    match tx.agent(account, agent)? {
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

    /// Answers whether this is the customer's first live connection here.
    pub fn customer_connected(&self, account: Uuid, customer: Uuid) -> bool {
        bump(&self.customers, (account, customer), true) == 1
    }

    /// Answers whether this was the customer's last live connection here.
    pub fn customer_disconnected(&self, account: Uuid, customer: Uuid) -> bool {
        bump(&self.customers, (account, customer), false) == 0
    }
}
