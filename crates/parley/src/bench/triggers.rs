//! `parley bench triggers`: what enabled triggers add to the handling of each event.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::*;

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

pub async fn run(args: BenchArgs) -> Result<(), String> {
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
    let figures = |h: &Histogram<u64>| json!({"p50": ms_at(h, 0.5), "p99": ms_at(h, 0.99), "p99_9": ms_at(h, 0.999), "mean": h.mean() / 1000.0});
    let result = json!({
        "scenario": "triggers",
        "machine": machine(),
        "parameters": {"triggers": args.triggers, "conditions_each": 5, "messages_per_phase": messages, "durability": args.durability},
        "ack_to_trigger_fired_ms": {"probe_alone": figures(&alone), "behind_triggers": figures(&behind)},
        "added_ms": {
            "p50": ms_at(&behind, 0.5) - ms_at(&alone, 0.5),
            "p99": ms_at(&behind, 0.99) - ms_at(&alone, 0.99),
            "mean": (behind.mean() - alone.mean()) / 1000.0,
        },
        "server_cpu_seconds_behind_triggers": cpu_between(cpu0, cpu1),
    });
    report(&args, &result)?;
    Ok(())
}
