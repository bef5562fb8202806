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

use super::{bad_frame, drive, event_frame, frame_type, unread_frame, Close, Outbox, SocketSession};
use crate::auth::{AccountCaller, Caller};
use crate::context::ApiContext;
use crate::hub::Live;

const CATCH_UP_PAGE: usize = 500;

pub struct AgentSocket {
    ctx: ApiContext,
    caller: AccountCaller,
    /// What the peer subscribed to; nothing is sent before it subscribes.
    query: Option<LogQuery>,
    /// The last `seq` this socket has passed (sent, or filtered out).
    cursor: i64,
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
    upgrade.max_message_size(64 * 1024).on_upgrade(move |socket| {
        drive(socket, ctx.clone(), config, AgentSocket { ctx, caller, query: None, cursor: 0 })
    })
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
        limit: CATCH_UP_PAGE,
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
        self.cursor = match after {
            Some(after) => after,
            None => self
                .ctx
                .store
                .read(move |r| r.last_seq(account))
                .await
                .map_err(|_| Close::error("store unavailable"))?,
        };
        // Catch up from storage; live events that arrive meanwhile wait in the hub and are
        // skipped by seq if already sent.
        loop {
            query.after = self.cursor;
            let q = query.clone();
            let page = self
                .ctx
                .store
                .read(move |r| r.log(account, &q))
                .await
                .map_err(|_| Close::error("store unavailable"))?;
            for entry in &page {
                out.push(event_frame(entry.seq, &entry.json)).await?;
                self.cursor = entry.seq;
            }
            if page.len() < CATCH_UP_PAGE {
                break;
            }
        }
        self.query = Some(query);
        let cursor = crate::cursor::encode_seq(self.cursor);
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
            .read(move |r| {
                let position = r.read_position(conversation, reader)?;
                r.count_unread(conversation, reader, position)
            })
            .await
            .map_err(|_| Close::error("store unavailable"))?;
        if out.offer(unread_frame(conversation, count)) {
            Ok(())
        } else {
            Err(Close::too_slow(self.cursor))
        }
    }
}

impl SocketSession for AgentSocket {
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
                self.query = None;
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
                            return Err(Close::too_slow(self.cursor));
                        }
                    }
                }
                let Some(query) = &self.query else { return Ok(()) };
                if entry.seq <= self.cursor {
                    return Ok(());
                }
                let passed = self.cursor;
                let matches = query.matches(&entry);
                let in_scope = query.conversation_ids.is_empty()
                    || entry.conversation_id.is_some_and(|c| query.conversation_ids.contains(&c));
                if matches && !out.offer(event_frame(entry.seq, &entry.json)) {
                    return Err(Close::too_slow(passed));
                }
                self.cursor = entry.seq;
                let counts = matches!(
                    entry.event_type,
                    EventType::MessageReceived | EventType::MessageSent | EventType::MessageRead
                );
                match entry.conversation_id {
                    Some(conversation) if counts && in_scope => self.unread(conversation, out).await,
                    _ => Ok(()),
                }
            }
            Live::Typing(typing) => {
                let Some(query) = &self.query else { return Ok(()) };
                let in_scope =
                    query.conversation_ids.is_empty() || query.conversation_ids.contains(&typing.conversation_id);
                if in_scope && Some(typing.author_id) != self.agent_id() && !out.offer(typing.frame.clone()) {
                    return Err(Close::too_slow(self.cursor));
                }
                Ok(())
            }
        }
    }

    fn cursor(&self) -> i64 {
        self.cursor
    }

    async fn closed(self) {
        if let Some(agent) = self.agent_id() {
            self.ctx.presence.agent_disconnected(self.ctx.store.clone(), self.caller.account_id, agent);
        }
    }
}
