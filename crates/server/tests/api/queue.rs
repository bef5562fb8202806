//! `GET /v1/queue`: positions in queue order, group and account status by the spec's rule, and
//! the wait estimate only once the group has history.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{eventually, Scene, TestServer};

async fn queue(scene: &Scene<'_>) -> Value {
    let (status, q) = scene.as_agent(Method::GET, "/v1/queue", None).await;
    assert_eq!(status, StatusCode::OK, "{q}");
    q
}

on_both_backends! {
    async fn the_queue_shows_positions_status_and_estimates() {
        let srv = TestServer::start().await;
        let scene = Scene::new(&srv).await;
        let (_, group) = scene.admin(Method::POST, "/v1/groups", Some(json!({"name": "Support", "agent_ids": [scene.agent]}))).await;
        let group = group["id"].as_str().expect("group").to_string();
        let (_, integration) = scene
            .admin(Method::POST, "/v1/integrations", Some(json!({"name": "Queue", "type": "api", "default_group_id": group})))
            .await;
        let mut conversations = Vec::new();
        for i in 0..3 {
            let (status, c) = scene
                .admin(Method::POST, "/v1/conversations", Some(json!({"integration_id": integration["id"], "customer": {"external_id": format!("q{i}")}})))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{c}");
            let id = c["id"].as_str().expect("id").to_string();
            scene.customer_says(&id, "hello?").await;
            conversations.push(id);
        }
        let q: Value = queue(&scene).await;
        assert_eq!(q["queue_size"], 3);
        assert_eq!(q["account_status"], "invisible", "the only agent is offline");
        let g = &q["groups"][0];
        assert_eq!(g["group_id"], group.as_str());
        assert_eq!(g["estimated_wait"], Value::Null, "no estimate without history");
        let order: Vec<_> = g["conversations"].as_array().expect("list").iter().map(|c| (c["conversation_id"].as_str().expect("id").to_string(), c["position"].as_i64().expect("pos"))).collect();
        assert_eq!(order, conversations.iter().cloned().zip(1..=3).collect::<Vec<_>>());

        scene.as_agent(Method::PUT, &format!("/v1/agents/{}/status", scene.agent), Some(json!({"status": "away"}))).await;
        assert_eq!(queue(&scene).await["groups"][0]["status"], "away");
        // With room for one, the agent coming online is given the first; it leaves the queue,
        // the others move up, and once answered the group has a first-response time.
        let (status, _) = scene.admin(Method::PATCH, &format!("/v1/agents/{}", scene.agent), Some(json!({"capacity": 1}))).await;
        assert_eq!(status, StatusCode::OK);
        scene.as_agent(Method::PUT, &format!("/v1/agents/{}/status", scene.agent), Some(json!({"status": "online"}))).await;
        eventually("the router to assign the first", || async {
            (scene.get_conversation(&conversations[0]).await["status"] == "in_progress").then_some(())
        })
        .await;
        let (status, _) = scene.agent_says(&conversations[0], "hi, I am here").await;
        assert_eq!(status, StatusCode::CREATED);
        let q = queue(&scene).await;
        assert_eq!((q["queue_size"].as_i64(), q["account_status"].as_str()), (Some(2), Some("online")));
        let g = &q["groups"][0];
        assert_eq!(g["status"], "online");
        let positions: Vec<_> = g["conversations"].as_array().expect("list").iter().map(|c| c["position"].as_i64()).collect();
        assert_eq!(positions, vec![Some(1), Some(2)]);
        assert_eq!(g["conversations"][0]["conversation_id"], conversations[1].as_str());
        assert_eq!(g["estimated_wait"], json!({"min_minutes": 0, "max_minutes": 1}));
    }
}
