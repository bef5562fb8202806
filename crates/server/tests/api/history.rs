//! The complete history: 1,000 messages read in both directions, with no cap.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Scene, TestServer};

async fn page(scene: &Scene<'_>, c: &str, query: &str) -> (Vec<i64>, Option<String>) {
    let (status, body) = scene.admin(Method::GET, &format!("/v1/conversations/{c}/messages?{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seqs = body["data"].as_array().expect("data").iter().map(|m| m["seq"].as_i64().expect("seq")).collect();
    (seqs, body["next_cursor"].as_str().map(str::to_string))
}

on_both_backends! {
    async fn a_thousand_messages_read_completely_forward_and_backward() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;
    // Concurrent senders: the writer batches them; every message still gets its own seq.
    for chunk in 0..20 {
        let sends = (0..50).map(|i| scene.customer_says(&c, format!("m{}", chunk * 50 + i)));
        for (status, body) in futures_util::future::join_all(sends).await {
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    assert_eq!(scene.get_conversation(&c).await["messages_count"], 1000);

    let mut forward = Vec::new();
    let (mut seqs, mut next) = page(&scene, &c, "limit=128").await;
    forward.append(&mut seqs);
    while let Some(cursor) = next {
        let (mut seqs, n) = page(&scene, &c, &format!("limit=128&after={cursor}")).await;
        forward.append(&mut seqs);
        next = n;
    }
    assert_eq!(forward, (1..=1000).collect::<Vec<_>>());

    let mut backward = Vec::new();
    let (mut seqs, mut next) = page(&scene, &c, "limit=77&before=1001").await;
    assert_eq!(seqs.last(), Some(&1000));
    seqs.reverse();
    backward.append(&mut seqs);
    while let Some(cursor) = next {
        let (mut seqs, n) = page(&scene, &c, &format!("limit=77&before={cursor}")).await;
        seqs.reverse();
        backward.append(&mut seqs);
        next = n;
    }
    assert_eq!(backward, (1..=1000).rev().collect::<Vec<_>>());

    // The text survives the round trip, in order.
    let (status, body) = scene.admin(Method::GET, &format!("/v1/conversations/{c}/messages?limit=1000"), None).await;
    assert_eq!(status, StatusCode::OK);
    let data: &Vec<Value> = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 1000);
    assert_eq!(body["next_cursor"], Value::Null);
    }
}
