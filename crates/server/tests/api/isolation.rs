//! Authentication and tenancy: who may call what, and accounts never see each other.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Scene, SseReader, TestServer};

on_both_backends! {
    async fn accounts_never_see_each_other() {
    let srv = TestServer::start().await;
    let a = Scene::new(&srv).await;
    let b = Scene::new(&srv).await;
    let mut b_stream = SseReader::open(&srv, &b.account.key, "/v1/log/stream", None).await;
    let c = a.conversation().await;
    a.customer_says(&c, "private").await;

    for path in [format!("/v1/conversations/{c}"), format!("/v1/conversations/{c}/messages")] {
        let (status, body) = b.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    let (status, _) = b.customer_says(&c, "intrude").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = b.set_status(&c, "ended").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = b.admin(Method::GET, &format!("/v1/integrations/{}", a.integration), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) =
        b.admin(Method::POST, "/v1/conversations", Some(json!({"integration_id": a.integration}))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("integration_id")));

    assert!(b.log_all("", 1000).await.is_empty(), "B's log holds none of A's events");
    let a_log = a.log_all("", 1000).await;
    assert!(!a_log.is_empty() && a_log.iter().all(|e| e["account_id"] == a.account.id.as_str()));
    let (status, page) = b.admin(Method::GET, &format!("/v1/log?conversation_id={c}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["events"], json!([]));
    b_stream.quiet(Duration::from_millis(500)).await;
    let (_, list) = b.admin(Method::GET, "/v1/conversations", None).await;
    assert_eq!(list["data"], json!([]));
    }
}

on_both_backends! {
    async fn credentials_and_roles_are_enforced() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;

    let resp = srv.http.get(srv.url("/v1/conversations")).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let (status, _) = srv.call("pk_not-a-real-key", Method::GET, "/v1/conversations", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The server admin token manages accounts only; account keys cannot create accounts.
    let (status, _) = srv.call(&srv.admin_token, Method::GET, "/v1/conversations", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = scene.admin(Method::POST, "/v1/accounts", Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Agent keys cannot manage the account, nor act as another agent.
    let (status, _) = scene.as_agent(Method::POST, "/v1/integrations", Some(json!({"name": "x", "type": "web"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = scene.as_agent(Method::GET, "/v1/api-keys", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, other) = scene.admin(Method::POST, "/v1/agents", Some(json!({"name": "Other"}))).await;
    let (status, _) = scene
        .as_agent(
            Method::PUT,
            &format!("/v1/agents/{}/status", other["id"].as_str().expect("id")),
            Some(json!({"status": "online"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, agent) = scene
        .as_agent(Method::PUT, &format!("/v1/agents/{}/status", scene.agent), Some(json!({"status": "online"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{agent}");
    let changes = scene.log_all("type=agent_status_changed", 100).await;
    assert_eq!(changes[0]["data"]["status"], "online");
    assert_eq!(changes[0]["data"]["previous_status"], "offline");

    // A deleted key stops working at once (even though it was just cached).
    let (_, key) = scene.admin(Method::POST, "/v1/api-keys", Some(json!({"name": "temp", "role": "admin"}))).await;
    let secret = key["secret"].as_str().expect("secret").to_string();
    let (status, _) = srv.call(&secret, Method::GET, "/v1/agents", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = scene.admin(Method::GET, "/v1/api-keys", None).await;
    assert!(listed.to_string().find(&secret).is_none(), "secrets are never listed");
    let (status, _) =
        scene.admin(Method::DELETE, &format!("/v1/api-keys/{}", key["id"].as_str().expect("id")), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = srv.call(&secret, Method::GET, "/v1/agents", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
