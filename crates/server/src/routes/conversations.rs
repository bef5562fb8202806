//! Conversations: create on behalf of a customer, list, get, status, assignment, tags, reads.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Json;
use parley_core::conversation::Status;
use parley_core::customer::CustomerRef;
use parley_core::Uuid;
use parley_store::ops::conversations::{self, AssignTo};
use parley_store::{ConversationFilter, ReaderRef, StoreExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{participant, view, ConversationView, ListPage};
use crate::auth::Caller;
use crate::context::ApiContext;
use crate::cursor;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Api, Op};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateConversation {
    integration_id: Uuid,
    /// `{"id": …}` for an existing customer, or `{"external_id": …, "name": …, "email": …}`
    /// (found or created); omitted: a new anonymous customer.
    #[serde(default)]
    customer: CustomerRef,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ChangeStatus {
    /// `ended`, `blocked` or `open` (reopen, unblock, or release back to the queue).
    status: Status,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Assignment {
    #[serde(default)]
    agent_id: Option<Uuid>,
    #[serde(default)]
    group_id: Option<Uuid>,
    /// An agent's answer to the offer made to them: `true` accepts, `false` declines.
    #[serde(default)]
    accept: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Tags {
    tags: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadReceipt {
    /// Read up to and including this message; omitted: up to the newest.
    #[serde(default)]
    message_id: Option<Uuid>,
    /// With an admin key that acts for no agent: the agent who read.
    #[serde(default)]
    agent_id: Option<Uuid>,
}

#[derive(Serialize, JsonSchema)]
struct ReadState {
    conversation_id: Uuid,
    last_read_seq: i64,
    unread_count: i64,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::post("/v1/conversations", "Start a conversation on behalf of a customer")
            .tag("conversations")
            .body::<CreateConversation>()
            .answers::<ConversationView>(201),
        post(create),
    )
    .route(
        Op::get("/v1/conversations", "List conversations, newest first")
            .tag("conversations")
            .query("status", "created | open | in_progress | on_hold | ended | blocked")
            .query("assignee_id", "agent or bot id")
            .query("group_id", "group id")
            .query("customer_id", "customer id")
            .query("integration_id", "integration id")
            .query("tag", "a tag")
            .paged()
            .answers::<ListPage<ConversationView>>(200),
        get(list),
    )
    .route(
        Op::get("/v1/conversations/{id}", "Get a conversation").tag("conversations").answers::<ConversationView>(200),
        get(show),
    )
    .route(
        Op::post("/v1/conversations/{id}/status", "End, block, reopen or unblock")
            .tag("conversations")
            .body::<ChangeStatus>()
            .answers::<ConversationView>(200),
        post(change_status),
    )
    .route(
        Op::post("/v1/conversations/{id}/assignment", "Assign or transfer to an agent or a group; accept an offer")
            .tag("conversations")
            .body::<Assignment>()
            .answers::<ConversationView>(200),
        post(assign),
    )
    .route(
        Op::post("/v1/conversations/{id}/tags", "Add tags")
            .tag("conversations")
            .body::<Tags>()
            .answers::<ConversationView>(200),
        post(add_tags),
    )
    .route(
        Op::delete("/v1/conversations/{id}/tags", "Remove tags")
            .tag("conversations")
            .body::<Tags>()
            .answers::<ConversationView>(200),
        delete(remove_tags),
    )
    .route(
        Op::post("/v1/conversations/{id}/read", "Read receipt: move the caller's read position")
            .tag("conversations")
            .body::<ReadReceipt>()
            .answers::<ReadState>(200),
        post(read),
    )
    .route(
        Op::post("/v1/conversations/{id}/typing", "Typing indicator of the calling agent (live only, never logged)")
            .tag("conversations")
            .body::<super::sdk::TypingInput>()
            .no_content(),
        post(super::sdk::agent_typing),
    )
}

async fn create(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    Body(input): Body<CreateConversation>,
) -> ApiResult<(StatusCode, Json<ConversationView>)> {
    let (account, actor, who) = (caller.account_id, caller.actor(), participant(&caller));
    let view = ctx
        .store
        .write(move |tx| {
            let c = conversations::create_conversation(tx, account, input.integration_id, input.customer, actor)?;
            view(tx, account, c, who)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    params: Params,
) -> ApiResult<Json<ListPage<ConversationView>>> {
    params.only(&["status", "assignee_id", "group_id", "customer_id", "integration_id", "tag", "cursor", "limit"])?;
    let status = params
        .one("status")?
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    "status",
                    "`status` must be created, open, in_progress, on_hold, ended or blocked",
                )
            })
        })
        .transpose()?;
    let limit = params.limit()?;
    let filter = ConversationFilter {
        status,
        assignee_id: params.uuid("assignee_id")?,
        group_id: params.uuid("group_id")?,
        customer_id: params.uuid("customer_id")?,
        integration_id: params.uuid("integration_id")?,
        tag: params.one("tag")?.map(|t| t.trim().to_lowercase()),
        before_id: params.one("cursor")?.map(|c| cursor::decode_id("cursor", c)).transpose()?,
        limit: limit + 1,
    };
    let (account, who) = (caller.account_id, participant(&caller));
    let views = ctx
        .store
        .read(move |r| {
            let list = r.conversations(account, &filter)?;
            list.into_iter().map(|c| view(r, account, c, who)).collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(super::page_of(views, limit, |v| v.conversation.id)))
}

async fn show(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> ApiResult<Json<ConversationView>> {
    let (account, who) = (caller.account_id, participant(&caller));
    let found =
        ctx.store.read(move |r| r.conversation(account, id)?.map(|c| view(r, account, c, who)).transpose()).await?;
    found.map(Json).ok_or_else(|| ApiError::not_found("conversation"))
}

/// Runs a conversation command and answers the conversation as the caller now sees it.
async fn command(
    ctx: &ApiContext,
    caller: &crate::auth::AccountCaller,
    f: impl FnOnce(
            &mut dyn parley_store::Tx,
            Uuid,
            parley_core::event::Actor,
        ) -> Result<parley_core::conversation::Conversation, parley_store::StoreError>
        + Send
        + 'static,
) -> ApiResult<Json<ConversationView>> {
    let (account, actor, who) = (caller.account_id, caller.actor(), participant(caller));
    let view = ctx
        .store
        .write(move |tx| {
            let c = f(tx, account, actor)?;
            view(tx, account, c, who)
        })
        .await?;
    Ok(Json(view))
}

async fn change_status(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    Body(input): Body<ChangeStatus>,
) -> ApiResult<Json<ConversationView>> {
    command(&ctx, &caller, move |tx, account, actor| conversations::change_status(tx, account, id, input.status, actor))
        .await
}

async fn assign(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    Body(input): Body<Assignment>,
) -> ApiResult<Json<ConversationView>> {
    let to = match (input.agent_id, input.group_id, input.accept) {
        (Some(agent), None, None) => AssignTo::Agent(agent),
        (None, Some(group), None) => AssignTo::Group(group),
        (None, None, Some(accept)) => {
            let agent = caller
                .agent
                .as_ref()
                .ok_or_else(|| ApiError::invalid("accept", "only a key that acts as an agent can answer an offer"))?;
            if accept {
                AssignTo::AcceptOffer(agent.id)
            } else {
                AssignTo::DeclineOffer(agent.id)
            }
        }
        _ => return Err(ApiError::invalid("body", "give exactly one of `agent_id`, `group_id` or `accept`")),
    };
    command(&ctx, &caller, move |tx, account, actor| conversations::assign(tx, account, id, to, actor)).await
}

async fn add_tags(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    Body(input): Body<Tags>,
) -> ApiResult<Json<ConversationView>> {
    let limits = ctx.limits.clone();
    command(&ctx, &caller, move |tx, account, actor| {
        conversations::change_tags(tx, account, id, &input.tags, &[], actor, &limits)
    })
    .await
}

async fn remove_tags(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    Body(input): Body<Tags>,
) -> ApiResult<Json<ConversationView>> {
    let limits = ctx.limits.clone();
    command(&ctx, &caller, move |tx, account, actor| {
        conversations::change_tags(tx, account, id, &[], &input.tags, actor, &limits)
    })
    .await
}

async fn read(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    Body(input): Body<ReadReceipt>,
) -> ApiResult<Json<ReadState>> {
    let reader = match (participant(&caller), input.agent_id) {
        (Some(p), None) => ReaderRef { kind: p.kind, id: p.id },
        (Some(p), Some(agent)) if p.id == agent => ReaderRef { kind: p.kind, id: p.id },
        (Some(_), Some(_)) => return Err(ApiError::forbidden("a key that acts as an agent reads only as that agent")),
        (None, Some(agent)) => {
            caller.require_admin()?;
            let account = caller.account_id;
            let found = ctx.store.read(move |r| r.agent(account, agent)).await?;
            let agent = found.ok_or_else(|| ApiError::invalid("agent_id", "no such agent in this account"))?;
            ReaderRef { kind: super::participant_kind(agent.kind), id: agent.id }
        }
        (None, None) => {
            return Err(ApiError::invalid("agent_id", "this key acts for no agent: name the reader with `agent_id`"))
        }
    };
    let (account, actor) = (caller.account_id, caller.actor());
    let actor = parley_core::event::Actor { actor_type: reader.kind, id: Some(reader.id), ..actor };
    let state =
        ctx.store.write(move |tx| conversations::mark_read(tx, account, id, reader, input.message_id, actor)).await?;
    Ok(Json(ReadState { conversation_id: id, last_read_seq: state.last_read_seq, unread_count: state.unread_count }))
}
