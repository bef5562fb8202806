//! A trigger's `wait` is durable: a server killed with SIGKILL during the wait runs the actions
//! after it once, after the wait, when it starts again — never twice and never not at all.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ADMIN: &str = "trigger-restart-admin-token";

fn serve(data: &std::path::Path) -> common::Node {
    let fixed = ["--admin-token", ADMIN, "--durability", "normal", "--data-dir"];
    let mut args: Vec<&std::ffi::OsStr> = fixed.iter().map(std::ffi::OsStr::new).collect();
    args.push(data.as_os_str());
    common::serve(&args)
}

async fn call(http: &reqwest::Client, token: &str, method: reqwest::Method, url: String, body: Value) -> Value {
    let resp = http.request(method, url).bearer_auth(token).json(&body).send().await.expect("request");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.expect("JSON")
}

async fn texts(http: &reqwest::Client, key: &str, base: &str, c: &str) -> Vec<String> {
    let page =
        call(http, key, reqwest::Method::GET, format!("{base}/v1/conversations/{c}/messages?limit=100"), json!(null))
            .await;
    page["data"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"]["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_actions_after_a_wait_run_once_across_sigkill_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut node = serve(&data);
    let base = node.url.clone();
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;
    let account = call(&http, ADMIN, post.clone(), format!("{base}/v1/accounts"), json!({"name": "x"})).await;
    let key = account["api_key"]["secret"].as_str().expect("key").to_string();
    let integration =
        call(&http, &key, post.clone(), format!("{base}/v1/integrations"), json!({"name": "a", "type": "api"})).await;
    call(
        &http,
        &key,
        post.clone(),
        format!("{base}/v1/triggers"),
        json!({
            "name": "Follow up",
            "event": "message_sent",
            "actions": [
                {"type": "send_message", "text": "first"},
                {"type": "wait", "seconds": 2},
                {"type": "send_message", "text": "second, @customer_name"},
                {"type": "add_tags", "tags": ["followed-up"]}
            ]
        }),
    )
    .await;
    let c = call(
        &http,
        &key,
        post.clone(),
        format!("{base}/v1/conversations"),
        json!({"integration_id": integration["id"], "customer": {"external_id": "k", "name": "Kamal"}}),
    )
    .await;
    let c = c["id"].as_str().expect("id").to_string();
    call(
        &http,
        &key,
        post.clone(),
        format!("{base}/v1/conversations/{c}/messages"),
        json!({"author": {"type": "customer"}, "content": {"type": "text", "text": "hi"}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !texts(&http, &key, &base, &c).await.contains(&"first".to_string()) {
        assert!(Instant::now() < deadline, "the trigger did not fire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.child.kill().expect("SIGKILL");
    let _ = node.child.wait();

    let node = serve(&data);
    let base = node.url.clone();
    assert!(!texts(&http, &key, &base, &c).await.iter().any(|t| t.starts_with("second")), "not before the wait ends");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !texts(&http, &key, &base, &c).await.iter().any(|t| t.starts_with("second")) {
        assert!(Instant::now() < deadline, "the actions after the wait never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a second run every chance to happen before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = texts(&http, &key, &base, &c).await;
    assert_eq!(all, ["hi", "first", "second, Kamal"], "each action exactly once");
    let conversation =
        call(&http, &key, reqwest::Method::GET, format!("{base}/v1/conversations/{c}"), json!(null)).await;
    assert_eq!(conversation["tags"], json!(["followed-up"]));
    let fired = call(
        &http,
        &key,
        reqwest::Method::GET,
        format!("{base}/v1/log?type=trigger_fired&conversation_id={c}"),
        json!(null),
    )
    .await;
    assert_eq!(fired["events"].as_array().map(Vec::len), Some(2), "fired once, resumed once");
}
