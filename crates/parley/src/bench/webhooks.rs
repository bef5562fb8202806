//! `parley bench webhooks`: deliveries to healthy endpoints while others fail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

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

pub async fn run(args: BenchArgs) -> Result<(), String> {
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
        "cpu_seconds": {"server": cpu_between(server_cpu0, server_cpu1), "generator": cpu_between(own_cpu0, own_cpu1), "wall": (elapsed * 100.0).round() / 100.0},
    });
    report(&args, &result)?;
    Ok(())
}
