//! Accounts, API keys and the server admin token.

use parley_core::account::{Account, ApiKey, Role};
use parley_core::{Timestamp, Uuid};

use super::{found, R};
use crate::tx::Tx;

/// The settings key under which the server admin token's hash is kept.
pub const ADMIN_TOKEN_HASH: &str = "admin_token_sha256";

/// A key to create: the server makes the secret and hands over only its hash and prefix.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub agent_id: Option<Uuid>,
    pub hash: String,
    pub prefix: String,
}

pub fn create_account(tx: &mut dyn Tx, name: String, first_key: NewKey) -> R<(Account, ApiKey)> {
    Account::validate_name(&name)?;
    let account = Account { id: Uuid::now_v7(), name: name.trim().to_string(), created_at: tx.now() };
    tx.insert_account(&account)?;
    let key = create_api_key(tx, account.id, first_key)?;
    Ok((account, key))
}

pub fn create_api_key(tx: &mut dyn Tx, account: Uuid, new: NewKey) -> R<ApiKey> {
    ApiKey::validate(&new.name, new.role, new.agent_id)?;
    if let Some(agent) = new.agent_id {
        found(tx.agent(account, agent)?, "agent")?;
    }
    let key = ApiKey {
        id: Uuid::now_v7(),
        name: new.name.trim().to_string(),
        role: new.role,
        agent_id: new.agent_id,
        prefix: new.prefix,
        created_at: tx.now(),
    };
    tx.insert_api_key(account, &key, &new.hash)?;
    Ok(key)
}

pub fn delete_api_key(tx: &mut dyn Tx, account: Uuid, id: Uuid) -> R<()> {
    if tx.delete_api_key(account, id)? {
        Ok(())
    } else {
        Err(crate::StoreError::not_found("api key"))
    }
}

/// Stores the admin token's hash unless one exists; answers whether it was stored.
pub fn init_admin_token(tx: &mut dyn Tx, hash: &str) -> R<bool> {
    if tx.setting(ADMIN_TOKEN_HASH)?.is_some() {
        return Ok(false);
    }
    tx.put_setting(ADMIN_TOKEN_HASH, hash)?;
    tx.put_setting("initialized_at", &Timestamp::to_rfc3339(tx.now()))?;
    Ok(true)
}
