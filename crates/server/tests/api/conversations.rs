//! Conversations: assignment and transfer, tags, read receipts, idempotent sends, list filters
//! and pagination, customers, and every content type through the API.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{types, Scene, TestServer};

on_both_backends! {
    async fn assignment_and_transfer_are_logged_as_transfers() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let (_, group) =
        scene.admin(Method::POST, "/v1/groups", Some(json!({"name": "Billing", "agent_ids": [scene.agent]}))).await;
    let group = group["id"].as_str().expect("group id").to_string();
    let c = scene.conversation().await;
    scene.customer_says(&c, "hi").await;

    let (status, body) = scene.assign_to_agent(&c).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["assignee"]["id"], scene.agent.as_str());
    assert_eq!(body["status"], "in_progress");
    let (status, body) = scene.assign_to_agent(&c).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("already_assigned")));

    let (status, body) =
        scene.admin(Method::POST, &format!("/v1/conversations/{c}/assignment"), Some(json!({"group_id": group}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "open");
    assert_eq!(body["assignee"], serde_json::Value::Null);
    assert_eq!(body["group_id"], group.as_str());

    let events = scene.log_all(&format!("conversation_id={c}"), 100).await;
    let kinds = types(&events);
    assert!(!kinds.contains(&"conversation_assigned".to_string()), "direct assignment is a transfer: {kinds:?}");
    let transfers: Vec<_> = events.iter().filter(|e| e["type"] == "conversation_transferred").collect();
    assert_eq!(transfers.len(), 2);
    assert_eq!(transfers[0]["data"]["to"], json!({"type": "agent", "id": scene.agent}));
    assert_eq!(transfers[1]["data"]["from"], json!({"type": "agent", "id": scene.agent}));
    assert_eq!(transfers[1]["data"]["to"], json!({"type": "group", "id": group}));
    let queued: Vec<_> = events.iter().filter(|e| e["type"] == "conversation_queued").collect();
    assert_eq!(queued.len(), 2, "queued by the customer's first message, then by the transfer");
    assert_eq!(queued[0]["data"]["initial_routing"], true);
    assert_eq!(queued[1]["data"]["initial_routing"], false, "a transfer is not initial routing");
    assert_eq!(queued[1]["data"]["queue_position"], 1);
    assert!(kinds.contains(&"agent_joined".to_string()) && kinds.contains(&"agent_left".to_string()), "{kinds:?}");

    let (status, body) =
        scene.as_agent(Method::POST, &format!("/v1/conversations/{c}/assignment"), Some(json!({"accept": true}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("no_pending_offer")));
    let (status, body) = scene
        .admin(
            Method::POST,
            &format!("/v1/conversations/{c}/assignment"),
            Some(json!({"agent_id": scene.agent, "group_id": group})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
}

on_both_backends! {
    async fn tags_are_added_removed_filtered_and_logged() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c1 = scene.conversation().await;
    let c2 = scene.conversation().await;
    let (status, body) = scene
        .admin(Method::POST, &format!("/v1/conversations/{c1}/tags"), Some(json!({"tags": ["VIP", "billing"]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tags"], json!(["vip", "billing"]));
    let (_, body) = scene
        .admin(Method::DELETE, &format!("/v1/conversations/{c1}/tags"), Some(json!({"tags": ["billing", "absent"]})))
        .await;
    assert_eq!(body["tags"], json!(["vip"]));
    // Nothing changes: nothing is logged.
    scene.admin(Method::POST, &format!("/v1/conversations/{c1}/tags"), Some(json!({"tags": ["vip"]}))).await;
    let changes = scene.log_all(&format!("conversation_id={c1}&type=tags_changed"), 100).await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["data"]["added"], json!(["vip", "billing"]));
    assert_eq!(changes[1]["data"]["removed"], json!(["billing"]));

    let (_, list) = scene.admin(Method::GET, "/v1/conversations?tag=vip", None).await;
    let ids: Vec<_> =
        list["data"].as_array().expect("data").iter().map(|c| c["id"].as_str().expect("id").to_string()).collect();
    assert_eq!(ids, vec![c1.clone()]);
    assert!(!ids.contains(&c2));
    let (status, body) =
        scene.admin(Method::POST, &format!("/v1/conversations/{c1}/tags"), Some(json!({"tags": ["two words"]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "add[0]");
    }
}

on_both_backends! {
    async fn read_receipts_move_forward_and_count_unread() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, m) = scene.customer_says(&c, &format!("message {i}")).await;
        ids.push(m["id"].as_str().expect("id").to_string());
    }
    let path = format!("/v1/conversations/{c}/read");
    let (status, state) = scene.as_agent(Method::POST, &path, Some(json!({"message_id": ids[0]}))).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!((state["last_read_seq"].as_i64(), state["unread_count"].as_i64()), (Some(1), Some(2)));
    let (_, state) = scene.as_agent(Method::POST, &path, Some(json!({}))).await;
    assert_eq!((state["last_read_seq"].as_i64(), state["unread_count"].as_i64()), (Some(3), Some(0)));
    // Never backwards, and not logged again.
    let (_, state) = scene.as_agent(Method::POST, &path, Some(json!({"message_id": ids[1]}))).await;
    assert_eq!(state["last_read_seq"], 3);
    let reads = scene.log_all(&format!("conversation_id={c}&type=message_read"), 100).await;
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[1]["data"]["reader"], json!({"type": "agent", "id": scene.agent}));
    // An admin key acting for nobody must name the reader.
    let (status, body) = scene.admin(Method::POST, &path, Some(json!({}))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("agent_id")));
    }
}

on_both_backends! {
    async fn a_resend_with_the_same_client_message_id_returns_the_original() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;
    let body = json!({"author": {"type": "customer"}, "client_message_id": "abc-1", "content": {"type": "text", "text": "once"}});
    let path = format!("/v1/conversations/{c}/messages");
    let sends = (0..8).map(|_| scene.admin(Method::POST, &path, Some(body.clone())));
    let results = futures_util::future::join_all(sends).await;
    let created = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    assert_eq!(created, 1, "exactly one send creates the message");
    let first_id = &results[0].1["id"];
    assert!(results.iter().all(|(s, m)| s.is_success() && m["id"] == *first_id));
    assert_eq!(scene.get_conversation(&c).await["messages_count"], 1);
    assert_eq!(scene.log_all(&format!("conversation_id={c}&type=message_received"), 100).await.len(), 1);
    }
}

on_both_backends! {
    async fn lists_filter_and_page_without_overlap() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push(scene.conversation().await);
    }
    scene.set_status(&made[0], "ended").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/conversations?limit=3&cursor={c}"),
            None => "/v1/conversations?limit=3".to_string(),
        };
        let (status, page) = scene.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["data"].as_array().expect("data").iter().map(|c| c["id"].as_str().expect("id").to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut newest_first = made.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let (_, ended) = scene.admin(Method::GET, "/v1/conversations?status=ended", None).await;
    assert_eq!(ended["data"].as_array().expect("data").len(), 1);
    let (_, mine) = scene
        .admin(Method::GET, &format!("/v1/conversations?integration_id={}&status=created", scene.integration), None)
        .await;
    assert_eq!(mine["data"].as_array().expect("data").len(), 6);
    let customer = scene.get_conversation(&made[1]).await["customer_id"].as_str().expect("customer").to_string();
    let (_, by_customer) = scene.admin(Method::GET, &format!("/v1/conversations?customer_id={customer}"), None).await;
    assert_eq!(by_customer["data"].as_array().expect("data").len(), 7, "one external_id is one customer");
    scene.assign_to_agent(&made[2]).await;
    let (_, assigned) = scene.admin(Method::GET, &format!("/v1/conversations?assignee_id={}", scene.agent), None).await;
    assert_eq!(assigned["data"][0]["id"], made[2].as_str());
    }
}

on_both_backends! {
    async fn every_content_type_is_accepted_and_stored() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;
    scene.assign_to_agent(&c).await;
    let business = [
        json!({"type": "text", "text": "Pick one", "actions": [{"type": "reply", "text": "Yes", "payload": "YES"}, {"type": "link", "text": "Docs", "uri": "https://example.com"}]}),
        json!({"type": "image", "media_url": "https://example.com/a.png", "media_type": "image/png", "alt_text": "a"}),
        json!({"type": "file", "media_url": "https://example.com/a.pdf", "media_type": "application/pdf", "media_size": 1024}),
        json!({"type": "carousel", "items": [{"title": "A", "actions": [{"type": "postback", "text": "Buy", "payload": "BUY_A"}]}]}),
        json!({"type": "location", "coordinates": {"lat": 45.5, "long": -73.5}, "name": "Office"}),
        json!({"type": "form", "fields": [{"type": "email", "name": "email", "label": "E-mail"}]}),
    ];
    for content in &business {
        let (status, m) = scene
            .as_agent(Method::POST, &format!("/v1/conversations/{c}/messages"), Some(json!({"content": content})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
        assert_eq!(&m["content"], content);
    }
    let answer = json!({"type": "form_response", "fields": [{"name": "email", "value": "k@example.com"}]});
    let (status, m) = scene
        .admin(
            Method::POST,
            &format!("/v1/conversations/{c}/messages"),
            Some(json!({"author": {"type": "customer"}, "content": answer})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let quick = json!({"type": "text", "text": "Yes", "payload": "YES"});
    scene
        .admin(
            Method::POST,
            &format!("/v1/conversations/{c}/messages"),
            Some(json!({"author": {"type": "customer"}, "content": quick})),
        )
        .await;
    let pressed = scene.log_all(&format!("conversation_id={c}&type=action_pressed"), 100).await;
    assert_eq!(pressed.len(), 1);
    assert_eq!(pressed[0]["data"]["action"]["payload"], "YES");
    let sent = scene.log_all(&format!("conversation_id={c}&type=message_sent"), 100).await;
    assert_eq!(sent.len(), business.len());
    assert_eq!(sent[0]["data"]["direction"], "out");
    assert_eq!(sent[0]["channel"]["type"], "api");
    }
}

on_both_backends! {
    async fn customers_are_found_updated_and_suspended() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;
    let customer = scene.get_conversation(&c).await["customer_id"].as_str().expect("customer").to_string();
    let (status, body) =
        scene.admin(Method::PATCH, &format!("/v1/customers/{customer}"), Some(json!({"email": "k@example.com"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], "k@example.com");
    let (status, body) =
        scene.admin(Method::PATCH, &format!("/v1/customers/{customer}"), Some(json!({"email": "not-an-email"}))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("email")));

    scene.admin(Method::POST, &format!("/v1/customers/{customer}/suspend"), None).await;
    let (status, body) = scene.customer_says(&c, "let me write").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("customer_suspended")));
    scene.admin(Method::POST, &format!("/v1/customers/{customer}/unsuspend"), None).await;
    let (status, _) = scene.customer_says(&c, "thanks").await;
    assert_eq!(status, StatusCode::CREATED);
    let kinds =
        types(&scene.log_all("type=customer_updated&type=customer_suspended&type=customer_unsuspended", 100).await);
    assert_eq!(kinds, vec!["customer_updated", "customer_suspended", "customer_unsuspended"]);
    }
}
