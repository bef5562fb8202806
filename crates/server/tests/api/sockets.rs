//! WebSockets over real connections: agents and customers talk live, typing never reaches the
//! log, reconnects resume exactly, a stalled peer is dropped without slowing the others,
//! unread counts and presence are pushed live.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{sdk_session, types, Scene, Socket, TestServer, WsMessage};

/// A web integration, an online agent assigned to a customer's conversation: (scene, customer
/// token, conversation id).
async fn live_scene(srv: &TestServer) -> (Scene<'_>, String, String) {
    let scene = Scene::with_integration(srv, json!({"name": "Widget", "type": "web"})).await;
    let (_, s) = sdk_session(srv, &scene.integration, None, None).await;
    let token = s["session_token"].as_str().expect("token").to_string();
    let (_, started) = srv.call(&token, Method::POST, "/v1/sdk/conversations", Some(json!({}))).await;
    let c = started["conversation"]["id"].as_str().expect("id").to_string();
    scene.assign_to_agent(&c).await;
    (scene, token, c)
}

async fn customer_says(srv: &TestServer, token: &str, c: &str, text: &str) -> Value {
    let (status, m) = srv
        .call(
            token,
            Method::POST,
            &format!("/v1/sdk/conversations/{c}/messages"),
            Some(json!({"content": {"type": "text", "text": text}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    m
}

on_both_backends! {
    async fn agent_and_customer_talk_live_in_order_and_typing_is_never_logged() {
    let srv = TestServer::start().await;
    let (scene, token, c) = live_scene(&srv).await;
    let mut agent = Socket::connect(&srv, "/v1/ws", &scene.agent_key).await;
    agent.expect("hello").await;
    agent.send(json!({"type": "subscribe", "conversation_id": [c]})).await;
    agent.expect("subscribed").await;
    let mut customer = Socket::connect(&srv, "/v1/sdk/ws", &token).await;
    customer.expect("hello").await;

    for i in 0..5 {
        customer_says(&srv, &token, &c, &format!("question {i}")).await;
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let frame = agent.expect("event").await;
        if frame["event"]["type"] == "message_received" {
            got.push(frame["event"]["data"]["message"]["content"]["text"].as_str().expect("text").to_string());
        }
    }
    assert_eq!(got, (0..5).map(|i| format!("question {i}")).collect::<Vec<_>>());

    for i in 0..3 {
        let (status, _) = scene.agent_says(&c, &format!("answer {i}")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut answers = Vec::new();
    while answers.len() < 3 {
        let frame = customer.expect("event").await;
        if frame["event"]["type"] == "message_sent" {
            answers.push(frame["event"]["data"]["message"]["content"]["text"].as_str().expect("text").to_string());
        }
    }
    assert_eq!(answers, vec!["answer 0", "answer 1", "answer 2"]);

    // Typing both ways, over REST and over the socket.
    customer.send(json!({"type": "typing", "conversation_id": c, "typing": true})).await;
    let typing = agent.expect("typing").await;
    assert_eq!((typing["author"]["type"].as_str(), typing["typing"].as_bool()), (Some("customer"), Some(true)));
    let (status, _) =
        scene.as_agent(Method::POST, &format!("/v1/conversations/{c}/typing"), Some(json!({"typing": true}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let typing = customer.expect("typing").await;
    assert_eq!(typing["author"]["id"], scene.agent.as_str());
    let logged = types(&scene.log_all("", 1000).await);
    assert!(!logged.iter().any(|t| t.contains("typing")), "typing is never logged: {logged:?}");
    }
}

on_both_backends! {
    async fn reconnecting_with_a_cursor_receives_exactly_what_was_missed() {
    let srv = TestServer::start().await;
    let (scene, token, c) = live_scene(&srv).await;

    // Agent socket.
    let mut agent = Socket::connect(&srv, "/v1/ws", &scene.account.key).await;
    agent.send(json!({"type": "subscribe"})).await;
    agent.expect("subscribed").await;
    customer_says(&srv, &token, &c, "seen live").await;
    let seen = agent.events(1).await;
    let cursor = seen[0]["cursor"].as_str().expect("cursor").to_string();
    drop(agent);
    for i in 0..4 {
        customer_says(&srv, &token, &c, &format!("missed {i}")).await;
    }
    let missed: Vec<i64> = scene
        .log_all("", 1000)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .filter(|s| *s > seen[0]["event"]["seq"].as_i64().expect("seq"))
        .collect();
    let mut agent = Socket::connect(&srv, "/v1/ws", &scene.account.key).await;
    agent.send(json!({"type": "subscribe", "after": cursor})).await;
    let mut resumed = Vec::new();
    loop {
        let frame = agent.next(Duration::from_secs(5)).await.expect("frames");
        match frame["type"].as_str() {
            Some("event") => resumed.push(frame["event"]["seq"].as_i64().expect("seq")),
            Some("subscribed") => break,
            _ => {}
        }
    }
    assert_eq!(resumed, missed, "exactly the missed events, in order");
    customer_says(&srv, &token, &c, "live again").await;
    let next = agent.events(1).await;
    assert_eq!(next[0]["event"]["seq"].as_i64(), Some(missed.last().expect("seq") + 1), "no gap, no duplicate");

    // Customer socket, with ?after=.
    let mut customer = Socket::connect(&srv, "/v1/sdk/ws", &token).await;
    let hello = customer.expect("hello").await;
    let customer_cursor = hello["cursor"].as_str().expect("cursor").to_string();
    drop(customer);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3 {
        scene.agent_says(&c, &format!("while away {i}")).await;
    }
    let mut customer = Socket::connect(&srv, &format!("/v1/sdk/ws?after={customer_cursor}"), &token).await;
    let mut texts = Vec::new();
    for frame in customer.drain(Duration::from_millis(800)).await {
        if frame["type"] == "event" && frame["event"]["type"] == "message_sent" {
            texts.push(frame["event"]["data"]["message"]["content"]["text"].as_str().expect("text").to_string());
        }
    }
    assert_eq!(texts, vec!["while away 0", "while away 1", "while away 2"]);
    }
}

on_both_backends! {
    async fn a_stalled_subscriber_is_dropped_while_a_healthy_one_keeps_up() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;
    let mut healthy = Socket::connect(&srv, "/v1/ws", &scene.account.key).await;
    healthy.send(json!({"type": "subscribe", "event_type": "message_received"})).await;
    healthy.expect("subscribed").await;
    let mut stalled = Socket::connect_with_buffer(&srv, "/v1/ws", &scene.account.key, Some(4096)).await;
    stalled.send(json!({"type": "subscribe", "event_type": "message_received"})).await;
    stalled.expect("subscribed").await;
    // From here on the stalled client reads nothing.

    const N: usize = 1500;
    let text = "x".repeat(3000);
    let reader = async {
        let mut seqs = Vec::new();
        while seqs.len() < N {
            let frame = healthy.next(Duration::from_secs(20)).await.expect("the healthy subscriber keeps receiving");
            if frame["type"] == "event" {
                seqs.push(frame["event"]["seq"].as_i64().expect("seq"));
            }
        }
        seqs
    };
    let writer = async {
        for chunk in 0..(N / 50) {
            let sends = (0..50).map(|i| scene.customer_says(&c, format!("{chunk}-{i} {text}")));
            for (status, body) in futures_util::future::join_all(sends).await {
                assert_eq!(status, StatusCode::CREATED, "{body}");
            }
        }
    };
    let (seqs, ()) = tokio::join!(reader, writer);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(seqs.len(), N);

    // The stalled one was closed, and says why once it reads again.
    use futures_util::StreamExt;
    let mut close = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, stalled.ws.next()).await {
        match message {
            Ok(WsMessage::Close(frame)) => {
                close = frame;
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.as_str().contains("too slow: resume with after="), "{}", close.reason.as_str());
    }
}

on_both_backends! {
    async fn unread_counts_rise_and_fall_live_on_both_sockets() {
    let srv = TestServer::start().await;
    let (scene, token, c) = live_scene(&srv).await;
    let mut customer = Socket::connect(&srv, "/v1/sdk/ws", &token).await;
    let first = customer.expect("unread").await;
    assert_eq!(first["count"], 0);
    let mut agent = Socket::connect(&srv, "/v1/ws", &scene.agent_key).await;
    agent.send(json!({"type": "subscribe", "conversation_id": c})).await;
    agent.expect("subscribed").await;

    scene.agent_says(&c, "one").await;
    assert_eq!(customer.expect("unread").await["count"], 1);
    scene.agent_says(&c, "two").await;
    assert_eq!(customer.expect("unread").await["count"], 2);
    let (status, state) =
        srv.call(&token, Method::POST, &format!("/v1/sdk/conversations/{c}/read"), Some(json!({}))).await;
    assert_eq!((status, state["unread_count"].as_i64()), (StatusCode::OK, Some(0)));
    assert_eq!(customer.expect("unread").await["count"], 0);

    // The agent's count of customer messages, live too.
    let mut last = Value::Null;
    customer_says(&srv, &token, &c, "hi").await;
    while last["count"] != 1 {
        last = agent.expect("unread").await;
    }
    scene.as_agent(Method::POST, &format!("/v1/conversations/{c}/read"), Some(json!({}))).await;
    while last["count"] != 0 {
        last = agent.expect("unread").await;
    }

    // The customer's own message was never unread to them: the next count they hear is the
    // agent's next message.
    scene.agent_says(&c, "three").await;
    assert_eq!(customer.expect("unread").await["count"], 1);
    }
}

on_both_backends! {
    async fn presence_joins_leaves_and_goes_offline_after_the_grace_period() {
    let srv = TestServer::start().await;
    let (scene, token, c) = live_scene(&srv).await;
    let mut watcher = Socket::connect(&srv, "/v1/ws", &scene.account.key).await;
    watcher.send(json!({"type": "subscribe"})).await;
    watcher.expect("subscribed").await;

    let (status, _) = scene
        .as_agent(Method::PUT, &format!("/v1/agents/{}/status", scene.agent), Some(json!({"status": "online"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(watcher.expect("presence").await["status"], "online");
    let mut customer = Socket::connect(&srv, "/v1/sdk/ws", &token).await;
    assert_eq!(customer.expect("availability").await["agents_available"], true);

    let agent = Socket::connect(&srv, "/v1/ws", &scene.agent_key).await;
    drop(agent);
    // The test server's grace period is 0.5 s.
    let presence = watcher.expect("presence").await;
    assert_eq!(presence["status"], "offline");
    assert_eq!(customer.expect("availability").await["agents_available"], false);
    let changes = scene.log_all("type=agent_status_changed", 100).await;
    assert_eq!(changes.last().expect("change")["data"]["status"], "offline");
    assert_eq!(changes.last().expect("change")["actor"]["type"], "system");

    // A reconnect within the grace period keeps the agent online.
    scene.as_agent(Method::PUT, &format!("/v1/agents/{}/status", scene.agent), Some(json!({"status": "online"}))).await;
    let first = Socket::connect(&srv, "/v1/ws", &scene.agent_key).await;
    drop(first);
    let _second = Socket::connect(&srv, "/v1/ws", &scene.agent_key).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, agent) = scene.admin(Method::GET, &format!("/v1/agents/{}", scene.agent), None).await;
    assert_eq!(agent["status"], "online");

    drop(customer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joined_left =
        types(&scene.log_all(&format!("conversation_id={c}&type=customer_joined&type=customer_left"), 100).await);
    assert_eq!(joined_left, vec!["customer_joined", "customer_left"]);
    }
}

on_both_backends! {
    async fn sockets_refuse_bad_credentials_and_bad_frames_clearly() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let resp = srv.http.get(srv.url("/v1/ws")).bearer_auth(&scene.account.key).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
    let resp = srv.http.get(srv.url("/v1/ws")).bearer_auth("pk_wrong").send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let mut socket = Socket::connect(&srv, "/v1/ws", &scene.account.key).await;
    socket.expect("hello").await;
    use futures_util::SinkExt;
    socket.ws.send(WsMessage::text("not json")).await.expect("send");
    assert_eq!(socket.expect("error").await["code"], "malformed_frame");
    socket.send(json!({"type": "subscribe", "event_type": "nonsense"})).await;
    socket.send(json!({"type": "subscribe", "conversation_id": ["nope"]})).await;
    let error = socket.expect("error").await;
    assert_eq!(error["code"], "invalid_frame");
    socket.send(json!({"type": "ping"})).await;
    socket.expect("pong").await;
    }
}

on_both_backends! {
    async fn a_silent_peer_is_dropped_by_the_heartbeat_and_its_agent_goes_offline() {
    let srv = TestServer::start_with(|c| c.ws_ping = Duration::from_millis(200)).await;
    let scene = Scene::new(&srv).await;
    scene.as_agent(Method::PUT, &format!("/v1/agents/{}/status", scene.agent), Some(json!({"status": "online"}))).await;
    // Connected, then silent: it never reads, so it never answers a ping.
    let _silent = Socket::connect(&srv, "/v1/ws", &scene.agent_key).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, agent) = scene.admin(Method::GET, &format!("/v1/agents/{}", scene.agent), None).await;
        if agent["status"] == "offline" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the silent connection was never dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    }
}

on_both_backends! {
    async fn a_customer_socket_carries_only_that_customers_conversations() {
    let srv = TestServer::start().await;
    let (scene, token, c) = live_scene(&srv).await;
    let (_, other) = sdk_session(&srv, &scene.integration, None, None).await;
    let other = other["session_token"].as_str().expect("token").to_string();
    let mut snoop = Socket::connect(&srv, "/v1/sdk/ws", &other).await;
    snoop.expect("hello").await;
    snoop.send(json!({"type": "typing", "conversation_id": c, "typing": true})).await;
    assert_eq!(snoop.expect("error").await["code"], "invalid_frame");
    customer_says(&srv, &token, &c, "private").await;
    scene.agent_says(&c, "private answer").await;
    let frames = snoop.drain(Duration::from_millis(600)).await;
    assert!(frames.iter().all(|f| f["type"] != "event" && f["type"] != "typing"), "{frames:?}");
    // Resuming from the very start shows nothing of the other customer either.
    let mut resumed = Socket::connect(&srv, "/v1/sdk/ws?after=czow", &other).await;
    let frames = resumed.drain(Duration::from_millis(600)).await;
    assert!(frames.iter().all(|f| f["type"] != "event"), "{frames:?}");
    }
}
