//! Server configuration, with the spec's defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use parley_core::limits::Limits;
use parley_store::sqlite::Durability;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` to share one PostgreSQL database between nodes; none: embedded SQLite in
    /// `data_dir`.
    pub database_url: Option<String>,
    /// `nats://…` to fan live events out across nodes; none: this process only.
    pub nats_url: Option<String>,
    /// A server admin token given by the operator, accepted beside the one `parley init` made.
    pub admin_token: Option<String>,
    /// The largest request body accepted (bytes); larger ones get `413`.
    pub body_limit: usize,
    pub limits: Limits,
    pub durability: Durability,
    /// How often an idle SSE stream sends a comment line.
    pub sse_heartbeat: Duration,
    /// How often sockets are pinged; a peer silent for two intervals is dropped.
    pub ws_ping: Duration,
    /// Frames queued for one socket before it is closed as too slow.
    pub ws_outbox: usize,
    /// How long an agent may have no live connection before becoming `offline`.
    pub presence_grace: Duration,
    /// This node's name in work leases; default: a new random one at each start.
    pub node_id: Option<String>,
    /// How long a node's claim on a consumer's work lasts without renewal.
    pub lease_secs: i64,
    /// Run the audit consumer (a receipt per event), to verify work claiming across nodes.
    pub audit_consumer: bool,
    pub webhooks: crate::webhooks::WebhookConfig,
    pub routing: parley_store::ops::routing::RoutingPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("parley-data"),
            database_url: None,
            nats_url: None,
            admin_token: None,
            body_limit: 1024 * 1024,
            limits: Limits::default(),
            durability: Durability::Full,
            sse_heartbeat: Duration::from_secs(15),
            ws_ping: Duration::from_secs(20),
            ws_outbox: 1024,
            presence_grace: Duration::from_secs(60),
            node_id: None,
            lease_secs: 30,
            audit_consumer: false,
            webhooks: crate::webhooks::WebhookConfig::default(),
            routing: parley_store::ops::routing::RoutingPolicy::default(),
        }
    }
}

impl Config {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("parley.db")
    }
}
