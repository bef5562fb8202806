//! Integrations (channels).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use parley_core::integration::{Integration, IntegrationPatch, NewIntegration};
use parley_store::ops::integrations;
use parley_store::StoreExt;

use super::ListPage;
use crate::auth::{Admin, Caller};
use crate::context::ApiContext;
use crate::error::ApiResult;
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Access, Api, Op};

pub fn routes(api: Api) -> Api {
    api.route(
        Op::post("/v1/integrations", "Create an integration (a channel)")
            .tag("integrations")
            .access(Access::AdminKey)
            .body::<NewIntegration>()
            .answers::<Integration>(201),
        post(create),
    )
    .route(
        Op::get("/v1/integrations", "List integrations, deleted ones included (with `deleted_at`)")
            .tag("integrations")
            .paged()
            .answers::<ListPage<Integration>>(200),
        get(list),
    )
    .route(
        Op::get("/v1/integrations/{id}", "Get an integration").tag("integrations").answers::<Integration>(200),
        get(show),
    )
    .route(
        Op::patch("/v1/integrations/{id}", "Change an integration's settings")
            .tag("integrations")
            .access(Access::AdminKey)
            .body::<IntegrationPatch>()
            .answers::<Integration>(200),
        axum::routing::patch(update),
    )
    .route(
        Op::delete(
            "/v1/integrations/{id}",
            "Delete an integration; its conversations stay, with reply status `channel_deleted`",
        )
        .tag("integrations")
        .access(Access::AdminKey)
        .no_content(),
        axum::routing::delete(remove),
    )
}

async fn create(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Body(input): Body<NewIntegration>,
) -> ApiResult<(StatusCode, Json<Integration>)> {
    let account = caller.account_id;
    let limits = ctx.limits.clone();
    let integration = ctx.store.write(move |tx| integrations::create_integration(tx, account, input, &limits)).await?;
    Ok((StatusCode::CREATED, Json(integration)))
}

async fn list(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    params: Params,
) -> ApiResult<Json<ListPage<Integration>>> {
    super::list(&ctx, caller.account_id, &params, |r, account, page| r.integrations(account, page), |i| i.id).await
}

async fn show(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> ApiResult<Json<Integration>> {
    super::show(&ctx, "integration", move |r| r.integration(caller.account_id, id)).await
}

async fn update(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
    Body(patch): Body<IntegrationPatch>,
) -> ApiResult<Json<Integration>> {
    let account = caller.account_id;
    let integration = ctx.store.write(move |tx| integrations::update_integration(tx, account, id, patch)).await?;
    Ok(Json(integration))
}

async fn remove(State(ctx): State<ApiContext>, Admin(caller): Admin, PathId(id): PathId) -> ApiResult<StatusCode> {
    let account = caller.account_id;
    ctx.store.write(move |tx| integrations::delete_integration(tx, account, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
