//! The SDK: sessions (anonymous and JWT-verified), the customer's own conversations, and what
//! a customer may not see or do.

use parley_server::jwt::sign_hs256;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{sdk_session, Scene, TestServer};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A web integration with one signing key: (scene, kid, secret).
async fn web(srv: &TestServer) -> (Scene<'_>, String, String) {
    let scene = Scene::with_integration(srv, json!({"name": "Widget", "type": "web"})).await;
    let (status, key) = scene.admin(Method::POST, &format!("/v1/integrations/{}/keys", scene.integration), None).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (scene, key["kid"].as_str().expect("kid").to_string(), key["secret"].as_str().expect("secret").to_string())
}

async fn sdk(srv: &TestServer, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    srv.call(token, method, path, body).await
}

on_both_backends! {
    async fn jwt_sessions_accept_the_valid_and_say_why_they_refuse() {
    let srv = TestServer::start().await;
    let (scene, kid, secret) = web(&srv).await;
    let i = scene.integration.clone();
    let valid = json!({"scope": "user", "external_id": "u-1", "name": "Kamal", "email": "k@example.com", "email_verified": true, "exp": now() + 600});
    let (status, session) = sdk_session(&srv, &i, Some(&sign_hs256(&kid, &secret, &valid)), None).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(session["verified"], true);
    assert_eq!(session["customer"]["external_id"], "u-1");
    assert_eq!(session["customer"]["email_verified"], true);
    assert!(session["session_token"].as_str().expect("token").starts_with("pst_"));

    let header_none = |alg: &str| {
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", b64(json!({"alg": alg, "kid": kid})), b64(valid.clone()))
    };
    let cases = [
        (sign_hs256(&kid, "not-the-secret", &valid), "bad_signature"),
        (sign_hs256("kid_unknown", &secret, &valid), "unknown_kid"),
        (sign_hs256(&kid, &secret, &json!({"scope": "user", "external_id": "u-1", "exp": now() - 1})), "token_expired"),
        (sign_hs256(&kid, &secret, &json!({"external_id": "u-1"})), "missing_claim"),
        (sign_hs256(&kid, &secret, &json!({"scope": "user"})), "missing_claim"),
        (sign_hs256(&kid, &secret, &json!({"scope": "admin", "external_id": "u-1"})), "wrong_scope"),
        (header_none("none"), "unsupported_algorithm"),
        (header_none("RS256"), "unsupported_algorithm"),
        ("not.a.jwt".to_string(), "invalid_token"),
    ];
    for (token, code) in cases {
        let (status, problem) = sdk_session(&srv, &i, Some(&token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}: {problem}");
        assert_eq!(problem["code"], code, "{problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let (_, problem) = sdk_session(&srv, &i, Some(&sign_hs256(&kid, &secret, &json!({"scope": "user"}))), None).await;
    assert_eq!(problem["field"], "jwt.external_id");

    // Keys: listed without secrets, at most 10, and a deleted key's tokens stop working.
    let (_, list) = scene.admin(Method::GET, &format!("/v1/integrations/{i}/keys"), None).await;
    assert_eq!(list["data"].as_array().expect("keys").len(), 1);
    assert!(!list.to_string().contains(&secret));
    for _ in 0..9 {
        let (status, _) = scene.admin(Method::POST, &format!("/v1/integrations/{i}/keys"), None).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = scene.admin(Method::POST, &format!("/v1/integrations/{i}/keys"), None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::LOCKED, Some("signing_key_limit")));
    let (status, _) = scene.admin(Method::DELETE, &format!("/v1/integrations/{i}/keys/{kid}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, problem) = sdk_session(&srv, &i, Some(&sign_hs256(&kid, &secret, &valid)), None).await;
    assert_eq!(problem["code"], "unknown_kid");
    }
}

on_both_backends! {
    async fn one_external_id_on_two_devices_is_one_customer_with_one_history() {
    let srv = TestServer::start().await;
    let (scene, kid, secret) = web(&srv).await;
    let jwt = sign_hs256(&kid, &secret, &json!({"scope": "user", "external_id": "same-person"}));
    let (_, phone) = sdk_session(&srv, &scene.integration, Some(&jwt), None).await;
    let (_, laptop) = sdk_session(&srv, &scene.integration, Some(&jwt), None).await;
    assert_eq!(phone["customer"]["id"], laptop["customer"]["id"]);
    let phone = phone["session_token"].as_str().expect("token").to_string();
    let laptop = laptop["session_token"].as_str().expect("token").to_string();

    let (status, started) = sdk(
        &srv,
        &phone,
        Method::POST,
        "/v1/sdk/conversations",
        Some(json!({"message": {"content": {"type": "text", "text": "from my phone"}}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let c = started["conversation"]["id"].as_str().expect("id").to_string();
    let (status, _) = sdk(
        &srv,
        &laptop,
        Method::POST,
        &format!("/v1/sdk/conversations/{c}/messages"),
        Some(json!({"content": {"type": "text", "text": "and my laptop"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for token in [&phone, &laptop] {
        let (_, list) = sdk(&srv, token, Method::GET, "/v1/sdk/conversations", None).await;
        assert_eq!(list["data"].as_array().expect("data").len(), 1);
        let (_, history) = sdk(&srv, token, Method::GET, &format!("/v1/sdk/conversations/{c}/messages"), None).await;
        let texts: Vec<_> =
            history["data"].as_array().expect("data").iter().map(|m| m["content"]["text"].clone()).collect();
        assert_eq!(texts, vec![json!("from my phone"), json!("and my laptop")]);
    }
    }
}

on_both_backends! {
    async fn an_anonymous_device_that_logs_in_keeps_its_conversation() {
    let srv = TestServer::start().await;
    let (scene, kid, secret) = web(&srv).await;
    let i = scene.integration.clone();
    for already_known in [false, true] {
        let external = format!("login-{already_known}");
        let jwt = sign_hs256(&kid, &secret, &json!({"scope": "user", "external_id": external, "name": "Kamal"}));
        if already_known {
            // The person logged in elsewhere before, with a conversation of their own.
            let (_, other) = sdk_session(&srv, &i, Some(&jwt), None).await;
            let other = other["session_token"].as_str().expect("token").to_string();
            sdk(
                &srv,
                &other,
                Method::POST,
                "/v1/sdk/conversations",
                Some(json!({"message": {"content": {"type": "text", "text": "earlier"}}})),
            )
            .await;
        }
        let (_, anon) = sdk_session(&srv, &i, None, None).await;
        assert_eq!(anon["verified"], false);
        let anon = anon["session_token"].as_str().expect("token").to_string();
        let (_, started) = sdk(
            &srv,
            &anon,
            Method::POST,
            "/v1/sdk/conversations",
            Some(json!({"message": {"content": {"type": "text", "text": "before login"}}})),
        )
        .await;
        let c = started["conversation"]["id"].as_str().expect("id").to_string();

        let (status, verified) = sdk_session(&srv, &i, Some(&jwt), Some(&anon)).await;
        assert_eq!(status, StatusCode::CREATED, "{verified}");
        let token = verified["session_token"].as_str().expect("token").to_string();
        let (_, list) = sdk(&srv, &token, Method::GET, "/v1/sdk/conversations", None).await;
        let ids: Vec<_> =
            list["data"].as_array().expect("data").iter().map(|c| c["id"].as_str().expect("id").to_string()).collect();
        assert!(ids.contains(&c), "the anonymous conversation follows the login ({already_known}): {ids:?}");
        assert_eq!(ids.len(), if already_known { 2 } else { 1 });
        let (status, _) = sdk(&srv, &token, Method::GET, &format!("/v1/sdk/conversations/{c}/messages"), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    }
}

on_both_backends! {
    async fn a_customer_touches_only_their_own_conversations() {
    let srv = TestServer::start().await;
    let (scene, _, _) = web(&srv).await;
    let (_, a) = sdk_session(&srv, &scene.integration, None, None).await;
    let (_, b) = sdk_session(&srv, &scene.integration, None, None).await;
    let a = a["session_token"].as_str().expect("token").to_string();
    let b = b["session_token"].as_str().expect("token").to_string();
    let (_, started) = sdk(
        &srv,
        &a,
        Method::POST,
        "/v1/sdk/conversations",
        Some(json!({"message": {"content": {"type": "text", "text": "mine"}}})),
    )
    .await;
    let c = started["conversation"]["id"].as_str().expect("id").to_string();
    let attempts = [
        (Method::GET, format!("/v1/sdk/conversations/{c}"), None),
        (Method::GET, format!("/v1/sdk/conversations/{c}/messages"), None),
        (
            Method::POST,
            format!("/v1/sdk/conversations/{c}/messages"),
            Some(json!({"content": {"type": "text", "text": "intrude"}})),
        ),
        (Method::POST, format!("/v1/sdk/conversations/{c}/read"), Some(json!({}))),
        (Method::POST, format!("/v1/sdk/conversations/{c}/typing"), Some(json!({"typing": true}))),
    ];
    for (method, path, body) in attempts {
        let (status, problem) = sdk(&srv, &b, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
    }
    let (_, list) = sdk(&srv, &b, Method::GET, "/v1/sdk/conversations", None).await;
    assert_eq!(list["data"], json!([]));
    // Session tokens are not API keys, and API keys are not session tokens.
    let (status, _) = sdk(&srv, &a, Method::GET, "/v1/conversations", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = sdk(&srv, &scene.account.key, Method::GET, "/v1/sdk/conversations", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

on_both_backends! {
    async fn resends_are_idempotent_even_when_concurrent() {
    let srv = TestServer::start().await;
    let (scene, _, _) = web(&srv).await;
    let (_, s) = sdk_session(&srv, &scene.integration, None, None).await;
    let token = s["session_token"].as_str().expect("token").to_string();
    let (_, started) = sdk(&srv, &token, Method::POST, "/v1/sdk/conversations", Some(json!({}))).await;
    let c = started["conversation"]["id"].as_str().expect("id").to_string();
    let body = json!({"client_message_id": "device-42", "content": {"type": "text", "text": "only once"}});
    let path = format!("/v1/sdk/conversations/{c}/messages");
    let results =
        futures_util::future::join_all((0..10).map(|_| sdk(&srv, &token, Method::POST, &path, Some(body.clone()))))
            .await;
    assert_eq!(results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1);
    assert!(results.iter().all(|(s, m)| s.is_success() && m["id"] == results[0].1["id"]));
    let (_, again) = sdk(&srv, &token, Method::POST, &path, Some(body)).await;
    assert_eq!(again["id"], results[0].1["id"]);
    let (_, history) = sdk(&srv, &token, Method::GET, &path, None).await;
    assert_eq!(history["data"].as_array().expect("data").len(), 1);
    }
}

on_both_backends! {
    async fn ended_conversations_reopen_in_the_window_and_suspension_and_blocking_refuse_cleanly() {
    let srv = TestServer::start().await;
    let scene =
        Scene::with_integration(&srv, json!({"name": "Widget", "type": "web", "reopen_window_seconds": 1})).await;
    let (_, s) = sdk_session(&srv, &scene.integration, None, None).await;
    let token = s["session_token"].as_str().expect("token").to_string();
    let customer = s["customer"]["id"].as_str().expect("customer").to_string();
    let (_, started) = sdk(
        &srv,
        &token,
        Method::POST,
        "/v1/sdk/conversations",
        Some(json!({"message": {"content": {"type": "text", "text": "hello"}}})),
    )
    .await;
    let c = started["conversation"]["id"].as_str().expect("id").to_string();
    let say = |text: &str| json!({"content": {"type": "text", "text": text}});
    let path = format!("/v1/sdk/conversations/{c}/messages");

    scene.set_status(&c, "ended").await;
    let (_, m) = sdk(&srv, &token, Method::POST, &path, Some(say("reopen please"))).await;
    assert_eq!(m["conversation_id"], c.as_str());
    scene.set_status(&c, "ended").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, m) = sdk(&srv, &token, Method::POST, &path, Some(say("new matter"))).await;
    let fresh = m["conversation_id"].as_str().expect("id").to_string();
    assert_ne!(fresh, c);
    let (_, list) = sdk(&srv, &token, Method::GET, "/v1/sdk/conversations", None).await;
    assert_eq!(list["data"].as_array().expect("data").len(), 2);

    // Suspended: refused with a clear code, nothing lost, restored on unsuspend.
    scene.admin(Method::POST, &format!("/v1/customers/{customer}/suspend"), None).await;
    let fresh_path = format!("/v1/sdk/conversations/{fresh}/messages");
    let (status, problem) = sdk(&srv, &token, Method::POST, &fresh_path, Some(say("hello?"))).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("customer_suspended")));
    let (status, problem) = sdk(&srv, &token, Method::POST, "/v1/sdk/conversations", Some(json!({}))).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("customer_suspended")));
    let (status, history) = sdk(&srv, &token, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history["data"].as_array().expect("data").len(), 2, "a suspended customer's history stays");
    scene.admin(Method::POST, &format!("/v1/customers/{customer}/unsuspend"), None).await;
    let (status, _) = sdk(&srv, &token, Method::POST, &fresh_path, Some(say("back"))).await;
    assert_eq!(status, StatusCode::CREATED);

    // Blocked: refused with its code; the history stays.
    scene.set_status(&fresh, "blocked").await;
    let (status, problem) = sdk(&srv, &token, Method::POST, &fresh_path, Some(say("let me in"))).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("conversation_blocked")));
    let (_, history) = sdk(&srv, &token, Method::GET, &fresh_path, None).await;
    assert_eq!(history["data"].as_array().expect("data").len(), 2);
    }
}
