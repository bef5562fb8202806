//! Integrations (channels).

use parley_core::integration::{Integration, IntegrationPatch, NewIntegration};
use parley_core::limits::Limits;
use parley_core::{DomainError, Uuid};

use super::{found, R};
use crate::tx::Tx;

fn check_group(tx: &dyn Tx, account: Uuid, group: Option<Uuid>) -> R<()> {
    if let Some(group) = group {
        if tx.group(account, group)?.is_none() {
            return Err(DomainError::invalid("default_group_id", "no such group in this account").into());
        }
    }
    Ok(())
}

pub fn create_integration(tx: &mut dyn Tx, account: Uuid, input: NewIntegration, limits: &Limits) -> R<Integration> {
    if tx.count_integrations(account)? >= limits.integrations_per_account {
        return Err(DomainError::LimitReached {
            code: "integration_limit",
            detail: format!("an account has at most {} integrations", limits.integrations_per_account),
        }
        .into());
    }
    check_group(tx, account, input.default_group_id)?;
    let integration = Integration::new(Uuid::now_v7(), input, tx.now())?;
    tx.put_integration(account, &integration)?;
    Ok(integration)
}

/// An integration of the account that is not deleted.
pub(crate) fn live_integration(tx: &dyn Tx, account: Uuid, id: Uuid) -> R<Integration> {
    let integration = found(tx.integration(account, id)?, "integration")?;
    if integration.is_deleted() {
        return Err(crate::StoreError::not_found("integration"));
    }
    Ok(integration)
}

pub fn update_integration(tx: &mut dyn Tx, account: Uuid, id: Uuid, patch: IntegrationPatch) -> R<Integration> {
    let mut integration = live_integration(tx, account, id)?;
    if let Some(group) = patch.default_group_id {
        check_group(tx, account, group)?;
    }
    integration.apply(patch, tx.now())?;
    tx.put_integration(account, &integration)?;
    Ok(integration)
}

/// Deletion is soft: conversations keep their channel, whose reply status becomes
/// `channel_deleted`.
pub fn delete_integration(tx: &mut dyn Tx, account: Uuid, id: Uuid) -> R<()> {
    let mut integration = live_integration(tx, account, id)?;
    integration.deleted_at = Some(tx.now());
    integration.active = false;
    tx.put_integration(account, &integration)?;
    Ok(())
}
