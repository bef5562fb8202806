//! Customers (end users), anonymous or identified by the business's `external_id`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{text, DomainError, Timestamp};

pub const EXTERNAL_ID_MAX: usize = 255;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Customer {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub metadata: Map<String, Value>,
    pub suspended: bool,
    /// Set by the `set_triggered` trigger action; read by the `customer_triggered` condition.
    #[serde(default)]
    pub triggered: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The profile fields a caller may set; an absent field is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerProfile {
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// Names the customer of a new conversation: an existing one by `id`, or one found or created
/// by `external_id` (with profile fields), or — with neither — a new anonymous customer.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerRef {
    #[serde(default)]
    pub id: Option<Uuid>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

impl CustomerRef {
    pub fn profile(&self) -> CustomerProfile {
        CustomerProfile {
            external_id: self.external_id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

impl CustomerProfile {
    pub fn validate(&self, prefix: &str) -> Result<(), DomainError> {
        if let Some(id) = &self.external_id {
            text::required(&format!("{prefix}external_id"), id, EXTERNAL_ID_MAX)?;
        }
        text::optional(&format!("{prefix}name"), self.name.as_deref(), 200)?;
        if let Some(email) = &self.email {
            text::email(&format!("{prefix}email"), email)?;
        }
        Ok(())
    }
}

impl Customer {
    pub fn new(id: Uuid, profile: CustomerProfile, now: Timestamp) -> Customer {
        Customer {
            id,
            external_id: profile.external_id,
            name: profile.name,
            email: profile.email,
            email_verified: false,
            metadata: profile.metadata.unwrap_or_default(),
            suspended: false,
            triggered: false,
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies a profile change; answers the names of the fields that actually changed.
    pub fn apply(&mut self, profile: CustomerProfile, now: Timestamp) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if let Some(external_id) = profile.external_id {
            if self.external_id.as_deref() != Some(external_id.as_str()) {
                self.external_id = Some(external_id);
                changed.push("external_id");
            }
        }
        if let Some(name) = profile.name {
            if self.name.as_deref() != Some(name.as_str()) {
                self.name = Some(name);
                changed.push("name");
            }
        }
        if let Some(email) = profile.email {
            if self.email.as_deref() != Some(email.as_str()) {
                self.email = Some(email);
                self.email_verified = false;
                changed.push("email");
            }
        }
        if let Some(metadata) = profile.metadata {
            if self.metadata != metadata {
                self.metadata = metadata;
                changed.push("metadata");
            }
        }
        if !changed.is_empty() {
            self.updated_at = now;
        }
        changed
    }
}

impl Customer {
    /// The customer as the log records them when they act.
    pub fn actor(&self) -> crate::event::Actor {
        crate::event::Actor {
            actor_type: crate::message::AuthorType::Customer,
            id: Some(self.id),
            external_id: self.external_id.clone(),
            name: self.name.clone(),
            triggers: Vec::new(),
        }
    }
}
