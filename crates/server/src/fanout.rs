//! Live fan-out across nodes over NATS. Every node publishes what happens live on it — its
//! commits' log events and typing — and injects what other nodes publish into its own hub, so
//! a subscriber connected to node B sees an event committed on node A. Order across nodes is
//! restored by the subscribers' gapless tails; a lost NATS message only delays delivery until
//! the next event reveals the gap (storage stays the source of truth).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use parley_core::event::EventType;
use parley_core::message::AuthorType;
use parley_core::{Timestamp, Uuid};
use parley_store::LogEntry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::hub::{Hub, Typing};

const EVENTS: &str = "parley.live.event";
const TYPING: &str = "parley.live.typing";

/// What leaves this node.
pub enum Outgoing {
    Event(LogEntry),
    Typing(Uuid, Arc<Typing>),
}

#[derive(Serialize, Deserialize)]
struct TypingWire {
    account_id: Uuid,
    conversation_id: Uuid,
    author: AuthorType,
    author_id: Uuid,
    frame: String,
}

/// The envelope fields of a log event, read back from its JSON.
#[derive(Deserialize)]
struct EventFields {
    seq: i64,
    #[serde(rename = "type")]
    event_type: String,
    occurred_at: Timestamp,
    account_id: Uuid,
    conversation_id: Option<Uuid>,
}

/// `node id \n body`: a node ignores its own messages.
fn frame(node: Uuid, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(37 + body.len());
    out.extend_from_slice(node.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn unframe(payload: &[u8]) -> Option<(Uuid, &[u8])> {
    let split = payload.iter().position(|b| *b == b'\n')?;
    let node = std::str::from_utf8(&payload[..split]).ok()?.parse().ok()?;
    Some((node, &payload[split + 1..]))
}

fn decode_event(body: &[u8]) -> Option<LogEntry> {
    let json = std::str::from_utf8(body).ok()?;
    let fields: EventFields = serde_json::from_str(json).ok()?;
    Some(LogEntry {
        account_id: fields.account_id,
        seq: fields.seq,
        event_type: EventType::parse(&fields.event_type)?,
        conversation_id: fields.conversation_id,
        occurred_at: fields.occurred_at,
        json: Arc::from(json),
    })
}

/// Connects to NATS, attaches to `hub`, and runs until the connection ends for good.
pub async fn connect(url: &str, hub: Arc<Hub>) -> Result<(), String> {
    let client = async_nats::connect(url).await.map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
    let node = Uuid::now_v7();
    let mut events = client.subscribe(EVENTS).await.map_err(|e| format!("cannot subscribe on NATS: {e}"))?;
    let mut typing = client.subscribe(TYPING).await.map_err(|e| format!("cannot subscribe on NATS: {e}"))?;
    let (tx, mut outgoing) = mpsc::unbounded_channel::<Outgoing>();
    hub.attach_fanout(tx);

    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some(item) = outgoing.recv().await {
            let (subject, body) = match item {
                Outgoing::Event(entry) => (EVENTS, frame(node, entry.json.as_bytes())),
                Outgoing::Typing(account_id, t) => {
                    let wire = TypingWire {
                        account_id,
                        conversation_id: t.conversation_id,
                        author: t.author,
                        author_id: t.author_id,
                        frame: t.frame.clone(),
                    };
                    (TYPING, frame(node, &serde_json::to_vec(&wire).unwrap_or_default()))
                }
            };
            if let Err(e) = publisher.publish(subject, body).await {
                tracing::warn!(error = %e, "could not publish to NATS; other nodes catch up from storage");
            }
        }
    });

    let inbound = hub.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(message) = events.next() => {
                    let Some((from, body)) = unframe(&message.payload) else { continue };
                    if from == node {
                        continue;
                    }
                    if let Some(entry) = decode_event(body) {
                        inbound.publish_local(std::slice::from_ref(&entry));
                    }
                }
                Some(message) = typing.next() => {
                    let Some((from, body)) = unframe(&message.payload) else { continue };
                    if from == node {
                        continue;
                    }
                    if let Ok(t) = serde_json::from_slice::<TypingWire>(body) {
                        let signal = Typing { conversation_id: t.conversation_id, author: t.author, author_id: t.author_id, frame: t.frame };
                        inbound.typing_local(t.account_id, signal);
                    }
                }
                else => break,
            }
        }
        tracing::warn!("the NATS subscription ended; live events from other nodes stop");
    });
    tracing::info!(%url, %node, "live fan-out across nodes over NATS");
    Ok(())
}
