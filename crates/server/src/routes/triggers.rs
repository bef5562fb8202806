//! `/v1/triggers`: messaging triggers (checked when saved) and their dry run.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::Json;
use parley_core::trigger::{Action, ConditionResult, Facts, Trigger, TriggerInput};
use parley_core::Uuid;
use parley_store::ops::triggers as ops;
use parley_store::{StoreError, StoreExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ListPage;
use crate::auth::Admin;
use crate::context::ApiContext;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Access, Api, Op};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DryRunRequest {
    /// A trigger written inline…
    #[serde(default)]
    trigger: Option<TriggerInput>,
    /// …or a saved one.
    #[serde(default)]
    trigger_id: Option<Uuid>,
    /// Sample field values; an absent one is empty (0, "", false, invisible).
    #[serde(default)]
    context: Facts,
}

#[derive(Serialize, JsonSchema)]
struct DryRun {
    matched: bool,
    /// Each condition with its `result` (and an `error` when a pattern gave up).
    conditions: Vec<ConditionResult>,
    /// The actions as they would run, text rendered.
    actions: Vec<Action>,
}

pub fn routes(api: Api) -> Api {
    let op = |o: Op| o.tag("triggers").access(Access::AdminKey);
    api.route(
        op(Op::post("/v1/triggers", "Create a trigger (checked: operators, patterns, limits)"))
            .body::<TriggerInput>()
            .answers::<Trigger>(201),
        post(create),
    )
    .route(op(Op::get("/v1/triggers", "List triggers")).paged().answers::<ListPage<Trigger>>(200), get(list))
    .route(op(Op::get("/v1/triggers/{id}", "Get a trigger")).answers::<Trigger>(200), get(show))
    .route(
        op(Op::put("/v1/triggers/{id}", "Replace a trigger (checked again, also when re-enabling it)"))
            .body::<TriggerInput>()
            .answers::<Trigger>(200),
        put(replace),
    )
    .route(op(Op::delete("/v1/triggers/{id}", "Delete a trigger")).no_content(), delete(remove))
    .route(
        op(Op::post("/v1/triggers/test", "Dry run: whether a trigger matches a sample, each condition's result, the rendered actions; changes nothing"))
            .body::<DryRunRequest>()
            .answers::<DryRun>(200),
        post(dry_run),
    )
}

async fn create(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Body(input): Body<TriggerInput>,
) -> ApiResult<(StatusCode, Json<Trigger>)> {
    let account = caller.account_id;
    let trigger = ctx.store.write(move |tx| ops::create_trigger(tx, account, input)).await?;
    Ok((StatusCode::CREATED, Json(trigger)))
}

async fn list(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    params: Params,
) -> ApiResult<Json<ListPage<Trigger>>> {
    super::list(&ctx, caller.account_id, &params, |r, account, page| r.triggers(account, page), |t| t.id).await
}

async fn show(State(ctx): State<ApiContext>, Admin(caller): Admin, PathId(id): PathId) -> ApiResult<Json<Trigger>> {
    super::show(&ctx, "trigger", move |r| r.trigger(caller.account_id, id)).await
}

async fn replace(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
    Body(input): Body<TriggerInput>,
) -> ApiResult<Json<Trigger>> {
    let account = caller.account_id;
    Ok(Json(ctx.store.write(move |tx| ops::replace_trigger(tx, account, id, input)).await?))
}

async fn remove(State(ctx): State<ApiContext>, Admin(caller): Admin, PathId(id): PathId) -> ApiResult<StatusCode> {
    let account = caller.account_id;
    ctx.store.write(move |tx| ops::delete_trigger(tx, account, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn dry_run(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Body(input): Body<DryRunRequest>,
) -> ApiResult<Json<DryRun>> {
    let compiled = match (input.trigger, input.trigger_id) {
        (Some(trigger), None) => trigger.compile()?,
        (None, Some(id)) => {
            let account = caller.account_id;
            let trigger = ctx
                .store
                .read(move |r| r.trigger(account, id))
                .await?
                .ok_or_else(|| ApiError::from(StoreError::not_found("trigger")))?;
            trigger.compile()?
        }
        _ => return Err(ApiError::invalid("trigger", "give exactly one of `trigger` or `trigger_id`")),
    };
    let verdict = compiled.evaluate(&input.context);
    Ok(Json(DryRun {
        matched: verdict.matched,
        conditions: verdict.conditions,
        actions: compiled.rendered_actions(&input.context),
    }))
}
