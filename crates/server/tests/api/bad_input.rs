//! Bad input of every kind is a 4xx problem+json with the right code and field, and nothing
//! already stored changes.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{Scene, TestServer};

struct Case {
    what: &'static str,
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
}

async fn raw(
    srv: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String, Value) {
    let mut req = srv.http.request(method, srv.url(path)).bearer_auth(token).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
    let text = resp.text().await.expect("body");
    (status, ct, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn check(case: &Case, status: StatusCode, content_type: &str, body: &Value) {
    assert_eq!(status, case.status, "{}: {body}", case.what);
    assert_eq!(content_type, "application/problem+json", "{}", case.what);
    assert_eq!(body["code"], case.code, "{}: {body}", case.what);
    assert_eq!(body["status"], case.status.as_u16(), "{}", case.what);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(), "{}", case.what);
    if let Some(field) = case.field {
        assert_eq!(body["field"], field, "{}: {body}", case.what);
    }
}

on_both_backends! {
    async fn malformed_requests_get_precise_problems_and_change_nothing() {
    let srv = TestServer::start_with(|c| c.body_limit = 64 * 1024).await;
    let scene = Scene::new(&srv).await;
    let c = scene.conversation().await;
    scene.customer_says(&c, "the original").await;
    let key = scene.account.key.clone();
    let messages = format!("/v1/conversations/{c}/messages");
    let before_log = scene.log_all("", 1000).await;
    let before_conversation = scene.get_conversation(&c).await;

    let json_cases: Vec<(Case, Vec<u8>)> = vec![
        (Case { what: "malformed JSON", status: StatusCode::BAD_REQUEST, code: "malformed_json", field: Some("body") }, b"{\"content\": {".to_vec()),
        (Case { what: "not JSON at all", status: StatusCode::BAD_REQUEST, code: "malformed_json", field: Some("body") }, b"hello".to_vec()),
        (Case { what: "wrong type", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content.text") },
            json!({"author": {"type": "customer"}, "content": {"type": "text", "text": 42}}).to_string().into_bytes()),
        (Case { what: "wrong top-level type", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("client_message_id") },
            json!({"author": {"type": "customer"}, "client_message_id": 7, "content": {"type": "text", "text": "x"}}).to_string().into_bytes()),
        (Case { what: "empty text", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content.text") },
            json!({"author": {"type": "customer"}, "content": {"type": "text", "text": ""}}).to_string().into_bytes()),
        (Case { what: "blank text", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content.text") },
            json!({"author": {"type": "customer"}, "content": {"type": "text", "text": "  \n "}}).to_string().into_bytes()),
        (Case { what: "over-long text", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content.text") },
            json!({"author": {"type": "customer"}, "content": {"type": "text", "text": "x".repeat(4097)}}).to_string().into_bytes()),
        (Case { what: "unknown content type", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content.type") },
            json!({"author": {"type": "customer"}, "content": {"type": "hologram", "text": "x"}}).to_string().into_bytes()),
        (Case { what: "missing content", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content") },
            json!({"author": {"type": "customer"}}).to_string().into_bytes()),
        (Case { what: "unknown field", status: StatusCode::BAD_REQUEST, code: "unknown_field", field: Some("colour") },
            json!({"author": {"type": "customer"}, "colour": "red", "content": {"type": "text", "text": "x"}}).to_string().into_bytes()),
        (Case { what: "unknown nested field", status: StatusCode::BAD_REQUEST, code: "unknown_field", field: Some("content.font") },
            json!({"author": {"type": "customer"}, "content": {"type": "text", "text": "x", "font": "big"}}).to_string().into_bytes()),
        (Case { what: "wrong type deep inside", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content.items[0].title") },
            json!({"author": {"type": "customer"}, "content": {"type": "carousel", "items": [{"title": 1}]}}).to_string().into_bytes()),
        (Case { what: "content without a type", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content.type") },
            json!({"author": {"type": "customer"}, "content": {"text": "x"}}).to_string().into_bytes()),
        (Case { what: "bad coordinates", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: Some("content.coordinates.lat") },
            json!({"author": {"type": "customer"}, "content": {"type": "location", "coordinates": {"lat": 1000, "long": 0}}}).to_string().into_bytes()),
        (Case { what: "oversize body", status: StatusCode::PAYLOAD_TOO_LARGE, code: "payload_too_large", field: None },
            json!({"author": {"type": "customer"}, "content": {"type": "text", "text": "x".repeat(100_000)}}).to_string().into_bytes()),
        (Case { what: "null body", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: None }, b"null".to_vec()),
        (Case { what: "array body", status: StatusCode::UNPROCESSABLE_ENTITY, code: "validation_failed", field: None }, b"[1,2]".to_vec()),
        (Case { what: "invalid UTF-8", status: StatusCode::BAD_REQUEST, code: "malformed_json", field: None }, vec![b'{', b'"', 0xff, 0xfe, b'"', b'}']),
    ];
    for (case, body) in &json_cases {
        let (status, ct, problem) =
            raw(&srv, &key, Method::POST, &messages, Some("application/json"), body.clone()).await;
        check(case, status, &ct, &problem);
    }
    let (status, ct, problem) = raw(&srv, &key, Method::POST, &messages, Some("text/plain"), b"{}".to_vec()).await;
    check(
        &Case {
            what: "wrong media type",
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            field: None,
        },
        status,
        &ct,
        &problem,
    );

    let query_cases = [
        ("/v1/log?after=not-a-cursor", StatusCode::BAD_REQUEST, "invalid_cursor", "after"),
        ("/v1/log?since=yesterday", StatusCode::BAD_REQUEST, "invalid_parameter", "since"),
        ("/v1/log?until=2025-02-30T00:00:00Z", StatusCode::BAD_REQUEST, "invalid_parameter", "until"),
        ("/v1/log?type=nonsense", StatusCode::BAD_REQUEST, "invalid_parameter", "type"),
        ("/v1/log?limit=0", StatusCode::BAD_REQUEST, "invalid_parameter", "limit"),
        ("/v1/log?limit=1001", StatusCode::BAD_REQUEST, "invalid_parameter", "limit"),
        ("/v1/log?conversation_id=123", StatusCode::BAD_REQUEST, "invalid_parameter", "conversation_id"),
        ("/v1/log?colour=red", StatusCode::BAD_REQUEST, "unknown_parameter", "colour"),
        (
            "/v1/log?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "until",
        ),
        ("/v1/conversations?cursor=%%%", StatusCode::BAD_REQUEST, "invalid_cursor", "cursor"),
        ("/v1/conversations?status=sleeping", StatusCode::BAD_REQUEST, "invalid_parameter", "status"),
        ("/v1/conversations?limit=ten", StatusCode::BAD_REQUEST, "invalid_parameter", "limit"),
    ];
    for (path, want_status, code, field) in query_cases {
        let (status, ct, problem) = raw(&srv, &key, Method::GET, path, None, Vec::new()).await;
        check(&Case { what: "query", status: want_status, code, field: Some(field) }, status, &ct, &problem);
    }
    let (status, body) = scene.admin(Method::GET, &format!("{messages}?after=-1"), None).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("after")));
    let (status, _) = scene.admin(Method::GET, "/v1/conversations/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = scene.admin(Method::GET, "/v1/nothing-here", None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, body) = scene.admin(Method::PUT, "/v1/log", None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "type": "carrier-pigeon"}),
        json!({"name": "x", "type": "web", "reopen_window_seconds": -1}),
    ] {
        let (status, body) = scene.admin(Method::POST, "/v1/integrations", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }

    assert_eq!(scene.log_all("", 1000).await, before_log, "no refused request wrote anything");
    assert_eq!(scene.get_conversation(&c).await, before_conversation);
    }
}
