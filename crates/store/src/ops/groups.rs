//! Groups of agents.

use parley_core::group::{Group, GroupPatch, NewGroup};
use parley_core::Uuid;

use super::agents::check_agents_exist;
use super::{found, R};
use crate::tx::Tx;

fn unique(ids: Vec<Uuid>) -> Vec<Uuid> {
    let mut out: Vec<Uuid> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

pub fn create_group(tx: &mut dyn Tx, account: Uuid, input: NewGroup) -> R<Group> {
    Group::validate_name(&input.name)?;
    Group::validate_capacity(input.capacity)?;
    let members = unique(input.agent_ids);
    Group::validate_members(&members)?;
    check_agents_exist(tx, account, "agent_ids", &members)?;
    let group = Group {
        id: Uuid::now_v7(),
        name: input.name.trim().to_string(),
        assignment_mode: input.assignment_mode.unwrap_or_default(),
        member_ids: members,
        capacity: input.capacity,
        created_at: tx.now(),
    };
    tx.put_group(account, &group)?;
    Ok(group)
}

/// Changes a group's name, assignment mode or capacity; routing looks again at once.
pub fn update_group(tx: &mut dyn Tx, account: Uuid, id: Uuid, patch: GroupPatch) -> R<Group> {
    let mut group = found(tx.group(account, id)?, "group")?;
    group.apply(patch)?;
    tx.put_group(account, &group)?;
    super::routing::request_pass(tx, account)?;
    Ok(group)
}

pub fn set_members(tx: &mut dyn Tx, account: Uuid, id: Uuid, agent_ids: Vec<Uuid>) -> R<Group> {
    let mut group = found(tx.group(account, id)?, "group")?;
    let members = unique(agent_ids);
    Group::validate_members(&members)?;
    check_agents_exist(tx, account, "agent_ids", &members)?;
    group.member_ids = members;
    tx.put_group(account, &group)?;
    super::routing::request_pass(tx, account)?;
    Ok(group)
}
