//! `GET /v1/queue`: who waits for a human, where, for how long — the live queue of the account.

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::get;
use axum::Json;
use parley_core::account::Role;
use parley_core::agent::AgentStatus;
use parley_core::routing::Offer;
use parley_core::routing::{rollup, RollupStatus, WaitEstimate};
use parley_core::{Timestamp, Uuid};
use parley_store::ops::routing::{all_agents, group_estimate};
use parley_store::{OfferFilter, StoreExt};
use schemars::JsonSchema;
use serde::Serialize;

use crate::auth::Caller;
use crate::context::ApiContext;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::openapi::{Api, Op};

const MAX_LISTED: usize = 10_000;

#[derive(Serialize, JsonSchema)]
struct Waiting {
    conversation_id: Uuid,
    customer_id: Uuid,
    /// 1 = next.
    position: i64,
    priority: i64,
    queued_at: Option<Timestamp>,
}

#[derive(Serialize, JsonSchema)]
struct GroupQueue {
    /// None: conversations that wait without a group.
    group_id: Option<Uuid>,
    /// Online if any member is online; else away if any is away; else invisible.
    status: RollupStatus,
    size: i64,
    /// From the group's first-response times of the last 7 days; none without history.
    estimated_wait: Option<WaitEstimate>,
    conversations: Vec<Waiting>,
}

#[derive(Serialize, JsonSchema)]
struct Queue {
    /// Conversation requests waiting in the whole account.
    queue_size: i64,
    account_status: RollupStatus,
    groups: Vec<GroupQueue>,
}

#[derive(Serialize, JsonSchema)]
struct Offers {
    data: Vec<Offer>,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::get("/v1/queue", "The live queue: waiting conversations with their position and the wait estimate")
            .tag("routing")
            .answers::<Queue>(200),
        get(queue),
    )
    .route(
        Op::get("/v1/offers", "Offers awaiting an answer: the calling agent's, or (admin) one agent's or all")
            .tag("routing")
            .query("agent_id", "with an admin key: only this agent's offers")
            .answers::<Offers>(200),
        get(offers),
    )
}

/// Pending manual-accept offers, oldest first. An agent key sees its own; an admin key sees
/// every agent's, or one agent's with `agent_id`.
async fn offers(State(ctx): State<ApiContext>, Caller(caller): Caller, params: Params) -> ApiResult<Json<Offers>> {
    params.only(&["agent_id"])?;
    let asked = params.uuid("agent_id")?;
    let filter = match (&caller.agent, caller.role, asked) {
        (Some(me), Role::Agent, Some(other)) if other != me.id => {
            return Err(ApiError::forbidden("an agent key sees only its own offers"))
        }
        (Some(me), Role::Agent, _) => OfferFilter::PendingOfAgent(me.id),
        (_, _, Some(agent)) => OfferFilter::PendingOfAgent(agent),
        (_, _, None) => OfferFilter::PendingInAccount,
    };
    let account = caller.account_id;
    let data = ctx.store.read(move |r| r.offers(account, filter)).await?;
    Ok(Json(Offers { data }))
}

async fn queue(State(ctx): State<ApiContext>, Caller(caller): Caller) -> ApiResult<Json<Queue>> {
    let account = caller.account_id;
    let now = super::now();
    let queue = ctx
        .store
        .read(move |r| {
            let waiting = r.waiting(account, MAX_LISTED)?;
            let agents = all_agents(r, account)?;
            let status_of: HashMap<Uuid, AgentStatus> = agents.iter().map(|a| (a.id, a.status)).collect();
            let mut groups: Vec<GroupQueue> = Vec::new();
            for c in waiting {
                if groups.last().is_none_or(|g| g.group_id != c.group_id) {
                    let members: Vec<AgentStatus> = match c.group_id {
                        Some(g) => r
                            .group(account, g)?
                            .map(|g| g.member_ids.iter().filter_map(|id| status_of.get(id).copied()).collect())
                            .unwrap_or_default(),
                        None => agents.iter().map(|a| a.status).collect(),
                    };
                    let estimated_wait = group_estimate(r, account, c.group_id, now)?;
                    groups.push(GroupQueue {
                        group_id: c.group_id,
                        status: rollup(members.iter()),
                        size: 0,
                        estimated_wait,
                        conversations: Vec::new(),
                    });
                }
                if let Some(group) = groups.last_mut() {
                    group.size += 1;
                    group.conversations.push(Waiting {
                        conversation_id: c.id,
                        customer_id: c.customer_id,
                        position: group.size,
                        priority: c.priority,
                        queued_at: c.queued_at,
                    });
                }
            }
            let queue_size = groups.iter().map(|g| g.size).sum();
            Ok(Queue { queue_size, account_status: rollup(agents.iter().map(|a| &a.status)), groups })
        })
        .await?;
    Ok(Json(queue))
}
