//! Stop the server, start it on the same data directory: everything is there.

use reqwest::{Method, StatusCode};

use crate::support::{Scene, TestServer};

on_both_backends! {
    async fn everything_survives_a_restart() {
    let mut srv = TestServer::start().await;
    let (key, agent_key, c, log_before) = {
        let scene = Scene::new(&srv).await;
        let c = scene.conversation().await;
        scene.customer_says(&c, "before the restart").await;
        scene.assign_to_agent(&c).await;
        scene.agent_says(&c, "answer").await;
        (scene.account.key.clone(), scene.agent_key.clone(), c, scene.log_all("", 1000).await)
    };
    srv.restart().await;

    let (status, conversation) = srv.call(&key, Method::GET, &format!("/v1/conversations/{c}"), None).await;
    assert_eq!(status, StatusCode::OK, "{conversation}");
    assert_eq!(conversation["status"], "on_hold");
    assert_eq!(conversation["messages_count"], 2);
    let (_, messages) = srv.call(&key, Method::GET, &format!("/v1/conversations/{c}/messages"), None).await;
    assert_eq!(messages["data"][0]["content"]["text"], "before the restart");
    assert_eq!(messages["data"][1]["content"]["text"], "answer");
    let (status, page) = srv.call(&key, Method::GET, "/v1/log?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["events"].as_array().expect("events"), &log_before);

    // Keys, the admin token and the sequence carry on.
    let (status, _) =
        srv.call(&srv.admin_token, Method::POST, "/v1/accounts", Some(serde_json::json!({"name": "after"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, m) = srv
        .call(
            &agent_key,
            Method::POST,
            &format!("/v1/conversations/{c}/messages"),
            Some(serde_json::json!({"content": {"type": "text", "text": "still here"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["seq"], 3);
    let (_, page) = srv.call(&key, Method::GET, "/v1/log?limit=1000", None).await;
    let last = page["events"].as_array().expect("events").last().expect("event")["seq"].as_i64();
    assert_eq!(last, Some(log_before.len() as i64 + 1));
    }
}
