//! SQL that both backends share, written once with the placeholder syntax left to each
//! (`?N` for SQLite, `$N` for PostgreSQL).

use parley_core::{Timestamp, Uuid};

use crate::model::ConversationFilter;

/// A query parameter, converted by each backend to its own type.
pub(crate) enum SqlValue {
    Uuid(Uuid),
    Text(String),
    Int(i64),
}

/// The expiry at or before which a holder's lease is renewed, once half of it has run (in
/// milliseconds, as `leases.expires_at` holds it).
pub(crate) fn lease_renewal(now: Timestamp, ttl_secs: i64) -> i64 {
    now.plus_millis(ttl_secs.saturating_mul(500)).millis()
}

/// The conversation list: `select` (of the backend's columns from `conversations c`) with every
/// filter of [`ConversationFilter`], newest first. `placeholder(n)` writes the n-th parameter
/// (from 1).
pub(crate) fn conversations(
    select: &str,
    account: Uuid,
    f: &ConversationFilter,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<SqlValue>) {
    let mut sql = format!("{select} WHERE c.account_id = ");
    let mut args = vec![SqlValue::Uuid(account)];
    sql.push_str(&placeholder(1));
    let mut add = |clause: &str, value: SqlValue| {
        args.push(value);
        sql.push_str(&clause.replace('?', &placeholder(args.len())));
    };
    if let Some(s) = f.status {
        add(" AND c.status = ?", SqlValue::Text(s.as_str().to_string()));
    }
    if let Some(a) = f.assignee_id {
        add(" AND c.assignee_id = ?", SqlValue::Uuid(a));
    }
    if let Some(g) = f.group_id {
        add(" AND c.group_id = ?", SqlValue::Uuid(g));
    }
    if let Some(c) = f.customer_id {
        add(" AND c.customer_id = ?", SqlValue::Uuid(c));
    }
    if let Some(i) = f.integration_id {
        add(" AND c.integration_id = ?", SqlValue::Uuid(i));
    }
    if let Some(t) = &f.tag {
        add(
            " AND EXISTS (SELECT 1 FROM conversation_tags t WHERE t.conversation_id = c.id AND t.tag = ?)",
            SqlValue::Text(t.clone()),
        );
    }
    if let Some(b) = f.before_id {
        add(" AND c.id < ?", SqlValue::Uuid(b));
    }
    add(" ORDER BY c.id DESC LIMIT ?", SqlValue::Int(f.limit as i64));
    (sql, args)
}
