//! Prometheus metrics and the one-line-per-request log, from one middleware.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::context::ApiContext;

const BUCKETS_MS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_MS.len()],
    sum_ms: f64,
    total: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<Histogram>,
    pub events_committed: AtomicU64,
    pub commit_batches: AtomicU64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, elapsed_ms: f64) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((method.to_string(), route.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut h) = self.durations.lock() {
            for (i, bound) in BUCKETS_MS.iter().enumerate() {
                if elapsed_ms <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum_ms += elapsed_ms;
            h.total += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, live_subscribers: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP parley_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE parley_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((method, route, status), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "parley_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP parley_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE parley_http_request_duration_seconds histogram\n");
        if let Ok(h) = self.durations.lock() {
            for (i, bound) in BUCKETS_MS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "parley_http_request_duration_seconds_bucket{{le=\"{}\"}} {}",
                    bound / 1000.0,
                    h.counts[i]
                );
            }
            let _ = writeln!(out, "parley_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.total);
            let _ = writeln!(out, "parley_http_request_duration_seconds_sum {}", h.sum_ms / 1000.0);
            let _ = writeln!(out, "parley_http_request_duration_seconds_count {}", h.total);
        }
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(
            &mut out,
            "parley_log_events_committed_total",
            "Log events committed.",
            self.events_committed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "parley_store_commit_batches_total",
            "Write transactions committed that appended events.",
            self.commit_batches.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP parley_live_subscribers Live log subscribers.\n# TYPE parley_live_subscribers gauge\nparley_live_subscribers {live_subscribers}"
        );
        out
    }
}

/// Logs one line per request and counts it.
pub async fn track(State(ctx): State<ApiContext>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    ctx.metrics.observe(&method, &route, status, elapsed_ms);
    tracing::info!(target: "parley::http", %method, %route, status, elapsed_ms = format!("{elapsed_ms:.2}"), "request");
    response
}
