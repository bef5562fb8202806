//! Accounts (server admin) and account API keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Json;
use parley_core::account::{Account, ApiKey, Role};
use parley_core::Uuid;
use parley_store::ops::accounts::{self, NewKey};
use parley_store::StoreExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ListPage;
use crate::auth::{hash_secret, new_secret, Admin, ServerAdmin, API_KEY_PREFIX};
use crate::context::ApiContext;
use crate::error::ApiResult;
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Access, Api, Op};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateAccount {
    name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateApiKey {
    name: String,
    role: Role,
    /// Required for `agent` keys: the agent the key acts as.
    #[serde(default)]
    agent_id: Option<Uuid>,
}

/// A key just created: the only time its `secret` is shown.
#[derive(Serialize, JsonSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    key: ApiKey,
    secret: String,
}

#[derive(Serialize, JsonSchema)]
pub struct AccountCreated {
    #[serde(flatten)]
    account: Account,
    api_key: ApiKeyCreated,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::post("/v1/accounts", "Create an account and its first admin API key")
            .tag("accounts")
            .access(Access::ServerAdmin)
            .body::<CreateAccount>()
            .answers::<AccountCreated>(201),
        post(create_account),
    )
    .route(
        Op::post("/v1/api-keys", "Create an API key (the secret is shown only now)")
            .tag("api-keys")
            .access(Access::AdminKey)
            .body::<CreateApiKey>()
            .answers::<ApiKeyCreated>(201),
        post(create_key),
    )
    .route(
        Op::get("/v1/api-keys", "List API keys (never their secrets)")
            .tag("api-keys")
            .access(Access::AdminKey)
            .paged()
            .answers::<ListPage<ApiKey>>(200),
        get(list_keys),
    )
    .route(
        Op::delete("/v1/api-keys/{id}", "Delete an API key; it stops working at once")
            .tag("api-keys")
            .access(Access::AdminKey)
            .no_content(),
        delete(delete_key),
    )
}

/// A fresh secret and the parts of it the store keeps.
pub(crate) fn mint_key(name: String, role: Role, agent_id: Option<Uuid>) -> ApiResult<(NewKey, String)> {
    let secret = new_secret(API_KEY_PREFIX)?;
    let key = NewKey { name, role, agent_id, hash: hash_secret(&secret), prefix: secret.chars().take(10).collect() };
    Ok((key, secret))
}

async fn create_account(
    State(ctx): State<ApiContext>,
    _: ServerAdmin,
    Body(input): Body<CreateAccount>,
) -> ApiResult<(StatusCode, Json<AccountCreated>)> {
    let (key, secret) = mint_key("first admin key".into(), Role::Admin, None)?;
    let (account, key) = ctx.store.write(move |tx| accounts::create_account(tx, input.name, key)).await?;
    Ok((StatusCode::CREATED, Json(AccountCreated { account, api_key: ApiKeyCreated { key, secret } })))
}

async fn create_key(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    Body(input): Body<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<ApiKeyCreated>)> {
    let (key, secret) = mint_key(input.name, input.role, input.agent_id)?;
    let account = caller.account_id;
    let key = ctx.store.write(move |tx| accounts::create_api_key(tx, account, key)).await?;
    Ok((StatusCode::CREATED, Json(ApiKeyCreated { key, secret })))
}

async fn list_keys(
    State(ctx): State<ApiContext>,
    Admin(caller): Admin,
    params: Params,
) -> ApiResult<Json<ListPage<ApiKey>>> {
    super::list(&ctx, caller.account_id, &params, |r, account, page| r.api_keys(account, page), |k| k.id).await
}

async fn delete_key(State(ctx): State<ApiContext>, Admin(caller): Admin, PathId(id): PathId) -> ApiResult<StatusCode> {
    let account = caller.account_id;
    ctx.store.write(move |tx| accounts::delete_api_key(tx, account, id)).await?;
    ctx.keys.forget(id);
    Ok(StatusCode::NO_CONTENT)
}
