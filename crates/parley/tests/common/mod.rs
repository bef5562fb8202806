#![allow(dead_code)] // each test binary uses a part of these helpers
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

/// A `parley serve` child process, killed and reaped when dropped.
pub struct Node {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `parley serve --listen 127.0.0.1:0` with `args` and waits for the URL it prints.
pub fn serve(args: &[&std::ffi::OsStr]) -> Node {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("PARLEY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("parley serve starts");
    let stdout = child.stdout.take();
    // Owned by a Node from here on, so a failure below still kills and reaps the process.
    let mut node = Node { child, url: String::new() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for line in BufReader::new(stdout.expect("stdout")).lines() {
        assert!(std::time::Instant::now() < deadline, "the node printed no URL in time");
        if let Some(url) = line.expect("readable").strip_prefix("Parley listening on ") {
            node.url = url.to_string();
            return node;
        }
    }
    panic!("the node exited before listening");
}
