//! The unified event schema of the conversation log.
//!
//! The core produces [`EventDraft`]s; the store stamps each with its id, per-account `seq` and
//! commit time, turning it into an [`Event`] in the same transaction as the state change.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::integration::{ChannelType, Integration};
use crate::message::AuthorType;
use crate::Timestamp;

macro_rules! event_types {
    ($($variant:ident => $name:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
        #[serde(rename_all = "snake_case")]
        pub enum EventType { $($variant),* }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(EventType::$variant),)* _ => None }
            }
        }
    };
}

event_types! {
    ConversationCreated => "conversation_created",
    ConversationOpened => "conversation_opened",
    ConversationStatusChanged => "conversation_status_changed",
    ConversationClosed => "conversation_closed",
    ConversationBlocked => "conversation_blocked",
    CustomerJoined => "customer_joined",
    CustomerLeft => "customer_left",
    AgentJoined => "agent_joined",
    AgentLeft => "agent_left",
    BotJoined => "bot_joined",
    BotLeft => "bot_left",
    MessageReceived => "message_received",
    MessageSent => "message_sent",
    MessageDelivered => "message_delivered",
    MessageRead => "message_read",
    MessageFailed => "message_failed",
    ActionPressed => "action_pressed",
    ConversationRequested => "conversation_requested",
    ConversationQueued => "conversation_queued",
    ConversationAssigned => "conversation_assigned",
    ConversationOffered => "conversation_offered",
    ConversationOfferWithdrawn => "conversation_offer_withdrawn",
    ConversationTransferred => "conversation_transferred",
    TagsChanged => "tags_changed",
    CustomerUpdated => "customer_updated",
    CustomerSuspended => "customer_suspended",
    CustomerUnsuspended => "customer_unsuspended",
    TriggerFired => "trigger_fired",
    AgentStatusChanged => "agent_status_changed",
    WebhookEndpointDisabled => "webhook_endpoint_disabled",
}

/// Who caused an event.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Actor {
    #[serde(rename = "type")]
    pub actor_type: AuthorType,
    pub id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For an automated action: the triggers whose actions led to it, the first cause first
    /// (bounds chains, and keeps a trigger from firing again on what it caused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Uuid>,
}

impl Actor {
    pub fn system() -> Self {
        Actor { actor_type: AuthorType::System, id: None, external_id: None, name: None, triggers: Vec::new() }
    }
}

/// The integration an event happened on, with its channel-specific metadata.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Channel {
    pub integration_id: Uuid,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    pub metadata: Map<String, Value>,
}

impl Channel {
    pub fn of(integration: &Integration) -> Self {
        Channel {
            integration_id: integration.id,
            channel_type: integration.channel_type,
            metadata: integration.metadata.clone(),
        }
    }
}

/// An event decided by the core, not yet stamped by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub event_type: EventType,
    pub conversation_id: Option<Uuid>,
    pub channel: Option<Channel>,
    pub actor: Actor,
    pub data: Value,
}

/// One entry of the conversation log, exactly as every reader and webhook sees it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Event {
    pub id: Uuid,
    /// Per-account, strictly increasing in commit order.
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: Timestamp,
    pub account_id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub channel: Option<Channel>,
    pub actor: Actor,
    pub data: Value,
}

impl Event {
    pub fn stamp(draft: EventDraft, id: Uuid, seq: i64, account_id: Uuid, occurred_at: Timestamp) -> Self {
        Event {
            id,
            seq,
            event_type: draft.event_type,
            occurred_at,
            account_id,
            conversation_id: draft.conversation_id,
            channel: draft.channel,
            actor: draft.actor,
            data: draft.data,
        }
    }
}
