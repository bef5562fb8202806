//! Groups of agents.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post, put};
use axum::Json;
use parley_core::group::{Group, GroupPatch, NewGroup};
use parley_core::Uuid;
use parley_store::ops::groups;
use parley_store::StoreExt;
use schemars::JsonSchema;
use serde::Deserialize;

use super::ListPage;
use crate::auth::{Admin, Caller};
use crate::context::ApiContext;
use crate::error::ApiResult;
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Access, Api, Op};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetMembers {
    agent_ids: Vec<Uuid>,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::post("/v1/groups", "Create a group")
            .tag("groups")
            .access(Access::AdminKey)
            .body::<NewGroup>()
            .answers::<Group>(201),
        post(create),
    )
    .route(Op::get("/v1/groups", "List groups").tag("groups").paged().answers::<ListPage<Group>>(200), get(list))
    .route(Op::get("/v1/groups/{id}", "Get a group").tag("groups").answers::<Group>(200), get(show))
    .route(
        Op::patch("/v1/groups/{id}", "Change a group's name, assignment mode or capacity")
            .tag("groups")
            .access(Access::AdminKey)
            .body::<GroupPatch>()
            .answers::<Group>(200),
        patch(update),
    )
    .route(
        Op::put("/v1/groups/{id}/members", "Replace a group's members")
            .tag("groups")
            .access(Access::AdminKey)
            .body::<SetMembers>()
            .answers::<Group>(200),
        put(set_members),
    )
}

async fn create(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Body(input): Body<NewGroup>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    let account = caller.account_id;
    let group = ctx.store.write(move |tx| groups::create_group(tx, account, input)).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

async fn list(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    params: Params,
) -> ApiResult<Json<ListPage<Group>>> {
    super::list(&ctx, caller.account_id, &params, |r, account, page| r.groups(account, page), |g| g.id).await
}

async fn show(State(ctx): State<ApiContext>, Caller(caller): Caller, PathId(id): PathId) -> ApiResult<Json<Group>> {
    super::show(&ctx, "group", move |r| r.group(caller.account_id, id)).await
}

async fn update(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
    Body(input): Body<GroupPatch>,
) -> ApiResult<Json<Group>> {
    let account = caller.account_id;
    Ok(Json(ctx.store.write(move |tx| groups::update_group(tx, account, id, input)).await?))
}

async fn set_members(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
    Body(input): Body<SetMembers>,
) -> ApiResult<Json<Group>> {
    let account = caller.account_id;
    let group = ctx.store.write(move |tx| groups::set_members(tx, account, id, input.agent_ids)).await?;
    Ok(Json(group))
}
