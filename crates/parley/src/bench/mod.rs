//! `parley bench`: the project's own load generator. It starts a real `parley serve` as a
//! child process on a temporary data directory (or on the database it is given), drives it
//! over real sockets from this process, and prints one table — and writes the same figures as
//! JSON — with the machine, both processes' CPU time and the exact parameters.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use clap::{Args, ValueEnum};

mod connections;
mod fanout;
mod ingest;
mod log;
mod queue;
mod sockets;
mod triggers;
mod webhooks;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Scenario {
    /// C concurrent HTTP clients post text messages into K conversations.
    Ingest,
    /// The ingest load against a minimal HTTP handler that parses the same JSON and answers
    /// 201: the ceiling `ingest` is compared with.
    Baseline,
    /// Messages are posted while W healthy and F failing endpoints on a local receiver
    /// subscribe to them: deliveries/s to the healthy ones and their delay.
    Webhooks,
    /// Customer messages one at a time, each firing a probe trigger: the time from the message's
    /// acknowledgement to its `trigger_fired` on the live stream, first with the probe alone,
    /// then behind T enabled triggers of 5 conditions each: the difference is what they add.
    Triggers,
    /// S live customer WebSockets, each following its conversation; messages posted into them
    /// at R per second: post-to-receive latency at the subscriber, and deliveries lost.
    Fanout,
    /// N idle live customer connections (`--subscribers`), answering pings: the server's memory
    /// per connection and the connect rate.
    Connections,
    /// A log of E events (`--events`, written straight into the store first), then pages by
    /// conversation and by time range, and a full NDJSON export, over HTTP.
    Log,
    /// N customers waiting in one queue with live sockets (`--subscribers`); the conversation at
    /// the head ends R times a second (`--rate`): the time until each socket hears its new
    /// position, and the server's CPU per end.
    Queue,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    scenario: Scenario,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64, value_parser = at_least_one::<usize>())]
    clients: usize,
    /// Conversations the messages are spread over.
    #[arg(long, default_value_t = 1000, value_parser = at_least_one::<usize>())]
    conversations: usize,
    /// Seconds of measured load (after a one-second warm-up).
    #[arg(long, default_value_t = 10, value_parser = at_least_one::<u64>())]
    seconds: u64,
    /// The server's durability: `full` (fsync every commit) or `normal`.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    durability: String,
    /// Run the server on this PostgreSQL database instead of a temporary SQLite one.
    #[arg(long)]
    database_url: Option<String>,
    /// Webhooks scenario: healthy endpoints, failing endpoints (answer 500), messages posted.
    #[arg(long, default_value_t = 4, value_parser = at_least_one::<usize>())]
    healthy: usize,
    #[arg(long, default_value_t = 2)]
    failing: usize,
    #[arg(long, default_value_t = 5000, value_parser = at_least_one::<usize>())]
    messages: usize,
    /// Triggers scenario: enabled triggers (5 conditions each) evaluated before the probe.
    #[arg(long, default_value_t = 100)]
    triggers: usize,
    /// Fanout scenario: live subscribers, and messages posted per second.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one::<usize>())]
    subscribers: usize,
    #[arg(long, default_value_t = 2000, value_parser = at_least_one::<usize>())]
    rate: usize,
    /// Log scenario: events in the log.
    #[arg(long, default_value_t = 10_000_000, value_parser = at_least_one::<usize>())]
    events: usize,
    /// Log scenario: keep the seeded log in this directory, and measure a log already seeded
    /// there (with the same `--events`) instead of writing it again. Ingest scenario: run the
    /// server on the data in this directory (such a log, which the run then adds to) instead of
    /// on a new, empty one.
    #[arg(long)]
    log_dir: Option<std::path::PathBuf>,
    /// Ingest scenario: measured slices of `--seconds`, each followed by a `baseline` slice of
    /// the same load, both servers kept up, so that every ingest figure has its ceiling taken in
    /// the seconds beside it (0: one ingest run, no baseline).
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    /// Where to write the JSON figures.
    #[arg(long, default_value = "bench-results.json")]
    out: String,
}

/// A count or a duration that must be at least 1: with none of it, a scenario measures nothing
/// (or divides by it).
fn at_least_one<T: TryFrom<u64> + Clone + Send + Sync + 'static>() -> clap::builder::RangedU64ValueParser<T> {
    clap::builder::RangedU64ValueParser::<T>::new().range(1..)
}

const ADMIN: &str = "bench-admin-token";

struct Server {
    child: Child,
    url: String,
    _dir: DataDir,
}

/// Where a benchmarked server keeps its data: a temporary directory, removed afterwards, or
/// one the caller keeps.
enum DataDir {
    Temporary(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl DataDir {
    fn temporary() -> Result<Self, String> {
        Ok(DataDir::Temporary(tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?))
    }

    fn path(&self) -> &std::path::Path {
        match self {
            DataDir::Temporary(dir) => dir.path(),
            DataDir::Kept(path) => path,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &BenchArgs) -> Result<Server, String> {
    start_process(args, DataDir::temporary()?, matches!(args.scenario, Scenario::Baseline))
}

/// Starts the server on `dir/data` (which may hold data already).
fn start_server_in(args: &BenchArgs, dir: DataDir) -> Result<Server, String> {
    start_process(args, dir, false)
}

/// Starts `parley serve`, or the minimal handler `baseline` measures when `baseline` is set.
fn start_process(args: &BenchArgs, dir: DataDir, baseline: bool) -> Result<Server, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the parley binary: {e}"))?;
    let mut command = Command::new(exe);
    if baseline {
        command.args(["bench-baseline-server", "--listen", "127.0.0.1:0"]);
    } else {
        command.args(["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN, "--durability", &args.durability]);
        command.args(["--webhook-allow-http", "--webhook-allow-private", "--data-dir"]).arg(dir.path().join("data"));
    }
    command.env("PARLEY_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit());
    if let Some(url) = &args.database_url {
        command.args(["--database-url", url]);
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start the server: {e}"))?;
    let stdout = child.stdout.take().ok_or("no server output")?;
    let mut server = Server { child, url: String::new(), _dir: dir };
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("server output: {e}"))?;
        if let Some(url) = line.strip_prefix("Parley listening on ") {
            server.url = url.to_string();
            return Ok(server);
        }
    }
    Err("the server exited before listening".into())
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: &str) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user + system) in a `stat` file of /proc (a process's or one of its threads').
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds a process's threads have used, those of one name summed: where a server's time
/// goes (its SQLite writer against its request threads, say).
fn thread_cpu_seconds(pid: &str) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_string();
        if let Some(seconds) = stat_cpu_seconds(&path.join("stat").to_string_lossy()) {
            *by_name.entry(name).or_insert(0.0) += seconds;
        }
    }
    by_name
}

/// What each kind of thread used between two readings of [`thread_cpu_seconds`].
fn threads_between(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Value {
    let used = after
        .iter()
        .map(|(name, s)| (name.clone(), json!(((s - before.get(name).unwrap_or(&0.0)) * 100.0).round() / 100.0)));
    Value::Object(used.collect())
}

/// Idle seconds of all the machine's cores together (idle and waiting on I/O), from /proc/stat.
fn idle_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    Some((fields.get(3)? + fields.get(4)?) / 100.0)
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    json!({"cores": cores, "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0, "cpu": model})
}

/// A new account: its admin key.
async fn bench_account(http: &reqwest::Client, base: &str) -> Result<String, String> {
    let account = post(http, &format!("{base}/v1/accounts"), ADMIN, &json!({"name": "bench"})).await?;
    Ok(account["api_key"]["secret"].as_str().ok_or("no key")?.to_string())
}

/// `n` conversations of named customers on a new `api` integration: their messages URLs.
async fn message_urls(http: &reqwest::Client, base: &str, key: &str, n: usize) -> Result<Vec<String>, String> {
    let integration =
        post(http, &format!("{base}/v1/integrations"), key, &json!({"name": "bench", "type": "api"})).await?;
    let mut urls = Vec::with_capacity(n);
    for i in 0..n {
        let body =
            json!({"integration_id": integration["id"], "customer": {"external_id": format!("c{i}"), "name": "Kamal"}});
        let c = post(http, &format!("{base}/v1/conversations"), key, &body).await?;
        urls.push(format!("{base}/v1/conversations/{}/messages", c["id"].as_str().ok_or("no id")?));
    }
    Ok(urls)
}

/// Sends a request and reads its JSON answer.
async fn json_of(request: reqwest::RequestBuilder) -> Result<Value, String> {
    request.send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())
}

/// Milliseconds at quantile `q` of a histogram recorded in microseconds.
fn ms_at(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// p50, p99, p99.9 and the maximum of a histogram recorded in microseconds, in milliseconds.
fn latency_ms(h: &hdrhistogram::Histogram<u64>) -> Value {
    json!({"p50": ms_at(h, 0.5), "p99": ms_at(h, 0.99), "p99_9": ms_at(h, 0.999), "max": h.max() as f64 / 1000.0})
}

/// CPU seconds between two readings, to 0.01 s, when both could be taken.
fn cpu_between(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    before.zip(after).map(|(a, b)| ((b - a) * 100.0).round() / 100.0)
}

/// Prints the figures as JSON and writes them to `--out`.
fn report(args: &BenchArgs, result: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(result).map_err(|e| e.to_string())?;
    println!("{text}");
    std::fs::write(&args.out, text).map_err(|e| format!("cannot write {}: {e}", args.out))
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> Result<Value, String> {
    let resp = http.post(url).bearer_auth(key).json(body).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    resp.json().await.map_err(|e| e.to_string())
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    match args.scenario {
        Scenario::Ingest | Scenario::Baseline => ingest::run(args).await,
        Scenario::Webhooks => webhooks::run(args).await,
        Scenario::Triggers => triggers::run(args).await,
        Scenario::Fanout => fanout::run(args).await,
        Scenario::Connections => connections::run(args).await,
        Scenario::Log => log::run(args).await,
        Scenario::Queue => queue::run(args).await,
    }
}

async fn futures_join<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// The baseline's handler: authenticates nothing, parses the request as the real endpoint does
/// (the message body, with its content validated), and answers 201 with a small JSON body.
pub async fn baseline_server(listen: std::net::SocketAddr) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Send {
        content: parley_core::message::Content,
        #[serde(default)]
        client_message_id: Option<String>,
        #[serde(default)]
        author: Option<Value>,
    }
    async fn handle(body: axum::body::Bytes) -> (axum::http::StatusCode, axum::Json<Value>) {
        match serde_json::from_slice::<Send>(&body) {
            Ok(send) => match send.content.validate(parley_core::message::AuthorType::Customer, &Default::default()) {
                Ok(()) => {
                    (axum::http::StatusCode::CREATED, axum::Json(json!({"id": parley_core::Uuid::now_v7(), "seq": 1})))
                }
                Err(e) => (axum::http::StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"detail": e.to_string()}))),
            },
            Err(e) => (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"detail": e.to_string()}))),
        }
    }
    let app = axum::Router::new().route("/v1/conversations/{id}/messages", axum::routing::post(handle));
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| e.to_string())?;
    println!("Parley listening on http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}
