//! A server killed with SIGKILL while webhook deliveries are pending loses none of them: after
//! a restart on the same data directory every event is delivered.

mod common;

use std::time::{Duration, Instant};

use common::Receiver;
use serde_json::{json, Value};

const ADMIN: &str = "restart-test-admin-token";

fn serve(data: &std::path::Path) -> (common::Node, String) {
    let retries: Vec<String> =
        std::iter::once("0".to_string()).chain(std::iter::repeat_n("300".to_string(), 40)).collect();
    let retries = retries.join(",");
    let fixed = [
        "--admin-token",
        ADMIN,
        "--durability",
        "normal",
        "--webhook-allow-http",
        "--webhook-allow-private",
        "--webhook-timeout-secs",
        "1",
        "--webhook-retry-ms",
        &retries,
        "--data-dir",
    ];
    let mut args: Vec<&std::ffi::OsStr> = fixed.iter().map(std::ffi::OsStr::new).collect();
    args.push(data.as_os_str());
    let node = common::serve(&args);
    let url = node.url.clone();
    (node, url)
}

async fn call(http: &reqwest::Client, token: &str, method: reqwest::Method, url: String, body: Value) -> Value {
    let resp = http.request(method, url).bearer_auth(token).json(&body).send().await.expect("request");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.expect("JSON")
}

#[tokio::test]
async fn pending_deliveries_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (hook, rx) = Receiver::start().await;
    rx.refusing.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut node, base) = serve(&data);
    let http = reqwest::Client::new();
    let account = call(&http, ADMIN, reqwest::Method::POST, format!("{base}/v1/accounts"), json!({"name": "x"})).await;
    let key = account["api_key"]["secret"].as_str().expect("key").to_string();
    call(&http, &key, reqwest::Method::POST, format!("{base}/v1/webhooks"), json!({"url": hook, "event_types": ["*"]}))
        .await;
    let integration = call(
        &http,
        &key,
        reqwest::Method::POST,
        format!("{base}/v1/integrations"),
        json!({"name": "a", "type": "api"}),
    )
    .await;
    let c = call(
        &http,
        &key,
        reqwest::Method::POST,
        format!("{base}/v1/conversations"),
        json!({"integration_id": integration["id"]}),
    )
    .await;
    for i in 0..10 {
        call(
            &http,
            &key,
            reqwest::Method::POST,
            format!("{base}/v1/conversations/{}/messages", c["id"].as_str().expect("id")),
            json!({"author": {"type": "customer"}, "content": {"type": "text", "text": format!("m{i}")}}),
        )
        .await;
    }
    let log = call(&http, &key, reqwest::Method::GET, format!("{base}/v1/log?limit=1000"), json!(null)).await;
    let events: Vec<String> =
        log["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().expect("id").to_string()).collect();
    // Attempts are failing: deliveries are pending when the server dies.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.seen.lock().expect("lock").len() < events.len() {
        assert!(Instant::now() < deadline, "no attempts before the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.child.kill().expect("SIGKILL");
    let _ = node.child.wait();
    assert!(rx.delivered().is_empty());

    rx.refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    let (_node, _) = serve(&data);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered = rx.delivered();
        if events.iter().all(|id| delivered.contains_key(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} events were delivered after the restart",
            delivered.len(),
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
