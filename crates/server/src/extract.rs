//! Request extractors that turn every malformed input into a precise problem: JSON bodies
//! (syntax, types, unknown fields, size) and query strings (unknown, repeated, malformed).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use parley_core::{Timestamp, Uuid};
use serde::de::DeserializeOwned;

use crate::context::ApiContext;
use crate::error::ApiError;

/// A JSON request body of type `T`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiContext> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &ApiContext) -> Result<Self, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {} bytes", ctx.body_limit),
            )
        };
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > ctx.body_limit as u64) {
            return Err(too_large());
        }
        let json_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| {
            let mime = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
        let bytes = axum::body::to_bytes(req.into_body(), ctx.body_limit).await.map_err(|e| {
            if e.into_inner().is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::bad_request("unreadable_body", "body", "the request body could not be read")
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        if json_type == Some(false) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        parse_json(bytes).map(Body)
    }
}

/// Parses JSON, naming the field at fault in any error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Tracking the path costs every field of every body (5 % of the request threads' time
    // under `bench ingest`); only a body that fails is parsed again to name its field.
    if let Ok(value) = T::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    let err = match result {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    let mut path = err.path().to_string();
    if path == "." || path == "?" {
        path.clear();
    }
    let inner = err.into_inner();
    let category = inner.classify();
    let mut message = inner.to_string();
    // A nested parser reports its own position as "at `a.b`: reason" (see `Content`).
    if let Some(rest) = message.strip_prefix("at `") {
        if let Some((sub, reason)) = rest.split_once("`: ") {
            path = if path.is_empty() { sub.to_string() } else { format!("{path}.{sub}") };
            message = reason.to_string();
        }
    }
    let quoted = message.split('`').nth(1).map(str::to_string);
    let join = |name: Option<&str>| -> String {
        match (path.is_empty(), name) {
            (true, Some(n)) => n.to_string(),
            (false, Some(n)) if !path.ends_with(n) => format!("{path}.{n}"),
            (true, None) => "body".to_string(),
            _ => path.clone(),
        }
    };
    use serde_json::error::Category;
    Err(match category {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request("malformed_json", "body", format!("the body is not valid JSON: {message}"))
        }
        Category::Data if message.starts_with("unknown field") => {
            let name = quoted.as_deref().unwrap_or("?");
            ApiError::bad_request(
                "unknown_field",
                &join(Some(name)),
                format!("unknown field `{name}`; this endpoint accepts only its documented fields"),
            )
        }
        Category::Data if message.starts_with("missing field") => ApiError::invalid(join(quoted.as_deref()), message),
        Category::Data if message.starts_with("unknown variant") && path.ends_with("content") => {
            ApiError::invalid(format!("{path}.type"), message)
        }
        Category::Data => ApiError::invalid(join(None), message),
    })
}

/// The query string as name/value pairs, with typed, validated accessors.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        Ok(Params(form_urlencoded::parse(query.as_bytes()).into_owned().collect()))
    }
}

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

impl Params {
    /// Refuses any parameter not in `allowed` (and the credential parameter, always allowed).
    pub fn only(&self, allowed: &[&str]) -> Result<&Self, ApiError> {
        for (name, _) in &self.0 {
            if name != "access_token" && !allowed.contains(&name.as_str()) {
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    name,
                    format!("unknown query parameter `{name}`; accepted: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(self)
    }

    pub fn all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = name.to_string();
        self.0.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_request("invalid_parameter", name, format!("`{name}` may be given only once")));
        }
        Ok(first)
    }

    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        self.one(name)?.map(|v| parse_uuid(name, v)).transpose()
    }

    pub fn uuids(&self, name: &str) -> Result<Vec<Uuid>, ApiError> {
        self.all(name).map(|v| parse_uuid(name, v)).collect()
    }

    pub fn timestamp(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        self.one(name)?
            .map(|v| Timestamp::parse_rfc3339(v).map_err(|e| ApiError::bad_request("invalid_parameter", name, e.0)))
            .transpose()
    }

    pub fn int(&self, name: &str, min: i64) -> Result<Option<i64>, ApiError> {
        self.one(name)?
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n >= min).ok_or_else(|| {
                    ApiError::bad_request("invalid_parameter", name, format!("`{name}` must be an integer ≥ {min}"))
                })
            })
            .transpose()
    }

    /// `limit`: default 50, between 1 and 1000.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.one("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    "limit",
                    format!("`limit` must be an integer from 1 to {MAX_LIMIT}"),
                )
            }),
        }
    }
}

pub fn parse_uuid(name: &str, value: &str) -> Result<Uuid, ApiError> {
    value
        .parse::<Uuid>()
        .map_err(|_| ApiError::bad_request("invalid_parameter", name, format!("`{name}` must be a UUID")))
}

/// A UUID path segment; a malformed one is a 404 (no such resource), like an unknown one.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("resource"))?;
        raw.parse::<Uuid>().map(PathId).map_err(|_| ApiError::not_found("resource"))
    }
}
