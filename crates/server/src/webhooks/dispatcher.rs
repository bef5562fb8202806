//! The webhook dispatcher. Two steps, both durable:
//!
//! 1. **Fan-in**: a log consumer (lease + cursor, so once across nodes) queues one delivery
//!    per event per endpoint that wants it, in the same transaction as its cursor.
//! 2. **Delivery**: a loop claims due deliveries — at most `per_endpoint` in flight for any one
//!    endpoint, so a slow or dead endpoint never holds up a healthy one — and POSTs each,
//!    signed, recording every attempt and scheduling the next on failure.
//!
//! A node killed mid-delivery leaves its claims to expire; another attempt follows. Delivery
//! is at least once; the `webhook-id` (the event id) lets receivers drop duplicates.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parley_core::webhook::{Attempt, DeliveryStatus, RetrySchedule};
use parley_core::Uuid;
use parley_store::ops::webhooks::{disable_webhook, fan_in, note_outcome};
use parley_store::{ClaimedDelivery, LogEntry, Reads, Store, StoreError, StoreExt, Tx, WebhookSecrets};
use tokio::sync::{watch, Semaphore};

use super::sign;
use super::target::{self, TargetPolicy};
use crate::consumers::{Handler, Runner};

const BODY_LOG_LIMIT: usize = 4096;
const CLAIM_BATCH: usize = 64;
const IN_FLIGHT: usize = 256;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// An attempt succeeds with a 2xx within this time.
    pub timeout: Duration,
    pub schedule: RetrySchedule,
    pub policy: TargetPolicy,
    /// Attempts in flight at once for one endpoint.
    pub per_endpoint: i64,
    /// An endpoint failing continuously this long is disabled.
    pub failure_window: Duration,
    /// How often the delivery loop looks for due deliveries when idle.
    pub poll: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(15),
            schedule: RetrySchedule::default(),
            policy: TargetPolicy::default(),
            per_endpoint: 8,
            failure_window: Duration::from_secs(5 * 24 * 3600),
            poll: Duration::from_millis(100),
        }
    }
}

/// What one POST gave.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status_code: Option<u16>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub retry_after_ms: Option<i64>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Signs and sends webhook requests.
pub struct Sender {
    http: reqwest::Client,
    pub config: WebhookConfig,
    /// Rung when an attempt ends: its endpoint has room again.
    room: tokio::sync::Notify,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Sender {
    pub fn new(config: WebhookConfig) -> Result<Sender, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))?;
        Ok(Sender { http, config, room: tokio::sync::Notify::new() })
    }

    /// One signed POST of `body` to `url`, never following a redirect, reading at most
    /// 4 KiB of the answer.
    pub async fn send(&self, url: &str, secrets: &WebhookSecrets, message_id: Uuid, body: &str) -> Outcome {
        let started = Instant::now();
        let elapsed = |started: Instant| started.elapsed().as_millis() as i64;
        if let Err(why) = target::check(url, self.config.policy).await {
            return Outcome {
                error: Some(format!("target refused: {why}")),
                duration_ms: elapsed(started),
                ..Outcome::default()
            };
        }
        let timestamp = unix_now();
        let mut keys = vec![secrets.current.as_str()];
        if let Some((previous, until)) = &secrets.previous {
            if until.millis() > timestamp * 1000 {
                keys.push(previous.as_str());
            }
        }
        let id = message_id.to_string();
        let signature = match sign::header(&keys, &id, timestamp, body) {
            Ok(s) => s,
            Err(e) => return Outcome { error: Some(e), ..Outcome::default() },
        };
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("Parley-Webhooks/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .timeout(self.config.timeout)
            .body(body.to_string());
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let error = if e.is_timeout() {
                    format!("no answer within {} s", self.config.timeout.as_secs_f64())
                } else {
                    format!("request failed: {e}")
                };
                return Outcome { error: Some(error), duration_ms: elapsed(started), ..Outcome::default() };
            }
        };
        let status = response.status().as_u16();
        let retry_after_ms = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|secs| secs.clamp(0, 86_400) * 1000);
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body_bytes = Vec::new();
        let deadline = tokio::time::Instant::now() + self.config.timeout.saturating_sub(started.elapsed());
        while body_bytes.len() < BODY_LOG_LIMIT {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => body_bytes.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body_bytes.truncate(BODY_LOG_LIMIT);
        let error = match status {
            200..=299 => None,
            300..=399 => Some(format!("redirect to {} not followed", location.as_deref().unwrap_or("?"))),
            _ => Some(format!("the endpoint answered {status}")),
        };
        Outcome {
            status_code: Some(status),
            duration_ms: elapsed(started),
            response_body: Some(String::from_utf8_lossy(&body_bytes).into_owned()),
            error,
            retry_after_ms: if matches!(status, 429 | 503) { retry_after_ms } else { None },
        }
    }
}

/// Queues log events for the endpoints that want them.
struct FanIn;

impl Handler for FanIn {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    /// An account without an enabled webhook has nothing to queue (a new webhook receives
    /// events from its creation on).
    fn idle(&self, reads: &dyn Reads, account: Uuid) -> Result<bool, StoreError> {
        let page = parley_store::Page { after_id: None, limit: 500 };
        Ok(!reads.webhooks(account, &page)?.iter().any(|w| w.enabled))
    }

    fn handle(&self, tx: &mut dyn Tx, account: Uuid, batch: &[LogEntry]) -> Result<(), StoreError> {
        fan_in(tx, account, batch).map(|_| ())
    }
}

fn jitter_unit() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Starts fan-in and delivery; they stop when `shutdown` flips.
pub fn start(
    store: Arc<dyn Store>,
    sender: Arc<Sender>,
    node: String,
    lease_secs: i64,
    shutdown: watch::Receiver<bool>,
) {
    let runner = Runner {
        store: store.clone(),
        node,
        lease_secs,
        poll: sender.config.poll.max(Duration::from_millis(50)),
        wake: None,
    };
    runner.spawn(Arc::new(FanIn), shutdown.clone());
    tokio::spawn(deliver_forever(store, sender, shutdown));
}

async fn deliver_forever(store: Arc<dyn Store>, sender: Arc<Sender>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let config = sender.config.clone();
    // A claim outlives the longest attempt a little; a dead node's claims come back soon after.
    let lease_ms = config.timeout.as_millis() as i64 + 2_000;
    while !*shutdown.borrow() {
        let per_endpoint = config.per_endpoint.max(1);
        let claimed = store
            .write(move |tx| {
                let now = tx.now();
                tx.claim_deliveries(now, per_endpoint, CLAIM_BATCH, lease_ms)
            })
            .await;
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim webhook deliveries");
                Vec::new()
            }
        };
        let idle = claimed.is_empty();
        for delivery in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let (store, sender) = (store.clone(), sender.clone());
            tokio::spawn(async move {
                attempt(store, sender.clone(), delivery).await;
                drop(permit);
                sender.room.notify_one();
            });
        }
        if idle {
            tokio::select! {
                _ = tokio::time::sleep(config.poll) => {}
                _ = sender.room.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// One attempt of one claimed delivery, and what it leads to.
async fn attempt(store: Arc<dyn Store>, sender: Arc<Sender>, d: ClaimedDelivery) {
    let (account, webhook_id) = (d.account_id, d.webhook_id);
    let found =
        store.read(move |r| Ok((r.webhook(account, webhook_id)?, r.webhook_secrets(account, webhook_id)?))).await;
    let (webhook, secrets) = match found {
        Ok((Some(w), Some(s))) => (w, s),
        Ok(_) => return, // deleted with its deliveries
        Err(e) => {
            tracing::warn!(error = %e, "could not load a webhook; its delivery is retried when its claim expires");
            return;
        }
    };
    let outcome = if webhook.enabled {
        sender.send(&webhook.url, &secrets, d.event_id, &d.payload).await
    } else {
        Outcome { error: Some("the endpoint is disabled".into()), ..Outcome::default() }
    };
    let (schedule, window_ms) = (sender.config.schedule.clone(), sender.config.failure_window.as_millis() as i64);
    let unit = jitter_unit();
    let enabled = webhook.enabled;
    let result = store
        .write(move |tx| {
            let now = tx.now();
            let attempt = Attempt {
                number: d.attempts + 1,
                at: now,
                status_code: outcome.status_code,
                duration_ms: outcome.duration_ms,
                response_body: outcome.response_body.clone(),
                error: outcome.error.clone(),
            };
            if outcome.succeeded() {
                tx.record_attempt(d.id, &attempt, DeliveryStatus::Succeeded, None)?;
                note_outcome(tx, account, webhook_id, true, window_ms)?;
                return Ok(());
            }
            if outcome.status_code == Some(410) {
                tx.record_attempt(d.id, &attempt, DeliveryStatus::Failed, None)?;
                return disable_webhook(tx, account, webhook_id, "gone");
            }
            let next = if enabled {
                schedule
                    .next_delay_ms(attempt.number as usize, unit, outcome.retry_after_ms)
                    .map(|ms| now.plus_millis(ms))
            } else {
                None
            };
            let status = if next.is_some() { DeliveryStatus::Pending } else { DeliveryStatus::Failed };
            tx.record_attempt(d.id, &attempt, status, next)?;
            if enabled && note_outcome(tx, account, webhook_id, false, window_ms)? {
                disable_webhook(tx, account, webhook_id, "failing")?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record a webhook attempt; it is retried when its claim expires");
    }
}
