//! Parley's storage: the [`Store`] trait, the primitives every backend implements ([`Reads`],
//! [`Tx`]), the backend-independent commands built on them ([`ops`]), and the embedded SQLite
//! backend.
//!
//! A command is a closure run inside one write transaction: it loads state through [`Reads`],
//! lets the core decide, and writes the new state and the log events through [`Tx`]. Because
//! commands only see these traits, the same command code runs on every backend.

pub mod error;
pub mod model;
pub mod ops;
pub mod postgres;
mod sql;
pub mod sqlite;
mod store;
mod tx;

pub use error::StoreError;
pub use model::*;
pub use store::{CommitSink, Store, StoreExt};
pub use tx::{Reads, Tx};
