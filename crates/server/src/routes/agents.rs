//! Agents and bots, and their presence.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Json;
use parley_core::agent::{Agent, AgentPatch, AgentStatus, NewAgent};
use parley_store::ops::agents;
use parley_store::StoreExt;
use schemars::JsonSchema;
use serde::Deserialize;

use super::ListPage;
use crate::auth::{Admin, Caller};
use crate::context::ApiContext;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Access, Api, Op};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetStatus {
    status: AgentStatus,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::post("/v1/agents", "Create an agent or a bot")
            .tag("agents")
            .access(Access::AdminKey)
            .body::<NewAgent>()
            .answers::<Agent>(201),
        post(create),
    )
    .route(
        Op::get("/v1/agents", "List agents and bots").tag("agents").paged().answers::<ListPage<Agent>>(200),
        get(list),
    )
    .route(Op::get("/v1/agents/{id}", "Get an agent").tag("agents").answers::<Agent>(200), get(show))
    .route(
        Op::patch("/v1/agents/{id}", "Change an agent's name, e-mail or capacity")
            .tag("agents")
            .access(Access::AdminKey)
            .body::<AgentPatch>()
            .answers::<Agent>(200),
        axum::routing::patch(update),
    )
    .route(
        Op::put("/v1/agents/{id}/status", "Set presence (an agent key may set only its own)")
            .tag("agents")
            .body::<SetStatus>()
            .answers::<Agent>(200),
        put(set_status),
    )
}

async fn create(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Body(input): Body<NewAgent>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let account = caller.account_id;
    let agent = ctx.store.write(move |tx| agents::create_agent(tx, account, input)).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

async fn list(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    params: Params,
) -> ApiResult<Json<ListPage<Agent>>> {
    super::list(&ctx, caller.account_id, &params, |r, account, page| r.agents(account, page), |a| a.id).await
}

async fn show(State(ctx): State<ApiContext>, Caller(caller): Caller, PathId(id): PathId) -> ApiResult<Json<Agent>> {
    super::show(&ctx, "agent", move |r| r.agent(caller.account_id, id)).await
}

async fn update(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
    Body(patch): Body<AgentPatch>,
) -> ApiResult<Json<Agent>> {
    let account = caller.account_id;
    let agent = ctx.store.write(move |tx| agents::update_agent(tx, account, id, patch)).await?;
    ctx.keys.forget_agent(id);
    Ok(Json(agent))
}

async fn set_status(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    Body(input): Body<SetStatus>,
) -> ApiResult<Json<Agent>> {
    if !caller.is_admin() && caller.agent.as_ref().is_none_or(|a| a.id != id) {
        return Err(ApiError::forbidden("an agent key may set only its own agent's status"));
    }
    let account = caller.account_id;
    let actor = caller.actor();
    let agent = ctx.store.write(move |tx| agents::set_agent_status(tx, account, id, input.status, actor)).await?;
    Ok(Json(agent))
}
