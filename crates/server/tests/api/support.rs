//! A real server on a temporary data directory, and a small HTTP client for it.

use std::path::PathBuf;
use std::time::Duration;

use parley_server::{Config, RunningServer};
use parley_store::sqlite::Durability;
use reqwest::{Method, StatusCode};

use serde_json::{json, Value};

tokio::task_local! {
    /// Which backend the servers of the running test use.
    pub static BACKEND: TestBackend;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server to test against, from `PARLEY_TEST_POSTGRES_URL`.
pub fn postgres_url() -> Option<String> {
    std::env::var("PARLEY_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// Defines a test twice: on the embedded SQLite store and on PostgreSQL (which is skipped, with
/// a line saying so, when `PARLEY_TEST_POSTGRES_URL` is not set).
macro_rules! on_both_backends {
    (async fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                crate::support::BACKEND.scope(crate::support::TestBackend::Sqlite, async $body).await
            }

            #[tokio::test]
            async fn postgres() {
                if crate::support::postgres_url().is_none() {
                    eprintln!("PARLEY_TEST_POSTGRES_URL is not set: the PostgreSQL run of this test is skipped");
                    return;
                }
                crate::support::BACKEND.scope(crate::support::TestBackend::Postgres, async $body).await
            }
        }
    };
}

pub struct TestServer {
    pub config: Config,
    pub server: Option<RunningServer>,
    pub base: String,
    pub admin_token: String,
    /// Kept for its lifetime: the data directory is removed when the server is dropped.
    pub _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub fn config(dir: PathBuf) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir,
        durability: Durability::Normal,
        sse_heartbeat: Duration::from_secs(1),
        presence_grace: Duration::from_millis(500),
        ws_outbox: 256,
        webhooks: parley_server::webhooks::WebhookConfig {
            timeout: Duration::from_secs(1),
            schedule: parley_core::webhook::RetrySchedule { delays_ms: vec![0, 300, 300, 300, 300], jitter: 0.0 },
            policy: parley_server::webhooks::target::TargetPolicy { allow_http: true, allow_private: true },
            poll: Duration::from_millis(20),
            ..Default::default()
        },
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path().to_path_buf());
        if BACKEND.try_with(|b| *b).unwrap_or(TestBackend::Sqlite) == TestBackend::Postgres {
            let url = postgres_url().expect("PARLEY_TEST_POSTGRES_URL");
            let schema = format!("api_{}", parley_core::Uuid::now_v7().simple());
            let url = parley_store::postgres::url_with_new_schema(&url, &schema)
                .unwrap_or_else(|e| panic!("PARLEY_TEST_POSTGRES_URL is set but PostgreSQL is unusable: {e}"));
            cfg.database_url = Some(url);
        }
        tune(&mut cfg);
        let server = RunningServer::start(cfg.clone()).await.expect("server starts");
        let admin_token = server.new_admin_token.clone().expect("a new data directory makes an admin token");
        TestServer {
            config: cfg,
            base: server.url(),
            server: Some(server),
            admin_token,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let server = RunningServer::start(self.config.clone()).await.expect("server restarts");
        assert!(server.new_admin_token.is_none(), "a restart keeps the admin token");
        self.base = server.url();
        self.server = Some(server);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn account(&self, name: &str) -> Account {
        let (status, body) =
            self.call(&self.admin_token, Method::POST, "/v1/accounts", Some(json!({"name": name}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Account {
            id: body["id"].as_str().expect("id").to_string(),
            key: body["api_key"]["secret"].as_str().expect("secret").to_string(),
        }
    }
}

pub struct Account {
    pub id: String,
    pub key: String,
}

/// An account with an `api` integration, an agent (with its own key) and a conversation maker.
pub struct Scene<'a> {
    pub srv: &'a TestServer,
    pub account: Account,
    pub integration: String,
    pub agent: String,
    pub agent_key: String,
}

impl<'a> Scene<'a> {
    pub async fn new(srv: &'a TestServer) -> Scene<'a> {
        Self::with_integration(srv, json!({"name": "API", "type": "api"})).await
    }

    pub async fn with_integration(srv: &'a TestServer, integration: Value) -> Scene<'a> {
        let account = srv.account("Acme").await;
        let (s, i) = srv.call(&account.key, Method::POST, "/v1/integrations", Some(integration)).await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        let (s, a) = srv.call(&account.key, Method::POST, "/v1/agents", Some(json!({"name": "Ana"}))).await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        let agent = a["id"].as_str().expect("agent id").to_string();
        let (s, k) = srv
            .call(
                &account.key,
                Method::POST,
                "/v1/api-keys",
                Some(json!({"name": "ana", "role": "agent", "agent_id": agent})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        Scene {
            srv,
            integration: i["id"].as_str().expect("integration id").to_string(),
            agent,
            agent_key: k["secret"].as_str().expect("secret").to_string(),
            account,
        }
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.srv.call(&self.account.key, method, path, body).await
    }

    pub async fn as_agent(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.srv.call(&self.agent_key, method, path, body).await
    }

    pub async fn conversation(&self) -> String {
        let (s, c) = self
            .admin(
                Method::POST,
                "/v1/conversations",
                Some(
                    json!({"integration_id": self.integration, "customer": {"external_id": "cust-1", "name": "Kamal"}}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        c["id"].as_str().expect("conversation id").to_string()
    }

    pub async fn customer_says(&self, conversation: &str, text: impl Into<String>) -> (StatusCode, Value) {
        let text: String = text.into();
        self.admin(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(json!({"author": {"type": "customer"}, "content": {"type": "text", "text": text}})),
        )
        .await
    }

    pub async fn agent_says(&self, conversation: &str, text: &str) -> (StatusCode, Value) {
        self.as_agent(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(json!({"content": {"type": "text", "text": text}})),
        )
        .await
    }

    pub async fn assign_to_agent(&self, conversation: &str) -> (StatusCode, Value) {
        self.admin(
            Method::POST,
            &format!("/v1/conversations/{conversation}/assignment"),
            Some(json!({"agent_id": self.agent})),
        )
        .await
    }

    pub async fn set_status(&self, conversation: &str, status: &str) -> (StatusCode, Value) {
        self.admin(Method::POST, &format!("/v1/conversations/{conversation}/status"), Some(json!({"status": status})))
            .await
    }

    pub async fn get_conversation(&self, conversation: &str) -> Value {
        let (s, c) = self.admin(Method::GET, &format!("/v1/conversations/{conversation}"), None).await;
        assert_eq!(s, StatusCode::OK, "{c}");
        c
    }

    /// Every event of the log matching `query`, paging with `limit`.
    pub async fn log_all(&self, query: &str, limit: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/log?limit={limit}");
            if !query.is_empty() {
                path.push('&');
                path.push_str(query);
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&after={c}"));
            }
            let (s, page) = self.admin(Method::GET, &path, None).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            let batch = page["events"].as_array().expect("events").clone();
            if batch.is_empty() {
                return events;
            }
            cursor = page["next_cursor"].as_str().map(str::to_string);
            events.extend(batch);
        }
    }
}

/// Polls `probe` until it answers `Some`, for at most 10 s (background work such as routing
/// happens shortly after the request that caused it).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().expect("seq")).collect()
}

pub fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().expect("type").to_string()).collect()
}

/// A minimal Server-Sent Events reader over a streaming response.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

#[derive(Debug, Clone)]
pub struct SseFrame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comment: bool,
}

impl SseReader {
    pub async fn open(srv: &TestServer, token: &str, path: &str, last_event_id: Option<&str>) -> SseReader {
        let mut req = srv.http.get(srv.url(path)).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("stream opens");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
        SseReader { resp, buf: String::new() }
    }

    /// The next frame, or None after `wait` without one.
    pub async fn next(&mut self, wait: Duration) -> Option<SseFrame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut frame = SseFrame { id: None, event: None, data: String::new(), comment: false };
                for line in block.lines() {
                    if let Some(rest) = line.strip_prefix(':') {
                        let _ = rest;
                        frame.comment = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        frame.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        frame.event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        frame.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await.ok()?.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `n` event frames (heartbeats skipped); panics if they do not come in time.
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let frame = self.next(Duration::from_secs(10)).await.expect("an event arrives in time");
            if frame.comment {
                continue;
            }
            let mut event: Value = serde_json::from_str(&frame.data).expect("event JSON");
            event["_sse_id"] = json!(frame.id);
            out.push(event);
        }
        out
    }

    /// Asserts no event frame arrives within `wait`.
    pub async fn quiet(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Some(frame) = self.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            assert!(frame.comment, "unexpected event: {}", frame.data);
        }
    }
}

/// A WebSocket client speaking JSON frames.
pub struct Socket {
    pub ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

pub type WsMessage = tokio_tungstenite::tungstenite::Message;

impl Socket {
    async fn request(
        srv: &TestServer,
        path: &str,
        token: &str,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}{}", srv.base.replace("http://", "ws://"), path);
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        request
    }

    pub async fn connect(srv: &TestServer, path: &str, token: &str) -> Socket {
        Self::connect_with_buffer(srv, path, token, None).await
    }

    /// Connects with a small receive buffer (a client that will stall).
    pub async fn connect_with_buffer(srv: &TestServer, path: &str, token: &str, recv_buffer: Option<u32>) -> Socket {
        let request = Self::request(srv, path, token).await;
        let addr: std::net::SocketAddr = srv.base.trim_start_matches("http://").parse().expect("addr");
        let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            tcp.set_recv_buffer_size(size).expect("buffer");
        }
        let stream = tcp.connect(addr).await.expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await.expect("websocket handshake");
        Socket { ws }
    }

    pub async fn send(&mut self, frame: Value) {
        use futures_util::SinkExt;
        self.ws.send(WsMessage::text(frame.to_string())).await.expect("send");
    }

    /// The next JSON frame, or None after `wait` (or when the socket ends).
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??.ok()?;
            match message {
                WsMessage::Text(text) => return Some(serde_json::from_str(text.as_str()).expect("JSON frame")),
                WsMessage::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next frame of type `kind`, skipping others; panics if none comes in time.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next(left).await.unwrap_or_else(|| panic!("no `{kind}` frame in time"));
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The next `n` event frames (other frames skipped).
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.expect("event").await);
        }
        out
    }

    /// Frames that arrive within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(frame) = self.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            out.push(frame);
        }
        out
    }
}

/// An SDK session on `integration` (anonymous, or with a JWT); answers (token, customer id).
pub async fn sdk_session(
    srv: &TestServer,
    integration: &str,
    jwt: Option<&str>,
    previous: Option<&str>,
) -> (StatusCode, Value) {
    let body = match jwt {
        Some(jwt) => json!({"jwt": jwt}),
        None => json!({}),
    };
    let mut req = srv.http.post(srv.url(&format!("/v1/sdk/{integration}/sessions"))).json(&body);
    if let Some(previous) = previous {
        req = req.bearer_auth(previous);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}
