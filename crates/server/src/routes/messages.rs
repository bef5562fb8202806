//! Messages: send (as an agent or bot, or as the customer on `api` integrations) and read the
//! complete history in both directions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use parley_core::event::Actor;

use parley_core::integration::ChannelType;
use parley_core::message::{Author, AuthorType, Content, Message};
use parley_core::Uuid;
use parley_store::ops::messages::{self, NewMessage};
use parley_store::{MessageWindow, StoreError, StoreExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::participant_kind;
use crate::auth::{AccountCaller, Caller};
use crate::context::ApiContext;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Params, PathId};
use crate::openapi::{Api, Op};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AuthorSpec {
    #[serde(rename = "type")]
    author_type: AuthorType,
    #[serde(default)]
    id: Option<Uuid>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SendMessage {
    content: Content,
    /// Makes a resend idempotent: the same value answers the original message.
    #[serde(default)]
    client_message_id: Option<String>,
    /// An agent key writes as its agent. An admin key names `{"type": "agent" | "bot", "id": …}`;
    /// on `api` integrations `{"type": "customer"}` writes as the conversation's customer.
    #[serde(default)]
    author: Option<AuthorSpec>,
}

/// A page of messages in ascending order.
#[derive(Serialize, JsonSchema)]
pub(crate) struct MessagePage {
    data: Vec<Message>,
    /// The `seq` to pass in the same parameter (`after` or `before`) for the next page in that
    /// direction; null when there is none.
    next_cursor: Option<String>,
}

pub fn routes(api: Api) -> Api {
    api.route(
        Op::post("/v1/conversations/{id}/messages", "Send a message")
            .tag("messages")
            .body::<SendMessage>()
            .answers::<Message>(201),
        post(send),
    )
    .route(
        Op::get("/v1/conversations/{id}/messages", "The complete history, paged in either direction")
            .tag("messages")
            .query("after", "messages with a greater seq (forward); omit both for the first page")
            .query("before", "messages with a smaller seq, the closest first page before it (backward)")
            .query("limit", "1–1000, default 50")
            .answers::<MessagePage>(200),
        get(history),
    )
}

/// Who writes, checked against the key: an agent key only as itself.
enum Writer {
    Business { agent_id: Uuid },
    Customer,
}

fn writer(caller: &AccountCaller, spec: Option<AuthorSpec>) -> ApiResult<Writer> {
    match (spec, &caller.agent) {
        (Some(AuthorSpec { author_type: AuthorType::Customer, id: None }), _) => Ok(Writer::Customer),
        (Some(AuthorSpec { author_type: AuthorType::Customer, id: Some(_) }), _) => {
            Err(ApiError::invalid("author.id", "a customer author is always the conversation's customer; omit `id`"))
        }
        (Some(AuthorSpec { author_type: AuthorType::System, .. }), _) => {
            Err(ApiError::invalid("author.type", "`system` messages are written by Parley itself"))
        }
        (Some(AuthorSpec { id: None, .. }), _) => {
            Err(ApiError::invalid("author.id", "name the agent or bot who writes"))
        }
        (Some(AuthorSpec { id: Some(id), .. }), Some(own)) if own.id != id => {
            Err(ApiError::forbidden("a key that acts as an agent writes only as that agent"))
        }
        (Some(AuthorSpec { id: Some(id), .. }), _) => {
            if caller.agent.is_none() {
                caller.require_admin()?;
            }
            Ok(Writer::Business { agent_id: id })
        }
        (None, Some(own)) => Ok(Writer::Business { agent_id: own.id }),
        (None, None) => Err(ApiError::invalid("author", "this key acts for no agent: name the author")),
    }
}

async fn send(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    Body(input): Body<SendMessage>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    let expected_type = input.author.as_ref().map(|a| a.author_type);
    let who = writer(&caller, input.author)?;
    let account = caller.account_id;
    let limits = ctx.limits.clone();
    let sent = ctx
        .store
        // Run again if a command it shares a commit with fails (`Store::write_again_boxed`): it
        // writes only through `tx`.
        .write_again(move |tx| {
            let thread = messages::Thread::load(tx, account, id)?;
            let (author, actor) = match who {
                Writer::Customer => {
                    if thread.integration.channel_type != ChannelType::Api {
                        return Err(parley_core::DomainError::invalid(
                            "author.type",
                            "only `api` integrations accept customer messages through this endpoint",
                        )
                        .into());
                    }
                    (customer_author(&thread.customer), thread.customer.actor())
                }
                Writer::Business { agent_id } => {
                    let agent = tx.agent(account, agent_id)?.ok_or_else(|| {
                        parley_core::DomainError::invalid("author.id", "no such agent or bot in this account")
                    })?;
                    let kind = participant_kind(agent.kind);
                    if expected_type.is_some_and(|t| t != kind) {
                        return Err(parley_core::DomainError::invalid(
                            "author.type",
                            format!("this author is a {}", kind.as_str()),
                        )
                        .into());
                    }
                    let author = Author { author_type: kind, id: Some(agent.id), name: Some(agent.name.clone()) };
                    let actor =
                        Actor { actor_type: kind, id: Some(agent.id), name: Some(agent.name), ..Actor::system() };
                    (author, actor)
                }
            };
            let new = NewMessage {
                author,
                content: input.content.clone(),
                client_message_id: input.client_message_id.clone(),
            };
            messages::send_in(tx, account, thread, new, actor, &limits)
        })
        .await?;
    let status = if sent.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(sent.message)))
}

async fn history(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    PathId(id): PathId,
    params: Params,
) -> ApiResult<Json<MessagePage>> {
    message_page(&ctx, caller.account_id, id, None, &params).await
}

pub(crate) fn customer_author(customer: &parley_core::customer::Customer) -> Author {
    Author { author_type: AuthorType::Customer, id: Some(customer.id), name: customer.name.clone() }
}

/// A page of a conversation's history; with `owner`, only if that customer owns it.
pub(crate) async fn message_page(
    ctx: &ApiContext,
    account: Uuid,
    id: Uuid,
    owner: Option<Uuid>,
    params: &Params,
) -> ApiResult<Json<MessagePage>> {
    params.only(&["after", "before", "limit"])?;
    let limit = params.limit()?;
    let window = match (params.int("after", 0)?, params.int("before", 1)?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("invalid_parameter", "before", "give `after` or `before`, not both"));
        }
        (Some(after), None) => MessageWindow::After(after),
        (None, Some(before)) => MessageWindow::Before(before),
        (None, None) => MessageWindow::First,
    };
    let page = ctx
        .store
        .read(move |r| {
            let visible = r.conversation(account, id)?.filter(|c| owner.is_none_or(|o| c.customer_id == o));
            if visible.is_none() {
                return Err(StoreError::not_found("conversation"));
            }
            r.messages(id, window, limit + 1)
        })
        .await?;
    let more = page.len() > limit;
    let mut data = page;
    let next_cursor = match window {
        MessageWindow::Before(_) => {
            if more {
                data.remove(0);
            }
            if more {
                data.first().map(|m| m.seq.to_string())
            } else {
                None
            }
        }
        _ => {
            data.truncate(limit);
            if more {
                data.last().map(|m| m.seq.to_string())
            } else {
                None
            }
        }
    };
    Ok(Json(MessagePage { data, next_cursor }))
}
