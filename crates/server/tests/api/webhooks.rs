//! Webhooks against a real local receiver: every event signed (checked by an independent
//! verifier), retries on schedule with the same id and body, Retry-After, 410, a hanging
//! endpoint beside a healthy one, target rules, redirects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as Http, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{Scene, TestServer};

#[derive(Debug, Clone)]
struct Received {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

async fn receive(State(rx): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let path = uri.path().to_string();
    rx.seen.lock().unwrap().push(Received {
        path: path.clone(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let n = {
        let mut calls = rx.calls.lock().unwrap();
        let n = calls.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    match path.as_str() {
        "/flaky" if n <= 3 => (Http::INTERNAL_SERVER_ERROR, "not yet").into_response(),
        "/gone" => (Http::GONE, "unsubscribed").into_response(),
        "/busy" if n == 1 => (Http::SERVICE_UNAVAILABLE, [("retry-after", "1")], "busy").into_response(),
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (Http::OK, "late").into_response()
        }
        "/redirect" => (Http::FOUND, [("location", "/ok")], "").into_response(),
        "/down" => (Http::INTERNAL_SERVER_ERROR, "down").into_response(),
        _ => (Http::OK, "thanks").into_response(),
    }
}

async fn receiver() -> (String, Receiver) {
    let rx = Receiver::default();
    let app = axum::Router::new().fallback(receive).with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

impl Receiver {
    fn at(&self, path: &str) -> Vec<Received> {
        self.seen.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.at(path);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The Standard Webhooks check, written here from the spec and not from Parley's signer.
fn verified(secret: &str, r: &Received) -> bool {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).expect("secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    r.signature.split(' ').any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

async fn subscribe(scene: &Scene<'_>, url: &str, types: Value) -> (String, String) {
    let (status, w) = scene.admin(Method::POST, "/v1/webhooks", Some(json!({"url": url, "event_types": types}))).await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    assert!(w["secret"].as_str().expect("secret").starts_with("whsec_"));
    (w["id"].as_str().expect("id").to_string(), w["secret"].as_str().expect("secret").to_string())
}

on_both_backends! {
    async fn every_event_arrives_signed_with_the_log_event_as_data() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let (base, rx) = receiver().await;
        let (_, secret) = subscribe(&scene, &format!("{base}/ok"), json!(["*"])).await;
        let c = scene.conversation().await;
        scene.customer_says(&c, "hello").await;
        scene.assign_to_agent(&c).await;
        scene.agent_says(&c, "hi there").await;
        scene.set_status(&c, "ended").await;
        let log = scene.log_all("", 1000).await;
        let got = rx.wait_for("/ok", log.len(), Duration::from_secs(10)).await;
        assert_eq!(got.len(), log.len(), "one POST per event");
        let mut by_id: HashMap<String, Value> = HashMap::new();
        for r in &got {
            assert!(verified(&secret, r), "signature of {}", r.id);
            let body: Value = serde_json::from_str(&r.body).expect("JSON body");
            assert_eq!(body["data"]["id"].as_str(), Some(r.id.as_str()), "webhook-id is the event id");
            assert_eq!(body["type"], body["data"]["type"]);
            assert_eq!(body["timestamp"], body["data"]["occurred_at"]);
            by_id.insert(r.id.clone(), body["data"].clone());
        }
        for event in &log {
            assert_eq!(by_id.get(event["id"].as_str().expect("id")), Some(event), "data is exactly the log event");
        }
        let sent = log.iter().find(|e| e["type"] == "message_sent").expect("message_sent");
        assert_eq!(sent["data"]["direction"], "out");
        assert_eq!(sent["channel"]["type"], "api");
        assert!(sent["actor"]["id"].is_string() && sent["actor"]["name"].is_string());
        assert!(sent["data"]["message"]["id"].is_string() && sent["data"]["message"]["created_at"].is_string());
        let status = log.iter().find(|e| e["type"] == "conversation_status_changed" && e["data"]["status"] == "ended").expect("status");
        for field in ["status", "previous_status", "reply_status", "messages_count", "assignee"] {
            assert!(!status["data"][field].is_null(), "{field}");
        }
        assert!(status["account_id"].is_string() && status["channel"]["integration_id"].is_string());
    }
}

on_both_backends! {
    async fn failures_retry_on_schedule_with_the_same_id_and_body() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let (base, rx) = receiver().await;
        let (webhook, secret) = subscribe(&scene, &format!("{base}/flaky"), json!(["conversation_created"])).await;
        scene.conversation().await;
        let got = rx.wait_for("/flaky", 4, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 4, "three failures, then success");
        assert!(got.iter().all(|r| r.id == got[0].id && r.body == got[0].body && verified(&secret, r)));
        for pair in got.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap >= Duration::from_millis(280), "retries wait for the schedule: {gap:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(rx.at("/flaky").len(), 4, "no attempt after success");
        let (_, page) = scene.admin(Method::GET, &format!("/v1/webhooks/{webhook}/deliveries"), None).await;
        let delivery = &page["data"][0];
        assert_eq!(delivery["status"], "succeeded");
        let codes: Vec<_> = delivery["attempts"].as_array().expect("attempts").iter().map(|a| a["status_code"].clone()).collect();
        assert_eq!(codes, vec![json!(500), json!(500), json!(500), json!(200)]);
        assert_eq!(delivery["attempts"][0]["response_body"], "not yet");
        let (_, failed) = scene.admin(Method::GET, &format!("/v1/webhooks/{webhook}/deliveries?status=failed"), None).await;
        assert_eq!(failed["data"], json!([]));

        // A manual retry sends the same delivery again.
        let id = delivery["id"].as_str().expect("id");
        let (status, _) = scene.admin(Method::POST, &format!("/v1/webhooks/{webhook}/deliveries/{id}/retry"), None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let again = rx.wait_for("/flaky", 5, Duration::from_secs(5)).await;
        assert_eq!(again[4].id, got[0].id);
    }
}

on_both_backends! {
    async fn retry_after_is_honoured_and_410_disables_the_endpoint() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let (base, rx) = receiver().await;
        subscribe(&scene, &format!("{base}/busy"), json!(["conversation_created"])).await;
        let (gone, _) = subscribe(&scene, &format!("{base}/gone"), json!(["conversation_created"])).await;
        scene.conversation().await;
        let busy = rx.wait_for("/busy", 2, Duration::from_secs(10)).await;
        assert_eq!(busy.len(), 2);
        assert!(busy[1].at - busy[0].at >= Duration::from_millis(950), "Retry-After: 1 is a floor over the 300 ms schedule");
        rx.wait_for("/gone", 1, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, webhook) = scene.admin(Method::GET, &format!("/v1/webhooks/{gone}"), None).await;
        assert_eq!((webhook["enabled"].as_bool(), webhook["disabled_reason"].as_str()), (Some(false), Some("gone")));
        let disabled = scene.log_all("type=webhook_endpoint_disabled", 100).await;
        assert_eq!(disabled.len(), 1);
        assert_eq!(disabled[0]["data"]["webhook_id"], gone.as_str());
        scene.conversation().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(rx.at("/gone").len(), 1, "a disabled endpoint gets nothing more");
    }
}

on_both_backends! {
    async fn a_hanging_endpoint_does_not_delay_a_healthy_one() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let (base, rx) = receiver().await;
        subscribe(&scene, &format!("{base}/hang"), json!(["message_received"])).await;
        subscribe(&scene, &format!("{base}/ok"), json!(["message_received"])).await;
        let c = scene.conversation().await;
        let started = Instant::now();
        for i in 0..20 {
            scene.customer_says(&c, format!("m{i}")).await;
        }
        let healthy = rx.wait_for("/ok", 20, Duration::from_secs(10)).await;
        assert_eq!(healthy.len(), 20);
        assert!(started.elapsed() < Duration::from_secs(3), "the healthy endpoint got everything promptly: {:?}", started.elapsed());
        let hanging = rx.at("/hang");
        assert!(hanging.len() <= 8, "the hanging endpoint is held to its own bounded concurrency: {}", hanging.len());
    }
}

on_both_backends! {
    async fn redirects_fail_and_the_test_call_answers_the_attempt() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let (base, rx) = receiver().await;
        let (webhook, _) = subscribe(&scene, &format!("{base}/redirect"), json!(["conversation_created"])).await;
        scene.conversation().await;
        rx.wait_for("/redirect", 1, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.at("/ok").is_empty(), "the redirect was not followed");
        let (_, page) = scene.admin(Method::GET, &format!("/v1/webhooks/{webhook}/deliveries"), None).await;
        let attempt = &page["data"][0]["attempts"][0];
        assert_eq!(attempt["status_code"], 302);
        assert!(attempt["error"].as_str().expect("error").contains("not followed"));

        let (ok, ok_secret) = subscribe(&scene, &format!("{base}/ok"), json!(["conversation_created"])).await;
        let (status, attempt) = scene.admin(Method::POST, &format!("/v1/webhooks/{ok}/test"), None).await;
        assert_eq!(status, StatusCode::OK, "{attempt}");
        assert_eq!(attempt["status_code"], 200);
        let test = rx.at("/ok").into_iter().find(|r| r.body.contains("webhook_test")).expect("the test event");
        let (_, rotated) = scene.admin(Method::POST, &format!("/v1/webhooks/{ok}/rotate-secret"), None).await;
        let new_secret = rotated["secret"].as_str().expect("secret").to_string();
        assert_ne!(new_secret, ok_secret);
        assert!(verified(&ok_secret, &test));
        scene.admin(Method::POST, &format!("/v1/webhooks/{ok}/test"), None).await;
        let after = rx.at("/ok").into_iter().rev().find(|r| r.body.contains("webhook_test")).expect("second test");
        assert_eq!(after.signature.split(' ').count(), 2, "old and new signatures during the rotation");
        assert!(verified(&new_secret, &after));
        assert!(!test.signature.contains(' '));
    }
}

#[tokio::test]
async fn targets_must_be_https_and_external_unless_allowed() {
    let srv = TestServer::start_with(|c| c.webhooks.policy = Default::default()).await;
    let scene = Scene::new(&srv).await;
    for (url, why) in [
        ("http://hooks.example.com/x", "https"),
        ("https://127.0.0.1/x", "internal"),
        ("https://localhost/x", "internal"),
        ("https://10.0.0.8/x", "internal"),
        ("https://[::1]/x", "internal"),
        ("not a url", "URL"),
    ] {
        let (status, problem) =
            scene.admin(Method::POST, "/v1/webhooks", Some(json!({"url": url, "event_types": ["*"]}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(problem["field"], "url");
        assert!(problem["detail"].as_str().expect("detail").contains(why), "{url}: {problem}");
    }
    let (status, problem) = scene
        .admin(Method::POST, "/v1/webhooks", Some(json!({"url": "https://example.com/x", "event_types": ["nope"]})))
        .await;
    assert_eq!((status, problem["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("event_types[0]")));
}

#[tokio::test]
async fn an_endpoint_failing_for_the_whole_window_is_disabled() {
    // The window is five days in production; here 0.5 s against a 0.3 s retry schedule.
    let srv = TestServer::start_with(|c| c.webhooks.failure_window = Duration::from_millis(500)).await;
    let scene = Scene::new(&srv).await;
    let (base, rx) = receiver().await;
    let (down, _) = subscribe(&scene, &format!("{base}/down"), json!(["conversation_created"])).await;
    scene.conversation().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, webhook) = scene.admin(Method::GET, &format!("/v1/webhooks/{down}"), None).await;
        if webhook["enabled"] == false {
            assert_eq!(webhook["disabled_reason"], "failing");
            break;
        }
        assert!(Instant::now() < deadline, "never disabled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = rx.at("/down").len();
    assert!((2..=4).contains(&attempts), "disabled after the window, not before: {attempts} attempts");
    let disabled = scene.log_all("type=webhook_endpoint_disabled", 100).await;
    assert_eq!(disabled[0]["data"]["reason"], "failing");
    let (_, failed) = scene.admin(Method::GET, &format!("/v1/webhooks/{down}/deliveries?status=failed"), None).await;
    assert_eq!(failed["data"].as_array().expect("data").len(), 1, "its pending delivery ended as failed");
    // Re-enabled by the admin, it gets new events again.
    scene.admin(Method::PATCH, &format!("/v1/webhooks/{down}"), Some(json!({"enabled": true}))).await;
    scene.conversation().await;
    rx.wait_for("/down", attempts + 1, Duration::from_secs(5)).await;
    assert!(rx.at("/down").len() > attempts);
}
