//! End-to-end tests of the HTTP API: a real server on a temporary data directory, talked to
//! over HTTP on loopback.

#[macro_use]
mod support;

mod bad_input;
mod conversations;
mod history;
mod isolation;
mod lifecycle;
mod log;
mod openapi;
mod queue;
mod restart;
mod routing;
mod sdk;
mod sockets;
mod stream;
mod triggers;
mod webhooks;
