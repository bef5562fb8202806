//! Every legal status transition, illegal ones refused with the current status, and each
//! reply status this server can produce.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{types, Scene, TestServer};

/// Drives a new conversation into `status` through the API.
async fn conversation_in(scene: &Scene<'_>, status: &str) -> String {
    let c = scene.conversation().await;
    let ok = |(s, b): (StatusCode, Value)| assert!(s.is_success(), "{b}");
    match status {
        "created" => {}
        "open" => ok(scene.customer_says(&c, "hello").await),
        "in_progress" => ok(scene.assign_to_agent(&c).await),
        "on_hold" => {
            ok(scene.assign_to_agent(&c).await);
            ok(scene.agent_says(&c, "hi, how can I help?").await);
        }
        "ended" => ok(scene.set_status(&c, "ended").await),
        "blocked" => ok(scene.set_status(&c, "blocked").await),
        other => panic!("unknown status {other}"),
    }
    assert_eq!(scene.get_conversation(&c).await["status"], status);
    c
}

/// Moves conversation `c` (in `from`) to `to` by the API a user would use for it.
async fn move_to(scene: &Scene<'_>, c: &str, from: &str, to: &str) -> (StatusCode, Value) {
    match (from, to) {
        (_, "ended" | "blocked") => scene.set_status(c, to).await,
        ("created", "open") => scene.customer_says(c, "anyone there?").await,
        (_, "open") => scene.set_status(c, "open").await,
        ("created" | "open", "in_progress") => scene.assign_to_agent(c).await,
        ("on_hold", "in_progress") => scene.customer_says(c, "one more thing").await,
        ("in_progress", "on_hold") => scene.agent_says(c, "done, anything else?").await,
        _ => panic!("no API move from {from} to {to}"),
    }
}

on_both_backends! {
    async fn every_legal_transition_is_made_and_logged() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let legal = [
        ("created", "open"),
        ("created", "in_progress"),
        ("created", "ended"),
        ("created", "blocked"),
        ("open", "in_progress"),
        ("open", "ended"),
        ("open", "blocked"),
        ("in_progress", "on_hold"),
        ("in_progress", "open"),
        ("in_progress", "ended"),
        ("in_progress", "blocked"),
        ("on_hold", "in_progress"),
        ("on_hold", "open"),
        ("on_hold", "ended"),
        ("on_hold", "blocked"),
        ("ended", "open"),
        ("ended", "blocked"),
        ("blocked", "open"),
    ];
    for (from, to) in legal {
        let c = conversation_in(&scene, from).await;
        let (status, body) = move_to(&scene, &c, from, to).await;
        assert!(status.is_success(), "{from} -> {to}: {body}");
        assert_eq!(scene.get_conversation(&c).await["status"], to, "{from} -> {to}");
        let events = scene.log_all(&format!("conversation_id={c}&type=conversation_status_changed"), 100).await;
        let last = events.last().expect("a status event");
        assert_eq!(last["data"]["previous_status"], from, "{from} -> {to}");
        assert_eq!(last["data"]["status"], to, "{from} -> {to}");
        let all = types(&scene.log_all(&format!("conversation_id={c}"), 100).await);
        let specific = match to {
            "open" => Some("conversation_opened"),
            "ended" => Some("conversation_closed"),
            "blocked" => Some("conversation_blocked"),
            _ => None,
        };
        if let Some(kind) = specific {
            let changed_at = all.iter().rposition(|t| t == "conversation_status_changed").expect("status event");
            assert_eq!(all.get(changed_at + 1).map(String::as_str), Some(kind), "{from} -> {to}: {all:?}");
        }
    }
    }
}

on_both_backends! {
    async fn illegal_transitions_are_409_naming_the_current_status() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    for (from, to) in [("open", "open"), ("ended", "ended"), ("blocked", "blocked"), ("blocked", "ended")] {
        let c = conversation_in(&scene, from).await;
        let before = scene.log_all(&format!("conversation_id={c}"), 100).await.len();
        let (status, body) = scene.set_status(&c, to).await;
        assert_eq!(status, StatusCode::CONFLICT, "{from} -> {to}: {body}");
        assert_eq!(body["code"], "illegal_transition");
        assert_eq!(body["current_status"], from);
        assert!(body["detail"].as_str().expect("detail").contains(from));
        assert_eq!(scene.get_conversation(&c).await["status"], from);
        assert_eq!(scene.log_all(&format!("conversation_id={c}"), 100).await.len(), before, "a refusal logs nothing");
    }
    // Statuses the API never sets directly.
    let c = conversation_in(&scene, "open").await;
    let (status, body) = scene.set_status(&c, "on_hold").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "status");
    // Assigning an ended conversation is an illegal move too.
    let c = conversation_in(&scene, "ended").await;
    let (status, body) = scene.assign_to_agent(&c).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["current_status"], "ended");
    // Nobody writes to a blocked conversation, the customer included.
    let c = conversation_in(&scene, "blocked").await;
    let (status, body) = scene.customer_says(&c, "let me in").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "conversation_blocked");
    }
}

async fn refused_with(scene: &Scene<'_>, c: &str, reply_status: &str) {
    let (status, body) = scene.agent_says(c, "hello?").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "reply_not_allowed");
    assert_eq!(body["reply_status"], reply_status);
}

on_both_backends! {
    async fn reply_status_follows_the_conversation_and_refuses_business_messages() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;

    let c = conversation_in(&scene, "open").await;
    assert_eq!(scene.get_conversation(&c).await["reply_status"], "unassigned");
    refused_with(&scene, &c, "unassigned").await;

    scene.assign_to_agent(&c).await;
    let (_, seen_by_agent) = scene.as_agent(Method::GET, &format!("/v1/conversations/{c}"), None).await;
    assert_eq!(seen_by_agent["reply_status"], "accepted");
    let (status, body) = scene.agent_says(&c, "I can help").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Another agent is not the assignee.
    let (_, other) = scene.admin(Method::POST, "/v1/agents", Some(json!({"name": "Bo"}))).await;
    let (_, key) = scene
        .admin(Method::POST, "/v1/api-keys", Some(json!({"name": "bo", "role": "agent", "agent_id": other["id"]})))
        .await;
    let bo = key["secret"].as_str().expect("secret");
    let (_, seen_by_bo) = srv.call(bo, Method::GET, &format!("/v1/conversations/{c}"), None).await;
    assert_eq!(seen_by_bo["reply_status"], "not_an_assignee");
    let (status, body) = srv
        .call(
            bo,
            Method::POST,
            &format!("/v1/conversations/{c}/messages"),
            Some(json!({"content": {"type": "text", "text": "me too"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["reply_status"], "not_an_assignee");

    scene.set_status(&c, "ended").await;
    assert_eq!(scene.get_conversation(&c).await["reply_status"], "session_ended");
    refused_with(&scene, &c, "session_ended").await;

    scene.set_status(&c, "blocked").await;
    refused_with(&scene, &c, "session_blocked").await;

    // Channel switched off, then deleted.
    let c = conversation_in(&scene, "in_progress").await;
    let path = format!("/v1/integrations/{}", scene.integration);
    scene.admin(Method::PATCH, &path, Some(json!({"active": false}))).await;
    refused_with(&scene, &c, "channel_inactive").await;
    scene.admin(Method::PATCH, &path, Some(json!({"active": true}))).await;
    let (status, _) = scene.agent_says(&c, "back").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = scene.admin(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused_with(&scene, &c, "channel_deleted").await;
    assert_eq!(scene.get_conversation(&c).await["reply_status"], "channel_deleted", "history stays readable");
    }
}

on_both_backends! {
    async fn the_service_window_expires_the_session() {
    let srv = TestServer::start().await;
    let scene = Scene::with_integration(&srv, json!({"name": "WA", "type": "api", "service_window_seconds": 1})).await;
    let c = conversation_in(&scene, "in_progress").await;
    let (status, _) = scene.customer_says(&c, "hi").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = scene.agent_says(&c, "inside the window").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    refused_with(&scene, &c, "session_expired").await;
    // The customer writing again opens the window again.
    scene.customer_says(&c, "still there?").await;
    let (status, _) = scene.agent_says(&c, "yes").await;
    assert_eq!(status, StatusCode::CREATED);
    }
}

on_both_backends! {
    async fn a_customer_reopens_within_the_window_and_starts_anew_after_it() {
    let srv = TestServer::start().await;
    let scene = Scene::with_integration(&srv, json!({"name": "API", "type": "api", "reopen_window_seconds": 1})).await;
    let c = conversation_in(&scene, "ended").await;
    let (status, m) = scene.customer_says(&c, "one more question").await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["conversation_id"], c.as_str(), "within the window the same conversation reopens");
    let opened = scene.log_all(&format!("conversation_id={c}&type=conversation_opened"), 100).await;
    assert_eq!(opened.last().expect("opened")["data"]["reopened"], true);

    scene.set_status(&c, "ended").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, m) = scene.customer_says(&c, "a new matter").await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let fresh = m["conversation_id"].as_str().expect("conversation id").to_string();
    assert_ne!(fresh, c, "after the window a new conversation starts");
    assert_eq!(scene.get_conversation(&c).await["status"], "ended");
    assert_eq!(scene.get_conversation(&fresh).await["status"], "open");
    // The next message to the old id continues the new conversation.
    let (_, m) = scene.customer_says(&c, "and another").await;
    assert_eq!(m["conversation_id"], fresh.as_str());
    }
}
