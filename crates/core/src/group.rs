//! Groups of agents, each with its own queue and assignment mode.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{text, DomainError, Timestamp};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentMode {
    #[default]
    AutoAccept,
    ManualAccept,
}

impl AssignmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentMode::AutoAccept => "auto_accept",
            AssignmentMode::ManualAccept => "manual_accept",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto_accept" => Some(AssignmentMode::AutoAccept),
            "manual_accept" => Some(AssignmentMode::ManualAccept),
            _ => None,
        }
    }
}

pub const MAX_MEMBERS: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub assignment_mode: AssignmentMode,
    pub member_ids: Vec<Uuid>,
    pub created_at: Timestamp,
}

impl Group {
    pub fn validate_name(name: &str) -> Result<(), DomainError> {
        text::required("name", name, 200)
    }

    pub fn validate_members(ids: &[Uuid]) -> Result<(), DomainError> {
        if ids.len() > MAX_MEMBERS {
            return Err(DomainError::invalid("agent_ids", format!("at most {MAX_MEMBERS} members")));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub name: String,
    #[serde(default)]
    pub assignment_mode: Option<AssignmentMode>,
    #[serde(default)]
    pub agent_ids: Vec<Uuid>,
}
