//! `GET /v1/ws`: the agents' and admins' socket. Subscribe with the log's filters and a cursor;
//! receive log events live (resumable, no gap, no duplicate), typing, colleagues' presence and
//! unread counts.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use parley_core::event::EventType;
use parley_core::{Timestamp, Uuid};
use parley_store::{LogQuery, ReaderRef, StoreExt};
use serde_json::Value;

use super::{bad_frame, drive, frame_type, unread_frame, Close, Outbox, SocketSession};
use crate::auth::{AccountCaller, Caller};
use crate::context::ApiContext;
use crate::hub::Live;
use crate::tail::{Step, Tail};

pub struct AgentSocket {
    ctx: ApiContext,
    caller: AccountCaller,
    /// What the peer subscribed to, followed without gaps; nothing is sent before it subscribes.
    tail: Option<Tail>,
    /// Where the subscription started: the resume point if no event was received.
    start: i64,
}

pub async fn handler(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(_) => return super::upgrade_required().into_response(),
    };
    let config = ctx.sockets;
    let session = Box::new(AgentSocket { ctx, caller, tail: None, start: 0 });
    super::configured(upgrade).on_upgrade(move |socket| drive(socket, config, session))
}

fn strings(frame: &Value, key: &str) -> Result<Vec<String>, String> {
    match frame.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("`{key}` holds strings")))
            .collect(),
        Some(_) => Err(format!("`{key}` is a string or a list of strings")),
    }
}

/// Reads a `subscribe` frame: the log's filters (`conversation_id`, `event_type`, `since`, `until`)
/// and `after`.
fn subscription(frame: &Value) -> Result<(LogQuery, Option<i64>), String> {
    let conversation_ids = strings(frame, "conversation_id")?
        .iter()
        .map(|s| s.parse::<Uuid>().map_err(|_| format!("`{s}` is not a conversation id")))
        .collect::<Result<Vec<_>, _>>()?;
    let types = strings(frame, "event_type")?
        .iter()
        .map(|s| EventType::parse(s).ok_or_else(|| format!("`{s}` is not an event type")))
        .collect::<Result<Vec<_>, _>>()?;
    let time = |key: &str| -> Result<Option<Timestamp>, String> {
        match frame.get(key).and_then(Value::as_str) {
            Some(s) => Timestamp::parse_rfc3339(s).map(Some).map_err(|e| e.0),
            None => Ok(None),
        }
    };
    let after = match frame.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(crate::cursor::decode_seq("after", c).map_err(|e| e.detail)?),
        Some(_) => return Err("`after` is a cursor string".into()),
    };
    let query = LogQuery {
        conversation_ids,
        since: time("since")?,
        until: time("until")?,
        types,
        after: 0,
        limit: crate::tail::PAGE,
    };
    Ok((query, after))
}

impl AgentSocket {
    fn agent_id(&self) -> Option<Uuid> {
        self.caller.agent.as_ref().map(|a| a.id)
    }

    async fn subscribe(&mut self, frame: &Value, out: &Outbox) -> Result<(), Close> {
        let (mut query, after) = match subscription(frame) {
            Ok(s) => s,
            Err(why) => {
                bad_frame(out, &why);
                return Ok(());
            }
        };
        let account = self.caller.account_id;
        let unavailable = |_| Close::error("store unavailable");
        let seen = match after {
            Some(after) => after,
            None => Tail::log_end(&self.ctx.store, account).await.map_err(unavailable)?,
        };
        query.after = seen;
        self.start = seen;
        let mut tail = Tail::new(account, query, seen);
        // Catch up from storage; live events that arrive meanwhile wait in the hub.
        super::catch_up(&mut tail, &self.ctx, out, |_| true, false, seen).await?;
        let cursor = crate::cursor::encode_seq(tail.seen);
        self.tail = Some(tail);
        out.push(serde_json::json!({"type": "subscribed", "cursor": cursor}).to_string()).await
    }

    async fn typing(&self, conversation: Uuid, typing: bool, out: &Outbox) -> Result<(), Close> {
        let Some(agent) = self.caller.agent.clone() else {
            bad_frame(out, "only a key that acts as an agent types");
            return Ok(());
        };
        let account = self.caller.account_id;
        let exists = self.ctx.store.read(move |r| r.conversation(account, conversation)).await.ok().flatten();
        if exists.is_none() {
            bad_frame(out, "no such conversation");
            return Ok(());
        }
        let kind = crate::routes::participant_kind(agent.kind);
        let signal = crate::routes::typing_signal(conversation, kind, agent.id, Some(agent.name), typing);
        self.ctx.hub.typing(account, signal);
        Ok(())
    }

    async fn unread(&self, conversation: Uuid, out: &Outbox) -> Result<(), Close> {
        let Some(agent) = &self.caller.agent else { return Ok(()) };
        let reader = ReaderRef { kind: crate::routes::participant_kind(agent.kind), id: agent.id };
        let count = self
            .ctx
            .store
            .read(move |r| r.count_unread(conversation, reader))
            .await
            .map_err(|_| Close::error("store unavailable"))?;
        if out.offer(unread_frame(conversation, count)) {
            Ok(())
        } else {
            Err(Close::too_slow(self.start))
        }
    }
}

impl SocketSession for AgentSocket {
    fn context(&self) -> &ApiContext {
        &self.ctx
    }

    fn account(&self) -> Uuid {
        self.caller.account_id
    }

    async fn open(&mut self, out: &Outbox) -> Result<(), Close> {
        if let Some(agent) = self.agent_id() {
            self.ctx.presence.agent_connected(self.caller.account_id, agent);
        }
        let hello =
            serde_json::json!({"type": "hello", "account_id": self.caller.account_id, "agent_id": self.agent_id()});
        out.push(hello.to_string()).await
    }

    async fn client(&mut self, frame: Value, out: &Outbox) -> Result<(), Close> {
        match frame_type(&frame) {
            "subscribe" => self.subscribe(&frame, out).await,
            "unsubscribe" => {
                self.tail = None;
                Ok(())
            }
            _ => match super::common_frame(&frame, out) {
                Some((conversation, typing)) => self.typing(conversation, typing, out).await,
                None => Ok(()),
            },
        }
    }

    async fn live(&mut self, live: Live, out: &Outbox) -> Result<(), Close> {
        match live {
            Live::Event(entry) => {
                if entry.event_type == EventType::AgentStatusChanged {
                    if let Ok(event) = serde_json::from_str::<Value>(&entry.json) {
                        let data = &event["data"];
                        let frame = serde_json::json!({"type": "presence", "agent_id": data["agent_id"], "status": data["status"]});
                        if !out.offer(frame.to_string()) {
                            return Err(Close::too_slow(self.start));
                        }
                    }
                }
                let start = self.start;
                let Some(tail) = &mut self.tail else { return Ok(()) };
                match tail.offer(&entry) {
                    Step::Deliver => {
                        if !out.offer_event(entry.seq, &entry.json) {
                            return Err(Close::too_slow(start));
                        }
                    }
                    Step::Skip => {}
                    Step::Gap => super::catch_up(tail, &self.ctx, out, |_| true, true, start).await?,
                }
                let in_scope = tail.query.conversation_ids.is_empty()
                    || entry.conversation_id.is_some_and(|c| tail.query.conversation_ids.contains(&c));
                let counts = matches!(
                    entry.event_type,
                    EventType::MessageReceived | EventType::MessageSent | EventType::MessageRead
                );
                match entry.conversation_id {
                    Some(conversation) if counts && in_scope => self.unread(conversation, out).await,
                    _ => Ok(()),
                }
            }
            Live::Signal(_) => Ok(()),
            Live::Typing(typing) => {
                let Some(tail) = &self.tail else { return Ok(()) };
                let ids = &tail.query.conversation_ids;
                let in_scope = ids.is_empty() || ids.contains(&typing.conversation_id);
                if in_scope && Some(typing.author_id) != self.agent_id() && !out.offer(typing.frame.clone()) {
                    return Err(Close::too_slow(self.start));
                }
                Ok(())
            }
        }
    }

    fn cursor(&self) -> i64 {
        self.tail.as_ref().map_or(self.start, |t| t.seen)
    }

    async fn closed(&self) {
        if let Some(agent) = self.agent_id() {
            self.ctx.presence.agent_disconnected(self.caller.account_id, agent);
        }
    }
}
