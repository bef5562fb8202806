//! Customers: found or created, profile changes, suspension.

use parley_core::customer::{Customer, CustomerProfile, CustomerRef};
use parley_core::event::{Actor, EventDraft, EventType};
use parley_core::{DomainError, Uuid};
use serde_json::json;

use super::{found, R};
use crate::tx::Tx;

fn customer_event(event_type: EventType, customer: &Customer, actor: Actor, changed: &[&str]) -> EventDraft {
    EventDraft {
        event_type,
        conversation_id: None,
        channel: None,
        actor,
        data: json!({"customer_id": customer.id, "changed": changed, "customer": customer}),
    }
}

/// The customer a new conversation belongs to: by id, found or created by external id, or a
/// new anonymous one.
pub fn resolve_customer(tx: &mut dyn Tx, account: Uuid, by: CustomerRef, actor: &Actor) -> R<Customer> {
    let profile = by.profile();
    if let Some(id) = by.id {
        if profile != CustomerProfile::default() {
            return Err(DomainError::invalid("customer", "give either `id` or the profile fields, not both").into());
        }
        return found(tx.customer(account, id)?, "customer")
            .map_err(|_| DomainError::invalid("customer.id", "no such customer in this account").into());
    }
    profile.validate("customer.")?;
    if let Some(external_id) = &profile.external_id {
        if let Some(mut existing) = tx.customer_by_external_id(account, external_id)? {
            let changed = existing.apply(profile, tx.now());
            if !changed.is_empty() {
                tx.put_customer(account, &existing)?;
                tx.append(account, customer_event(EventType::CustomerUpdated, &existing, actor.clone(), &changed))?;
            }
            return Ok(existing);
        }
    }
    let customer = Customer::new(Uuid::now_v7(), profile, tx.now());
    tx.put_customer(account, &customer)?;
    Ok(customer)
}

pub fn update_customer(
    tx: &mut dyn Tx,
    account: Uuid,
    id: Uuid,
    profile: CustomerProfile,
    actor: Actor,
) -> R<Customer> {
    profile.validate("")?;
    let mut customer = found(tx.customer(account, id)?, "customer")?;
    let changed = customer.apply(profile, tx.now());
    if !changed.is_empty() {
        tx.put_customer(account, &customer)?;
        tx.append(account, customer_event(EventType::CustomerUpdated, &customer, actor, &changed))?;
    }
    Ok(customer)
}

/// Sets the customer's `triggered` flag (the `set_triggered` trigger action).
pub fn set_triggered(tx: &mut dyn Tx, account: Uuid, id: Uuid, value: bool, actor: Actor) -> R<Customer> {
    let mut customer = found(tx.customer(account, id)?, "customer")?;
    if customer.triggered == value {
        return Ok(customer);
    }
    customer.triggered = value;
    customer.updated_at = tx.now();
    tx.put_customer(account, &customer)?;
    tx.append(account, customer_event(EventType::CustomerUpdated, &customer, actor, &["triggered"]))?;
    Ok(customer)
}

/// Suspends or restores a customer. Nothing of theirs is removed either way.
pub fn set_suspended(tx: &mut dyn Tx, account: Uuid, id: Uuid, suspended: bool, actor: Actor) -> R<Customer> {
    let mut customer = found(tx.customer(account, id)?, "customer")?;
    if customer.suspended == suspended {
        return Ok(customer);
    }
    customer.suspended = suspended;
    customer.updated_at = tx.now();
    tx.put_customer(account, &customer)?;
    let event_type = if suspended { EventType::CustomerSuspended } else { EventType::CustomerUnsuspended };
    tx.append(account, customer_event(event_type, &customer, actor, &["suspended"]))?;
    Ok(customer)
}
