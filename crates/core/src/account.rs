//! Accounts (tenants) and their API keys.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{text, DomainError, Timestamp};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
}

impl Account {
    pub fn validate_name(name: &str) -> Result<(), DomainError> {
        text::required("name", name, 200)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the account: keys, agents, groups, integrations, and every conversation.
    Admin,
    /// Acts as one agent: handles conversations, sets its own presence.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

/// An API key as listed: never the secret, only a recognisable prefix of it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The agent an `agent` key acts as (optional for `admin` keys).
    pub agent_id: Option<Uuid>,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_at: Timestamp,
}

impl ApiKey {
    pub fn validate(name: &str, role: Role, agent_id: Option<Uuid>) -> Result<(), DomainError> {
        text::required("name", name, 200)?;
        if role == Role::Agent && agent_id.is_none() {
            return Err(DomainError::invalid("agent_id", "an `agent` key must name the agent it acts as"));
        }
        Ok(())
    }
}
