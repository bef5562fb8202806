//! `parley bench queue`: N customers waiting in one queue, each with a live socket; the
//! conversation at the head of the queue ends R times a second, which moves every other
//! customer's position by one. Reported: the time from an end being sent to each socket's new
//! position (its `queue` frame), the sockets whose position was right once the ends stopped,
//! and the server's CPU per end.
//!
//! Customer `i` (in the order they wrote) stands at position `i + 1`; after `k` ends it stands
//! at `i + 1 - k`, so a frame with position `p` tells which end it reflects (`k = i + 1 - p`).
//! A socket that hears of two ends at once sends one frame: the end it skipped is timed by that
//! frame too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::fanout::{customers, raise_fd_limit};
use super::sockets::Sockets;
use super::*;

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let n = args.subscribers;
    let ends = (args.rate as u64 * args.seconds) as usize;
    if ends == 0 || ends >= n {
        return Err(format!(
            "`queue` ends --rate × --seconds conversations ({ends}): that must be at least 1 and fewer than --subscribers ({n})"
        ));
    }
    if n > 10_000 {
        return Err(
            "`queue` reads the queue's order from `GET /v1/queue`, which lists 10,000: --subscribers at most 10000"
                .into(),
        );
    }
    raise_fd_limit(n as u64 + 2048)?;
    let server = start_server(&args)?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    let base = server.url.clone();
    let key = bench_account(&http, &base).await?;
    let mut waiting = customers(&http, &base, &key, n, true).await?;
    // The customers in the queue's order (they wrote concurrently).
    let queue = json_of(http.get(format!("{base}/v1/queue")).bearer_auth(&key)).await?;
    let mut positions = std::collections::HashMap::new();
    for group in queue["groups"].as_array().into_iter().flatten() {
        for c in group["conversations"].as_array().into_iter().flatten() {
            if let (Some(id), Some(position)) = (c["conversation_id"].as_str(), c["position"].as_u64()) {
                positions.insert(id.to_string(), position);
            }
        }
    }
    waiting.sort_by_key(|c| positions.get(&c.conversation).copied().unwrap_or(u64::MAX));
    if waiting.iter().enumerate().any(|(i, c)| positions.get(&c.conversation) != Some(&(i as u64 + 1))) {
        return Err("the customers do not stand at positions 1..N of one queue".into());
    }

    let t0 = Instant::now();
    // When end `k` (1-based) was sent, in µs since `t0` (0: not yet).
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..=ends).map(|_| AtomicU64::new(0)).collect());
    let histogram =
        Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?));
    // Each socket's last position heard (0: none yet).
    let heard: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let (frames, connected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let ws_base = base.replacen("http://", "ws://", 1);
    let mine: Vec<String> = waiting.iter().map(|c| c.conversation.clone()).collect();
    let sockets = {
        let (sent, histogram, heard, frames, connected) =
            (sent.clone(), histogram.clone(), heard.clone(), frames.clone(), connected.clone());
        Sockets::open(&ws_base, &waiting, move |i, text| {
            if !text.contains(r#""type":"queue""#) {
                return;
            }
            let frame: Value = serde_json::from_str(text).unwrap_or_default();
            let (Some(conversation), Some(position)) = (frame["conversation_id"].as_str(), frame["position"].as_u64())
            else {
                return;
            };
            if conversation != mine[i] {
                return;
            }
            let before = heard[i].swap(position, Ordering::Relaxed);
            if before == 0 {
                // The socket's opening: where it stands before any end.
                connected.fetch_add(1, Ordering::Relaxed);
                return;
            }
            frames.fetch_add(1, Ordering::Relaxed);
            let now = t0.elapsed().as_micros() as u64;
            // Every end from the one after the last heard to the one this frame reflects.
            let (first, last) = ((i as u64 + 2).saturating_sub(before), (i as u64 + 1).saturating_sub(position));
            if let Ok(mut h) = histogram.lock() {
                for k in first.max(1)..=last {
                    let at = sent.get(k as usize).map_or(0, |s| s.load(Ordering::Relaxed));
                    if at > 0 {
                        let _ = h.record(now.saturating_sub(at).max(1));
                    }
                }
            }
        })
    };
    sockets.opened(&connected).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let server_pid = server.child.id().to_string();
    let (server_cpu0, own_cpu0) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    for (k, head) in waiting.iter().take(ends).enumerate() {
        tick.tick().await;
        sent[k + 1].store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        let url = format!("{base}/v1/conversations/{}/status", head.conversation);
        post(&http, &url, &key, &json!({"status": "ended"})).await?;
    }
    let ending = started.elapsed().as_secs_f64();
    // Let the last positions arrive: every socket still waiting should stand `ends` places on.
    let right =
        |heard: &[AtomicU64]| (ends..n).filter(|i| heard[*i].load(Ordering::Relaxed) == (i + 1 - ends) as u64).count();
    let grace = Instant::now() + Duration::from_secs(30);
    while right(&heard) < n - ends && Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = started.elapsed().as_secs_f64();
    let (server_cpu1, own_cpu1) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let closed = sockets.closed.load(Ordering::Relaxed);
    sockets.stop();
    let h = histogram.lock().map(|h| h.clone()).map_err(|_| "histogram poisoned".to_string())?;
    let server_cpu = cpu_between(server_cpu0, server_cpu1);
    let result = json!({
        "scenario": "queue",
        "machine": machine(),
        "parameters": {"waiting": n, "ends_per_second": args.rate, "seconds": args.seconds, "durability": args.durability},
        "sockets_connected": connected.load(Ordering::Relaxed),
        "sockets_closed_early": closed,
        "ends": ends,
        "ends_seconds": (ending * 100.0).round() / 100.0,
        "positions_right_at_the_end": right(&heard),
        "positions_expected_right": n - ends,
        "seconds_until_settled": (settled * 100.0).round() / 100.0,
        "queue_frames": frames.load(Ordering::Relaxed),
        "end_to_position_ms": latency_ms(&h),
        "server_cpu_ms_per_end": server_cpu.map(|s| (s * 1000.0 / ends as f64 * 10.0).round() / 10.0),
        "cpu_seconds": {"server": server_cpu, "generator": cpu_between(own_cpu0, own_cpu1)},
    });
    report(&args, &result)?;
    Ok(())
}
