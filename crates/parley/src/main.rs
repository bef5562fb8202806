//! `parley`: run the server and administer its data directory.

mod bench;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use parley_core::account::Role;
use parley_server::{Config, RunningServer};
use parley_store::ops::accounts::{create_account, NewKey};
use parley_store::sqlite::Durability;
use parley_store::{Store, StoreExt};

#[derive(Parser)]
#[command(name = "parley", version, about = "Parley: omnichannel customer messaging server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates the data directory and prints an admin token on first start).
    Serve(ServeArgs),
    /// Create the data directory and print the server admin token (only the first time).
    Init(DataArgs),
    /// Apply database migrations and exit.
    Migrate(DataArgs),
    /// Measure the server under load (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// The minimal handler `parley bench baseline` compares against (started by the bench).
    #[command(hide = true)]
    BenchBaselineServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Manage accounts directly in the data directory.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints its id and first admin API key as JSON.
    Create {
        /// The account's name.
        name: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Where the embedded database lives.
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "parley-data")]
    data_dir: PathBuf,
    /// `postgres://user@host/db` to share a PostgreSQL database between nodes; default: the
    /// embedded SQLite in the data directory.
    #[arg(long, env = "PARLEY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// `full`: fsync every commit (survives power loss); `normal`: fsync at checkpoints.
    #[arg(long, env = "PARLEY_DURABILITY", value_enum, default_value_t = DurabilityArg::Full)]
    durability: DurabilityArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Full,
    Normal,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PARLEY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    /// `nats://host:4222` to fan live events out across several nodes.
    #[arg(long, env = "PARLEY_NATS_URL")]
    nats_url: Option<String>,
    /// A server admin token to accept besides the one stored by `parley init`.
    #[arg(long, env = "PARLEY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "PARLEY_BODY_LIMIT", default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// Longest text of a message, in characters.
    #[arg(long, env = "PARLEY_MAX_TEXT_CHARS", default_value_t = 4096)]
    max_text_chars: usize,
    /// Most messages in one conversation (then 423).
    #[arg(long, env = "PARLEY_MAX_MESSAGES_PER_CONVERSATION", default_value_t = 30_000)]
    max_messages_per_conversation: i64,
    /// Most integrations per account.
    #[arg(long, env = "PARLEY_MAX_INTEGRATIONS", default_value_t = 500)]
    max_integrations: i64,
    /// Seconds between heartbeat comments on idle SSE streams.
    #[arg(long, env = "PARLEY_SSE_HEARTBEAT_SECS", default_value_t = 15)]
    sse_heartbeat_secs: u64,
    /// Seconds between WebSocket pings; a peer silent for two intervals is dropped.
    #[arg(long, env = "PARLEY_WS_PING_SECS", default_value_t = 20)]
    ws_ping_secs: u64,
    /// Frames queued for one WebSocket before it is closed as too slow.
    #[arg(long, env = "PARLEY_WS_OUTBOX", default_value_t = 1024)]
    ws_outbox: usize,
    /// This node's name in work leases (default: random at each start).
    #[arg(long, env = "PARLEY_NODE_ID")]
    node_id: Option<String>,
    /// Seconds a node's claim on a consumer's work lasts without renewal.
    #[arg(long, env = "PARLEY_LEASE_SECS", default_value_t = 30)]
    lease_secs: i64,
    /// Run the audit consumer: a receipt per log event, to verify work claiming across nodes.
    #[arg(long, env = "PARLEY_AUDIT_CONSUMER")]
    audit_consumer: bool,
    /// Allow webhook targets with plain http:// (development and tests).
    #[arg(long, env = "PARLEY_WEBHOOK_ALLOW_HTTP")]
    webhook_allow_http: bool,
    /// Allow webhook targets on loopback, private, link-local or unique-local addresses.
    #[arg(long, env = "PARLEY_WEBHOOK_ALLOW_PRIVATE")]
    webhook_allow_private: bool,
    /// Seconds a webhook endpoint has to answer with a 2xx.
    #[arg(long, env = "PARLEY_WEBHOOK_TIMEOUT_SECS", default_value_t = 15)]
    webhook_timeout_secs: u64,
    /// The retry schedule in milliseconds, comma-separated: the delay before each attempt
    /// (default 0,5000,300000,1800000,7200000,18000000,36000000,36000000).
    #[arg(long, env = "PARLEY_WEBHOOK_RETRY_MS", value_delimiter = ',')]
    webhook_retry_ms: Vec<i64>,
    /// Seconds an agent may have no live connection before becoming offline.
    #[arg(long, env = "PARLEY_PRESENCE_GRACE_SECS", default_value_t = 60)]
    presence_grace_secs: u64,
    /// Seconds an agent has to accept a manual-accept offer before it moves to the next agent.
    #[arg(long, env = "PARLEY_OFFER_TIMEOUT_SECS", default_value_t = 30)]
    offer_timeout_secs: u64,
}

impl DataArgs {
    fn config(&self) -> Config {
        Config {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            durability: match self.durability {
                DurabilityArg::Full => Durability::Full,
                DurabilityArg::Normal => Durability::Normal,
            },
            ..Config::default()
        }
    }
}

impl ServeArgs {
    fn config(&self) -> Config {
        let mut config = self.data.config();
        config.listen = self.listen;
        config.admin_token = self.admin_token.clone();
        config.nats_url = self.nats_url.clone();
        config.node_id = self.node_id.clone();
        config.lease_secs = self.lease_secs;
        config.audit_consumer = self.audit_consumer;
        config.webhooks.policy.allow_http = self.webhook_allow_http;
        config.webhooks.policy.allow_private = self.webhook_allow_private;
        config.webhooks.timeout = std::time::Duration::from_secs(self.webhook_timeout_secs.max(1));
        if !self.webhook_retry_ms.is_empty() {
            config.webhooks.schedule.delays_ms = self.webhook_retry_ms.iter().map(|ms| (*ms).max(0)).collect();
        }
        config.body_limit = self.body_limit;
        config.limits.text_chars = self.max_text_chars;
        config.limits.messages_per_conversation = self.max_messages_per_conversation;
        config.limits.integrations_per_account = self.max_integrations;
        config.sse_heartbeat = std::time::Duration::from_secs(self.sse_heartbeat_secs.max(1));
        config.ws_ping = std::time::Duration::from_secs(self.ws_ping_secs.max(1));
        config.ws_outbox = self.ws_outbox.max(16);
        config.presence_grace = std::time::Duration::from_secs(self.presence_grace_secs);
        config.routing.offer_timeout_ms = self.offer_timeout_secs.max(1).saturating_mul(1000) as i64;
        config
    }
}

/// mimalloc, for Rust and (through its `override` feature) for SQLite's C allocations: a heap per
/// thread, so the SQLite writer never waits for an allocator lock that request threads hold. With
/// glibc limited to two arenas (to keep memory per connection small) the writer waited on every
/// few allocations under load; with glibc's default arenas memory freed in one is not reused by
/// another. `.cargo/config.toml` makes it commit memory as used (idle server ≈ 18 MiB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

async fn run(command: Command) -> Result<(), AnyError> {
    match command {
        Command::Serve(args) => serve(args.config()).await,
        Command::Bench(args) => bench::run(args).await.map_err(Into::into),
        Command::BenchBaselineServer { listen } => bench::baseline_server(listen).await.map_err(Into::into),
        Command::Init(data) => {
            match parley_server::init_data_dir(&data.config()).await? {
                Some(token) => {
                    println!("Created {}.", data.data_dir.display());
                    println!("Server admin token (shown only now; keep it safe):\n{token}");
                }
                None => println!(
                    "{} is already initialised; its admin token was shown when it was created.",
                    data.data_dir.display()
                ),
            }
            Ok(())
        }
        Command::Migrate(data) => {
            let store = parley_server::open_store(&data.config(), Arc::default(), Arc::default())?;
            store.close().await;
            println!("{} is up to date.", data.data_dir.display());
            Ok(())
        }
        Command::Account { command: AccountCommand::Create { name, data } } => {
            let config = data.config();
            let store: Arc<dyn Store> = parley_server::open_store(&config, Arc::default(), Arc::default())?;
            let secret = parley_server::auth::new_secret(parley_server::auth::API_KEY_PREFIX).map_err(|e| e.detail)?;
            let key = NewKey {
                name: "first admin key".into(),
                role: Role::Admin,
                agent_id: None,
                hash: parley_server::auth::hash_secret(&secret),
                prefix: secret.chars().take(10).collect(),
            };
            let result = store.write(move |tx| create_account(tx, name, key)).await;
            store.close().await;
            let (account, key) = result?;
            let out = serde_json::json!({
                "account_id": account.id,
                "name": account.name,
                "api_key": {"id": key.id, "role": key.role, "secret": secret},
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

async fn serve(config: Config) -> Result<(), AnyError> {
    let server = RunningServer::start(config).await?;
    if let Some(token) = &server.new_admin_token {
        println!("New data directory. Server admin token (shown only now; keep it safe):\n{token}");
    }
    println!("Parley listening on {}", server.url());
    shutdown_signal().await;
    eprintln!("shutting down");
    server.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
