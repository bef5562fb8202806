//! `/v1/webhooks`: subscriptions, their delivery log, manual retry, test, secret rotation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::Json;
use parley_core::webhook::{Attempt, Delivery, DeliveryStatus, NewWebhook, Webhook, WebhookPatch};
use parley_core::Uuid;
use parley_store::ops::webhooks as ops;
use parley_store::{StoreError, StoreExt};
use schemars::JsonSchema;
use serde::Serialize;

use super::ListPage;
use crate::auth::Admin;
use crate::context::ApiContext;
use crate::cursor;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Access, Api, Op};
use crate::webhooks::{sign, target};

/// A webhook with its signing secret: answered at creation and rotation only.
#[derive(Serialize, JsonSchema)]
struct WebhookWithSecret {
    #[serde(flatten)]
    webhook: Webhook,
    /// `whsec_…`: verify signatures with it (Standard Webhooks).
    secret: String,
}

pub fn routes(api: Api) -> Api {
    let op = |o: Op| o.tag("webhooks").access(Access::AdminKey);
    api.route(
        op(Op::post("/v1/webhooks", "Subscribe an endpoint (the secret is shown now and on rotation only)"))
            .body::<NewWebhook>()
            .answers::<WebhookWithSecret>(201),
        post(create),
    )
    .route(op(Op::get("/v1/webhooks", "List webhooks")).paged().answers::<ListPage<Webhook>>(200), get(list))
    .route(op(Op::get("/v1/webhooks/{id}", "Get a webhook")).answers::<Webhook>(200), get(show))
    .route(
        op(Op::patch("/v1/webhooks/{id}", "Change a webhook; `enabled: true` re-enables a disabled one"))
            .body::<WebhookPatch>()
            .answers::<Webhook>(200),
        patch(update),
    )
    .route(op(Op::delete("/v1/webhooks/{id}", "Delete a webhook and its queue")).no_content(), delete(remove))
    .route(
        op(Op::get("/v1/webhooks/{id}/deliveries", "Deliveries and every attempt, newest first"))
            .query("status", "pending | succeeded | failed")
            .paged()
            .answers::<ListPage<Delivery>>(200),
        get(deliveries),
    )
    .route(
        op(Op::post(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            "Deliver again now (same body and webhook-id)",
        ))
        .answers::<Delivery>(202),
        post(retry),
    )
    .route(
        op(Op::post("/v1/webhooks/{id}/test", "Send a `webhook_test` event now and answer the attempt"))
            .answers::<Attempt>(200),
        post(test),
    )
    .route(
        op(Op::post("/v1/webhooks/{id}/rotate-secret", "A new secret; the old one also signs for 24 h"))
            .answers::<WebhookWithSecret>(200),
        post(rotate),
    )
}

async fn checked_url(ctx: &ApiContext, url: &str) -> ApiResult<()> {
    target::check(url, ctx.webhooks.config.policy).await.map_err(|why| ApiError::invalid("url", why))
}

fn secret() -> ApiResult<String> {
    sign::new_secret().map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))
}

async fn create(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Body(input): Body<NewWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    // The fields first; the target's DNS lookup last.
    Webhook::new(Uuid::nil(), input.clone(), super::now())?;
    checked_url(&ctx, &input.url).await?;
    let secret = secret()?;
    let (account, stored) = (caller.account_id, secret.clone());
    let webhook = ctx.store.write(move |tx| ops::create_webhook(tx, account, input, &stored)).await?;
    Ok((StatusCode::CREATED, Json(WebhookWithSecret { webhook, secret })))
}

async fn list(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    params: Params,
) -> ApiResult<Json<ListPage<Webhook>>> {
    super::list(&ctx, caller.account_id, &params, |r, account, page| r.webhooks(account, page), |w| w.id).await
}

async fn show(State(ctx): State<ApiContext>, Admin(caller): Admin, PathId(id): PathId) -> ApiResult<Json<Webhook>> {
    super::show(&ctx, "webhook", move |r| r.webhook(caller.account_id, id)).await
}

async fn update(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
    Body(patch): Body<WebhookPatch>,
) -> ApiResult<Json<Webhook>> {
    if let Some(url) = &patch.url {
        checked_url(&ctx, url).await?;
    }
    let account = caller.account_id;
    Ok(Json(ctx.store.write(move |tx| ops::update_webhook(tx, account, id, patch)).await?))
}

async fn remove(State(ctx): State<ApiContext>, Admin(caller): Admin, PathId(id): PathId) -> ApiResult<StatusCode> {
    let account = caller.account_id;
    ctx.store.write(move |tx| ops::delete_webhook(tx, account, id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deliveries(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
    params: Params,
) -> ApiResult<Json<ListPage<Delivery>>> {
    params.only(&["status", "cursor", "limit"])?;
    let status = params
        .one("status")?
        .map(|s| {
            DeliveryStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", "status", "`status` is pending, succeeded or failed")
            })
        })
        .transpose()?;
    let before = params.one("cursor")?.map(|c| cursor::decode_id("cursor", c)).transpose()?;
    let limit = params.limit()?;
    let account = caller.account_id;
    let list = ctx
        .store
        .read(move |r| {
            r.webhook(account, id)?.ok_or_else(|| StoreError::not_found("webhook"))?;
            r.deliveries(account, id, status, before, limit + 1)
        })
        .await?;
    Ok(Json(super::page_of(list, limit, |d| d.id)))
}

async fn retry(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    let id: Uuid = id.parse().map_err(|_| ApiError::not_found("webhook"))?;
    let delivery: Uuid = delivery.parse().map_err(|_| ApiError::not_found("delivery"))?;
    let account = caller.account_id;
    let found = ctx
        .store
        .write(move |tx| {
            let now = tx.now();
            if !tx.retry_delivery(account, id, delivery, now)? {
                return Err(StoreError::not_found("delivery"));
            }
            tx.delivery(account, id, delivery)?.ok_or_else(|| StoreError::not_found("delivery"))
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(found)))
}

async fn test(State(ctx): State<ApiContext>, Admin(caller): Admin, PathId(id): PathId) -> ApiResult<Json<Attempt>> {
    let account = caller.account_id;
    let (webhook, secrets) = ctx
        .store
        .read(move |r| {
            let webhook = r.webhook(account, id)?.ok_or_else(|| StoreError::not_found("webhook"))?;
            let secrets = r.webhook_secrets(account, id)?.ok_or_else(|| StoreError::not_found("webhook"))?;
            Ok((webhook, secrets))
        })
        .await?;
    let now = super::now();
    let event_id = Uuid::now_v7();
    let data = serde_json::json!({"id": event_id, "type": "webhook_test", "occurred_at": now, "account_id": account, "webhook_id": id});
    let body = ops::payload("webhook_test", now, &data.to_string());
    let outcome = ctx.webhooks.send(&webhook.url, &secrets, event_id, &body).await;
    Ok(Json(Attempt {
        number: 1,
        at: now,
        status_code: outcome.status_code,
        duration_ms: outcome.duration_ms,
        response_body: outcome.response_body,
        error: outcome.error,
    }))
}

async fn rotate(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
) -> ApiResult<Json<WebhookWithSecret>> {
    let secret = secret()?;
    let (account, stored) = (caller.account_id, secret.clone());
    let webhook = ctx.store.write(move |tx| ops::rotate_secret(tx, account, id, &stored)).await?;
    Ok(Json(WebhookWithSecret { webhook, secret }))
}
