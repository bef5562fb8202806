//! The log API: every filter, exact time boundaries, cursor paging under concurrent writes, and
//! the NDJSON export.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{seqs, types, Scene, TestServer};

on_both_backends! {
    async fn filters_by_conversation_type_and_exact_time_range() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let a = scene.conversation().await;
    let b = scene.conversation().await;
    scene.customer_says(&a, "in a").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    scene.customer_says(&b, "in b").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    scene.customer_says(&a, "in a again").await;

    let all = scene.log_all("", 1000).await;
    assert_eq!(seqs(&all), (1..=all.len() as i64).collect::<Vec<_>>(), "seq is gapless from 1");

    let only_a = scene.log_all(&format!("conversation_id={a}"), 1000).await;
    assert!(only_a.iter().all(|e| e["conversation_id"] == a.as_str()));
    assert_eq!(only_a.len(), all.iter().filter(|e| e["conversation_id"] == a.as_str()).count());
    let both = scene.log_all(&format!("conversation_id={a}&conversation_id={b}"), 1000).await;
    assert_eq!(both.len(), all.iter().filter(|e| e["conversation_id"].is_string()).count());

    let received = scene.log_all("type=message_received", 1000).await;
    assert_eq!(types(&received), vec!["message_received"; 3]);
    let two_types = scene.log_all("type=message_received&type=conversation_created", 1000).await;
    assert_eq!(two_types.len(), 5);

    // Boundaries: since is inclusive, until exclusive, to the millisecond.
    let middle = &received[1];
    let t = middle["occurred_at"].as_str().expect("occurred_at");
    let at_or_after = scene.log_all(&format!("since={t}"), 1000).await;
    assert_eq!(at_or_after.first().map(|e| &e["occurred_at"]), Some(&middle["occurred_at"]));
    assert!(at_or_after.iter().all(|e| e["occurred_at"].as_str() >= Some(t)));
    let before = scene.log_all(&format!("until={t}"), 1000).await;
    assert!(before.iter().all(|e| e["occurred_at"].as_str() < Some(t)));
    assert_eq!(before.len() + at_or_after.len(), all.len(), "the two halves cover the log exactly");
    let exactly = scene.log_all(&format!("since={t}&until={t}"), 1000).await;
    assert!(exactly.is_empty());
    // Offsets are understood: the same instant written in another zone.
    let (status, _) = scene.admin(Method::GET, "/v1/log?since=2025-01-01T02:00:00.000%2B02:00", None).await;
    assert_eq!(status, StatusCode::OK);
    }
}

on_both_backends! {
    async fn paging_by_cursor_while_writers_append_misses_and_repeats_nothing() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let conversations: Vec<String> = futures_util::future::join_all((0..4).map(|_| scene.conversation())).await;

    let writing = std::sync::atomic::AtomicBool::new(true);
    let writers = async {
        for round in 0..40 {
            let sends = conversations.iter().map(|c| scene.customer_says(c, format!("round {round}")));
            futures_util::future::join_all(sends).await;
        }
        writing.store(false, std::sync::atomic::Ordering::SeqCst);
    };
    let reader = async {
        let mut got: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut idle_rounds = 0;
        // Until the writers are done and the log has then stayed still a while: a writer that
        // stalls (a loaded CI machine) must not end the reading early.
        while writing.load(std::sync::atomic::Ordering::SeqCst) || idle_rounds < 20 {
            let path = match &cursor {
                Some(c) => format!("/v1/log?limit=7&after={c}"),
                None => "/v1/log?limit=7".to_string(),
            };
            let (status, page) = scene.admin(Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK);
            let batch = page["events"].as_array().expect("events").clone();
            if batch.is_empty() {
                idle_rounds += if writing.load(std::sync::atomic::Ordering::SeqCst) { 0 } else { 1 };
                tokio::time::sleep(Duration::from_millis(10)).await;
            } else {
                idle_rounds = 0;
            }
            cursor = page["next_cursor"].as_str().map(str::to_string);
            got.extend(batch);
        }
        got
    };
    let ((), got) = tokio::join!(writers, reader);
    let final_log = scene.log_all("", 1000).await;
    let got_seqs = seqs(&got);
    assert_eq!(got_seqs, seqs(&final_log), "the concurrent reader saw exactly the final log, in order");
    let unique: HashSet<_> = got.iter().map(|e| e["id"].as_str().expect("id").to_string()).collect();
    assert_eq!(unique.len(), got.len(), "no event twice");
    assert_eq!(final_log.iter().filter(|e| e["type"] == "message_received").count(), 160);
    }
}

on_both_backends! {
    async fn ndjson_export_equals_the_paged_log_over_the_same_range() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;
    for i in 0..1200 {
        if i == 300 || i == 900 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let (status, _) = scene.customer_says(&c, &format!("m{i}")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let all = scene.log_all("", 1000).await;
    let since = all[250]["occurred_at"].as_str().expect("t").to_string();
    let until = all[1000]["occurred_at"].as_str().expect("t").to_string();
    let range = format!("since={since}&until={until}");
    let paged = scene.log_all(&range, 333).await;
    assert!(paged.len() > 700, "the range holds many pages: {}", paged.len());

    let resp = srv
        .http
        .get(srv.url(&format!("/v1/log/export?{range}")))
        .bearer_auth(&scene.account.key)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.expect("body");
    let exported: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    assert_eq!(exported, paged);
    assert!(text.ends_with('\n'));
    }
}

on_both_backends! {
    async fn an_export_longer_than_one_read_is_the_whole_log_in_order() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let conversations: Vec<String> = futures_util::future::join_all((0..8).map(|_| scene.conversation())).await;
    // The export reads 5,000 events at a time, the next read under way while a page is sent:
    // this log takes two reads, the second one short.
    for round in 0..670 {
        let sends = conversations.iter().map(|c| scene.customer_says(c, format!("round {round}")));
        for (status, _) in futures_util::future::join_all(sends).await {
            assert_eq!(status, StatusCode::CREATED);
        }
    }
    let resp =
        srv.http.get(srv.url("/v1/log/export")).bearer_auth(&scene.account.key).send().await.expect("export");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("body");
    let exported: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    assert!(exported.len() > 5_000 && exported.len() < 10_000, "two reads' worth: {}", exported.len());
    assert_eq!(seqs(&exported), (1..=exported.len() as i64).collect::<Vec<_>>(), "every event, once, in order");
    assert_eq!(exported, scene.log_all("", 1000).await);
    }
}
