//! The API's one error type, rendered as RFC 9457 `application/problem+json` with a stable
//! machine `code` and, for validation, the field at fault.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parley_core::DomainError;
use parley_store::StoreError;
use serde_json::{json, Map, Value};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub field: Option<String>,
    /// Extra members of the problem (`current_status`, `reply_status`…).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), field: None, extra: Map::new() }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn bad_request(code: &'static str, field: &str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail).field(field)
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", detail).field(field)
    }

    pub fn not_found(resource: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{resource} not found"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let detail = e.to_string();
        match e {
            DomainError::Validation { field, reason } => ApiError::invalid(field, reason),
            DomainError::IllegalTransition { current, requested } => {
                ApiError::new(StatusCode::CONFLICT, "illegal_transition", detail)
                    .with("current_status", json!(current))
                    .with("requested_status", json!(requested))
            }
            DomainError::ReplyNotAllowed { reply_status } => {
                ApiError::new(StatusCode::CONFLICT, "reply_not_allowed", detail)
                    .with("reply_status", json!(reply_status))
            }
            DomainError::Conflict { code, .. } => ApiError::new(StatusCode::CONFLICT, code, detail),
            DomainError::LimitReached { code, .. } => ApiError::new(StatusCode::LOCKED, code, detail),
            DomainError::NotFound { resource } => ApiError::not_found(resource),
            DomainError::Forbidden { .. } => ApiError::forbidden(detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => d.into(),
            StoreError::Duplicate { field, detail } => {
                ApiError::new(StatusCode::CONFLICT, "duplicate", detail).field(field)
            }
            StoreError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server is shutting down or its store is unavailable",
            ),
            StoreError::Backend(msg) => {
                tracing::error!(error = %msg, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not complete this request",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("https://parley.dev/problems/{}", self.code)));
        body.insert("title".into(), json!(self.title()));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.insert("code".into(), json!(self.code));
        if let Some(field) = &self.field {
            body.insert("field".into(), json!(field));
        }
        body.extend(self.extra);
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
