//! `parley bench ingest` and `baseline`: messages acknowledged per second and their latency.
//!
//! `ingest` starts both servers, Parley and the baseline's handler, and keeps them up while its
//! load alternates between them (`--pairs` slices of `--seconds` each): ingest, baseline, ingest,
//! … It reports each pair's ratio and their median. On a shared host the machine's speed drifts
//! from one minute to the next (BENCHMARKS.md), so only a ceiling taken in the seconds beside
//! the figure it divides says something; short slices keep the two close.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::*;

/// One measured run against one server.
struct Run {
    acknowledged: u64,
    errors: u64,
    elapsed: f64,
    latency: Histogram<u64>,
    server_cpu: Option<f64>,
    generator_cpu: Option<f64>,
    /// The server's CPU by kind of thread.
    server_threads: Value,
    /// The machine's idle core-seconds: what the closed loop of clients left unused.
    idle: Option<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        (self.acknowledged as f64 / self.elapsed).round()
    }

    fn figures(&self) -> Value {
        json!({
            "messages_acknowledged": self.acknowledged,
            "errors": self.errors,
            "messages_per_second": self.rate(),
            "latency_ms": latency_ms(&self.latency),
            "cpu_seconds": {
                "server": self.server_cpu,
                "generator": self.generator_cpu,
                "wall": (self.elapsed * 100.0).round() / 100.0,
                "server_threads": self.server_threads,
                "idle": self.idle,
            },
        })
    }
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let baseline_only = matches!(args.scenario, Scenario::Baseline);
    let mut pairs: Vec<(Run, Option<Run>)> = Vec::new();
    if baseline_only {
        let target = Target::start(&args, true).await?;
        pairs.push((target.load(&args, FIRST_WARM_UP).await?, None));
    } else {
        // Both servers stay up and the load alternates between them, so that each ingest slice
        // has its ceiling measured in the seconds next to it.
        let ingest = Target::start(&args, false).await?;
        let baseline = if args.pairs > 0 { Some(Target::start(&args, true).await?) } else { None };
        for i in 0..args.pairs.max(1) {
            let warm_up = if i == 0 { FIRST_WARM_UP } else { WARM_UP };
            let run = ingest.load(&args, warm_up).await?;
            let ceiling = match &baseline {
                Some(baseline) => Some(baseline.load(&args, warm_up).await?),
                None => None,
            };
            pairs.push((run, ceiling));
        }
    }
    let ratios: Vec<f64> = pairs.iter().filter_map(|(ingest, baseline)| ratio(ingest, baseline.as_ref())).collect();
    // The headline is the run with the median rate; every run is in `runs`.
    let rates: Vec<f64> = pairs.iter().map(|(ingest, _)| ingest.rate()).collect();
    let median = &pairs[lower_median(&rates).map(|(i, _)| i).unwrap_or(0)].0;
    let mut result = json!({
        "scenario": if baseline_only { "baseline" } else { "ingest" },
        "machine": machine(),
        "parameters": {
            "clients": args.clients,
            "conversations": args.conversations,
            "seconds": args.seconds,
            "durability": args.durability,
            "backend": if args.database_url.is_some() { "postgresql" } else { "sqlite" },
            "pairs": if baseline_only { 0 } else { args.pairs },
        },
    });
    if let (Some(all), Value::Object(headline)) = (result.as_object_mut(), median.figures()) {
        all.extend(headline);
        if let Some((_, median)) = lower_median(&ratios) {
            let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            all.insert("ingest_over_baseline".into(), json!({"min": min, "median": median, "max": max}));
        }
        if !baseline_only {
            let runs = pairs
                .iter()
                .map(|(ingest, baseline)| {
                    let baseline = baseline.as_ref();
                    json!({"ingest": ingest.figures(), "baseline": baseline.map(Run::figures), "ratio": ratio(ingest, baseline)})
                })
                .collect();
            all.insert("runs".into(), Value::Array(runs));
        }
    }
    print_table(&result);
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?)
        .map_err(|e| format!("cannot write {}: {e}", args.out))?;
    println!("figures written to {}", args.out);
    Ok(())
}

/// Ingest over its baseline, to three decimals.
fn ratio(ingest: &Run, baseline: Option<&Run>) -> Option<f64> {
    baseline.map(|b| (ingest.rate() / b.rate().max(1.0) * 1000.0).round() / 1000.0)
}

/// The median of `values` (the lower of the middle two) and where it is in them.
fn lower_median(values: &[f64]) -> Option<(usize, f64)> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let i = *order.get(values.len().checked_sub(1)? / 2)?;
    Some((i, values[i]))
}

/// Load before the first measured slice of a server: connections opened, caches filled.
const FIRST_WARM_UP: Duration = Duration::from_secs(1);
/// Load before each later slice: long enough for the other server's leftovers (a checkpoint
/// after its load stopped) to end.
const WARM_UP: Duration = Duration::from_millis(500);

/// A server to load (`parley serve`, or the baseline's handler), with its conversations.
struct Target {
    server: Server,
    http: reqwest::Client,
    key: String,
    /// The URL each message is posted to, one per conversation.
    conversations: Arc<Vec<String>>,
}

impl Target {
    /// Starts the server and makes the account, the integration and the conversations.
    async fn start(args: &BenchArgs, baseline: bool) -> Result<Target, String> {
        let dir = match &args.log_dir {
            Some(dir) if !baseline => DataDir::Kept(dir.clone()),
            _ => DataDir::temporary()?,
        };
        let server = start_process(args, dir, baseline)?;
        let http =
            reqwest::Client::builder().pool_max_idle_per_host(args.clients).build().map_err(|e| e.to_string())?;
        let base = server.url.clone();
        if baseline {
            let conversations = (0..args.conversations)
                .map(|_| format!("{base}/v1/conversations/{}/messages", parley_core::Uuid::now_v7()))
                .collect();
            return Ok(Target { server, http, key: "baseline".into(), conversations: Arc::new(conversations) });
        }
        let account = post(&http, &format!("{base}/v1/accounts"), ADMIN, &json!({"name": "bench"})).await?;
        let key = account["api_key"]["secret"].as_str().ok_or("no key")?.to_string();
        let integration =
            post(&http, &format!("{base}/v1/integrations"), &key, &json!({"name": "bench", "type": "api"})).await?;
        let mut conversations = Vec::with_capacity(args.conversations);
        for chunk in (0..args.conversations).collect::<Vec<_>>().chunks(64) {
            let made = chunk.iter().map(|i| {
                let body = json!({"integration_id": integration["id"], "customer": {"external_id": format!("c{i}")}});
                let (http, url, key) = (http.clone(), format!("{base}/v1/conversations"), key.clone());
                async move { post(&http, &url, &key, &body).await }
            });
            for c in futures_join(made).await {
                conversations.push(format!("{base}/v1/conversations/{}/messages", c?["id"].as_str().ok_or("no id")?));
            }
        }
        Ok(Target { server, http, key, conversations: Arc::new(conversations) })
    }

    /// Posts messages from `--clients` clients: `warm_up`, then `--seconds` measured.
    async fn load(&self, args: &BenchArgs, warm_up: Duration) -> Result<Run, String> {
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for client in 0..args.clients {
            let (http, key, conversations) = (self.http.clone(), self.key.clone(), self.conversations.clone());
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
        tokio::time::sleep(warm_up).await;
        let server_pid = self.server.child.id().to_string();
        let (server_cpu0, own_cpu0) = (cpu_seconds(&server_pid), cpu_seconds("self"));
        let (threads0, idle0) = (thread_cpu_seconds(&server_pid), idle_seconds());
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let (server_cpu1, own_cpu1) = (cpu_seconds(&server_pid), cpu_seconds("self"));
        let (threads1, idle1) = (thread_cpu_seconds(&server_pid), idle_seconds());
        stop.store(true, Ordering::Relaxed);
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        for task in tasks {
            let h = task.await.map_err(|e| e.to_string())?;
            latency.add(h).map_err(|e| e.to_string())?;
        }
        Ok(Run {
            acknowledged: latency.len(),
            errors: errors.load(Ordering::Relaxed),
            elapsed,
            latency,
            server_cpu: cpu_between(server_cpu0, server_cpu1),
            generator_cpu: cpu_between(own_cpu0, own_cpu1),
            server_threads: threads_between(&threads0, &threads1),
            idle: cpu_between(idle0, idle1),
        })
    }
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
    for (name, seconds) in r["cpu_seconds"]["server_threads"].as_object().into_iter().flatten() {
        row(&format!("CPU {name} (s)"), seconds.to_string());
    }
    row("idle, all cores (s)", r["cpu_seconds"]["idle"].to_string());
    for (i, run) in r["runs"].as_array().into_iter().flatten().enumerate() {
        let rate = |side: &str| run[side]["messages_per_second"].as_f64().unwrap_or(0.0);
        let value = match run["ratio"].as_f64() {
            Some(ratio) => format!("{:.0} / {:.0} = {ratio:.3}", rate("ingest"), rate("baseline")),
            None => format!("{:.0}", rate("ingest")),
        };
        row(&format!("run {} ingest / baseline", i + 1), value);
    }
    if let Some(ratio) = r["ingest_over_baseline"]["median"].as_f64() {
        row("ingest / baseline (median)", format!("{ratio:.3}"));
    }
}
