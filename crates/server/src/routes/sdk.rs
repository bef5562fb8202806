//! What the web widget and mobile apps call: sessions (anonymous or with a JWT), and the
//! customer's own conversations, messages, reads and typing. Another customer's conversation
//! is a 404.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Json;
use parley_core::conversation::{Conversation, Status};
use parley_core::customer::{Customer, CustomerRef};
use parley_core::message::{AuthorType, Content, Message};
use parley_core::{DomainError, Timestamp, Uuid};
use parley_store::ops::messages::{self, NewMessage};
use parley_store::ops::{conversations, sdk};
use parley_store::{ConversationFilter, ReaderRef, Reads, SdkSession, StoreError, StoreExt, Tx};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::messages::{customer_author, message_page, MessagePage};
use crate::auth::{bearer_token, hash_secret, new_secret, session_of, SdkCaller, SESSION_PREFIX};
use crate::context::ApiContext;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, PathId};
use crate::hub::Typing;
use crate::jwt::{self, JwtError};
use crate::openapi::{Access, Api, Op};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StartSession {
    /// A JWT the business signed (HS256, `kid` of an integration key) for a verified customer;
    /// omitted: an anonymous customer. Send the device's previous session token as the bearer
    /// credential to keep its customer (an anonymous device that logs in keeps its history).
    #[serde(default)]
    jwt: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct SessionStarted {
    /// The device's credential for every SDK path (shown only now).
    session_token: String,
    session_id: Uuid,
    verified: bool,
    customer: Customer,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerMessage {
    content: Content,
    /// Makes a resend idempotent: the same value answers the original message.
    #[serde(default)]
    client_message_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StartConversation {
    /// The first message, if any.
    #[serde(default)]
    message: Option<CustomerMessage>,
}

/// A conversation as its customer sees it.
#[derive(Serialize, JsonSchema)]
struct CustomerConversation {
    id: Uuid,
    integration_id: Uuid,
    status: Status,
    messages_count: i64,
    /// Messages from the business the customer has not read.
    unread_count: i64,
    created_at: Timestamp,
    updated_at: Timestamp,
    ended_at: Option<Timestamp>,
}

#[derive(Serialize, JsonSchema)]
struct ConversationStarted {
    conversation: CustomerConversation,
    message: Option<Message>,
}

#[derive(Serialize, JsonSchema)]
struct CustomerConversations {
    data: Vec<CustomerConversation>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadReceipt {
    #[serde(default)]
    message_id: Option<Uuid>,
}

#[derive(Serialize, JsonSchema)]
struct ReadState {
    conversation_id: Uuid,
    last_read_seq: i64,
    unread_count: i64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TypingInput {
    /// true while typing; false when stopped.
    typing: bool,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::post("/v1/sdk/{integration_id}/sessions", "Start a customer session: anonymous, or verified by a JWT")
            .tag("sdk")
            .access(Access::Public)
            .body::<StartSession>()
            .answers::<SessionStarted>(201),
        post(start_session),
    )
    .route(
        Op::get("/v1/sdk/conversations", "The customer's own conversations on this integration, newest first")
            .tag("sdk")
            .paged()
            .answers::<CustomerConversations>(200),
        get(list),
    )
    .route(
        Op::post("/v1/sdk/conversations", "Start a conversation, optionally with its first message")
            .tag("sdk")
            .body::<StartConversation>()
            .answers::<ConversationStarted>(201),
        post(start),
    )
    .route(
        Op::get("/v1/sdk/conversations/{id}", "One of the customer's conversations")
            .tag("sdk")
            .answers::<CustomerConversation>(200),
        get(show),
    )
    .route(
        Op::post(
            "/v1/sdk/conversations/{id}/messages",
            "Send as the customer (an ended conversation reopens within its window)",
        )
        .tag("sdk")
        .body::<CustomerMessage>()
        .answers::<Message>(201),
        post(send),
    )
    .route(
        Op::get("/v1/sdk/conversations/{id}/messages", "The complete history, paged in either direction")
            .tag("sdk")
            .query("after", "messages with a greater seq")
            .query("before", "messages with a smaller seq")
            .query("limit", "1–1000, default 50")
            .answers::<MessagePage>(200),
        get(history),
    )
    .route(
        Op::post("/v1/sdk/conversations/{id}/read", "Read receipt")
            .tag("sdk")
            .body::<ReadReceipt>()
            .answers::<ReadState>(200),
        post(read),
    )
    .route(
        Op::post("/v1/sdk/conversations/{id}/typing", "Typing indicator (live only, never logged)")
            .tag("sdk")
            .body::<TypingInput>()
            .no_content(),
        post(typing),
    )
}

fn jwt_refusal(e: JwtError) -> ApiError {
    let mut problem = ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.detail());
    problem.field = e.field();
    problem
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

async fn start_session(
    State(ctx): State<ApiContext>,
    Path(integration_id): Path<String>,
    headers: HeaderMap,
    Body(input): Body<StartSession>,
) -> ApiResult<(StatusCode, Json<SessionStarted>)> {
    let integration_id: Uuid = integration_id.parse().map_err(|_| ApiError::not_found("integration"))?;
    let found = ctx.store.read(move |r| r.integration_by_id(integration_id)).await?;
    let (account, _) = found.filter(|(_, i)| !i.is_deleted()).ok_or_else(|| ApiError::not_found("integration"))?;
    let previous = match bearer_token(&headers) {
        Some(token) if token.starts_with(SESSION_PREFIX) => Some(
            session_of(&ctx, &token)
                .await?
                .ok_or_else(|| ApiError::unauthorized("the previous session token is not valid"))?,
        ),
        _ => None,
    };
    let identity = match input.jwt {
        None => sdk::Identity::Anonymous,
        Some(token) => {
            let unverified = jwt::parse(&token).map_err(jwt_refusal)?;
            let kid = unverified.kid.clone();
            let secret = ctx.store.read(move |r| r.signing_secret(account, integration_id, &kid)).await?;
            let secret = secret.ok_or_else(|| jwt_refusal(JwtError::UnknownKid(unverified.kid.clone())))?;
            let claims = unverified.verify(&secret, unix_now()).map_err(jwt_refusal)?;
            sdk::Identity::Verified {
                external_id: claims.external_id,
                name: claims.name,
                email: claims.email,
                email_verified: claims.email_verified,
            }
        }
    };
    let session_token = new_secret(SESSION_PREFIX)?;
    let hash = hash_secret(&session_token);
    let (session, customer) =
        ctx.store.write(move |tx| sdk::start_session(tx, account, integration_id, identity, previous, &hash)).await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionStarted { session_token, session_id: session.id, verified: session.verified, customer }),
    ))
}

fn reader(session: &SdkSession) -> ReaderRef {
    ReaderRef { kind: AuthorType::Customer, id: session.customer_id }
}

fn customer_view(r: &dyn Reads, session: &SdkSession, c: Conversation) -> Result<CustomerConversation, StoreError> {
    let unread_count = r.count_unread(c.id, reader(session))?;
    Ok(CustomerConversation {
        id: c.id,
        integration_id: c.integration_id,
        status: c.status,
        messages_count: c.messages_count,
        unread_count,
        created_at: c.created_at,
        updated_at: c.updated_at,
        ended_at: c.ended_at,
    })
}

/// The session's conversation `id`, if it is this customer's.
fn owned(r: &dyn Reads, session: &SdkSession, id: Uuid) -> Result<Conversation, StoreError> {
    let conversation = r.conversation(session.account_id, id)?.ok_or_else(|| StoreError::not_found("conversation"))?;
    refuse_others(session, &conversation)?;
    Ok(conversation)
}

/// Another customer's conversation is answered as if it did not exist.
fn refuse_others(session: &SdkSession, conversation: &Conversation) -> Result<(), StoreError> {
    if conversation.customer_id != session.customer_id {
        return Err(StoreError::not_found("conversation"));
    }
    Ok(())
}

/// The session's customer, refused if suspended.
fn active_customer(tx: &dyn Tx, session: &SdkSession) -> Result<Customer, StoreError> {
    let customer =
        tx.customer(session.account_id, session.customer_id)?.ok_or_else(|| StoreError::not_found("customer"))?;
    refuse_suspended(&customer)?;
    Ok(customer)
}

fn refuse_suspended(customer: &Customer) -> Result<(), StoreError> {
    if customer.suspended {
        return Err(DomainError::Conflict {
            code: "customer_suspended",
            detail: "this customer is suspended: their messages are refused until they are unsuspended".into(),
        }
        .into());
    }
    Ok(())
}

async fn list(
    State(ctx): State<ApiContext>,
    SdkCaller(session): SdkCaller,
    params: Params,
) -> ApiResult<Json<CustomerConversations>> {
    params.only(&["cursor", "limit"])?;
    let limit = params.limit()?;
    let filter = ConversationFilter {
        customer_id: Some(session.customer_id),
        integration_id: Some(session.integration_id),
        before_id: params.one("cursor")?.map(|c| crate::cursor::decode_id("cursor", c)).transpose()?,
        limit: limit + 1,
        ..ConversationFilter::default()
    };
    let views = ctx
        .store
        .read(move |r| {
            let list = r.conversations(session.account_id, &filter)?;
            list.into_iter().map(|c| customer_view(r, &session, c)).collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let page = super::page_of(views, limit, |v| v.id);
    Ok(Json(CustomerConversations { data: page.data, next_cursor: page.next_cursor }))
}

async fn show(
    State(ctx): State<ApiContext>,
    SdkCaller(session): SdkCaller,
    PathId(id): PathId,
) -> ApiResult<Json<CustomerConversation>> {
    Ok(Json(ctx.store.read(move |r| customer_view(r, &session, owned(r, &session, id)?)).await?))
}

fn customer_message(customer: &Customer, input: CustomerMessage) -> NewMessage {
    NewMessage { author: customer_author(customer), content: input.content, client_message_id: input.client_message_id }
}

async fn start(
    State(ctx): State<ApiContext>,
    SdkCaller(session): SdkCaller,
    Body(input): Body<StartConversation>,
) -> ApiResult<(StatusCode, Json<ConversationStarted>)> {
    let limits = ctx.limits.clone();
    let started = ctx
        .store
        .write(move |tx| {
            let customer = active_customer(tx, &session)?;
            let account = session.account_id;
            let by = CustomerRef { id: Some(customer.id), ..CustomerRef::default() };
            let conversation =
                conversations::create_conversation(tx, account, session.integration_id, by, customer.actor())?;
            let message = match input.message {
                Some(first) => {
                    let new = customer_message(&customer, first);
                    Some(messages::send_message(tx, account, conversation.id, new, customer.actor(), &limits)?.message)
                }
                None => None,
            };
            let conversation = owned(tx, &session, conversation.id)?;
            Ok(ConversationStarted { conversation: customer_view(tx, &session, conversation)?, message })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(started)))
}

async fn send(
    State(ctx): State<ApiContext>,
    SdkCaller(session): SdkCaller,
    PathId(id): PathId,
    Body(input): Body<CustomerMessage>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let limits = ctx.limits.clone();
    let sent = ctx
        .store
        .write(move |tx| {
            let thread = messages::Thread::load(tx, session.account_id, id)?;
            refuse_others(&session, &thread.conversation)?;
            refuse_suspended(&thread.customer)?;
            let new = customer_message(&thread.customer, input);
            let actor = thread.customer.actor();
            messages::send_in(tx, session.account_id, thread, new, actor, &limits)
        })
        .await?;
    let status = if sent.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(sent.message)))
}

async fn history(
    State(ctx): State<ApiContext>,
    SdkCaller(session): SdkCaller,
    PathId(id): PathId,
    params: Params,
) -> ApiResult<Json<MessagePage>> {
    message_page(&ctx, session.account_id, id, Some(session.customer_id), &params).await
}

async fn read(
    State(ctx): State<ApiContext>,
    SdkCaller(session): SdkCaller,
    PathId(id): PathId,
    Body(input): Body<ReadReceipt>,
) -> ApiResult<Json<ReadState>> {
    let state = ctx
        .store
        .write(move |tx| {
            owned(tx, &session, id)?;
            let customer = tx
                .customer(session.account_id, session.customer_id)?
                .ok_or_else(|| StoreError::not_found("customer"))?;
            conversations::mark_read(tx, session.account_id, id, reader(&session), input.message_id, customer.actor())
        })
        .await?;
    Ok(Json(ReadState { conversation_id: id, last_read_seq: state.last_read_seq, unread_count: state.unread_count }))
}

async fn typing(
    State(ctx): State<ApiContext>,
    SdkCaller(session): SdkCaller,
    PathId(id): PathId,
    Body(input): Body<TypingInput>,
) -> ApiResult<StatusCode> {
    let account = session.account_id;
    let customer = ctx
        .store
        .read(move |r| {
            owned(r, &session, id)?;
            r.customer(session.account_id, session.customer_id)?.ok_or_else(|| StoreError::not_found("customer"))
        })
        .await?;
    ctx.hub.typing(account, typing_signal(id, AuthorType::Customer, customer.id, customer.name, input.typing));
    Ok(StatusCode::NO_CONTENT)
}

/// A typing signal and its socket frame.
pub(crate) fn typing_signal(
    conversation: Uuid,
    author: AuthorType,
    id: Uuid,
    name: Option<String>,
    typing: bool,
) -> Typing {
    let frame = serde_json::json!({
        "type": "typing",
        "conversation_id": conversation,
        "author": {"type": author, "id": id, "name": name},
        "typing": typing,
    })
    .to_string();
    Typing { conversation_id: conversation, author, author_id: id, frame }
}

/// The agent-side typing indicator: `POST /v1/conversations/{id}/typing`.
pub(crate) async fn agent_typing(
    State(ctx): State<ApiContext>,
    crate::auth::Caller(caller): crate::auth::Caller,
    PathId(id): PathId,
    Body(input): Body<TypingInput>,
) -> ApiResult<StatusCode> {
    let agent =
        caller.agent.clone().ok_or_else(|| ApiError::invalid("typing", "only a key that acts as an agent types"))?;
    let account = caller.account_id;
    let exists = ctx.store.read(move |r| r.conversation(account, id)).await?;
    exists.ok_or_else(|| ApiError::not_found("conversation"))?;
    let kind = super::participant_kind(agent.kind);
    ctx.hub.typing(account, typing_signal(id, kind, agent.id, Some(agent.name), input.typing));
    Ok(StatusCode::NO_CONTENT)
}
