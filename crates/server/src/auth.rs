//! Authentication: the server admin token and account API keys.
//!
//! Secrets are 32 random bytes, shown once and stored only as a SHA-256 hash. A fast hash is
//! the right tool for high-entropy secrets (a slow password hash protects guessable ones), and
//! it lets every request be authenticated by one indexed lookup — cached in memory for a
//! minute, and dropped from the cache at once when the key is deleted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parley_core::account::Role;
use parley_core::agent::AgentKind;
use parley_core::event::Actor;
use parley_core::message::AuthorType;
use parley_core::Uuid;
use parley_store::StoreExt;
use sha2::{Digest, Sha256};

use crate::context::ApiContext;
use crate::error::{ApiError, ApiResult};

const CACHE_TTL: Duration = Duration::from_secs(60);
pub const API_KEY_PREFIX: &str = "pk_";
pub const ADMIN_TOKEN_PREFIX: &str = "padm_";
pub const SESSION_PREFIX: &str = "pst_";

/// A new random secret: `prefix` + 43 characters of base64url (256 bits).
pub fn new_secret(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "the operating system's random source failed");
        ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "no randomness available")
    })?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a secret: its SHA-256 in lowercase hex. Every authenticated request
/// computes it (it is the key of the key cache), so the hex is written without `format!`.
pub fn hash_secret(secret: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0xf)] as char);
    }
    hex
}

/// The agent an API key acts as.
#[derive(Debug, Clone)]
pub struct AgentRef {
    pub id: Uuid,
    pub kind: AgentKind,
    pub name: String,
}

/// An authenticated account API key.
#[derive(Debug, Clone)]
pub struct AccountCaller {
    pub account_id: Uuid,
    pub key_id: Uuid,
    pub key_name: String,
    pub role: Role,
    pub agent: Option<AgentRef>,
}

impl AccountCaller {
    /// Who the log records as the cause: the key's agent, or else the key itself as `system`.
    pub fn actor(&self) -> Actor {
        match &self.agent {
            Some(agent) => Actor {
                actor_type: match agent.kind {
                    AgentKind::Agent => AuthorType::Agent,
                    AgentKind::Bot => AuthorType::Bot,
                },
                id: Some(agent.id),
                name: Some(agent.name.clone()),
                ..Actor::system()
            },
            None => {
                Actor { id: Some(self.key_id), name: Some(format!("api key {}", self.key_name)), ..Actor::system() }
            }
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an account key with the `admin` role"))
        }
    }
}

#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (AccountCaller, Instant)>>,
}

impl KeyCache {
    fn get(&self, hash: &str) -> Option<AccountCaller> {
        let entries = self.entries.lock().ok()?;
        entries.get(hash).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(c, _)| c.clone())
    }

    fn put(&self, hash: String, caller: AccountCaller) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 100_000 {
                entries.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            }
            entries.insert(hash, (caller, Instant::now()));
        }
    }

    /// Forgets a key at once (it was deleted).
    pub fn forget(&self, key_id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (c, _)| c.key_id != key_id);
        }
    }

    /// Forgets every key acting as `agent_id` (its name or kind changed).
    pub fn forget_agent(&self, agent_id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (c, _)| c.agent.as_ref().is_none_or(|a| a.id != agent_id));
        }
    }
}

/// The bearer token of a request's headers, if well-formed.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim().to_string())
}

pub(crate) fn bearer(parts: &Parts) -> ApiResult<String> {
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is unreadable"))?;
        let (scheme, token) =
            value.split_once(' ').ok_or_else(|| ApiError::unauthorized("use `Authorization: Bearer <token>`"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthorized("use `Authorization: Bearer <token>`"));
        }
        return Ok(token.trim().to_string());
    }
    let from_query = parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned())
    });
    from_query.ok_or_else(|| ApiError::unauthorized("credentials are missing: send `Authorization: Bearer <token>`"))
}

/// Who is calling: the server's operator, or an account key.
pub enum Principal {
    ServerAdmin,
    Account(AccountCaller),
}

async fn authenticate(parts: &Parts, ctx: &ApiContext) -> ApiResult<Principal> {
    let token = bearer(parts)?;
    let hash = hash_secret(&token);
    if ctx.admin_token_hashes.contains(&hash) {
        return Ok(Principal::ServerAdmin);
    }
    if let Some(caller) = ctx.keys.get(&hash) {
        return Ok(Principal::Account(caller));
    }
    let lookup = hash.clone();
    let found = ctx
        .store
        .read(move |r| {
            let Some((account_id, key)) = r.api_key_by_hash(&lookup)? else {
                return Ok(None);
            };
            let agent = match key.agent_id {
                Some(id) => r.agent(account_id, id)?.map(|a| AgentRef { id: a.id, kind: a.kind, name: a.name }),
                None => None,
            };
            Ok(Some(AccountCaller { account_id, key_id: key.id, key_name: key.name, role: key.role, agent }))
        })
        .await?;
    let caller = found.ok_or_else(|| ApiError::unauthorized("the token is not valid"))?;
    ctx.keys.put(hash, caller.clone());
    Ok(Principal::Account(caller))
}

/// Any account API key (admin or agent).
pub struct Caller(pub AccountCaller);

impl FromRequestParts<ApiContext> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> ApiResult<Self> {
        match authenticate(parts, ctx).await? {
            Principal::Account(caller) => Ok(Caller(caller)),
            Principal::ServerAdmin => {
                Err(ApiError::forbidden("the server admin token manages accounts; use an account API key here"))
            }
        }
    }
}

/// An account API key with the `admin` role.
pub struct Admin(pub AccountCaller);

impl FromRequestParts<ApiContext> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> ApiResult<Self> {
        let Caller(caller) = Caller::from_request_parts(parts, ctx).await?;
        caller.require_admin()?;
        Ok(Admin(caller))
    }
}

/// The server admin token.
pub struct ServerAdmin;

impl FromRequestParts<ApiContext> for ServerAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> ApiResult<Self> {
        match authenticate(parts, ctx).await? {
            Principal::ServerAdmin => Ok(ServerAdmin),
            Principal::Account(_) => Err(ApiError::forbidden("this needs the server admin token")),
        }
    }
}

/// A customer's device session (`pst_…`), from `POST /v1/sdk/{integration_id}/sessions`.
pub struct SdkCaller(pub parley_store::SdkSession);

/// The session a session token names, if it is one.
pub(crate) async fn session_of(ctx: &ApiContext, token: &str) -> ApiResult<Option<parley_store::SdkSession>> {
    if !token.starts_with(SESSION_PREFIX) {
        return Ok(None);
    }
    let hash = hash_secret(token);
    Ok(ctx.store.read(move |r| r.sdk_session_by_hash(&hash)).await?)
}

impl FromRequestParts<ApiContext> for SdkCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &ApiContext) -> ApiResult<Self> {
        let token = bearer(parts)?;
        if !token.starts_with(SESSION_PREFIX) {
            return Err(ApiError::unauthorized(
                "SDK paths take a session token from POST /v1/sdk/{integration_id}/sessions",
            ));
        }
        session_of(ctx, &token)
            .await?
            .map(SdkCaller)
            .ok_or_else(|| ApiError::unauthorized("the session token is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::hash_secret;

    #[test]
    fn a_secret_hashes_to_the_sha256_hex_stored_for_existing_keys() {
        // Stored hashes must keep matching: the FIPS 180-2 test vector, lowercase hex.
        assert_eq!(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hash_secret(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
