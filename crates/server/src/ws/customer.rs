//! `GET /v1/sdk/ws`: a customer's socket. Their own conversations' customer-visible events
//! (resumable with `?after=`), typing from the business, unread counts, and whether an agent
//! is available. Connecting logs `customer_joined`, leaving `customer_left`.

use std::collections::{HashMap, HashSet};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use parley_core::agent::{AgentKind, AgentStatus};
use parley_core::conversation::Status;
use parley_core::event::EventType;
use parley_core::message::AuthorType;
use parley_core::routing::WaitEstimate;
use parley_core::{Timestamp, Uuid};
use parley_store::ops::routing::group_estimate;
use parley_store::ops::sdk::customer_presence;
use parley_store::{ConversationFilter, LogQuery, Page, ReaderRef, Reads, SdkSession, StoreError, StoreExt};
use serde_json::Value;

use super::{bad_frame, drive, unread_frame, Close, Feed, Outbox, SocketSession};
use crate::auth::SdkCaller;
use crate::context::ApiContext;
use crate::customer_feeds::is_signal;
use crate::extract::Params;
use crate::hub::Live;
use crate::queue_views::QueueView;
use crate::tail::{Step, Tail};

/// The events a customer sees; the rest (tags, transfers, triggers…) is the business's.
const VISIBLE: &[EventType] = &[
    EventType::ConversationCreated,
    EventType::ConversationOpened,
    EventType::ConversationStatusChanged,
    EventType::ConversationClosed,
    EventType::ConversationBlocked,
    EventType::MessageReceived,
    EventType::MessageSent,
    EventType::MessageDelivered,
    EventType::MessageRead,
    EventType::MessageFailed,
    EventType::AgentJoined,
    EventType::AgentLeft,
    EventType::BotJoined,
    EventType::BotLeft,
];

pub struct CustomerSocket {
    ctx: ApiContext,
    session: SdkSession,
    conversations: HashSet<Uuid>,
    resume: Option<i64>,
    /// The customer's conversations' visible events, followed without gaps.
    tail: Tail,
    available: Option<bool>,
    /// The queue position and estimate last sent for each of the customer's waiting conversations.
    queue: HashMap<Uuid, Standing>,
    /// Whether the hub routes this customer's events to it alone (see `customer_feeds`).
    routed: bool,
    /// The peer's `User-Agent`, for the device of `customer_joined` and `customer_left` (kept
    /// as text: a JSON object per idle socket costs more than the socket's own buffers).
    user_agent: Option<Box<str>>,
}

/// Where a waiting conversation stands in its queue, as the customer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Standing {
    position: i64,
    estimated_wait: Option<WaitEstimate>,
}

/// Each of the customer's waiting conversations and where it stands, from the account's queue
/// as read once for every socket (`queue_views.rs`); one it does not hold is counted here.
fn standings(
    r: &dyn Reads,
    session: &SdkSession,
    queue: &QueueView,
    now: Timestamp,
) -> Result<HashMap<Uuid, Standing>, StoreError> {
    let filter = ConversationFilter {
        customer_id: Some(session.customer_id),
        integration_id: Some(session.integration_id),
        status: Some(Status::Open),
        limit: 50,
        ..ConversationFilter::default()
    };
    let mut out = HashMap::new();
    for c in r.conversations(session.account_id, &filter)?.into_iter().filter(|c| c.is_waiting()) {
        let position = match queue.position(c.id) {
            Some(position) => position,
            None => r.queue_position(session.account_id, &c)?,
        };
        let estimated_wait = match queue.estimate(c.group_id) {
            Some(estimate) => estimate,
            None => group_estimate(r, session.account_id, c.group_id, now)?,
        };
        out.insert(c.id, Standing { position, estimated_wait });
    }
    Ok(out)
}

pub async fn handler(
    State(ctx): State<ApiContext>,
    SdkCaller(session): SdkCaller,
    params: Params,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let resume = match params.only(&["after"]).and_then(|p| p.one("after")) {
        Ok(Some(c)) => match crate::cursor::decode_seq("after", c) {
            Ok(seq) => Some(seq),
            Err(e) => return e.into_response(),
        },
        Ok(None) => None,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(_) => return super::upgrade_required().into_response(),
    };
    let user_agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).map(|s| s.chars().take(200).collect());
    let config = ctx.sockets;
    let socket = Box::new(CustomerSocket {
        tail: Tail::new(session.account_id, LogQuery::default(), 0),
        ctx: ctx.clone(),
        session,
        conversations: HashSet::new(),
        resume,
        available: None,
        queue: HashMap::new(),
        routed: ctx.hub.is_ordered(),
        user_agent,
    });
    super::configured(upgrade).on_upgrade(move |ws| drive(ws, config, socket))
}

/// Is an agent able to answer: online in the group of the customer's newest active
/// conversation, or anywhere in the account when it has no group.
fn availability(r: &dyn Reads, session: &SdkSession) -> Result<bool, StoreError> {
    let filter = ConversationFilter {
        customer_id: Some(session.customer_id),
        integration_id: Some(session.integration_id),
        limit: 50,
        ..ConversationFilter::default()
    };
    let group = r
        .conversations(session.account_id, &filter)?
        .into_iter()
        .find(|c| c.status.is_active())
        .and_then(|c| c.group_id);
    let members: Option<HashSet<Uuid>> = match group {
        Some(g) => r.group(session.account_id, g)?.map(|g| g.member_ids.into_iter().collect()),
        None => None,
    };
    let mut page = Page { after_id: None, limit: 1000 };
    loop {
        let agents = r.agents(session.account_id, &page)?;
        if agents.iter().any(|a| {
            a.kind == AgentKind::Agent
                && a.status == AgentStatus::Online
                && members.as_ref().is_none_or(|m| m.contains(&a.id))
        }) {
            return Ok(true);
        }
        match agents.last() {
            Some(last) if agents.len() == page.limit => page.after_id = Some(last.id),
            _ => return Ok(false),
        }
    }
}

/// Whether a `message_read` event is this customer's own read receipt.
fn read_by(entry: &parley_store::LogEntry, customer: Uuid) -> bool {
    let event: Value = serde_json::from_str(&entry.json).unwrap_or_default();
    let reader = &event["data"]["reader"];
    reader["type"] == "customer" && reader["id"].as_str() == Some(customer.to_string().as_str())
}

impl CustomerSocket {
    /// Whether an event belongs to this customer's conversations. Checked on every delivery:
    /// an empty filter of the log query means "all", and a customer may have no conversation.
    fn owns(&self, entry: &parley_store::LogEntry) -> bool {
        entry.conversation_id.is_some_and(|c| self.conversations.contains(&c))
    }

    fn device(&self) -> Value {
        serde_json::json!({"session_id": self.session.id, "user_agent": self.user_agent})
    }

    fn reader(&self) -> ReaderRef {
        ReaderRef { kind: AuthorType::Customer, id: self.session.customer_id }
    }

    async fn unread(&self, conversation: Uuid, out: &Outbox, live: bool) -> Result<(), Close> {
        let reader = self.reader();
        let count = self
            .ctx
            .store
            .read(move |r| r.count_unread(conversation, reader))
            .await
            .map_err(|_| Close::error("store unavailable"))?;
        let frame = unread_frame(conversation, count);
        if live {
            if out.offer(frame) {
                Ok(())
            } else {
                Err(Close::too_slow(self.tail.seen))
            }
        } else {
            out.push(frame).await
        }
    }

    /// Sends a `queue` frame for each waiting conversation whose position or estimate moved,
    /// and one with `position: null` for each that left the queue.
    /// `seq`: the log position the answer must reflect (the signal's, or what the socket has seen).
    async fn refresh_queue(&mut self, out: &Outbox, seq: i64) -> Result<(), Close> {
        let session = self.session.clone();
        let now = crate::routes::now();
        let queue = self
            .ctx
            .queue_views
            .at_least(&self.ctx.store, session.account_id, seq, now)
            .await
            .map_err(|_| Close::error("store unavailable"))?;
        let fresh = match queue.of_customer(session.customer_id, session.integration_id) {
            Some(mine) => mine
                .into_iter()
                .map(|(c, position, estimated_wait)| (c, Standing { position, estimated_wait }))
                .collect(),
            None => self
                .ctx
                .store
                .read(move |r| standings(r, &session, &queue, now))
                .await
                .map_err(|_| Close::error("store unavailable"))?,
        };
        let mut frames = Vec::new();
        for (conversation, standing) in &fresh {
            if self.queue.get(conversation) != Some(standing) {
                frames.push(serde_json::json!({
                    "type": "queue",
                    "conversation_id": conversation,
                    "position": standing.position,
                    "estimated_wait": standing.estimated_wait,
                }));
            }
        }
        for conversation in self.queue.keys().filter(|c| !fresh.contains_key(c)) {
            frames.push(serde_json::json!({
                "type": "queue", "conversation_id": conversation, "position": null, "estimated_wait": null,
            }));
        }
        self.queue = fresh;
        for frame in frames {
            if !out.offer(frame.to_string()) {
                return Err(Close::too_slow(self.tail.seen));
            }
        }
        Ok(())
    }

    async fn refresh_availability(&mut self, out: &Outbox) -> Result<(), Close> {
        let session = self.session.clone();
        let now = self
            .ctx
            .store
            .read(move |r| availability(r, &session))
            .await
            .map_err(|_| Close::error("store unavailable"))?;
        if self.available != Some(now) {
            self.available = Some(now);
            let frame = serde_json::json!({"type": "availability", "agents_available": now}).to_string();
            if !out.offer(frame) {
                return Err(Close::too_slow(self.tail.seen));
            }
        }
        Ok(())
    }
}

impl SocketSession for CustomerSocket {
    fn context(&self) -> &ApiContext {
        &self.ctx
    }

    fn account(&self) -> Uuid {
        self.session.account_id
    }

    fn feed(&self, hub: &crate::hub::Hub) -> Feed {
        if self.routed {
            Feed::Customer(hub.customer_feeds().subscribe(self.session.account_id, self.session.customer_id))
        } else {
            Feed::Account(hub.subscribe(self.session.account_id))
        }
    }

    async fn open(&mut self, out: &Outbox) -> Result<(), Close> {
        let session = self.session.clone();
        let (ids, last_seq) = self
            .ctx
            .store
            .read(move |r| {
                let filter = ConversationFilter {
                    customer_id: Some(session.customer_id),
                    integration_id: Some(session.integration_id),
                    limit: 10_000,
                    ..ConversationFilter::default()
                };
                let ids: Vec<Uuid> = r.conversations(session.account_id, &filter)?.into_iter().map(|c| c.id).collect();
                Ok((ids, r.last_seq(session.account_id)?))
            })
            .await
            .map_err(|_| Close::error("store unavailable"))?;
        self.conversations = ids.iter().copied().collect();
        let query = LogQuery { conversation_ids: ids.clone(), types: VISIBLE.to_vec(), ..LogQuery::default() };
        self.tail = Tail::new(self.session.account_id, query, self.resume.unwrap_or(last_seq));
        if self.routed {
            self.ctx.hub.customer_feeds().own(self.session.customer_id, &ids);
        }
        if self.ctx.presence.customer_connected(self.session.account_id, self.session.customer_id) {
            let (session, device) = (self.session.clone(), self.device());
            let joined = self.ctx.store.write(move |tx| customer_presence(tx, &session, true, device)).await;
            if let Err(e) = joined {
                tracing::warn!(error = %e, "could not log customer_joined");
            }
        }
        let hello = serde_json::json!({
            "type": "hello",
            "customer_id": self.session.customer_id,
            "cursor": crate::cursor::encode_seq(self.tail.seen),
        });
        out.push(hello.to_string()).await?;
        // A routed feed carries these conversations only from now: read what committed since the
        // conversations were listed (nothing, usually) — and, when resuming, what was missed.
        if (self.resume.is_some() || self.routed) && !ids.is_empty() {
            let (conversations, tail) = (&self.conversations, &mut self.tail);
            let owned = |e: &parley_store::LogEntry| e.conversation_id.is_some_and(|c| conversations.contains(&c));
            let fallback = tail.seen;
            super::catch_up(tail, &self.ctx, out, owned, false, fallback).await?;
        }
        for conversation in ids {
            self.unread(conversation, out, false).await?;
        }
        self.refresh_availability(out).await?;
        self.refresh_queue(out, self.tail.seen).await
    }

    async fn client(&mut self, frame: Value, out: &Outbox) -> Result<(), Close> {
        let Some((conversation, typing)) = super::common_frame(&frame, out) else { return Ok(()) };
        if !self.conversations.contains(&conversation) {
            bad_frame(out, "no such conversation");
            return Ok(());
        }
        let (account, customer) = (self.session.account_id, self.session.customer_id);
        let name =
            self.ctx.store.read(move |r| r.customer(account, customer)).await.ok().flatten().and_then(|c| c.name);
        let signal = crate::routes::typing_signal(conversation, AuthorType::Customer, customer, name, typing);
        self.ctx.hub.typing(account, signal);
        Ok(())
    }

    async fn live(&mut self, live: Live, out: &Outbox) -> Result<(), Close> {
        match live {
            Live::Signal(entry) => {
                if entry.event_type == EventType::AgentStatusChanged {
                    return self.refresh_availability(out).await;
                }
                let own = entry.conversation_id.is_some_and(|c| self.conversations.contains(&c));
                if own || !self.queue.is_empty() {
                    self.refresh_queue(out, entry.seq).await?;
                }
                Ok(())
            }
            Live::Event(entry) => {
                if self.routed {
                    // The feed carries this customer's events in `seq` order: nothing of theirs
                    // lies between what was seen and this one.
                    self.tail.seen = self.tail.seen.max(entry.seq - 1);
                }
                if entry.event_type == EventType::AgentStatusChanged {
                    self.tail.offer(&entry);
                    return self.refresh_availability(out).await;
                }
                let Some(conversation) = entry.conversation_id else {
                    self.tail.offer(&entry);
                    return Ok(());
                };
                if entry.event_type == EventType::ConversationCreated && !self.conversations.contains(&conversation) {
                    let event: Value = serde_json::from_str(&entry.json).unwrap_or_default();
                    if event["data"]["customer"]["id"].as_str() == Some(self.session.customer_id.to_string().as_str()) {
                        self.conversations.insert(conversation);
                        self.tail.query.conversation_ids.push(conversation);
                    }
                }
                match self.tail.offer(&entry) {
                    Step::Deliver if self.owns(&entry) => {
                        if !out.offer_event(entry.seq, &entry.json) {
                            return Err(Close::too_slow(self.tail.seen));
                        }
                    }
                    Step::Deliver | Step::Skip => {}
                    Step::Gap => {
                        let (conversations, tail) = (&self.conversations, &mut self.tail);
                        let owned =
                            |e: &parley_store::LogEntry| e.conversation_id.is_some_and(|c| conversations.contains(&c));
                        let fallback = tail.seen;
                        super::catch_up(tail, &self.ctx, out, owned, true, fallback).await?;
                    }
                }
                // Only the business's messages and the customer's own reading move their count (a
                // `message_received` is the customer's own message, never unread to them).
                let counts = match entry.event_type {
                    EventType::MessageSent => true,
                    EventType::MessageRead => read_by(&entry, self.session.customer_id),
                    _ => false,
                };
                let own = self.conversations.contains(&conversation);
                if counts && own {
                    self.unread(conversation, out, true).await?;
                }
                // Only a customer who waits (or whose conversation just moved) looks the queue up;
                // a routed socket hears these on its signals feed.
                if !self.routed && is_signal(&entry) && (own || !self.queue.is_empty()) {
                    self.refresh_queue(out, entry.seq).await?;
                }
                Ok(())
            }
            Live::Typing(typing) => {
                if typing.author != AuthorType::Customer
                    && self.conversations.contains(&typing.conversation_id)
                    && !out.offer(typing.frame.clone())
                {
                    return Err(Close::too_slow(self.tail.seen));
                }
                Ok(())
            }
        }
    }

    fn cursor(&self) -> i64 {
        self.tail.seen
    }

    async fn closed(&self) {
        if self.ctx.presence.customer_disconnected(self.session.account_id, self.session.customer_id) {
            let (session, device) = (self.session.clone(), self.device());
            if let Err(e) = self.ctx.store.write(move |tx| customer_presence(tx, &session, false, device)).await {
                tracing::warn!(error = %e, "could not log customer_left");
            }
        }
    }
}
