//! The store layer's error: a domain refusal passed through, or a backend failure.

use std::fmt;

use parley_core::DomainError;

#[derive(Debug)]
pub enum StoreError {
    /// The core refused the command; nothing was written.
    Domain(DomainError),
    /// A uniqueness rule of the data (e.g. an `external_id` taken) — answered as a 409.
    Duplicate { field: &'static str, detail: String },
    /// The database failed or holds something unreadable.
    Backend(String),
    /// The store is shutting down or its writer is gone.
    Unavailable,
}

impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        StoreError::Domain(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Backend(format!("stored JSON is unreadable: {e}"))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Domain(e) => write!(f, "{e}"),
            StoreError::Duplicate { detail, .. } => f.write_str(detail),
            StoreError::Backend(e) => write!(f, "storage failure: {e}"),
            StoreError::Unavailable => f.write_str("the store is not available"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    pub fn not_found(resource: &'static str) -> Self {
        StoreError::Domain(DomainError::NotFound { resource })
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}
