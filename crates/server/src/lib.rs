//! Parley's HTTP server: the REST API, the live log stream (SSE), the NDJSON export, auth,
//! health and metrics.
//!
//! Handlers are thin: they authenticate, parse, and run one store command (see
//! `parley_store::ops`), then shape the answer. One error type ([`error::ApiError`]) turns every
//! refusal into `application/problem+json`.

pub mod auth;
pub mod config;
pub mod consumers;
pub mod context;
pub mod cursor;
pub mod customer_feeds;
pub mod error;
pub mod extract;
pub mod fanout;
pub mod hub;
pub mod jwt;
pub mod metrics;
pub mod openapi;
pub mod presence;
pub mod queue_views;
pub mod router;
mod routes;
pub mod scheduler;
pub mod server;
pub mod tail;
pub mod trigger_runner;
pub mod webhooks;
pub mod ws;

pub use config::Config;
pub use server::{init_data_dir, open_store, RunningServer};
