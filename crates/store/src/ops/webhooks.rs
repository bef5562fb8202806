//! Webhook subscriptions, the fan-in of log events into their delivery queue, and the
//! outcome of attempts.

use parley_core::event::{Actor, EventDraft, EventType};
use parley_core::webhook::{NewWebhook, Webhook, WebhookPatch, MAX_WEBHOOKS_PER_ACCOUNT};
use parley_core::{DomainError, Timestamp, Uuid};
use serde_json::json;

use super::{found, R};
use crate::model::{LogEntry, Page};
use crate::tx::Tx;

/// A rotated-out secret keeps signing (beside the new one) this long.
pub const ROTATION_OVERLAP_SECS: i64 = 24 * 3600;

pub fn create_webhook(tx: &mut dyn Tx, account: Uuid, input: NewWebhook, secret: &str) -> R<Webhook> {
    let existing = tx.webhooks(account, &Page { after_id: None, limit: MAX_WEBHOOKS_PER_ACCOUNT as usize })?;
    if existing.len() as i64 >= MAX_WEBHOOKS_PER_ACCOUNT {
        return Err(DomainError::LimitReached {
            code: "webhook_limit",
            detail: format!("an account has at most {MAX_WEBHOOKS_PER_ACCOUNT} webhooks"),
        }
        .into());
    }
    let webhook = Webhook::new(Uuid::now_v7(), input, tx.now())?;
    tx.put_webhook(account, &webhook)?;
    tx.set_webhook_secret(account, webhook.id, secret, None)?;
    Ok(webhook)
}

pub fn update_webhook(tx: &mut dyn Tx, account: Uuid, id: Uuid, patch: WebhookPatch) -> R<Webhook> {
    let mut webhook = found(tx.webhook(account, id)?, "webhook")?;
    webhook.apply(patch, tx.now())?;
    tx.put_webhook(account, &webhook)?;
    Ok(webhook)
}

pub fn delete_webhook(tx: &mut dyn Tx, account: Uuid, id: Uuid) -> R<()> {
    if tx.delete_webhook(account, id)? {
        Ok(())
    } else {
        Err(crate::StoreError::not_found("webhook"))
    }
}

/// A new secret; the old one keeps signing beside it for [`ROTATION_OVERLAP_SECS`].
pub fn rotate_secret(tx: &mut dyn Tx, account: Uuid, id: Uuid, secret: &str) -> R<Webhook> {
    let webhook = found(tx.webhook(account, id)?, "webhook")?;
    let until = tx.now().plus_secs(ROTATION_OVERLAP_SECS);
    tx.set_webhook_secret(account, id, secret, Some(until))?;
    Ok(webhook)
}

/// Disables an endpoint (410, or failing too long): logged, visible, its queue ended.
pub fn disable_webhook(tx: &mut dyn Tx, account: Uuid, id: Uuid, reason: &str) -> R<()> {
    let Some(mut webhook) = tx.webhook(account, id)? else { return Ok(()) };
    if !webhook.enabled {
        return Ok(());
    }
    webhook.enabled = false;
    webhook.disabled_reason = Some(reason.to_string());
    webhook.updated_at = tx.now();
    tx.put_webhook(account, &webhook)?;
    tx.fail_pending_deliveries(id)?;
    tx.append(
        account,
        EventDraft {
            event_type: EventType::WebhookEndpointDisabled,
            conversation_id: None,
            channel: None,
            actor: Actor::system(),
            data: json!({"webhook_id": id, "url": webhook.url, "reason": reason}),
        },
    )?;
    Ok(())
}

/// Notes a delivery's success or failure on its endpoint; answers true when the endpoint has
/// failed for longer than `failure_window_ms` and should be disabled.
pub fn note_outcome(tx: &mut dyn Tx, account: Uuid, id: Uuid, succeeded: bool, failure_window_ms: i64) -> R<bool> {
    let Some(mut webhook) = tx.webhook(account, id)? else { return Ok(false) };
    let now = tx.now();
    let changed = match (succeeded, webhook.failing_since) {
        (true, Some(_)) => {
            webhook.failing_since = None;
            true
        }
        (false, None) => {
            webhook.failing_since = Some(now);
            true
        }
        _ => false,
    };
    if changed {
        tx.put_webhook(account, &webhook)?;
    }
    Ok(!succeeded && webhook.failing_since.is_some_and(|since| now.millis() - since.millis() >= failure_window_ms))
}

/// The body of a delivery: `{type, timestamp, data}` with `data` exactly the log event.
pub fn payload(event_type: &str, timestamp: Timestamp, event_json: &str) -> String {
    format!(r#"{{"type":"{event_type}","timestamp":"{timestamp}","data":{event_json}}}"#)
}

/// Queues each event of one account's batch for every endpoint that wants it (the account's
/// webhooks are read once for the whole batch).
pub fn fan_in(tx: &mut dyn Tx, account: Uuid, batch: &[LogEntry]) -> R<usize> {
    let webhooks = tx.webhooks(account, &Page { after_id: None, limit: MAX_WEBHOOKS_PER_ACCOUNT as usize })?;
    let enabled: Vec<&Webhook> = webhooks.iter().filter(|w| w.enabled).collect();
    if enabled.is_empty() {
        return Ok(0);
    }
    #[derive(serde::Deserialize)]
    struct Head {
        id: Uuid,
        channel: Option<Channel>,
    }
    #[derive(serde::Deserialize)]
    struct Channel {
        integration_id: Uuid,
    }
    let mut queued = 0;
    for entry in batch {
        let head: Head = serde_json::from_str(&entry.json)?;
        let integration = head.channel.map(|c| c.integration_id);
        let event_type = entry.event_type.as_str();
        let wanting: Vec<&&Webhook> = enabled.iter().filter(|w| w.wants(event_type, integration)).collect();
        if wanting.is_empty() {
            continue;
        }
        let body = payload(event_type, entry.occurred_at, &entry.json);
        for webhook in wanting {
            if tx.insert_delivery(account, webhook.id, head.id, event_type, &body)?.is_some() {
                queued += 1;
            }
        }
    }
    Ok(queued)
}
