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
pub const MAX_GROUP_CAPACITY: i64 = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub assignment_mode: AssignmentMode,
    pub member_ids: Vec<Uuid>,
    /// The most of its conversations the group's agents handle at once (none: only each
    /// agent's own capacity limits it).
    #[serde(default)]
    pub capacity: Option<i64>,
    pub created_at: Timestamp,
}

impl Group {
    pub fn validate_name(name: &str) -> Result<(), DomainError> {
        text::required("name", name, 200)
    }

    pub fn validate_capacity(capacity: Option<i64>) -> Result<(), DomainError> {
        match capacity {
            Some(c) if !(0..=MAX_GROUP_CAPACITY).contains(&c) => {
                Err(DomainError::invalid("capacity", format!("must be between 0 and {MAX_GROUP_CAPACITY}")))
            }
            _ => Ok(()),
        }
    }

    /// Applies a change of name, assignment mode or capacity.
    pub fn apply(&mut self, patch: GroupPatch) -> Result<(), DomainError> {
        let mut next = self.clone();
        if let Some(name) = patch.name {
            Group::validate_name(&name)?;
            next.name = name.trim().to_string();
        }
        if let Some(mode) = patch.assignment_mode {
            next.assignment_mode = mode;
        }
        if let Some(capacity) = patch.capacity {
            Group::validate_capacity(capacity)?;
            next.capacity = capacity;
        }
        *self = next;
        Ok(())
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
    /// The most of its conversations the group handles at once; omitted: no group limit.
    #[serde(default)]
    pub capacity: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub assignment_mode: Option<AssignmentMode>,
    /// `null` removes the group limit.
    #[serde(default, deserialize_with = "crate::patch::nullable")]
    pub capacity: Option<Option<i64>>,
}
