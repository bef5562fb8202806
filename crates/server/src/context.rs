//! The state every handler receives.

use std::sync::Arc;

use parley_core::limits::Limits;
use parley_store::Store;
use tokio::sync::watch;

use crate::auth::KeyCache;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::ws::SocketConfig;

/// What handlers share, behind one pointer: axum clones the state for every request (and again
/// for each middleware and extractor that takes it), and one reference count costs less than a
/// dozen.
#[derive(Clone)]
pub struct ApiContext(Arc<Services>);

impl ApiContext {
    pub fn new(services: Services) -> ApiContext {
        ApiContext(Arc::new(services))
    }
}

impl std::ops::Deref for ApiContext {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub keys: Arc<KeyCache>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
    pub body_limit: usize,
    pub sse_heartbeat: std::time::Duration,
    /// Hashes of the server admin tokens accepted.
    pub admin_token_hashes: Arc<Vec<String>>,
    /// Flips to true when the server shuts down, ending live streams.
    pub shutdown: watch::Receiver<bool>,
    pub openapi: Arc<serde_json::Value>,
    pub presence: Arc<Presence>,
    pub sockets: SocketConfig,
    pub webhooks: Arc<crate::webhooks::Sender>,
    /// Each account's queue as waiting customers' sockets see it, read once per change.
    pub queue_views: Arc<crate::queue_views::QueueViews>,
}
