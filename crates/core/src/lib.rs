//! Parley's domain core: the types of the product, the conversation state machine, message
//! content validation and the unified event schema.
//!
//! Everything here is pure: no I/O, no clock, no randomness. Callers pass `now` and fresh ids
//! in, and get back new state plus the log events the change causes. The store persists both in
//! one transaction; the server never decides anything the core has not decided.

pub mod account;
pub mod agent;
pub mod conversation;
pub mod customer;
pub mod error;
pub mod event;
pub mod group;
pub mod integration;
pub mod limits;
pub mod message;
pub mod patch;
pub mod routing;
pub mod text;
pub mod time;
pub mod trigger;
pub mod webhook;

pub use error::DomainError;
pub use time::Timestamp;
pub use uuid::Uuid;
