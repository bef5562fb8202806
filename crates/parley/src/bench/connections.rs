//! `parley bench connections`: N idle live customer connections (answering the server's pings),
//! opened from several loopback source addresses; the server's resident memory before and after,
//! per connection, and the connect rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::fanout::{customers, raise_fd_limit, rss_kib};
use super::*;

/// Connections opened from each source address: well inside the ephemeral port range (about
/// 28,000), with room for the previous run's ports, which linger in TIME_WAIT for a minute.
const PER_SOURCE: usize = 5_000;

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let n = args.subscribers;
    raise_fd_limit(n as u64 + 2048)?;
    let server = start_server(&args)?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    let base = server.url.clone();
    let key = bench_account(&http, &base).await?;
    let customers = customers(&http, &base, &key, n, false).await?;
    let server_pid = server.child.id().to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(&server_pid).ok_or("cannot read the server's memory")?;

    let addr: std::net::SocketAddr =
        base.trim_start_matches("http://").parse().map_err(|e| format!("server address: {e}"))?;
    let (connected, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(n);
    for (i, customer) in customers.iter().enumerate() {
        let source = std::net::Ipv4Addr::new(127, 0, 0, 1 + (i / PER_SOURCE) as u8);
        let url = format!("ws://{addr}/v1/sdk/ws?access_token={}", customer.token);
        let (connected, failed, gate) = (connected.clone(), failed.clone(), gate.clone());
        sockets.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let opened = async {
                let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                socket.bind((source, 0).into()).map_err(|e| e.to_string())?;
                let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
                tokio_tungstenite::client_async(url, stream).await.map_err(|e| e.to_string())
            };
            let Ok((mut ws, _)) = opened.await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            // Idle, but alive: answer pings so the server keeps the connection.
            while let Some(Ok(message)) = ws.next().await {
                let answered = match message {
                    Message::Ping(payload) => ws.send(Message::Pong(payload)).await.is_ok(),
                    Message::Close(_) => false,
                    _ => true,
                };
                if !answered {
                    break;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let the joins settle, then hold the connections idle for the measured time.
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let rss_after = rss_kib(&server_pid).ok_or("cannot read the server's memory")?;
    let up = connected.load(Ordering::Relaxed);
    let per_connection = (rss_after.saturating_sub(rss_before)) as f64 / up.max(1) as f64;
    let result = json!({
        "scenario": "connections",
        "machine": machine(),
        "parameters": {"connections": n, "idle_seconds": args.seconds, "source_addresses": n.div_ceil(PER_SOURCE)},
        "connected": up,
        "failed": failed.load(Ordering::Relaxed),
        "connect_per_second": (up as f64 / connect_secs).round(),
        "server_rss_mib": {"before": (rss_before as f64 / 102.4).round() / 10.0, "after": (rss_after as f64 / 102.4).round() / 10.0},
        "server_rss_kib_per_connection": (per_connection * 10.0).round() / 10.0,
    });
    report(&args, &result)?;
    for s in sockets {
        s.abort();
    }
    Ok(())
}
