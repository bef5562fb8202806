//! Integrations: the channels customers write from, with their settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{text, DomainError, Timestamp};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Web,
    Ios,
    Android,
    Whatsapp,
    Messenger,
    Instagram,
    Telegram,
    Api,
}

impl ChannelType {
    pub const ALL: [ChannelType; 8] = [
        ChannelType::Web,
        ChannelType::Ios,
        ChannelType::Android,
        ChannelType::Whatsapp,
        ChannelType::Messenger,
        ChannelType::Instagram,
        ChannelType::Telegram,
        ChannelType::Api,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Web => "web",
            ChannelType::Ios => "ios",
            ChannelType::Android => "android",
            ChannelType::Whatsapp => "whatsapp",
            ChannelType::Messenger => "messenger",
            ChannelType::Instagram => "instagram",
            ChannelType::Telegram => "telegram",
            ChannelType::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Channels whose provider only lets the business write within a window after the
    /// customer's last message (24 h on WhatsApp and Messenger-like channels).
    pub fn default_service_window_secs(self) -> Option<i64> {
        match self {
            ChannelType::Whatsapp | ChannelType::Messenger | ChannelType::Instagram => Some(24 * 3600),
            _ => None,
        }
    }
}

pub const DEFAULT_REOPEN_WINDOW_SECS: i64 = 24 * 3600;
pub const MAX_WINDOW_SECS: i64 = 365 * 24 * 3600;
const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Integration {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    pub brand: Option<String>,
    pub default_group_id: Option<Uuid>,
    /// A customer message to an ended conversation within this many seconds reopens it.
    pub reopen_window_seconds: i64,
    /// The business may write only this long after the customer's last message (none: always).
    pub service_window_seconds: Option<i64>,
    /// Channel-specific metadata: a WhatsApp `phone_number`, a widget's `allowed_origins`…
    pub metadata: Map<String, Value>,
    /// An inactive channel keeps its history but accepts no business messages.
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
}

impl Integration {
    pub fn validate_name(name: &str) -> Result<(), DomainError> {
        text::required("name", name, 200)
    }

    pub fn validate_brand(brand: Option<&str>) -> Result<(), DomainError> {
        text::optional("brand", brand, 200)
    }

    pub fn validate_window(field: &str, secs: i64) -> Result<(), DomainError> {
        if !(0..=MAX_WINDOW_SECS).contains(&secs) {
            return Err(DomainError::invalid(field, format!("must be between 0 and {MAX_WINDOW_SECS} seconds")));
        }
        Ok(())
    }

    pub fn validate_metadata(metadata: &Map<String, Value>) -> Result<(), DomainError> {
        let size = serde_json::to_string(metadata).map(|s| s.len()).unwrap_or(usize::MAX);
        if size > MAX_METADATA_BYTES {
            return Err(DomainError::invalid(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
            ));
        }
        Ok(())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIntegration {
    pub name: String,
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub default_group_id: Option<Uuid>,
    /// Default 86400 (24 h).
    #[serde(default)]
    pub reopen_window_seconds: Option<i64>,
    /// Default: 86400 on WhatsApp, Messenger and Instagram; none elsewhere.
    #[serde(default, deserialize_with = "crate::patch::nullable")]
    pub service_window_seconds: Option<Option<i64>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::patch::nullable")]
    pub brand: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::patch::nullable")]
    pub default_group_id: Option<Option<Uuid>>,
    #[serde(default)]
    pub reopen_window_seconds: Option<i64>,
    #[serde(default, deserialize_with = "crate::patch::nullable")]
    pub service_window_seconds: Option<Option<i64>>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub active: Option<bool>,
}

impl Integration {
    pub fn new(id: Uuid, input: NewIntegration, now: Timestamp) -> Result<Integration, DomainError> {
        let integration = Integration {
            id,
            name: input.name.trim().to_string(),
            channel_type: input.channel_type,
            brand: input.brand,
            default_group_id: input.default_group_id,
            reopen_window_seconds: input.reopen_window_seconds.unwrap_or(DEFAULT_REOPEN_WINDOW_SECS),
            service_window_seconds: input
                .service_window_seconds
                .unwrap_or_else(|| input.channel_type.default_service_window_secs()),
            metadata: input.metadata.unwrap_or_default(),
            active: input.active.unwrap_or(true),
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        integration.validate()?;
        Ok(integration)
    }

    pub fn validate(&self) -> Result<(), DomainError> {
        Integration::validate_name(&self.name)?;
        Integration::validate_brand(self.brand.as_deref())?;
        Integration::validate_window("reopen_window_seconds", self.reopen_window_seconds)?;
        if let Some(window) = self.service_window_seconds {
            Integration::validate_window("service_window_seconds", window)?;
        }
        Integration::validate_metadata(&self.metadata)
    }

    pub fn apply(&mut self, patch: IntegrationPatch, now: Timestamp) -> Result<(), DomainError> {
        let mut next = self.clone();
        if let Some(name) = patch.name {
            next.name = name.trim().to_string();
        }
        if let Some(brand) = patch.brand {
            next.brand = brand;
        }
        if let Some(group) = patch.default_group_id {
            next.default_group_id = group;
        }
        if let Some(window) = patch.reopen_window_seconds {
            next.reopen_window_seconds = window;
        }
        if let Some(window) = patch.service_window_seconds {
            next.service_window_seconds = window;
        }
        if let Some(metadata) = patch.metadata {
            next.metadata = metadata;
        }
        if let Some(active) = patch.active {
            next.active = active;
        }
        next.validate()?;
        next.updated_at = now;
        *self = next;
        Ok(())
    }
}

/// An end-user signing key of an integration, as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SigningKey {
    pub kid: String,
    pub created_at: Timestamp,
}

pub const MAX_SIGNING_KEYS: usize = 10;
