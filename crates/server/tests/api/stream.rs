//! The live stream (SSE): events arrive live, a reconnect with Last-Event-ID resumes with
//! exactly what was missed, filters apply, and idle streams get heartbeats.

use std::time::Duration;

use reqwest::Method;

use crate::support::{seqs, Scene, SseReader, TestServer};

on_both_backends! {
    async fn reconnect_with_last_event_id_receives_exactly_the_missed_events() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;

    let mut stream = SseReader::open(&srv, &scene.account.key, "/v1/log/stream", None).await;
    let first = stream.events(1).await;
    assert_eq!(first[0]["type"], "conversation_created", "the backlog comes first");
    scene.customer_says(&c, "live one").await;
    let live = stream.events(3).await; // status change, opened, message
    assert_eq!(live[2]["type"], "message_received");
    let last_id = live[2]["_sse_id"].as_str().expect("id").to_string();
    drop(stream);

    // Missed while disconnected.
    for i in 0..5 {
        scene.customer_says(&c, &format!("missed {i}")).await;
    }
    let mut resumed = SseReader::open(&srv, &scene.account.key, "/v1/log/stream", Some(&last_id)).await;
    let (_, page) = scene.admin(reqwest::Method::GET, &format!("/v1/log?after={last_id}&limit=1000"), None).await;
    let expected = page["events"].as_array().expect("events").clone();
    let missed = resumed.events(expected.len()).await;
    assert_eq!(seqs(&missed), seqs(&expected), "exactly the missed events, in order");
    resumed.quiet(Duration::from_millis(300)).await;
    // And then live again, no duplicate.
    scene.customer_says(&c, "after resume").await;
    let next = resumed.events(1).await;
    assert_eq!(next[0]["seq"].as_i64(), Some(seqs(&missed).last().expect("seq") + 1));

    // `after` works like Last-Event-ID.
    let mut by_param =
        SseReader::open(&srv, &scene.account.key, &format!("/v1/log/stream?after={last_id}"), None).await;
    let again = by_param.events(missed.len() + 1).await;
    assert_eq!(seqs(&again[..missed.len()]), seqs(&missed));
    }
}

on_both_backends! {
    async fn streams_filter_and_send_heartbeats_when_idle() {
    let srv = TestServer::start().await;
    let scene = Scene::new(&srv).await;
    let a = scene.conversation().await;
    let b = scene.conversation().await;
    let token = scene.account.key.clone();
    let mut only_b =
        SseReader::open(&srv, &token, &format!("/v1/log/stream?conversation_id={b}&type=message_received"), None).await;
    scene.customer_says(&a, "to a").await;
    scene.customer_says(&b, "to b").await;
    let got = only_b.events(1).await;
    assert_eq!(got[0]["conversation_id"], b.as_str());
    assert_eq!(got[0]["data"]["message"]["content"]["text"], "to b");
    // The test server's heartbeat is 1 s.
    let frame = only_b.next(Duration::from_secs(3)).await.expect("a heartbeat");
    assert!(frame.comment, "an idle stream sends a comment: {frame:?}");

    // Credentials by query parameter, for browsers.
    let resp = srv.http.get(srv.url(&format!("/v1/log/stream?access_token={token}"))).send().await.expect("stream");
    assert_eq!(resp.status(), 200);
    let (status, _) = scene.admin(Method::GET, "/v1/log/stream?after=bogus", None).await;
    assert_eq!(status, 400);
    }
}
