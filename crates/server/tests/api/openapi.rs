//! The OpenAPI document is served, is 3.1, and documents every path of the API.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::TestServer;

on_both_backends! {
    async fn openapi_documents_every_route() {
    let srv = TestServer::start().await;
    let resp = srv.http.get(srv.url("/openapi.json")).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        ("post", "/v1/accounts"),
        ("post", "/v1/api-keys"),
        ("get", "/v1/api-keys"),
        ("delete", "/v1/api-keys/{id}"),
        ("post", "/v1/agents"),
        ("get", "/v1/agents"),
        ("get", "/v1/agents/{id}"),
        ("patch", "/v1/agents/{id}"),
        ("put", "/v1/agents/{id}/status"),
        ("post", "/v1/groups"),
        ("get", "/v1/groups"),
        ("put", "/v1/groups/{id}/members"),
        ("post", "/v1/integrations"),
        ("get", "/v1/integrations"),
        ("get", "/v1/integrations/{id}"),
        ("patch", "/v1/integrations/{id}"),
        ("delete", "/v1/integrations/{id}"),
        ("get", "/v1/customers"),
        ("get", "/v1/customers/{id}"),
        ("patch", "/v1/customers/{id}"),
        ("post", "/v1/customers/{id}/suspend"),
        ("post", "/v1/conversations"),
        ("get", "/v1/conversations"),
        ("get", "/v1/conversations/{id}"),
        ("post", "/v1/conversations/{id}/messages"),
        ("get", "/v1/conversations/{id}/messages"),
        ("post", "/v1/conversations/{id}/status"),
        ("post", "/v1/conversations/{id}/assignment"),
        ("post", "/v1/conversations/{id}/tags"),
        ("delete", "/v1/conversations/{id}/tags"),
        ("post", "/v1/conversations/{id}/read"),
        ("get", "/v1/log"),
        ("get", "/v1/log/stream"),
        ("get", "/v1/log/export"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    for (method, path) in expected {
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} is documented"))[method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has responses");
    }
    // Every $ref resolves.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().expect("name");
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
    // The body of a message send is the real Content type, with every content type.
    let content = doc["components"]["schemas"]["Content"].to_string();
    for kind in ["text", "image", "file", "carousel", "location", "form", "form_response"] {
        assert!(content.contains(&format!("\"{kind}\"")), "Content documents {kind}");
    }
    }
}
