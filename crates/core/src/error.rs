//! The core's one error type: every refusal a domain rule can make.

use std::fmt;

use crate::conversation::{ReplyStatus, Status};

#[derive(Debug, Clone, PartialEq)]
pub enum DomainError {
    /// A value breaks a rule; `field` is its JSON path in the request (`content.text`).
    Validation { field: String, reason: String },
    /// The conversation cannot move from `current` to `requested`.
    IllegalTransition { current: Status, requested: Status },
    /// A business-side message that the reply status forbids.
    ReplyNotAllowed { reply_status: ReplyStatus },
    /// A state conflict with a stable machine code (`customer_suspended`, `no_pending_offer`…).
    Conflict { code: &'static str, detail: String },
    /// A configured limit was reached (`messages_limit_reached`, answered 423).
    LimitReached { code: &'static str, detail: String },
    /// The referenced resource does not exist in this account.
    NotFound { resource: &'static str },
    /// The caller may not do this.
    Forbidden { detail: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::Validation { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::Validation { field, reason } => write!(f, "{field}: {reason}"),
            DomainError::IllegalTransition { current, requested } => {
                write!(f, "the conversation is `{}` and cannot become `{}`", current.as_str(), requested.as_str())
            }
            DomainError::ReplyNotAllowed { reply_status } => {
                write!(f, "replying is not allowed now: reply status is `{}`", reply_status.as_str())
            }
            DomainError::Conflict { detail, .. } | DomainError::LimitReached { detail, .. } => f.write_str(detail),
            DomainError::NotFound { resource } => write!(f, "{resource} not found"),
            DomainError::Forbidden { detail } => f.write_str(detail),
        }
    }
}

impl std::error::Error for DomainError {}
