//! `parley bench fanout`: S live customer WebSockets, each following its own conversation;
//! messages posted into those conversations at a fixed rate; the time from posting a message to
//! its event arriving on the subscriber's socket, measured at the subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::sockets::Sockets;
use super::*;

/// Raises this process's open-file limit (children inherit it) to at least `want`.
pub fn raise_fd_limit(want: u64) -> Result<(), String> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err("cannot read the open-file limit".into());
        }
        if limit.rlim_cur >= want {
            return Ok(());
        }
        // Within the hard limit anyone may raise it; beyond, only a privileged process.
        let raised = if want <= limit.rlim_max {
            libc::rlimit { rlim_cur: want, rlim_max: limit.rlim_max }
        } else {
            libc::rlimit { rlim_cur: want, rlim_max: want }
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            return Err(format!(
                "cannot raise the open-file limit to {want} (it is {}); run as root or raise `ulimit -n`",
                limit.rlim_cur
            ));
        }
    }
    Ok(())
}

/// The server's resident memory, from /proc.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// A customer: their session token and conversation.
pub struct Customer {
    pub token: String,
    pub conversation: String,
}

/// `n` anonymous customers of a new web integration, each with a conversation they already
/// wrote in (so it waits in the queue from the start, as a live chat does).
pub async fn customers(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    n: usize,
    first: bool,
) -> Result<Vec<Customer>, String> {
    let integration =
        post(http, &format!("{base}/v1/integrations"), key, &json!({"name": "widget", "type": "web"})).await?;
    let integration = integration["id"].as_str().ok_or("no integration id")?.to_string();
    let mut out = Vec::with_capacity(n);
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(64) {
        let made = chunk.iter().map(|_| {
            let (http, base, integration) = (http.clone(), base.to_string(), integration.clone());
            async move {
                let session =
                    json_of(http.post(format!("{base}/v1/sdk/{integration}/sessions")).json(&json!({}))).await?;
                let token = session["session_token"].as_str().ok_or("no session token")?.to_string();
                let started = post(&http, &format!("{base}/v1/sdk/conversations"), &token, &json!({})).await?;
                let conversation = started["conversation"]["id"].as_str().ok_or("no conversation")?.to_string();
                if first {
                    let hello = json!({"content": {"type": "text", "text": "hello"}});
                    post(&http, &format!("{base}/v1/sdk/conversations/{conversation}/messages"), &token, &hello)
                        .await?;
                }
                Ok::<_, String>(Customer { token, conversation })
            }
        });
        for c in futures_join(made).await {
            out.push(c?);
        }
    }
    Ok(out)
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    raise_fd_limit(args.subscribers as u64 + 2048)?;
    let server = start_server(&args)?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().map_err(|e| e.to_string())?;
    let base = server.url.clone();
    let key = bench_account(&http, &base).await?;
    let setup = Instant::now();
    let customers = customers(&http, &base, &key, args.subscribers, true).await?;
    let made_in = setup.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let histogram =
        Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?));
    let (received, connected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let ws_base = base.replacen("http://", "ws://", 1);
    let opened: Arc<Vec<AtomicBool>> = Arc::new((0..customers.len()).map(|_| AtomicBool::new(false)).collect());
    let sockets = {
        let (histogram, received, connected) = (histogram.clone(), received.clone(), connected.clone());
        Sockets::open(&ws_base, &customers, move |i, text| {
            // The last frame of a socket's opening: from here the server only forwards.
            // (Availability frames come again when agents change status: count one.)
            if text.contains(r#""type":"availability""#) {
                if !opened[i].swap(true, Ordering::Relaxed) {
                    connected.fetch_add(1, Ordering::Relaxed);
                }
            } else if text.contains("fanout ") {
                let frame: Value = serde_json::from_str(text).unwrap_or_default();
                let body = frame["event"]["data"]["message"]["content"]["text"].as_str().unwrap_or_default();
                if let Some(sent) = body.strip_prefix("fanout ").and_then(|m| m.parse::<u64>().ok()) {
                    let now = t0.elapsed().as_micros() as u64;
                    if let Ok(mut h) = histogram.lock() {
                        let _ = h.record(now.saturating_sub(sent).max(1));
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let connect_secs = sockets.opened(&connected).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Post at a fixed rate: a batch every 10 ms.
    let server_pid = server.child.id().to_string();
    let (server_cpu0, own_cpu0) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let customers = Arc::new(customers);
    let (posted, acknowledged) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let per_tick = (args.rate as f64 / 100.0).max(1.0);
    let mut owed = 0.0;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut n = 0usize;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tick.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let customer = n % customers.len();
            n += 1;
            let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
            let (http, base, customers, posted, acknowledged) =
                (http.clone(), base.clone(), customers.clone(), posted.clone(), acknowledged.clone());
            let sent = t0.elapsed().as_micros() as u64;
            posted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let c = &customers[customer];
                let body = json!({"content": {"type": "text", "text": format!("fanout {sent}")}});
                let url = format!("{base}/v1/sdk/conversations/{}/messages", c.conversation);
                if post(&http, &url, &c.token, &body).await.is_ok() {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
    }
    let posting = started.elapsed().as_secs_f64();
    // Let the last deliveries arrive.
    let grace = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) < acknowledged.load(Ordering::Relaxed) && Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (server_cpu1, own_cpu1) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let rss = rss_kib(&server_pid);
    let closed = sockets.closed.load(Ordering::Relaxed);
    sockets.stop();
    let h = histogram.lock().map(|h| h.clone()).map_err(|_| "histogram poisoned".to_string())?;
    let (posted, acknowledged, received) =
        (posted.load(Ordering::Relaxed), acknowledged.load(Ordering::Relaxed), received.load(Ordering::Relaxed));
    let result = json!({
        "scenario": "fanout",
        "machine": machine(),
        "parameters": {"subscribers": args.subscribers, "rate_per_second": args.rate, "seconds": args.seconds, "durability": args.durability},
        "subscribers_connected": connected.load(Ordering::Relaxed),
        "subscribers_closed_early": closed,
        "setup_seconds": {"customers": (made_in * 10.0).round() / 10.0, "connect": (connect_secs * 10.0).round() / 10.0},
        "messages_posted": posted,
        "messages_acknowledged": acknowledged,
        "deliveries_received": received,
        "deliveries_lost": acknowledged.saturating_sub(received),
        "posted_per_second": (posted as f64 / posting).round(),
        "deliveries_per_second": (received as f64 / posting).round(),
        "post_to_receive_ms": latency_ms(&h),
        "server_rss_mib": rss.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0),
        "cpu_seconds": {"server": cpu_between(server_cpu0, server_cpu1), "generator": cpu_between(own_cpu0, own_cpu1)},
    });
    report(&args, &result)?;
    Ok(())
}
