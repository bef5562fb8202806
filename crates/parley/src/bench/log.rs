//! `parley bench log`: a log of E events — written straight into the embedded store first, in
//! large transactions through the ordinary commands (customer messages into 10,000
//! conversations) — then, over HTTP, pages of 100 by conversation and by time range, and a full
//! NDJSON export.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parley_core::event::Actor;
use parley_core::limits::Limits;
use parley_core::message::{Author, AuthorType, Content, TextContent};
use parley_core::{Timestamp, Uuid};
use parley_store::ops::{accounts, conversations, integrations, messages};
use parley_store::sqlite::{Durability, SqliteConfig, SqliteStore};
use parley_store::{Store, StoreExt};
use serde_json::json;

use super::*;

const CONVERSATIONS: usize = 10_000;
/// Messages written per round: commands of [`COMMAND`] messages sent together, which the writer
/// commits in one transaction. (One command of 5,000 would make SQLite's in-memory savepoint
/// journal long enough that walking it at the end of every statement dominates.)
const BATCH: usize = 5_000;
const COMMAND: usize = 250;
const REQUESTS: usize = 2_000;

/// What a run needs to know of a seeded log; kept beside it (`seeded.json`) with `--log-dir`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Seeded {
    key: String,
    conversations: Vec<Uuid>,
    first: Timestamp,
    last: Timestamp,
    events: i64,
}

async fn seed(path: std::path::PathBuf, events: usize) -> Result<Seeded, String> {
    let store = SqliteStore::open(SqliteConfig { path, durability: Durability::Normal }, Arc::new(|_| {}))
        .map_err(|e| e.to_string())?;
    let key = parley_server::auth::new_secret("pk_").map_err(|_| "no randomness for a key".to_string())?;
    let new_key = accounts::NewKey {
        name: "bench".into(),
        role: parley_core::account::Role::Admin,
        agent_id: None,
        hash: parley_server::auth::hash_secret(&key),
        prefix: "pk_".into(),
    };
    let (account, integration) = store
        .write(move |tx| {
            let (account, _) = accounts::create_account(tx, "bench".into(), new_key)?;
            let input = serde_json::from_value(json!({"name": "bench", "type": "api"}))
                .map_err(|e| parley_store::StoreError::Backend(e.to_string()))?;
            let integration = integrations::create_integration(tx, account.id, input, &Limits::default())?;
            Ok((account.id, integration.id))
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut conversations = Vec::with_capacity(CONVERSATIONS);
    for from in (0..CONVERSATIONS).step_by(COMMAND) {
        let ids = store
            .write(move |tx| {
                let mut ids = Vec::with_capacity(COMMAND);
                for i in from..(from + COMMAND).min(CONVERSATIONS) {
                    let customer =
                        parley_core::customer::CustomerRef { external_id: Some(format!("c{i}")), ..Default::default() };
                    ids.push(
                        conversations::create_conversation(tx, account, integration, customer, Actor::system())?.id,
                    );
                }
                Ok(ids)
            })
            .await
            .map_err(|e| e.to_string())?;
        conversations.extend(ids);
    }
    let conversations = Arc::new(conversations);
    let limits = Arc::new(Limits::default());
    let started = Instant::now();
    let mut written = store.read(move |r| r.last_seq(account)).await.map_err(|e| e.to_string())? as usize;
    let mut n = 0usize;
    while written < events {
        let batch = BATCH.min(events - written);
        let from = n;
        let commands = (0..batch).step_by(COMMAND).map(|offset| {
            let (conversations, limits) = (conversations.clone(), limits.clone());
            let size = COMMAND.min(batch - offset);
            store.write(move |tx| {
                for j in from + offset..from + offset + size {
                    let c = conversations[j % conversations.len()];
                    let text = format!("Message {j} — where is my order? It was due on Tuesday.");
                    let new = messages::NewMessage {
                        author: Author { author_type: AuthorType::Customer, id: None, name: None },
                        content: Content::Text(TextContent { text, actions: Vec::new(), payload: None }),
                        client_message_id: None,
                    };
                    messages::send_message(tx, account, c, new, Actor::system(), &limits)?;
                }
                Ok(())
            })
        });
        futures_util::future::try_join_all(commands).await.map_err(|e| e.to_string())?;
        n += batch;
        written = store.read(move |r| r.last_seq(account)).await.map_err(|e| e.to_string())? as usize;
        if n % 500_000 < BATCH {
            eprintln!("seeded {written} events in {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    let (first, last) = store
        .read(move |r| {
            let first = r.log(account, &parley_store::LogQuery { limit: 1, ..Default::default() })?;
            let last =
                r.log(account, &parley_store::LogQuery { after: written as i64 - 1, limit: 1, ..Default::default() })?;
            Ok((first.first().map(|e| e.occurred_at), last.first().map(|e| e.occurred_at)))
        })
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    Ok(Seeded {
        key,
        conversations: conversations.to_vec(),
        first: first.ok_or("empty log")?,
        last: last.ok_or("empty log")?,
        events: written as i64,
    })
}

async fn timed_pages(
    http: &reqwest::Client,
    key: &str,
    urls: impl Iterator<Item = String>,
) -> Result<(Histogram<u64>, u64), String> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut events = 0u64;
    for url in urls {
        let started = Instant::now();
        let page = json_of(http.get(&url).bearer_auth(key)).await?;
        let _ = h.record(started.elapsed().as_micros() as u64);
        events += page["events"].as_array().map_or(0, |e| e.len() as u64);
    }
    Ok((h, events))
}

/// A small deterministic generator for picking conversations and times.
fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// The seeded log: the one kept in `--log-dir` when it holds as many events as asked for,
/// otherwise a new one (kept there, or in a temporary directory).
async fn seeded(args: &BenchArgs) -> Result<(DataDir, Seeded, f64), String> {
    let dir = match &args.log_dir {
        Some(path) => DataDir::Kept(path.clone()),
        None => DataDir::temporary()?,
    };
    let manifest = dir.path().join("seeded.json");
    if let Ok(kept) = std::fs::read(&manifest) {
        let kept: Seeded = serde_json::from_slice(&kept).map_err(|e| format!("{}: {e}", manifest.display()))?;
        if kept.events >= args.events as i64 {
            return Ok((dir, kept, 0.0));
        }
        return Err(format!("{} holds {} events, fewer than asked for", dir.path().display(), kept.events));
    }
    std::fs::create_dir_all(dir.path().join("data")).map_err(|e| e.to_string())?;
    let seeding = Instant::now();
    let seeded = seed(dir.path().join("data").join("parley.db"), args.events).await?;
    let seconds = seeding.elapsed().as_secs_f64();
    if args.log_dir.is_some() {
        let json = serde_json::to_vec(&seeded).map_err(|e| e.to_string())?;
        std::fs::write(&manifest, json).map_err(|e| format!("{}: {e}", manifest.display()))?;
    }
    Ok((dir, seeded, seconds))
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let (dir, seeded, seed_secs) = seeded(&args).await?;
    let db_bytes = std::fs::metadata(dir.path().join("data").join("parley.db")).map(|m| m.len()).unwrap_or(0);
    let server = start_server_in(&args, dir)?;
    let base = server.url.clone();
    let http = reqwest::Client::new();
    let key = seeded.key.clone();

    // Warm up the page cache the way a running server would be.
    let warm = (0..200u64).map(|i| {
        format!(
            "{base}/v1/log?limit=100&conversation_id={}",
            seeded.conversations[(mix(i) % CONVERSATIONS as u64) as usize]
        )
    });
    timed_pages(&http, &key, warm).await?;
    let by_conversation = (0..REQUESTS as u64).map(|i| {
        let c = seeded.conversations[(mix(i + 1000) % CONVERSATIONS as u64) as usize];
        format!("{base}/v1/log?limit=100&conversation_id={c}")
    });
    let (conversation_pages, _) = timed_pages(&http, &key, by_conversation).await?;
    let span = (seeded.last.millis() - seeded.first.millis()).max(1) as u64;
    let by_time = (0..REQUESTS as u64).map(|i| {
        let since = Timestamp::from_millis(seeded.first.millis() + (mix(i + 7) % span) as i64);
        let until = since.plus_secs(60);
        format!("{base}/v1/log?limit=100&since={}&until={}", since.to_rfc3339(), until.to_rfc3339())
    });
    let (time_pages, _) = timed_pages(&http, &key, by_time).await?;

    let server_pid = server.child.id().to_string();
    let cpu0 = cpu_seconds(&server_pid);
    let started = Instant::now();
    let mut export =
        http.get(format!("{base}/v1/log/export")).bearer_auth(&key).send().await.map_err(|e| e.to_string())?;
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), export.chunk())
        .await
        .map_err(|_| "the export stalled".to_string())?
        .map_err(|e| e.to_string())?
    {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
    }
    let export_secs = started.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(&server_pid);
    let result = json!({
        "scenario": "log",
        "machine": machine(),
        "parameters": {"events": seeded.events, "conversations": CONVERSATIONS, "requests_each": REQUESTS, "page": 100},
        "seeding": {"seconds": (seed_secs * 10.0).round() / 10.0, "database_gib": (db_bytes as f64 / (1u64 << 30) as f64 * 100.0).round() / 100.0},
        "page_by_conversation_ms": latency_ms(&conversation_pages),
        "page_by_time_range_ms": latency_ms(&time_pages),
        "export": {
            "events": lines,
            "mib": (bytes as f64 / (1u64 << 20) as f64).round(),
            "seconds": (export_secs * 100.0).round() / 100.0,
            "events_per_second": (lines as f64 / export_secs).round(),
            "server_cpu_seconds": cpu_between(cpu0, cpu1),
        },
    });
    report(&args, &result)?;
    Ok(())
}
