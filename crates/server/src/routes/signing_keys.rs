//! End-user signing keys of an integration: the secrets a business signs customer JWTs with.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Json;
use parley_core::integration::SigningKey;
use parley_core::Uuid;
use parley_store::ops::sdk;
use parley_store::StoreExt;
use schemars::JsonSchema;
use serde::Serialize;

use crate::auth::{new_secret, Admin};
use crate::context::ApiContext;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathId;
use crate::openapi::{Access, Api, Op};

/// A key just created: the only time its `secret` is shown.
#[derive(Serialize, JsonSchema)]
struct SigningKeyCreated {
    #[serde(flatten)]
    key: SigningKey,
    /// Sign HS256 JWTs with these bytes (UTF-8), naming `kid` in the header.
    secret: String,
}

#[derive(Serialize, JsonSchema)]
struct SigningKeys {
    data: Vec<SigningKey>,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::post(
            "/v1/integrations/{id}/keys",
            "Create an end-user signing key (at most 10; the secret is shown only now)",
        )
        .tag("integrations")
        .access(Access::AdminKey)
        .answers::<SigningKeyCreated>(201),
        post(create),
    )
    .route(
        Op::get("/v1/integrations/{id}/keys", "List an integration's signing keys (never their secrets)")
            .tag("integrations")
            .access(Access::AdminKey)
            .answers::<SigningKeys>(200),
        get(list),
    )
    .route(
        Op::delete("/v1/integrations/{id}/keys/{kid}", "Delete a signing key; tokens it signed stop working")
            .tag("integrations")
            .access(Access::AdminKey)
            .no_content(),
        delete(remove),
    )
}

async fn create(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    PathId(id): PathId,
) -> ApiResult<(StatusCode, Json<SigningKeyCreated>)> {
    let secret = new_secret("")?;
    let kid = format!("kid_{}", &new_secret("")?[..16]);
    let account = caller.account_id;
    let stored = secret.clone();
    let key = ctx.store.write(move |tx| sdk::create_signing_key(tx, account, id, kid, &stored)).await?;
    Ok((StatusCode::CREATED, Json(SigningKeyCreated { key, secret })))
}

async fn list(State(ctx): State<ApiContext>, Admin(caller): Admin, PathId(id): PathId) -> ApiResult<Json<SigningKeys>> {
    let account = caller.account_id;
    let data = ctx
        .store
        .read(move |r| {
            r.integration(account, id)?.ok_or_else(|| parley_store::StoreError::not_found("integration"))?;
            r.signing_keys(account, id)
        })
        .await?;
    Ok(Json(SigningKeys { data }))
}

async fn remove(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Path((id, kid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id: Uuid = id.parse().map_err(|_| ApiError::not_found("integration"))?;
    let account = caller.account_id;
    ctx.store.write(move |tx| sdk::delete_signing_key(tx, account, id, &kid)).await?;
    Ok(StatusCode::NO_CONTENT)
}
