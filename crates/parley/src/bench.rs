//! `parley bench`: the project's own load generator. It starts a real `parley serve` as a
//! child process on a temporary data directory (or on the database it is given), drives it
//! over real sockets from this process, and prints one table — and writes the same figures as
//! JSON — with the machine, both processes' CPU time and the exact parameters.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
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
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    scenario: Scenario,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Conversations the messages are spread over.
    #[arg(long, default_value_t = 1000)]
    conversations: usize,
    /// Seconds of measured load (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The server's durability: `full` (fsync every commit) or `normal`.
    #[arg(long, default_value = "full")]
    durability: String,
    /// Run the server on this PostgreSQL database instead of a temporary SQLite one.
    #[arg(long)]
    database_url: Option<String>,
    /// Webhooks scenario: healthy endpoints, failing endpoints (answer 500), messages posted.
    #[arg(long, default_value_t = 4)]
    healthy: usize,
    #[arg(long, default_value_t = 2)]
    failing: usize,
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Triggers scenario: enabled triggers (5 conditions each) evaluated before the probe.
    #[arg(long, default_value_t = 100)]
    triggers: usize,
    /// Where to write the JSON figures.
    #[arg(long, default_value = "bench-results.json")]
    out: String,
}

const ADMIN: &str = "bench-admin-token";

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &BenchArgs) -> Result<Server, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the parley binary: {e}"))?;
    let mut command = Command::new(exe);
    if matches!(args.scenario, Scenario::Baseline) {
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
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

async fn post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> Result<Value, String> {
    let resp = http.post(url).bearer_auth(key).json(body).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    resp.json().await.map_err(|e| e.to_string())
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    match args.scenario {
        Scenario::Ingest | Scenario::Baseline => ingest(args).await,
        Scenario::Webhooks => webhooks(args).await,
        Scenario::Triggers => triggers(args).await,
    }
}

/// Reads `data:` lines of a Server-Sent Events response.
struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

impl EventStream {
    async fn next(&mut self) -> Result<Value, String> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    return serde_json::from_str(data.trim()).map_err(|e| e.to_string());
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .map_err(|_| "no trigger_fired within 10 s".to_string())?
                .map_err(|e| e.to_string())?
                .ok_or("the stream ended")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// One phase of the triggers scenario: `messages` customer messages, one at a time, each timed
/// from its acknowledgement to its `trigger_fired` event on the stream.
async fn time_probe(
    http: &reqwest::Client,
    stream: &mut EventStream,
    key: &str,
    conversations: &[String],
    messages: usize,
) -> Result<Histogram<u64>, String> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let body = json!({"author": {"type": "customer"}, "content": {"type": "text", "text": "Where is my order 12345?"}});
    for i in 0..messages {
        let url = &conversations[i % conversations.len()];
        let conversation = url.rsplit('/').nth(1).unwrap_or_default().to_string();
        post(http, url, key, &body).await?;
        let acknowledged = Instant::now();
        loop {
            let event = stream.next().await?;
            if event["conversation_id"].as_str() == Some(conversation.as_str()) && event["data"]["name"] == "probe" {
                break;
            }
        }
        let _ = histogram.record(acknowledged.elapsed().as_micros() as u64);
    }
    Ok(histogram)
}

async fn triggers(args: BenchArgs) -> Result<(), String> {
    let server = start_server(&args)?;
    let http = reqwest::Client::new();
    let base = server.url.clone();
    let key = bench_account(&http, &base).await?;
    let conversations = message_urls(&http, &base, &key, args.conversations.min(100)).await?;
    // The probe fires on every message; its action changes nothing after the first time.
    let probe = json!({"name": "probe", "event": "message_sent", "position": 1_000_000,
        "actions": [{"type": "set_triggered", "value": true}]});
    post(&http, &format!("{base}/v1/triggers"), &key, &probe).await?;
    let resp = http
        .get(format!("{base}/v1/log/stream?type=trigger_fired"))
        .bearer_auth(&key)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = EventStream { resp, buf: String::new() };
    let messages = args.messages.min(2000);
    let server_pid = server.child.id().to_string();
    time_probe(&http, &mut stream, &key, &conversations, 50).await?; // warm-up
    let alone = time_probe(&http, &mut stream, &key, &conversations, messages).await?;
    // Each evaluates all five conditions (four hold, the last does not) and never fires.
    for i in 0..args.triggers {
        let trigger = json!({
            "name": format!("t{i}"), "event": "message_sent", "position": i,
            "conditions": [
                {"field": "message", "operator": "contains", "value": "order"},
                {"field": "message", "operator": "regex", "value": r".*order (?P<n>\d+)\?"},
                {"field": "customer_name", "operator": "is_not", "value": "nobody"},
                {"field": "hour_of_day", "operator": "greater_than_or_equal", "value": 0},
                {"field": "queue_size", "operator": "greater_than", "value": 1_000_000}
            ],
            "actions": [{"type": "add_tags", "tags": ["never"]}]
        });
        post(&http, &format!("{base}/v1/triggers"), &key, &trigger).await?;
    }
    time_probe(&http, &mut stream, &key, &conversations, 50).await?; // warm-up (compiles the patterns)
    let cpu0 = cpu_seconds(&server_pid);
    let behind = time_probe(&http, &mut stream, &key, &conversations, messages).await?;
    let cpu1 = cpu_seconds(&server_pid);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let figures = |h: &Histogram<u64>| json!({"p50": ms(h, 0.5), "p99": ms(h, 0.99), "p99_9": ms(h, 0.999), "mean": h.mean() / 1000.0});
    let result = json!({
        "scenario": "triggers",
        "machine": machine(),
        "parameters": {"triggers": args.triggers, "conditions_each": 5, "messages_per_phase": messages, "durability": args.durability},
        "ack_to_trigger_fired_ms": {"probe_alone": figures(&alone), "behind_triggers": figures(&behind)},
        "added_ms": {
            "p50": ms(&behind, 0.5) - ms(&alone, 0.5),
            "p99": ms(&behind, 0.99) - ms(&alone, 0.99),
            "mean": (behind.mean() - alone.mean()) / 1000.0,
        },
        "server_cpu_seconds_behind_triggers": cpu0.zip(cpu1).map(|(a, b)| ((b - a) * 100.0).round() / 100.0),
    });
    println!("{}", serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?);
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?)
        .map_err(|e| format!("cannot write {}: {e}", args.out))?;
    Ok(())
}

async fn ingest(args: BenchArgs) -> Result<(), String> {
    let server = start_server(&args)?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build().map_err(|e| e.to_string())?;
    let base = server.url.clone();
    let baseline = matches!(args.scenario, Scenario::Baseline);
    let (key, integration) = if baseline {
        ("baseline".to_string(), Value::Null)
    } else {
        let account = post(&http, &format!("{base}/v1/accounts"), ADMIN, &json!({"name": "bench"})).await?;
        let key = account["api_key"]["secret"].as_str().ok_or("no key")?.to_string();
        let integration =
            post(&http, &format!("{base}/v1/integrations"), &key, &json!({"name": "bench", "type": "api"})).await?;
        (key, integration)
    };
    let mut conversations = Vec::with_capacity(args.conversations);
    if baseline {
        for _ in 0..args.conversations {
            conversations.push(format!("{base}/v1/conversations/{}/messages", parley_core::Uuid::now_v7()));
        }
    }
    let to_make = if baseline { 0 } else { args.conversations };
    for chunk in (0..to_make).collect::<Vec<_>>().chunks(64) {
        let made = chunk.iter().map(|i| {
            let body = json!({"integration_id": integration["id"], "customer": {"external_id": format!("c{i}")}});
            let (http, url, key) = (http.clone(), format!("{base}/v1/conversations"), key.clone());
            async move { post(&http, &url, &key, &body).await }
        });
        for c in futures_join(made).await {
            conversations.push(format!("{base}/v1/conversations/{}/messages", c?["id"].as_str().ok_or("no id")?));
        }
    }
    let conversations = Arc::new(conversations);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let (http, key, conversations) = (http.clone(), key.clone(), conversations.clone());
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let body = json!({"author": {"type": "customer"}, "content": {"type": "text", "text": "Hello, I would like to know where my order is."}});
            let mut i = client;
            while !stop.load(Ordering::Relaxed) {
                let url = &conversations[i % conversations.len()];
                i += 7919;
                let started = Instant::now();
                let ok = matches!(http.post(url).bearer_auth(&key).json(&body).send().await, Ok(r) if r.status().is_success());
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        let _ = histogram.record(started.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            histogram
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server_pid = server.child.id().to_string();
    let (server_cpu0, own_cpu0) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let (server_cpu1, own_cpu1) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    for task in tasks {
        let h = task.await.map_err(|e| e.to_string())?;
        all.add(h).map_err(|e| e.to_string())?;
    }
    let acknowledged = all.len();
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    let cpu = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| ((b - a) * 100.0).round() / 100.0);
    let result = json!({
        "scenario": if baseline { "baseline" } else { "ingest" },
        "machine": machine(),
        "parameters": {
            "clients": args.clients,
            "conversations": args.conversations,
            "seconds": args.seconds,
            "durability": args.durability,
            "backend": if args.database_url.is_some() { "postgresql" } else { "sqlite" },
        },
        "messages_acknowledged": acknowledged,
        "errors": errors.load(Ordering::Relaxed),
        "messages_per_second": (acknowledged as f64 / elapsed).round(),
        "latency_ms": {"p50": ms(0.5), "p99": ms(0.99), "p99_9": ms(0.999), "max": all.max() as f64 / 1000.0},
        "cpu_seconds": {"server": cpu(server_cpu0, server_cpu1), "generator": cpu(own_cpu0, own_cpu1), "wall": (elapsed * 100.0).round() / 100.0},
    });
    print_table(&result);
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?)
        .map_err(|e| format!("cannot write {}: {e}", args.out))?;
    println!("figures written to {}", args.out);
    Ok(())
}

fn print_table(r: &Value) {
    let row = |name: &str, value: String| println!("| {name:<28} | {value:>24} |");
    println!("| {:<28} | {:>24} |", "figure", "value");
    println!("|{}|{}|", "-".repeat(30), "-".repeat(26));
    row("scenario", r["scenario"].as_str().unwrap_or("").to_string());
    row("machine", format!("{} cores, {} GiB", r["machine"]["cores"], r["machine"]["memory_gib"]));
    for (k, v) in r["parameters"].as_object().into_iter().flatten() {
        row(k, v.to_string().trim_matches('"').to_string());
    }
    row("messages/s acknowledged", r["messages_per_second"].to_string());
    row("messages acknowledged", r["messages_acknowledged"].to_string());
    row("errors", r["errors"].to_string());
    for q in ["p50", "p99", "p99_9", "max"] {
        row(&format!("latency {q} (ms)"), format!("{:.2}", r["latency_ms"][q].as_f64().unwrap_or(0.0)));
    }
    row("server CPU (s)", r["cpu_seconds"]["server"].to_string());
    row("generator CPU (s)", r["cpu_seconds"]["generator"].to_string());
    row("wall (s)", r["cpu_seconds"]["wall"].to_string());
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

/// A local receiver: `/ok/{n}` answers 200 and records when each delivery arrived and how long
/// after its event's commit; `/fail/{n}` answers 500.
#[derive(Clone, Default)]
struct Receiver {
    delays_ms: Arc<std::sync::Mutex<Vec<f64>>>,
    healthy: Arc<AtomicU64>,
    failing: Arc<AtomicU64>,
}

async fn receive(
    axum::extract::State(rx): axum::extract::State<Receiver>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    if uri.path().starts_with("/fail") {
        rx.failing.fetch_add(1, Ordering::Relaxed);
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    }
    let committed = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["timestamp"].as_str().and_then(|t| parley_core::Timestamp::parse_rfc3339(t).ok()));
    if let Some(at) = committed {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        if let Ok(mut delays) = rx.delays_ms.lock() {
            delays.push((now - at.millis()) as f64);
        }
    }
    rx.healthy.fetch_add(1, Ordering::Relaxed);
    axum::http::StatusCode::OK
}

async fn webhooks(args: BenchArgs) -> Result<(), String> {
    let server = start_server(&args)?;
    let rx = Receiver::default();
    let app = axum::Router::new().fallback(receive).with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let receiver_url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build().map_err(|e| e.to_string())?;
    let base = server.url.clone();
    let key = bench_account(&http, &base).await?;
    for i in 0..args.healthy {
        post(
            &http,
            &format!("{base}/v1/webhooks"),
            &key,
            &json!({"url": format!("{receiver_url}/ok/{i}"), "event_types": ["message_received"]}),
        )
        .await?;
    }
    for i in 0..args.failing {
        post(
            &http,
            &format!("{base}/v1/webhooks"),
            &key,
            &json!({"url": format!("{receiver_url}/fail/{i}"), "event_types": ["message_received"]}),
        )
        .await?;
    }
    let conversations = message_urls(&http, &base, &key, args.conversations.min(100)).await?;
    let conversations = Arc::new(conversations);
    let server_pid = server.child.id().to_string();
    let (server_cpu0, own_cpu0) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut posters = Vec::new();
    for _ in 0..args.clients.min(16) {
        let (http, key, conversations, next) = (http.clone(), key.clone(), conversations.clone(), next.clone());
        let total = args.messages as u64;
        posters.push(tokio::spawn(async move {
            let body =
                json!({"author": {"type": "customer"}, "content": {"type": "text", "text": "Where is my order?"}});
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let url = &conversations[n as usize % conversations.len()];
                let _ = http.post(url).bearer_auth(&key).json(&body).send().await;
            }
        }));
    }
    for p in posters {
        let _ = p.await;
    }
    let posted_in = started.elapsed().as_secs_f64();
    let expected = (args.messages * args.healthy) as u64;
    let deadline = Instant::now() + Duration::from_secs(args.seconds.max(60));
    while rx.healthy.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (server_cpu1, own_cpu1) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let delivered = rx.healthy.load(Ordering::Relaxed);
    let mut delays = rx.delays_ms.lock().map(|d| d.clone()).unwrap_or_default();
    delays.sort_by(f64::total_cmp);
    let pct = |q: f64| delays.get(((delays.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0.0);
    let cpu = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| ((b - a) * 100.0).round() / 100.0);
    let result = json!({
        "scenario": "webhooks",
        "machine": machine(),
        "parameters": {
            "healthy_endpoints": args.healthy, "failing_endpoints": args.failing, "messages": args.messages,
            "durability": args.durability,
            "backend": if args.database_url.is_some() { "postgresql" } else { "sqlite" },
        },
        "deliveries_to_healthy": delivered,
        "deliveries_expected": expected,
        "attempts_on_failing": rx.failing.load(Ordering::Relaxed),
        "deliveries_per_second": (delivered as f64 / elapsed).round(),
        "messages_posted_per_second": (args.messages as f64 / posted_in).round(),
        "delivery_delay_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": delays.last().copied().unwrap_or(0.0)},
        "cpu_seconds": {"server": cpu(server_cpu0, server_cpu1), "generator": cpu(own_cpu0, own_cpu1), "wall": (elapsed * 100.0).round() / 100.0},
    });
    println!("{}", serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?);
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?)
        .map_err(|e| format!("cannot write {}: {e}", args.out))?;
    Ok(())
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
