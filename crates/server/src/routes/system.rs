//! Health, readiness, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use schemars::JsonSchema;
use serde::Serialize;

use crate::context::ApiContext;
use crate::error::ApiResult;
use crate::openapi::{Access, Api, Op};

#[derive(Serialize, JsonSchema)]
struct Health {
    status: &'static str,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::get("/healthz", "Liveness").tag("system").access(Access::Public).answers::<serde_json::Value>(200),
        get(healthz),
    )
    .route(
        Op::get("/readyz", "Readiness: the store answers")
            .tag("system")
            .access(Access::Public)
            .answers::<serde_json::Value>(200),
        get(readyz),
    )
    .route(
        Op::get("/metrics", "Prometheus metrics")
            .tag("system")
            .access(Access::Public)
            .answers_as::<String>(200, "text/plain"),
        get(metrics),
    )
    .route(
        Op::get("/openapi.json", "This document")
            .tag("system")
            .access(Access::Public)
            .answers::<serde_json::Value>(200),
        get(openapi),
    )
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn readyz(State(ctx): State<ApiContext>) -> ApiResult<Json<Health>> {
    ctx.store.ping().await?;
    Ok(Json(Health { status: "ready" }))
}

async fn metrics(State(ctx): State<ApiContext>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], ctx.metrics.render(ctx.hub.subscribers()))
}

async fn openapi(State(ctx): State<ApiContext>) -> Json<serde_json::Value> {
    Json((*ctx.openapi).clone())
}
