//! Assembling and running the server: open the store, build the app, serve until told to stop.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::Router;
use parley_store::ops::accounts::{init_admin_token, ADMIN_TOKEN_HASH};
use parley_store::sqlite::{SqliteConfig, SqliteStore};
use parley_store::{CommitSink, Store, StoreError, StoreExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{hash_secret, new_secret, KeyCache, ADMIN_TOKEN_PREFIX};
use crate::config::Config;
use crate::context::{ApiContext, Services};
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::{self, Metrics};
use crate::routes;

/// Opens the embedded store of `config`, telling `hub` and `metrics` of every commit.
pub fn open_store(config: &Config, hub: Arc<Hub>, metrics: Arc<Metrics>) -> Result<Arc<dyn Store>, StoreError> {
    let sink: CommitSink = Arc::new(move |entries| {
        metrics.events_committed.fetch_add(entries.len() as u64, Ordering::Relaxed);
        metrics.commit_batches.fetch_add(1, Ordering::Relaxed);
        hub.publish(entries);
    });
    match config.database_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(parley_store::postgres::PgStore::open(url, sink)?))
        }
        Some(other) => Err(StoreError::Backend(format!(
            "the database URL `{}` is not postgres://…; leave it out to use the embedded SQLite",
            other.split('@').next_back().unwrap_or("")
        ))),
        None => {
            let sqlite = SqliteConfig { path: config.database_path(), durability: config.durability };
            Ok(Arc::new(SqliteStore::open(sqlite, sink)?))
        }
    }
}

/// Makes sure the data directory has a server admin token; answers the new token the first
/// time (it is never shown again), `None` after that.
pub async fn ensure_admin_token(store: &dyn Store) -> Result<Option<String>, StoreError> {
    if store.read(|r| r.setting(ADMIN_TOKEN_HASH)).await?.is_some() {
        return Ok(None);
    }
    let token = new_secret(ADMIN_TOKEN_PREFIX).map_err(|e| StoreError::Backend(e.detail))?;
    let hash = hash_secret(&token);
    let stored = store.write(move |tx| init_admin_token(tx, &hash)).await?;
    Ok(stored.then_some(token))
}

/// `parley init`: creates the data directory and its database; answers the admin token if it
/// was created now.
pub async fn init_data_dir(config: &Config) -> Result<Option<String>, StoreError> {
    let store = open_store(config, Arc::default(), Arc::default())?;
    let token = ensure_admin_token(store.as_ref()).await;
    store.close().await;
    token
}

/// A server listening on a socket, until [`RunningServer::stop`].
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The admin token, when this start created it.
    pub new_admin_token: Option<String>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    store: Arc<dyn Store>,
}

#[derive(Debug)]
pub enum StartError {
    Store(StoreError),
    Bind(std::io::Error),
    Fanout(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "cannot open the store: {e}"),
            StartError::Bind(e) => write!(f, "cannot listen: {e}"),
            StartError::Fanout(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for StartError {}

/// The application: every route, the fallbacks, and the request middleware.
pub fn app(ctx: ApiContext, router: Router<ApiContext>) -> Router {
    router
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not accept this method",
            )
        })
        .layer(from_fn_with_state(ctx.clone(), metrics::track))
        .with_state(ctx)
}

impl RunningServer {
    pub async fn start(config: Config) -> Result<RunningServer, StartError> {
        let hub = Arc::new(Hub::default());
        let metrics = Arc::new(Metrics::default());
        let store = open_store(&config, hub.clone(), metrics.clone()).map_err(StartError::Store)?;
        let new_admin_token = ensure_admin_token(store.as_ref()).await.map_err(StartError::Store)?;
        let mut admin_token_hashes = Vec::new();
        if let Some(hash) = store.read(|r| r.setting(ADMIN_TOKEN_HASH)).await.map_err(StartError::Store)? {
            admin_token_hashes.push(hash);
        }
        if let Some(token) = config.admin_token.as_deref().filter(|t| !t.is_empty()) {
            admin_token_hashes.push(hash_secret(token));
        }
        let nats = config.nats_url.as_deref().filter(|u| !u.is_empty());
        if let Some(url) = nats {
            crate::fanout::connect(url, hub.clone()).await.map_err(StartError::Fanout)?;
        }
        // One writer, one node: commits reach the hub in `seq` order.
        hub.set_ordered(nats.is_none() && config.database_url.as_deref().is_none_or(str::is_empty));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let node = config.node_id.clone().unwrap_or_else(|| format!("node-{}", parley_core::Uuid::now_v7()));
        let presence = Arc::new(crate::presence::Presence::new(config.presence_grace, node.clone(), store.clone()));
        presence.spawn_renewal(shutdown_rx.clone());
        let webhooks = Arc::new(crate::webhooks::Sender::new(config.webhooks.clone()).map_err(StartError::Fanout)?);
        crate::webhooks::dispatcher::start(
            store.clone(),
            webhooks.clone(),
            node.clone(),
            config.lease_secs.max(1),
            shutdown_rx.clone(),
        );

        let limits = Arc::new(config.limits.clone());
        crate::router::start(
            store.clone(),
            &hub,
            node.clone(),
            config.lease_secs.max(1),
            config.routing,
            limits.clone(),
            shutdown_rx.clone(),
        );
        crate::trigger_runner::start(
            store.clone(),
            &hub,
            node.clone(),
            config.lease_secs.max(1),
            limits.clone(),
            shutdown_rx.clone(),
        );
        let (router, openapi) = routes::api().finish();
        let ctx = ApiContext::new(Services {
            store: store.clone(),
            hub,
            keys: Arc::new(KeyCache::default()),
            metrics,
            limits,
            body_limit: config.body_limit,
            sse_heartbeat: config.sse_heartbeat,
            admin_token_hashes: Arc::new(admin_token_hashes),
            shutdown: shutdown_rx.clone(),
            openapi: Arc::new(openapi),
            presence,
            sockets: crate::ws::SocketConfig { ping_every: config.ws_ping, outbox: config.ws_outbox },
            webhooks,
            queue_views: Arc::default(),
        });
        if config.audit_consumer {
            let runner = crate::consumers::Runner {
                store: store.clone(),
                node: node.clone(),
                lease_secs: config.lease_secs.max(1),
                poll: std::time::Duration::from_millis(200),
                wake: None,
            };
            runner.spawn(Arc::new(crate::consumers::Audit { node }), shutdown_rx.clone());
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let app = app(ctx, router);
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                })
                .await
        });
        Ok(RunningServer { addr, new_admin_token, shutdown, task, store })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, ends live streams, lets requests in flight finish, then closes the
    /// store after its queued writes.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
            Ok(Ok(())) => {}
        }
        self.store.close().await;
    }
}
