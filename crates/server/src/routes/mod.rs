//! The HTTP resources, one module each, and what they share: list pages and the conversation
//! view.

mod accounts;
mod agents;
mod conversations;
mod customers;
mod groups;
mod integrations;
mod log;
mod messages;
mod queue;
mod sdk;
mod signing_keys;
mod system;
mod triggers;
mod webhooks;

use std::time::{SystemTime, UNIX_EPOCH};

use parley_core::conversation::{Conversation, Participant, ReplyStatus};
use parley_core::{Timestamp, Uuid};
use parley_store::{Page, Reads, StoreError, StoreExt};
use schemars::JsonSchema;
use serde::Serialize;

use crate::cursor;
use crate::error::ApiResult;
use crate::extract::Params;
use crate::openapi::Api;

/// Every route of the API, documented.
pub fn api() -> Api {
    let api = Api::default();
    let api = system::routes(api);
    let api = accounts::routes(api);
    let api = agents::routes(api);
    let api = groups::routes(api);
    let api = integrations::routes(api);
    let api = customers::routes(api);
    let api = conversations::routes(api);
    let api = messages::routes(api);
    let api = signing_keys::routes(api);
    let api = sdk::routes(api);
    let api = sockets(api);
    let api = webhooks::routes(api);
    let api = queue::routes(api);
    let api = triggers::routes(api);
    log::routes(api)
}

pub(crate) use sdk::typing_signal;

fn sockets(api: Api) -> Api {
    use crate::openapi::{Access, Op};
    api.route(
        Op::get("/v1/ws", "WebSocket for agents and admins: subscribe to the log live, typing, presence, unread counts (see docs/websocket.md)")
            .tag("live")
            .query("access_token", "the credential, for clients that cannot set headers")
            .answers_as::<String>(101, "application/json"),
        axum::routing::get(crate::ws::agent::handler),
    )
    .route(
        Op::get("/v1/sdk/ws", "WebSocket for a customer: their conversations live, typing, unread counts, agent availability")
            .tag("sdk")
            .access(Access::AnyKey)
            .query("access_token", "the session token, for browsers")
            .query("after", "cursor: resume after it")
            .answers_as::<String>(101, "application/json"),
        axum::routing::get(crate::ws::customer::handler),
    )
}

pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// One page of a list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListPage<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The page a request asks for: `cursor` and `limit`. One more item than the limit is read, to
/// know whether a next page exists.
pub(crate) fn requested_page(params: &Params) -> ApiResult<(Page, usize)> {
    let limit = params.limit()?;
    let after_id = params.one("cursor")?.map(|c| cursor::decode_id("cursor", c)).transpose()?;
    Ok((Page { after_id, limit: limit + 1 }, limit))
}

/// Reads one page of an account's resources of one kind.
pub(crate) type PageReader<T> = fn(&dyn Reads, Uuid, &Page) -> Result<Vec<T>, StoreError>;

/// A `GET` list of an account's resources in creation order, paged by `cursor`.
pub(crate) async fn list<T: Send + 'static>(
    ctx: &crate::context::ApiContext,
    account: Uuid,
    params: &Params,
    read: PageReader<T>,
    id: fn(&T) -> Uuid,
) -> ApiResult<axum::Json<ListPage<T>>> {
    params.only(&["cursor", "limit"])?;
    let (page, limit) = requested_page(params)?;
    let items = ctx.store.read(move |r| read(r, account, &page)).await?;
    Ok(axum::Json(page_of(items, limit, id)))
}

/// A `GET` of one resource of the account, or a 404 naming it.
pub(crate) async fn show<T: Send + 'static>(
    ctx: &crate::context::ApiContext,
    resource: &'static str,
    read: impl FnOnce(&dyn Reads) -> Result<Option<T>, StoreError> + Send + 'static,
) -> ApiResult<axum::Json<T>> {
    let found = ctx.store.read(read).await?;
    found.map(axum::Json).ok_or_else(|| crate::error::ApiError::not_found(resource))
}

pub(crate) fn page_of<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> Uuid) -> ListPage<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more { items.last().map(|item| cursor::encode_id(id(item))) } else { None };
    ListPage { data: items, next_cursor }
}

/// A conversation as the API shows it: with its reply status for the caller.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConversationView {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub reply_status: ReplyStatus,
}

pub(crate) fn view(
    r: &dyn Reads,
    account: Uuid,
    conversation: Conversation,
    caller: Option<Participant>,
) -> Result<ConversationView, StoreError> {
    let integration =
        r.integration(account, conversation.integration_id)?.ok_or_else(|| StoreError::not_found("integration"))?;
    let reply_status = conversation.reply_status(&integration, caller, now());
    Ok(ConversationView { conversation, reply_status })
}

/// The participant an account key acts as, for reply status: its agent, if it has one.
pub(crate) fn participant(caller: &crate::auth::AccountCaller) -> Option<Participant> {
    caller.agent.as_ref().map(|a| Participant { kind: participant_kind(a.kind), id: a.id })
}

pub(crate) fn participant_kind(kind: parley_core::agent::AgentKind) -> parley_core::message::AuthorType {
    match kind {
        parley_core::agent::AgentKind::Agent => parley_core::message::AuthorType::Agent,
        parley_core::agent::AgentKind::Bot => parley_core::message::AuthorType::Bot,
    }
}
