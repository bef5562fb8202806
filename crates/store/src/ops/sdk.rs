//! End-user identity: integration signing keys and SDK sessions, anonymous or verified, with an
//! anonymous device's history kept when it logs in.

use parley_core::customer::{Customer, CustomerProfile};
use parley_core::event::{EventDraft, EventType};
use parley_core::integration::{SigningKey, MAX_SIGNING_KEYS};
use parley_core::{DomainError, Uuid};
use serde_json::json;

use super::integrations::live_integration;
use super::R;
use crate::model::{ConversationFilter, SdkSession};
use crate::tx::Tx;
use crate::StoreError;

pub fn create_signing_key(
    tx: &mut dyn Tx,
    account: Uuid,
    integration: Uuid,
    kid: String,
    secret: &str,
) -> R<SigningKey> {
    live_integration(tx, account, integration)?;
    if tx.signing_keys(account, integration)?.len() >= MAX_SIGNING_KEYS {
        return Err(DomainError::LimitReached {
            code: "signing_key_limit",
            detail: format!("an integration has at most {MAX_SIGNING_KEYS} signing keys; delete one first"),
        }
        .into());
    }
    let key = SigningKey { kid, created_at: tx.now() };
    tx.insert_signing_key(account, integration, &key, secret)?;
    Ok(key)
}

pub fn delete_signing_key(tx: &mut dyn Tx, account: Uuid, integration: Uuid, kid: &str) -> R<()> {
    if tx.delete_signing_key(account, integration, kid)? {
        Ok(())
    } else {
        Err(StoreError::not_found("signing key"))
    }
}

/// Who a new session is for.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    /// Vouched for by the business's JWT.
    Verified {
        external_id: String,
        name: Option<String>,
        email: Option<String>,
        email_verified: bool,
    },
}

fn updated(customer: &Customer, changed: &[&str], extra: serde_json::Value) -> EventDraft {
    EventDraft {
        event_type: EventType::CustomerUpdated,
        conversation_id: None,
        channel: None,
        actor: customer.actor(),
        data: json!({"customer_id": customer.id, "changed": changed, "customer": customer, "details": extra}),
    }
}

/// Starts a session on `integration`. `previous` is the session the device already holds, if
/// any: an anonymous device keeps its customer, and one that logs in brings its conversations
/// to the verified customer.
pub fn start_session(
    tx: &mut dyn Tx,
    account: Uuid,
    integration: Uuid,
    identity: Identity,
    previous: Option<SdkSession>,
    hash: &str,
) -> R<(SdkSession, Customer)> {
    live_integration(tx, account, integration)?;
    let previous = previous.filter(|p| p.account_id == account);
    let previous_customer = match &previous {
        Some(p) => tx.customer(account, p.customer_id)?,
        None => None,
    };
    let now = tx.now();
    let (customer, verified) = match identity {
        Identity::Anonymous => {
            let customer = match previous_customer {
                Some(c) => c,
                None => {
                    let c = Customer::new(Uuid::now_v7(), CustomerProfile::default(), now);
                    tx.put_customer(account, &c)?;
                    c
                }
            };
            (customer, false)
        }
        Identity::Verified { external_id, name, email, email_verified } => {
            let profile = CustomerProfile { external_id: Some(external_id.clone()), name, email, metadata: None };
            profile.validate("")?;
            let anonymous_before = previous_customer.filter(|c| c.external_id.is_none());
            let mut customer = match (tx.customer_by_external_id(account, &external_id)?, anonymous_before.clone()) {
                (Some(existing), _) => existing,
                // The first login of an anonymous device: that customer becomes the verified one.
                (None, Some(anonymous)) => anonymous,
                (None, None) => Customer::new(Uuid::now_v7(), CustomerProfile::default(), now),
            };
            let mut changed = customer.apply(profile, now);
            if customer.email.is_some() && customer.email_verified != email_verified {
                customer.email_verified = email_verified;
                changed.push("email_verified");
            }
            tx.put_customer(account, &customer)?;
            if !changed.is_empty() {
                tx.append(account, updated(&customer, &changed, json!({})))?;
            }
            if let Some(anonymous) = anonymous_before.filter(|a| a.id != customer.id) {
                move_conversations(tx, account, &anonymous, &customer)?;
            }
            (customer, true)
        }
    };
    let session = SdkSession {
        id: Uuid::now_v7(),
        account_id: account,
        integration_id: integration,
        customer_id: customer.id,
        verified,
        created_at: now,
    };
    tx.insert_sdk_session(&session, hash)?;
    Ok((session, customer))
}

/// Gives every conversation of `from` to `to` (an anonymous device that logged in).
fn move_conversations(tx: &mut dyn Tx, account: Uuid, from: &Customer, to: &Customer) -> R<()> {
    let filter = ConversationFilter { customer_id: Some(from.id), limit: 100_000, ..ConversationFilter::default() };
    let moved = tx.conversations(account, &filter)?;
    if moved.is_empty() {
        return Ok(());
    }
    for mut conversation in moved.iter().cloned() {
        conversation.customer_id = to.id;
        tx.put_conversation(account, &conversation)?;
    }
    let ids: Vec<Uuid> = moved.iter().map(|c| c.id).collect();
    tx.append(
        account,
        updated(to, &["conversations"], json!({"merged_customer_id": from.id, "conversation_ids": ids})),
    )?;
    Ok(())
}

/// Logs `customer_joined` (or `customer_left`) on each active conversation of the customer on
/// the integration: they connected (or their last connection closed). Answers how many.
pub fn customer_presence(tx: &mut dyn Tx, session: &SdkSession, joined: bool, device: serde_json::Value) -> R<usize> {
    let account = session.account_id;
    let Some(customer) = tx.customer(account, session.customer_id)? else { return Ok(0) };
    let integration = live_integration(tx, account, session.integration_id)?;
    let filter = ConversationFilter {
        customer_id: Some(customer.id),
        integration_id: Some(integration.id),
        limit: 1000,
        ..ConversationFilter::default()
    };
    let active: Vec<_> = tx.conversations(account, &filter)?.into_iter().filter(|c| c.status.is_active()).collect();
    let event_type = if joined { EventType::CustomerJoined } else { EventType::CustomerLeft };
    for conversation in &active {
        tx.append(
            account,
            EventDraft {
                event_type,
                conversation_id: Some(conversation.id),
                channel: Some(parley_core::event::Channel::of(&integration)),
                actor: customer.actor(),
                data: json!({"customer_id": customer.id, "session_id": session.id, "device": device}),
            },
        )?;
    }
    Ok(active.len())
}
