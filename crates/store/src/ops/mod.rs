//! The commands of the product, written once against [`Reads`](crate::Reads) and
//! [`Tx`](crate::Tx): load the state, let the core decide, write the state and the events.
//! Each runs inside one write transaction.

pub mod accounts;
pub mod agents;
pub mod conversations;
pub mod customers;
pub mod groups;
pub mod integrations;
pub mod messages;
pub mod routing;
pub mod sdk;
pub mod triggers;
pub mod webhooks;

use parley_core::event::EventDraft;
use parley_core::Uuid;

use crate::tx::Tx;
use crate::StoreError;

pub(crate) type R<T> = Result<T, StoreError>;

/// `Some(v)` or the store's "not found" for `resource`.
pub(crate) fn found<T>(value: Option<T>, resource: &'static str) -> R<T> {
    value.ok_or_else(|| StoreError::not_found(resource))
}

/// Appends each draft, in order.
pub(crate) fn append_all(tx: &mut dyn Tx, account: Uuid, drafts: Vec<EventDraft>) -> R<()> {
    for draft in drafts {
        tx.append(account, draft)?;
    }
    Ok(())
}
