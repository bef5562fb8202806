//! What the process-level tests share: a webhook receiver on loopback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// Records every POST (webhook-id, status answered) and answers 500 until told to accept.
#[derive(Clone, Default)]
pub struct Receiver {
    pub seen: Arc<Mutex<Vec<(String, u16)>>>,
    pub refusing: Arc<AtomicBool>,
}

async fn receive(State(rx): State<Receiver>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let status = if rx.refusing.load(Ordering::SeqCst) { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    rx.seen.lock().expect("lock").push((id, status.as_u16()));
    status
}

impl Receiver {
    pub async fn start() -> (String, Receiver) {
        let rx = Receiver::default();
        let app = axum::Router::new().fallback(receive).with_state(rx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx)
    }

    /// The webhook-ids answered 200, with how many times each.
    pub fn delivered(&self) -> std::collections::HashMap<String, usize> {
        let mut out = std::collections::HashMap::new();
        for (id, status) in self.seen.lock().expect("lock").iter() {
            if *status == 200 {
                *out.entry(id.clone()).or_insert(0) += 1;
            }
        }
        out
    }
}
