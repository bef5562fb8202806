//! Agents (humans) and bots, and their presence.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{text, DomainError, Timestamp};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Agent,
    Bot,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Agent => "agent",
            AgentKind::Bot => "bot",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(AgentKind::Agent),
            "bot" => Some(AgentKind::Bot),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Away,
    Invisible,
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Away => "away",
            AgentStatus::Invisible => "invisible",
            AgentStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(AgentStatus::Online),
            "away" => Some(AgentStatus::Away),
            "invisible" => Some(AgentStatus::Invisible),
            "offline" => Some(AgentStatus::Offline),
            _ => None,
        }
    }
}

pub const DEFAULT_CAPACITY: i64 = 5;
pub const MAX_CAPACITY: i64 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Agent {
    pub id: Uuid,
    pub kind: AgentKind,
    pub name: String,
    pub email: Option<String>,
    /// The most conversations handled at once.
    pub capacity: i64,
    pub status: AgentStatus,
    /// When the router last gave it a conversation (none: never); ties go to the idlest.
    #[serde(default)]
    pub last_assigned_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Agent {
    pub fn validate_fields(name: &str, email: Option<&str>, capacity: i64) -> Result<(), DomainError> {
        text::required("name", name, 200)?;
        if let Some(email) = email {
            text::email("email", email)?;
        }
        if !(0..=MAX_CAPACITY).contains(&capacity) {
            return Err(DomainError::invalid("capacity", format!("must be between 0 and {MAX_CAPACITY}")));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// `agent` (default) or `bot`.
    #[serde(default)]
    pub kind: Option<AgentKind>,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Default 5.
    #[serde(default)]
    pub capacity: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::patch::nullable")]
    pub email: Option<Option<String>>,
    #[serde(default)]
    pub capacity: Option<i64>,
}

impl Agent {
    pub fn new(id: Uuid, input: NewAgent, now: Timestamp) -> Result<Agent, DomainError> {
        let capacity = input.capacity.unwrap_or(DEFAULT_CAPACITY);
        Agent::validate_fields(&input.name, input.email.as_deref(), capacity)?;
        Ok(Agent {
            id,
            kind: input.kind.unwrap_or(AgentKind::Agent),
            name: input.name.trim().to_string(),
            email: input.email,
            capacity,
            status: AgentStatus::Offline,
            last_assigned_at: None,
            created_at: now,
            updated_at: now,
        })
    }

    pub fn apply(&mut self, patch: AgentPatch, now: Timestamp) -> Result<(), DomainError> {
        let mut next = self.clone();
        if let Some(name) = patch.name {
            next.name = name.trim().to_string();
        }
        if let Some(email) = patch.email {
            next.email = email;
        }
        if let Some(capacity) = patch.capacity {
            next.capacity = capacity;
        }
        Agent::validate_fields(&next.name, next.email.as_deref(), next.capacity)?;
        next.updated_at = now;
        *self = next;
        Ok(())
    }
}
