//! Several `parley serve` processes sharing one PostgreSQL database and one NATS server: live
//! events cross nodes, streams resume on another node without a gap, and work claimed through
//! the database is done exactly once, also when its node is killed.
//!
//! Needs `PARLEY_TEST_POSTGRES_URL` and `PARLEY_TEST_NATS_URL`; without them it says so and
//! skips. With them set, an unreachable service fails the test.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_store::{Store, StoreExt};
use serde_json::{json, Value};

const ADMIN: &str = "cluster-test-admin-token";

fn services() -> Option<(String, String)> {
    let pg = std::env::var("PARLEY_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    let nats = std::env::var("PARLEY_TEST_NATS_URL").ok().filter(|u| !u.is_empty());
    match (pg, nats) {
        (Some(pg), Some(nats)) => Some((pg, nats)),
        _ => {
            eprintln!(
                "PARLEY_TEST_POSTGRES_URL and PARLEY_TEST_NATS_URL are not both set: the cluster tests are skipped"
            );
            None
        }
    }
}

use common::Node;

fn start(db: &str, nats: &str, dir: &std::path::Path, name: &str, extra: &[&str]) -> Node {
    let data = dir.join(name);
    let fixed = ["--database-url", db, "--nats-url", nats, "--admin-token", ADMIN, "--node-id", name, "--data-dir"];
    let mut args: Vec<&std::ffi::OsStr> = fixed.iter().map(std::ffi::OsStr::new).collect();
    args.push(data.as_os_str());
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    common::serve(&args)
}

struct Client {
    http: reqwest::Client,
    key: String,
}

impl Client {
    async fn call(&self, base: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.expect("JSON")
    }
}

/// An account, an `api` integration and a conversation, made on `node`.
async fn setup(node: &Node) -> (Client, String, String) {
    let http = reqwest::Client::new();
    let account: Value = http
        .post(format!("{}/v1/accounts", node.url))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Cluster"}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    let client = Client { http, key: account["api_key"]["secret"].as_str().expect("key").to_string() };
    let integration =
        client.call(&node.url, reqwest::Method::POST, "/v1/integrations", json!({"name": "API", "type": "api"})).await;
    let conversation = client
        .call(&node.url, reqwest::Method::POST, "/v1/conversations", json!({"integration_id": integration["id"]}))
        .await;
    (client, account["id"].as_str().expect("id").to_string(), conversation["id"].as_str().expect("id").to_string())
}

async fn say(client: &Client, node: &Node, conversation: &str, text: &str) {
    client
        .call(
            &node.url,
            reqwest::Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            json!({"author": {"type": "customer"}, "content": {"type": "text", "text": text}}),
        )
        .await;
}

/// Reads SSE events (id, JSON) from a streaming response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(client: &Client, node: &Node, last_id: Option<&str>) -> Sse {
        let mut req = client.http.get(format!("{}/v1/log/stream", node.url)).bearer_auth(&client.key);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("stream");
        assert_eq!(resp.status(), 200);
        Sse { resp, buf: String::new() }
    }

    async fn next_event(&mut self) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let id = block.lines().find_map(|l| l.strip_prefix("id:")).map(|s| s.trim().to_string());
                let data = block.lines().find_map(|l| l.strip_prefix("data:")).map(|s| s.trim().to_string());
                if let (Some(id), Some(data)) = (id, data) {
                    return (id, serde_json::from_str(&data).expect("event JSON"));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("an event arrives in time")
                .expect("stream readable")
                .expect("stream open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event of `kind`.
    async fn next_of(&mut self, kind: &str) -> (String, Value) {
        loop {
            let (id, event) = self.next_event().await;
            if event["type"] == kind {
                return (id, event);
            }
        }
    }
}

fn schema_url(pg: &str, prefix: &str) -> String {
    let schema = format!("{prefix}_{}", parley_core::Uuid::now_v7().simple());
    parley_store::postgres::url_with_new_schema(pg, &schema)
        .unwrap_or_else(|e| panic!("PARLEY_TEST_POSTGRES_URL is set but PostgreSQL is unusable: {e}"))
}

#[tokio::test]
async fn events_cross_nodes_and_streams_resume_on_another_node_without_a_gap() {
    let Some((pg, nats)) = services() else { return };
    let db = schema_url(&pg, "cluster_live");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(&db, &nats, dir.path(), "a", &[]);
    let b = start(&db, &nats, dir.path(), "b", &[]);
    let (client, _, c) = setup(&a).await;

    // Committed on A, seen live by a subscriber of B.
    let mut on_b = Sse::open(&client, &b, None).await;
    on_b.next_of("conversation_created").await;
    say(&client, &a, &c, "from node A").await;
    let (_, event) = on_b.next_of("message_received").await;
    assert_eq!(event["data"]["message"]["content"]["text"], "from node A");
    // And the other way round.
    let mut on_a = Sse::open(&client, &a, None).await;
    say(&client, &b, &c, "from node B").await;
    let (last_id, event) = on_a.next_of("message_received").await;
    let (last_id, _) = if event["data"]["message"]["content"]["text"] == "from node A" {
        on_a.next_of("message_received").await
    } else {
        (last_id, event)
    };
    drop(on_a);

    // Disconnected from A; events keep coming on both nodes; resumed on B.
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        say(&client, node, &c, &format!("while away {i}")).await;
    }
    let log: Value = client.call(&a.url, reqwest::Method::GET, "/v1/log?limit=1000", json!(null)).await;
    let all: Vec<i64> =
        log["events"].as_array().expect("events").iter().map(|e| e["seq"].as_i64().expect("seq")).collect();
    let last_seen = all.iter().position(|s| Some(*s) == u64_of(&last_id)).expect("the last seen event is in the log");
    let missed = &all[last_seen + 1..];
    let mut resumed = Sse::open(&client, &b, Some(&last_id)).await;
    let mut got = Vec::new();
    while got.len() < missed.len() {
        got.push(resumed.next_event().await.1["seq"].as_i64().expect("seq"));
    }
    assert_eq!(got, missed, "exactly the missed events, in order, from the other node");
    say(&client, &a, &c, "live again").await;
    let (_, next) = resumed.next_of("message_received").await;
    assert_eq!(next["data"]["message"]["content"]["text"], "live again");
}

/// The seq behind an SSE id (the cursor of that event), found through the log.
fn u64_of(cursor: &str) -> Option<i64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("s:")?.parse().ok()
}

async fn receipts(store: &Arc<dyn Store>, account: parley_core::Uuid) -> Vec<(i64, String)> {
    store.read(move |r| r.receipts("audit", account)).await.expect("receipts")
}

async fn wait_for_receipts(store: &Arc<dyn Store>, account: parley_core::Uuid, count: usize) -> Vec<(i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = receipts(store, account).await;
        if got.len() >= count {
            return got;
        }
        assert!(Instant::now() < deadline, "only {} of {count} events were handled", got.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_killed_lease_holder_hands_its_work_over_and_nothing_is_done_twice() {
    let Some((pg, nats)) = services() else { return };
    let db = schema_url(&pg, "cluster_lease");
    let dir = tempfile::tempdir().expect("tempdir");
    let consumer = ["--audit-consumer", "--lease-secs", "2"];
    let mut a = start(&db, &nats, dir.path(), "a", &consumer);
    let (client, account, c) = setup(&a).await;
    let account: parley_core::Uuid = account.parse().expect("uuid");
    let store: Arc<dyn Store> =
        Arc::new(parley_store::postgres::PgStore::open(&db, Arc::new(|_| {})).expect("the test reads the database"));
    let last_seq = |store: Arc<dyn Store>| async move { store.read(move |r| r.last_seq(account)).await.expect("seq") };

    for i in 0..10 {
        say(&client, &a, &c, &format!("before b {i}")).await;
    }
    let first = wait_for_receipts(&store, account, last_seq(store.clone()).await as usize).await;
    assert!(first.iter().all(|(_, node)| node == "a"));

    // B joins; A keeps its lease and does all the work.
    let b = start(&db, &nats, dir.path(), "b", &consumer);
    for i in 0..10 {
        say(&client, &b, &c, &format!("both up {i}")).await;
    }
    let both = wait_for_receipts(&store, account, last_seq(store.clone()).await as usize).await;
    assert!(both.iter().all(|(_, node)| node == "a"), "one node holds the account's work");
    let lease = format!("consumer:audit:{account}");
    let holder = store
        .read({
            let l = lease.clone();
            move |r| r.lease_holder(&l)
        })
        .await
        .expect("lease");
    assert_eq!(holder.map(|(h, _)| h).as_deref(), Some("a"));

    // A dies holding the lease (SIGKILL: no goodbye); B takes the work over when it expires.
    a.child.kill().expect("SIGKILL");
    let _ = a.child.wait();
    for i in 0..10 {
        say(&client, &b, &c, &format!("after a died {i}")).await;
    }
    let total = last_seq(store.clone()).await;
    let all = wait_for_receipts(&store, account, total as usize).await;
    let seqs: Vec<i64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "every event handled exactly once");
    assert!(all.iter().any(|(_, node)| node == "b"), "B took the work over");
    let holder = store.read(move |r| r.lease_holder(&lease)).await.expect("lease");
    assert_eq!(holder.map(|(h, _)| h).as_deref(), Some("b"));
    drop(b);
}

async fn agent_socket(
    node: &Node,
    key: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/v1/ws", node.url.replace("http://", "ws://")).into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {key}").parse().expect("header"));
    tokio_tungstenite::connect_async(request).await.expect("websocket").0
}

#[tokio::test]
async fn an_agent_connected_to_any_node_stays_online() {
    let Some((pg, nats)) = services() else { return };
    let db = schema_url(&pg, "cluster_presence");
    let dir = tempfile::tempdir().expect("tempdir");
    let grace = ["--presence-grace-secs", "1"];
    let a = start(&db, &nats, dir.path(), "a", &grace);
    let b = start(&db, &nats, dir.path(), "b", &grace);
    let (client, _, _) = setup(&a).await;
    let agent = client.call(&a.url, reqwest::Method::POST, "/v1/agents", json!({"name": "Ana"})).await;
    let id = agent["id"].as_str().expect("id").to_string();
    let key = client
        .call(&a.url, reqwest::Method::POST, "/v1/api-keys", json!({"name": "ana", "role": "agent", "agent_id": id}))
        .await["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let ana = Client { http: reqwest::Client::new(), key };
    ana.call(&b.url, reqwest::Method::PUT, &format!("/v1/agents/{id}/status"), json!({"status": "online"})).await;
    let status = |node: &Node| {
        let (url, path) = (node.url.clone(), format!("/v1/agents/{id}"));
        let client = &client;
        async move {
            client.call(&url, reqwest::Method::GET, &path, json!(null)).await["status"]
                .as_str()
                .expect("status")
                .to_string()
        }
    };

    let on_a = agent_socket(&a, &ana.key).await;
    let on_b = agent_socket(&b, &ana.key).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(on_a);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(&a).await, "online", "still connected to node B");
    drop(on_b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&b).await != "offline" {
        assert!(Instant::now() < deadline, "the agent never went offline");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn with_two_nodes_each_event_is_delivered_once_per_endpoint() {
    let Some((pg, nats)) = services() else { return };
    let db = schema_url(&pg, "cluster_webhooks");
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--webhook-allow-http", "--webhook-allow-private"];
    let a = start(&db, &nats, dir.path(), "a", &flags);
    let b = start(&db, &nats, dir.path(), "b", &flags);
    let (hook, rx) = common::Receiver::start().await;
    let (client, _, c) = setup(&a).await;
    client.call(&a.url, reqwest::Method::POST, "/v1/webhooks", json!({"url": hook, "event_types": ["*"]})).await;
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        say(&client, node, &c, &format!("m{i}")).await;
    }
    let log: Value = client.call(&b.url, reqwest::Method::GET, "/v1/log?limit=1000", json!(null)).await;
    let messages: Vec<String> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "message_received")
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(messages.len(), 20);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let delivered = rx.delivered();
        if messages.iter().all(|id| delivered.contains_key(id)) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            break;
        }
        assert!(Instant::now() < deadline, "not every message event was delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = rx.delivered();
    assert!(delivered.values().all(|n| *n == 1), "an event was delivered more than once: {delivered:?}");
    let attempts = rx.seen.lock().expect("lock").len();
    assert_eq!(attempts, delivered.len(), "one attempt per event, from one node");
}

#[tokio::test]
async fn typing_crosses_nodes_and_is_never_logged() {
    use futures_util::{SinkExt, StreamExt};
    let Some((pg, nats)) = services() else { return };
    let db = schema_url(&pg, "cluster_typing");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(&db, &nats, dir.path(), "a", &[]);
    let b = start(&db, &nats, dir.path(), "b", &[]);
    let (client, _, c) = setup(&a).await;
    let agent = client.call(&a.url, reqwest::Method::POST, "/v1/agents", json!({"name": "Ana"})).await;
    let key = client
        .call(
            &a.url,
            reqwest::Method::POST,
            "/v1/api-keys",
            json!({"name": "ana", "role": "agent", "agent_id": agent["id"]}),
        )
        .await["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    // An admin watches on node B; the agent types through node A.
    let mut watcher = agent_socket(&b, &client.key).await;
    let subscribe = json!({"type": "subscribe", "conversation_id": [c]}).to_string();
    watcher.send(tokio_tungstenite::tungstenite::Message::text(subscribe)).await.expect("send");
    let ana = Client { http: reqwest::Client::new(), key };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut typed = false;
    while !typed {
        // Typing is live only: repeat until the watcher's subscription is in place.
        let resp = ana
            .http
            .post(format!("{}/v1/conversations/{c}/typing", a.url))
            .bearer_auth(&ana.key)
            .json(&json!({"typing": true}))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 204);
        let frame = tokio::time::timeout(Duration::from_millis(300), watcher.next()).await;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) = frame {
            let frame: Value = serde_json::from_str(text.as_str()).expect("frame");
            typed = frame["type"] == "typing" && frame["author"]["id"] == agent["id"];
        }
        assert!(tokio::time::Instant::now() < deadline, "typing never reached node B");
    }
    let log: Value = client.call(&b.url, reqwest::Method::GET, "/v1/log?limit=1000", json!(null)).await;
    assert!(log["events"]
        .as_array()
        .expect("events")
        .iter()
        .all(|e| !e["type"].as_str().unwrap_or("").contains("typing")));
}

#[tokio::test]
async fn with_two_nodes_each_conversation_is_routed_once_within_capacity() {
    let Some((pg, nats)) = services() else { return };
    let db = schema_url(&pg, "cluster_routing");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(&db, &nats, dir.path(), "a", &[]);
    let b = start(&db, &nats, dir.path(), "b", &[]);
    let (client, _, _) = setup(&a).await;
    let post = reqwest::Method::POST;
    let mut agents = Vec::new();
    for i in 0..3 {
        let agent =
            client.call(&a.url, post.clone(), "/v1/agents", json!({"name": format!("a{i}"), "capacity": 4})).await;
        agents.push(agent["id"].as_str().expect("id").to_string());
    }
    let group = client.call(&a.url, post.clone(), "/v1/groups", json!({"name": "G", "agent_ids": agents})).await;
    let integration = client
        .call(
            &a.url,
            post.clone(),
            "/v1/integrations",
            json!({"name": "R", "type": "api", "default_group_id": group["id"]}),
        )
        .await;
    for (i, agent) in agents.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        client
            .call(&node.url, reqwest::Method::PUT, &format!("/v1/agents/{agent}/status"), json!({"status": "online"}))
            .await;
    }
    // Sixteen customers write at once, half through each node.
    let mut conversations = Vec::new();
    for i in 0..16 {
        let node = if i % 2 == 0 { &a } else { &b };
        let c = client
            .call(
                &node.url,
                post.clone(),
                "/v1/conversations",
                json!({"integration_id": integration["id"], "customer": {"external_id": format!("c{i}")}}),
            )
            .await;
        conversations.push((node, c["id"].as_str().expect("id").to_string()));
    }
    futures_util::future::join_all(conversations.iter().map(|(node, c)| say(&client, node, c, "hello"))).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let queue = client.call(&b.url, reqwest::Method::GET, "/v1/queue", json!(null)).await;
        if queue["queue_size"] == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "routing did not settle: {queue}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log =
        client.call(&a.url, reqwest::Method::GET, "/v1/log?type=conversation_assigned&limit=1000", json!(null)).await;
    let assigned = log["events"].as_array().expect("events");
    assert_eq!(assigned.len(), 12, "three agents of capacity 4");
    let mut per_conversation = std::collections::HashMap::new();
    let mut per_agent = std::collections::HashMap::new();
    for event in assigned {
        *per_conversation.entry(event["conversation_id"].as_str().expect("id")).or_insert(0) += 1;
        *per_agent.entry(event["data"]["agent_id"].as_str().expect("agent")).or_insert(0) += 1;
    }
    assert!(per_conversation.values().all(|n| *n == 1), "a conversation was routed twice: {per_conversation:?}");
    assert_eq!(per_agent.len(), 3);
    assert!(per_agent.values().all(|n| *n == 4), "capacity is never exceeded: {per_agent:?}");
}
