//! The router's commands: a routing pass over an account's queue (auto-accept assignments and
//! manual-accept offers), an agent's answer to an offer, and where a newly queued conversation
//! stands.
//!
//! A pass reads the whole routing state and decides inside one write transaction, which the
//! store serialises with every other write of the account (one writer on SQLite; the account
//! row lock on PostgreSQL). So a decision is made once however many nodes run, and capacity —
//! counted in the same transaction — is never exceeded, also when agents accept at once.

use std::collections::{HashMap, HashSet};

use parley_core::agent::{Agent, AgentKind, AgentStatus};
use parley_core::conversation::{AssignedVia, Conversation, Scene, Status};
use parley_core::event::Actor;
use parley_core::group::{AssignmentMode, Group};
use parley_core::routing::{estimate, pick, Candidate, Offer, OfferStatus, WaitEstimate, ESTIMATE_WINDOW_MS};
use parley_core::{DomainError, Timestamp, Uuid};
use serde_json::json;

use super::conversations::load;
use super::{append_all, found, R};
use crate::model::{OfferFilter, Page};
use crate::tx::{Reads, Tx};

/// The schedule's job kind asking for a routing pass of its account (offers that run out,
/// capacity or membership changes that no log event announces).
pub const ROUTE_JOB: &str = "route";

/// The deepest one queue is read in one pass; what lies beyond is reached by the passes that
/// follow each assignment.
const PASS_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy)]
pub struct RoutingPolicy {
    /// How long an agent has to accept an offer (manual accept).
    pub offer_timeout_ms: i64,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy { offer_timeout_ms: 30_000 }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Routed {
    pub assigned: usize,
    pub offered: usize,
    /// Offers that ran out or no longer stood.
    pub ended: usize,
}

/// The router as the log's `actor`.
pub fn router_actor() -> Actor {
    Actor { name: Some("router".into()), ..Actor::system() }
}

/// The position (1 = next) `c` takes if it enters its group's queue now: behind everyone of
/// its priority or higher.
pub fn back_of_queue(r: &dyn Reads, account: Uuid, c: &Conversation, now: Timestamp) -> R<i64> {
    let mut probe = c.clone();
    probe.queued_at = Some(now);
    probe.status = Status::Open;
    probe.assignee = None;
    r.queue_position(account, &probe)
}

/// The wait to expect in a group's queue, from its first responses of the last 7 days (none
/// without history, or without a group).
pub fn group_estimate(r: &dyn Reads, account: Uuid, group: Option<Uuid>, now: Timestamp) -> R<Option<WaitEstimate>> {
    match group {
        Some(g) => Ok(estimate(&r.first_response_waits(account, g, now.plus_millis(-ESTIMATE_WINDOW_MS))?)),
        None => Ok(None),
    }
}

/// Every row of a paged list, a page at a time.
fn every<T>(mut read: impl FnMut(&Page) -> R<Vec<T>>, id: fn(&T) -> Uuid) -> R<Vec<T>> {
    let mut all = Vec::new();
    let mut page = Page { after_id: None, limit: 1000 };
    loop {
        let batch = read(&page)?;
        let full = batch.len() == page.limit;
        page.after_id = batch.last().map(id);
        all.extend(batch);
        if !full {
            return Ok(all);
        }
    }
}

/// Every agent and bot of the account.
pub fn all_agents(r: &dyn Reads, account: Uuid) -> R<Vec<Agent>> {
    every(|page| r.agents(account, page), |a| a.id)
}

/// Every group of the account, by id.
pub fn all_groups(r: &dyn Reads, account: Uuid) -> R<HashMap<Uuid, Group>> {
    Ok(every(|page| r.groups(account, page), |g| g.id)?.into_iter().map(|g| (g.id, g)).collect())
}

/// Who may handle a conversation of `group`: its members, or everyone when it has none.
fn eligible(group: Option<&Group>, agent: Uuid) -> bool {
    group.is_none_or(|g| g.member_ids.contains(&agent))
}

fn routable(agent: &Agent) -> bool {
    agent.kind == AgentKind::Agent && agent.status == AgentStatus::Online
}

/// Writes a conversation change decided by the core, with its events.
fn save(
    tx: &mut dyn Tx,
    account: Uuid,
    conversation: &Conversation,
    events: Vec<parley_core::event::EventDraft>,
) -> R<()> {
    tx.put_conversation(account, conversation)?;
    append_all(tx, account, events)
}

/// Ends `offer` as `status` and logs it.
fn end_offer(tx: &mut dyn Tx, account: Uuid, mut offer: Offer, status: OfferStatus, actor: Actor) -> R<()> {
    offer.status = status;
    tx.put_offer(account, &offer)?;
    if let Ok((conversation, integration)) = load(tx, account, offer.conversation_id) {
        let scene = Scene { integration: &integration, actor, now: tx.now() };
        tx.append(account, conversation.offer_ended(&offer, &scene))?;
    }
    Ok(())
}

/// One routing pass over the account: offers that ran out or no longer stand end; then each
/// waiting conversation, in queue order, goes to the pick among its group's online agents with
/// room — assigned at once (auto-accept) or offered (manual accept).
pub fn route(tx: &mut dyn Tx, account: Uuid, policy: &RoutingPolicy) -> R<Routed> {
    let now = tx.now();
    let mut routed = Routed::default();
    let mut agents: HashMap<Uuid, Agent> = all_agents(tx, account)?.into_iter().map(|a| (a.id, a)).collect();
    let groups = all_groups(tx, account)?;

    let mut offered_now: HashSet<Uuid> = HashSet::new();
    let mut load: HashMap<Uuid, i64> = HashMap::new();
    let mut group_offers: HashMap<Uuid, i64> = HashMap::new();
    for offer in tx.offers(account, OfferFilter::PendingInAccount)? {
        let conversation = tx.conversation(account, offer.conversation_id)?;
        let agent = agents.get(&offer.agent_id);
        let stands = conversation
            .is_some_and(|c| c.is_waiting() && c.group_id == offer.group_id && c.queued_at == offer.queued_at)
            && agent.is_some_and(|a| routable(a) && eligible(offer.group_id.and_then(|g| groups.get(&g)), a.id));
        if offer.expires_at <= now || !stands {
            let status = if stands { OfferStatus::Expired } else { OfferStatus::Withdrawn };
            end_offer(tx, account, offer, status, router_actor())?;
            routed.ended += 1;
        } else {
            offered_now.insert(offer.conversation_id);
            *load.entry(offer.agent_id).or_default() += 1;
            if let Some(g) = offer.group_id {
                *group_offers.entry(g).or_default() += 1;
            }
        }
    }

    let online: Vec<Uuid> = agents.values().filter(|a| routable(a)).map(|a| a.id).collect();
    let mut room = false;
    for id in &online {
        let active = tx.active_count(account, *id)?;
        let total = load.entry(*id).or_default();
        *total += active;
        room |= *total < agents[id].capacity;
    }
    if !room {
        return Ok(routed);
    }
    // What each group with a limit of its own can still take.
    let mut group_room: HashMap<Uuid, i64> = HashMap::new();
    for group in groups.values() {
        if let Some(capacity) = group.capacity {
            let taken = tx.group_active_count(account, group.id)? + group_offers.get(&group.id).copied().unwrap_or(0);
            group_room.insert(group.id, capacity - taken);
        }
    }

    let room = Room { online: &online, agents: &agents, load: &load, groups: &group_room };
    for mut conversation in queues_with_room(tx, account, &groups, &room, &offered_now)? {
        if offered_now.contains(&conversation.id) {
            continue;
        }
        if conversation.group_id.and_then(|g| group_room.get(&g)).is_some_and(|left| *left <= 0) {
            continue;
        }
        let group = conversation.group_id.and_then(|g| groups.get(&g));
        let mode = group.map_or(AssignmentMode::AutoAccept, |g| g.assignment_mode);
        // Manual accept: an offer that ran out goes round the group; an agent who declined is
        // not asked again while the conversation stays in this queue entry.
        let mut times_offered: HashMap<Uuid, usize> = HashMap::new();
        let mut declined: HashSet<Uuid> = HashSet::new();
        if mode == AssignmentMode::ManualAccept {
            for past in tx.offers(account, OfferFilter::Conversation(conversation.id))? {
                if past.queued_at == conversation.queued_at {
                    *times_offered.entry(past.agent_id).or_default() += 1;
                    if past.status == OfferStatus::Declined {
                        declined.insert(past.agent_id);
                    }
                }
            }
        }
        let candidates: Vec<Candidate> = online
            .iter()
            .filter(|id| eligible(group, **id) && !declined.contains(*id))
            .map(|id| Candidate {
                agent: agents[id].clone(),
                active: load.get(id).copied().unwrap_or(0),
                times_offered: times_offered.get(id).copied().unwrap_or(0),
            })
            .collect();
        let Some(chosen) = pick(&candidates) else { continue };
        let integration = found(tx.integration(account, conversation.integration_id)?, "integration")?;
        let scene = Scene { integration: &integration, actor: router_actor(), now };
        match mode {
            AssignmentMode::AutoAccept => {
                let agent = agents.get_mut(&chosen).ok_or_else(|| crate::StoreError::not_found("agent"))?;
                let events = conversation.assign_from_queue(agent, AssignedVia::AutoAccept, None, &scene)?;
                save(tx, account, &conversation, events)?;
                agent.last_assigned_at = Some(now);
                tx.put_agent(account, agent)?;
                routed.assigned += 1;
            }
            AssignmentMode::ManualAccept => {
                let offer = Offer {
                    id: Uuid::now_v7(),
                    conversation_id: conversation.id,
                    agent_id: chosen,
                    group_id: conversation.group_id,
                    status: OfferStatus::Pending,
                    offered_at: now,
                    expires_at: now.plus_millis(policy.offer_timeout_ms),
                    queued_at: conversation.queued_at,
                };
                tx.put_offer(account, &offer)?;
                tx.append(account, conversation.offered(&offer, &scene))?;
                tx.schedule(Some(account), ROUTE_JOB, offer.expires_at, &json!({"offer_id": offer.id}))?;
                routed.offered += 1;
            }
        }
        *load.entry(chosen).or_default() += 1;
        if let Some(left) = conversation.group_id.and_then(|g| group_room.get_mut(&g)) {
            *left -= 1;
        }
    }
    Ok(routed)
}

/// Where there is room at the start of a pass: the online agents, their load, and what each
/// group with a limit can still take.
struct Room<'a> {
    online: &'a [Uuid],
    agents: &'a HashMap<Uuid, Agent>,
    load: &'a HashMap<Uuid, i64>,
    groups: &'a HashMap<Uuid, i64>,
}

/// The heads of every queue that some agent has room to take from, merged in queue order
/// (priority, then queue time) so no group's queue starves another's. Each queue is read as
/// deep as its agents' free places, plus the conversations already on offer (skipped).
fn queues_with_room(
    r: &dyn Reads,
    account: Uuid,
    groups: &HashMap<Uuid, Group>,
    room: &Room,
    offered: &HashSet<Uuid>,
) -> R<Vec<Conversation>> {
    let free = |id: &Uuid| (room.agents[id].capacity - room.load.get(id).copied().unwrap_or(0)).max(0) as usize;
    let mut queues: Vec<(Option<Uuid>, usize)> = Vec::new();
    for group in groups.values() {
        let mut places: usize = room.online.iter().filter(|id| group.member_ids.contains(id)).map(free).sum();
        if let Some(left) = room.groups.get(&group.id) {
            places = places.min((*left).max(0) as usize);
        }
        if places > 0 {
            queues.push((Some(group.id), places));
        }
    }
    queues.push((None, room.online.iter().map(free).sum()));
    let mut heads = Vec::new();
    for (group, places) in queues {
        let depth = (places + offered.len()).min(PASS_LIMIT);
        heads.extend(r.queue_of(account, group, depth)?);
    }
    heads.sort_by_key(|c| (std::cmp::Reverse(c.priority), c.queued_at.map(Timestamp::millis), c.id));
    Ok(heads)
}

/// Asks for a routing pass of the account as soon as the scheduler runs (for changes that
/// log no event the router follows: capacity, membership, assignment mode).
pub fn request_pass(tx: &mut dyn Tx, account: Uuid) -> R<()> {
    let now = tx.now();
    tx.schedule(Some(account), ROUTE_JOB, now, &json!({}))?;
    Ok(())
}

/// The agent's pending offer of a conversation, or `409 no_pending_offer`.
fn pending_offer(tx: &dyn Reads, account: Uuid, conversation: Uuid, agent: Uuid) -> R<Offer> {
    tx.offers(account, OfferFilter::Conversation(conversation))?
        .into_iter()
        .rev()
        .find(|o| o.agent_id == agent && o.status == OfferStatus::Pending)
        .ok_or_else(|| {
            DomainError::Conflict {
                code: "no_pending_offer",
                detail: "there is no offer of this conversation to accept for this agent".into(),
            }
            .into()
        })
}

/// The agent accepts the offer made to them: the only way an offer becomes an assignment.
pub fn accept_offer(
    tx: &mut dyn Tx,
    account: Uuid,
    conversation_id: Uuid,
    agent_id: Uuid,
    actor: Actor,
) -> R<Conversation> {
    let mut offer = pending_offer(tx, account, conversation_id, agent_id)?;
    let now = tx.now();
    if offer.expires_at <= now {
        return Err(DomainError::Conflict {
            code: "offer_expired",
            detail: "the offer ran out before it was accepted; it moves on to the next agent".into(),
        }
        .into());
    }
    let mut agent = found(tx.agent(account, agent_id)?, "agent")?;
    if tx.active_count(account, agent_id)? >= agent.capacity {
        return Err(DomainError::Conflict {
            code: "at_capacity",
            detail: format!("the agent already handles {} conversations, their capacity", agent.capacity),
        }
        .into());
    }
    let (mut conversation, integration) = load(tx, account, conversation_id)?;
    let scene = Scene { integration: &integration, actor, now };
    let events = conversation.assign_from_queue(&agent, AssignedVia::Accept, Some(offer.id), &scene)?;
    offer.status = OfferStatus::Accepted;
    tx.put_offer(account, &offer)?;
    save(tx, account, &conversation, events)?;
    agent.last_assigned_at = Some(now);
    tx.put_agent(account, &agent)?;
    Ok(conversation)
}

/// The agent turns the offer down; the router offers the conversation to the next agent.
pub fn decline_offer(
    tx: &mut dyn Tx,
    account: Uuid,
    conversation_id: Uuid,
    agent_id: Uuid,
    actor: Actor,
) -> R<Conversation> {
    let offer = pending_offer(tx, account, conversation_id, agent_id)?;
    end_offer(tx, account, offer, OfferStatus::Declined, actor)?;
    Ok(load(tx, account, conversation_id)?.0)
}
