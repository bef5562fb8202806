//! Customers (end users).

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use parley_core::customer::{Customer, CustomerProfile};
use parley_store::ops::customers;
use parley_store::StoreExt;

use super::ListPage;
use crate::auth::Caller;
use crate::context::ApiContext;
use crate::error::ApiResult;
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Api, Op};

pub fn routes(api: Api) -> Api {
    api.route(
        Op::get("/v1/customers", "List customers").tag("customers").paged().answers::<ListPage<Customer>>(200),
        get(list),
    )
    .route(Op::get("/v1/customers/{id}", "Get a customer").tag("customers").answers::<Customer>(200), get(show))
    .route(
        Op::patch("/v1/customers/{id}", "Change a customer's profile (logged as `customer_updated`)")
            .tag("customers")
            .body::<CustomerProfile>()
            .answers::<Customer>(200),
        axum::routing::patch(update),
    )
    .route(
        Op::post("/v1/customers/{id}/suspend", "Suspend: their new messages are refused; nothing is lost")
            .tag("customers")
            .answers::<Customer>(200),
        post(suspend),
    )
    .route(
        Op::post("/v1/customers/{id}/unsuspend", "Lift a suspension").tag("customers").answers::<Customer>(200),
        post(unsuspend),
    )
}

async fn list(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    params: Params,
) -> ApiResult<Json<ListPage<Customer>>> {
    super::list(&ctx, caller.account_id, &params, |r, account, page| r.customers(account, page), |c| c.id).await
}

async fn show(State(ctx): State<ApiContext>, Caller(caller): Caller, PathId(id): PathId) -> ApiResult<Json<Customer>> {
    super::show(&ctx, "customer", move |r| r.customer(caller.account_id, id)).await
}

async fn update(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    Body(profile): Body<CustomerProfile>,
) -> ApiResult<Json<Customer>> {
    let (account, actor) = (caller.account_id, caller.actor());
    Ok(Json(ctx.store.write(move |tx| customers::update_customer(tx, account, id, profile, actor)).await?))
}

async fn set_suspended(
    ctx: ApiContext,
    caller: crate::auth::AccountCaller,
    id: parley_core::Uuid,
    suspended: bool,
) -> ApiResult<Json<Customer>> {
    let (account, actor) = (caller.account_id, caller.actor());
    Ok(Json(ctx.store.write(move |tx| customers::set_suspended(tx, account, id, suspended, actor)).await?))
}

async fn suspend(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> ApiResult<Json<Customer>> {
    set_suspended(ctx, caller, id, true).await
}

async fn unsuspend(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> ApiResult<Json<Customer>> {
    set_suspended(ctx, caller, id, false).await
}
