//! Outbound webhooks: subscriptions, which events they want, deliveries and their attempts,
//! and the retry schedule. Signing and the HTTP side live in the server.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::EventType;
use crate::{text, DomainError, Timestamp};

pub const MAX_WEBHOOKS_PER_ACCOUNT: i64 = 500;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Log event types delivered, or `["*"]` for all.
    pub event_types: Vec<String>,
    /// Only events of these integrations (empty: all).
    pub integration_ids: Vec<Uuid>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why Parley disabled it (`gone`: the endpoint answered 410; `failing`: it failed for the
    /// whole failure window). Cleared when re-enabled.
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed (none: the last one succeeded).
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<String>,
    #[serde(default)]
    pub integration_ids: Vec<Uuid>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub integration_ids: Option<Vec<Uuid>>,
    #[serde(default, deserialize_with = "crate::patch::nullable")]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

fn validate_types(types: &[String]) -> Result<(), DomainError> {
    if types.is_empty() {
        return Err(DomainError::invalid("event_types", "name at least one event type, or `*` for all"));
    }
    for (i, t) in types.iter().enumerate() {
        if t != "*" && EventType::parse(t).is_none() {
            return Err(DomainError::invalid(format!("event_types[{i}]"), format!("`{t}` is not an event type")));
        }
    }
    Ok(())
}

impl Webhook {
    pub fn new(id: Uuid, input: NewWebhook, now: Timestamp) -> Result<Webhook, DomainError> {
        validate_types(&input.event_types)?;
        text::optional("description", input.description.as_deref(), 500)?;
        Ok(Webhook {
            id,
            url: input.url.trim().to_string(),
            event_types: input.event_types,
            integration_ids: input.integration_ids,
            description: input.description,
            enabled: input.enabled.unwrap_or(true),
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        })
    }

    pub fn apply(&mut self, patch: WebhookPatch, now: Timestamp) -> Result<(), DomainError> {
        if let Some(types) = &patch.event_types {
            validate_types(types)?;
        }
        if let Some(Some(d)) = &patch.description {
            text::bounded("description", d, 500)?;
        }
        if let Some(url) = patch.url {
            self.url = url.trim().to_string();
        }
        if let Some(types) = patch.event_types {
            self.event_types = types;
        }
        if let Some(ids) = patch.integration_ids {
            self.integration_ids = ids;
        }
        if let Some(d) = patch.description {
            self.description = d;
        }
        if let Some(enabled) = patch.enabled {
            if enabled && !self.enabled {
                self.disabled_reason = None;
                self.failing_since = None;
            }
            self.enabled = enabled;
        }
        self.updated_at = now;
        Ok(())
    }

    /// Whether an event of `event_type` on `integration` goes to this endpoint.
    pub fn wants(&self, event_type: &str, integration: Option<Uuid>) -> bool {
        self.enabled
            && self.event_types.iter().any(|t| t == "*" || t == event_type)
            && (self.integration_ids.is_empty() || integration.is_some_and(|i| self.integration_ids.contains(&i)))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet delivered; another attempt is due at `next_attempt_at`.
    Pending,
    Succeeded,
    /// Every attempt failed, or the endpoint was disabled.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One POST of one event to one endpoint, and its attempts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// Also the `webhook-id` header, the same on every attempt.
    pub event_id: Uuid,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Attempt {
    pub number: i64,
    pub at: Timestamp,
    /// The HTTP status answered, if any.
    pub status_code: Option<u16>,
    pub duration_ms: i64,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// When to try again after a failure: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// Delay before attempt n+1, in milliseconds; its length is the number of attempts.
    pub delays_ms: Vec<i64>,
    /// How far each delay may stray, as a fraction (0.1 = ±10 %).
    pub jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let secs = [0, 5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        RetrySchedule { delays_ms: secs.iter().map(|s| s * 1000).collect(), jitter: 0.1 }
    }
}

impl RetrySchedule {
    /// The delay before the attempt after attempt `failed` (1-based), or None when none is
    /// left. `unit` in [0, 1) picks the jitter; `retry_after_ms` (from the endpoint) is a floor.
    pub fn next_delay_ms(&self, failed: usize, unit: f64, retry_after_ms: Option<i64>) -> Option<i64> {
        let base = *self.delays_ms.get(failed)?;
        let spread = (base as f64 * self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0)) as i64;
        Some((base + spread).max(retry_after_ms.unwrap_or(0)).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_runs_out_and_honours_retry_after() {
        let s = RetrySchedule::default();
        assert_eq!(s.next_delay_ms(1, 0.5, None), Some(5000));
        assert!(s.next_delay_ms(2, 0.0, None).is_some_and(|d| (270_000..=300_000).contains(&d)));
        assert_eq!(s.next_delay_ms(1, 0.5, Some(60_000)), Some(60_000));
        assert_eq!(s.next_delay_ms(8, 0.5, None), None, "eight attempts in all");
    }

    #[test]
    fn filters_by_type_and_integration() {
        let now = Timestamp::from_millis(0);
        let i = Uuid::now_v7();
        let input = NewWebhook {
            url: "https://x.io".into(),
            event_types: vec!["message_sent".into()],
            integration_ids: vec![i],
            description: None,
            enabled: None,
        };
        let w = Webhook::new(Uuid::now_v7(), input, now).unwrap();
        assert!(w.wants("message_sent", Some(i)));
        assert!(!w.wants("message_received", Some(i)));
        assert!(!w.wants("message_sent", Some(Uuid::now_v7())));
        assert!(!w.wants("message_sent", None));
        let bad = NewWebhook {
            url: "https://x.io".into(),
            event_types: vec!["nope".into()],
            integration_ids: vec![],
            description: None,
            enabled: None,
        };
        assert!(Webhook::new(Uuid::now_v7(), bad, now).is_err());
    }
}
