//! Agents, bots, their presence, and groups' membership checks.

use parley_core::agent::{Agent, AgentPatch, AgentStatus, NewAgent};
use parley_core::event::{Actor, EventDraft, EventType};
use parley_core::Uuid;
use serde_json::json;

use super::{found, R};
use crate::tx::Tx;

pub fn create_agent(tx: &mut dyn Tx, account: Uuid, input: NewAgent) -> R<Agent> {
    let agent = Agent::new(Uuid::now_v7(), input, tx.now())?;
    tx.put_agent(account, &agent)?;
    Ok(agent)
}

pub fn update_agent(tx: &mut dyn Tx, account: Uuid, id: Uuid, patch: AgentPatch) -> R<Agent> {
    let mut agent = found(tx.agent(account, id)?, "agent")?;
    let capacity = agent.capacity;
    agent.apply(patch, tx.now())?;
    tx.put_agent(account, &agent)?;
    if agent.capacity > capacity {
        super::routing::request_pass(tx, account)?;
    }
    Ok(agent)
}

/// Sets an agent's presence; a change is logged as `agent_status_changed`.
pub fn set_agent_status(tx: &mut dyn Tx, account: Uuid, id: Uuid, status: AgentStatus, actor: Actor) -> R<Agent> {
    let mut agent = found(tx.agent(account, id)?, "agent")?;
    if agent.status == status {
        return Ok(agent);
    }
    let previous = agent.status;
    agent.status = status;
    agent.updated_at = tx.now();
    tx.put_agent(account, &agent)?;
    tx.append(
        account,
        EventDraft {
            event_type: EventType::AgentStatusChanged,
            conversation_id: None,
            channel: None,
            actor,
            data: json!({"agent_id": agent.id, "kind": agent.kind, "status": status, "previous_status": previous}),
        },
    )?;
    Ok(agent)
}

/// Every id names an agent of the account; the field names the first that does not.
pub fn check_agents_exist(tx: &dyn Tx, account: Uuid, field: &str, ids: &[Uuid]) -> R<()> {
    for (i, id) in ids.iter().enumerate() {
        if tx.agent(account, *id)?.is_none() {
            return Err(
                parley_core::DomainError::invalid(format!("{field}[{i}]"), "no such agent in this account").into()
            );
        }
    }
    Ok(())
}
