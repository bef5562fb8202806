//! WebSockets: one driver for every socket (heartbeats, a bounded outbox, closing slow or dead
//! peers) and a [`SocketSession`] per kind of client: agents (`/v1/ws`) and
//! customers (`/v1/sdk/ws`). The frame protocol is in `docs/websocket.md`.

pub mod agent;
pub mod customer;
mod outbox;

pub use outbox::Outbox;

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use parley_core::Uuid;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::context::ApiContext;
use crate::hub::Live;

/// Close codes: 1001 going away (shutdown), 1008 policy (too slow), 1011 server error, 4001
/// heartbeat lost.
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_TOO_SLOW: u16 = 1008;
pub const CLOSE_ERROR: u16 = 1011;

/// How long a closing socket may take to flush what is queued and its close frame, so a slow
/// peer that resumes reading still learns why it was dropped.
const CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// Why the server ends a connection.
#[derive(Debug)]
pub struct Close {
    pub code: u16,
    pub reason: String,
    /// For a slow peer: where it should resume if it received no event on this connection.
    pub resume_from: Option<i64>,
}

impl Close {
    /// The peer cannot keep up: it must reconnect and resume after the last event it received
    /// (the writer names it in the close reason), or after `fallback` when it received none.
    pub fn too_slow(fallback: i64) -> Self {
        Close { code: CLOSE_TOO_SLOW, reason: String::new(), resume_from: Some(fallback) }
    }

    pub fn error(reason: &str) -> Self {
        Close { code: CLOSE_ERROR, reason: reason.to_string(), resume_from: None }
    }

    pub fn going_away() -> Self {
        Close { code: CLOSE_GOING_AWAY, reason: "server stopping".into(), resume_from: None }
    }
}

/// Where a socket's live traffic comes from.
pub enum Feed {
    /// Every event of the account (agents; customers when the hub is not ordered).
    Account(broadcast::Receiver<Live>),
    /// A customer's own conversations, and the account's signals.
    Customer(crate::customer_feeds::Subscription),
}

impl Feed {
    async fn recv(&mut self) -> Result<Live, RecvError> {
        match self {
            Feed::Account(live) => live.recv().await,
            Feed::Customer(s) => tokio::select! {
                biased;
                own = s.own.recv() => own,
                signal = s.signals.recv() => signal,
            },
        }
    }
}

/// What one kind of socket does with what it hears. The driver owns the connection.
pub trait SocketSession: Send {
    fn context(&self) -> &ApiContext;
    fn account(&self) -> Uuid;
    /// Subscribes to what the socket follows live (before anything is read from storage).
    fn feed(&self, hub: &crate::hub::Hub) -> Feed {
        Feed::Account(hub.subscribe(self.account()))
    }
    /// The first frames, and any catch-up.
    fn open(&mut self, out: &Outbox) -> impl std::future::Future<Output = Result<(), Close>> + Send;
    /// A JSON frame from the peer.
    fn client(&mut self, frame: Value, out: &Outbox) -> impl std::future::Future<Output = Result<(), Close>> + Send;
    /// Something live happened in the account.
    fn live(&mut self, live: Live, out: &Outbox) -> impl std::future::Future<Output = Result<(), Close>> + Send;
    /// Where the peer should resume if it is dropped for being slow.
    fn cursor(&self) -> i64;
    /// The connection is gone.
    fn closed(&self) -> impl std::future::Future<Output = ()> + Send;
}

/// Socket settings.
#[derive(Debug, Clone, Copy)]
pub struct SocketConfig {
    pub ping_every: Duration,
    /// Frames queued for one socket before it counts as too slow.
    pub outbox: usize,
}

fn error_frame(code: &str, detail: &str) -> String {
    serde_json::json!({"type": "error", "code": code, "detail": detail}).to_string()
}

/// The close frame, naming where a slow peer resumes: after the last event written to it, or
/// its fallback when it received none.
fn goodbye(close: Close, last_written: Option<i64>) -> Message {
    let reason = match last_written.or(close.resume_from) {
        Some(seq) if close.code == CLOSE_TOO_SLOW => {
            format!("too slow: resume with after={}", crate::cursor::encode_seq(seq))
        }
        _ => close.reason,
    };
    Message::Close(Some(CloseFrame { code: close.code, reason: reason.into() }))
}

/// Drives one socket until the peer leaves, goes silent, falls behind, or the server stops:
/// reading the peer, following the live feed and writing the outbox, in this one task.
///
/// Not an `async fn`: one would keep its arguments twice in every socket's task (as arguments
/// and as locals). The block below uses what it captures in place.
///
/// The session comes boxed: it then takes a pointer's room, not its own, in the upgrade's
/// closure and in this future, both of which live as long as the socket.
pub fn drive<S: SocketSession>(
    mut socket: WebSocket,
    config: SocketConfig,
    mut session: Box<S>,
) -> impl std::future::Future<Output = ()> + Send {
    let ctx = session.context();
    // Subscribe before anything is read from storage, so nothing committed in between is missed.
    let mut live = session.feed(&ctx.hub);
    let mut shutdown = ctx.shutdown.clone();
    async move {
        let out = Outbox::new(config.outbox.max(16));
        let mut ping = tokio::time::interval(config.ping_every);
        ping.tick().await;
        let mut last_heard = Instant::now();

        let mut outcome = if *shutdown.borrow() {
            Err(Close::going_away())
        } else {
            out.serve(&mut socket, session.open(&out)).await
        };
        while outcome.is_ok() {
            outcome = tokio::select! {
                incoming = std::future::poll_fn(|cx| out.poll_incoming(&mut socket, cx)) => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        match serde_json::from_str::<Value>(text.as_str()) {
                            Ok(frame @ Value::Object(_)) => out.serve(&mut socket, session.client(frame, &out)).await,
                            _ => {
                                out.offer(error_frame("malformed_frame", "frames are JSON objects with a `type`"));
                                Ok(())
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        out.offer(error_frame("malformed_frame", "frames are JSON text"));
                        Ok(())
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        last_heard = Instant::now();
                        Ok(())
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                },
                item = live.recv() => match item {
                    Ok(item) => out.serve(&mut socket, session.live(item, &out)).await,
                    Err(RecvError::Lagged(_)) => Err(Close::too_slow(session.cursor())),
                    Err(RecvError::Closed) => Err(Close::going_away()),
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > config.ping_every * 2 {
                        // No pong, no frame: the peer is gone. Drop it without ceremony.
                        break;
                    }
                    out.ping();
                    Ok(())
                }
                _ = shutdown.changed() => Err(Close::going_away()),
            };
        }
        if let Err(close) = outcome {
            tracing::debug!(code = close.code, reason = %close.reason, "closing a socket");
            // What is still queued is dropped: the close frame names the last event written, so
            // the peer resumes right after it.
            let last_written = out.last_written();
            out.discard();
            let _ = tokio::time::timeout(CLOSE_FLUSH, socket.send(goodbye(close, last_written))).await;
        }
        drop(live);
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close()).await;
        session.closed().await;
    }
}

/// Reads a tail up from storage, queueing the events `allow` lets through: waiting for room
/// for a backlog (`live: false`), or refusing to wait when live (a full outbox means too slow,
/// and the peer resumes after `fallback` if it received nothing on this connection).
pub async fn catch_up(
    tail: &mut crate::tail::Tail,
    ctx: &ApiContext,
    out: &Outbox,
    allow: impl Fn(&parley_store::LogEntry) -> bool,
    live: bool,
    fallback: i64,
) -> Result<(), Close> {
    loop {
        let (page, more) = tail.catch_up(&ctx.store).await.map_err(|_| Close::error("store unavailable"))?;
        for entry in page.iter().filter(|e| allow(e)) {
            if live {
                if !out.offer_event(entry.seq, &entry.json) {
                    return Err(Close::too_slow(fallback));
                }
            } else {
                out.push_event(entry.seq, &entry.json).await?;
            }
        }
        if !more {
            return Ok(());
        }
    }
}

/// Splits a JSON text frame's `type`.
pub fn frame_type(frame: &Value) -> &str {
    frame.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Frames both sockets treat alike: answers `ping`, refuses unknown types, and parses
/// `typing`, handing back `(conversation, typing)` for the socket to authorise.
pub fn common_frame(frame: &Value, out: &Outbox) -> Option<(Uuid, bool)> {
    match frame_type(frame) {
        "typing" => {
            let conversation =
                frame.get("conversation_id").and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok());
            match (conversation, frame.get("typing").and_then(Value::as_bool)) {
                (Some(conversation), Some(typing)) => Some((conversation, typing)),
                _ => {
                    bad_frame(out, "typing needs `conversation_id` and `typing` (true or false)");
                    None
                }
            }
        }
        "ping" => {
            out.offer(r#"{"type":"pong"}"#.to_string());
            None
        }
        other => {
            bad_frame(out, &format!("unknown frame type `{other}`"));
            None
        }
    }
}

pub fn bad_frame(out: &Outbox, detail: &str) {
    out.offer(error_frame("invalid_frame", detail));
}

pub fn unread_frame(conversation: Uuid, count: i64) -> String {
    serde_json::json!({"type": "unread", "conversation_id": conversation, "count": count}).to_string()
}

/// Frame limits and buffers for every socket. Client frames are small (typing, subscribe), and
/// a connection's buffers are most of what an idle one costs: 512 bytes to read instead of the
/// library's 128 KiB (a larger frame is read in several calls, into room reserved for it), and
/// frames written as they come instead of gathered in a second buffer.
pub fn configured(upgrade: axum::extract::ws::WebSocketUpgrade) -> axum::extract::ws::WebSocketUpgrade {
    upgrade.max_message_size(64 * 1024).read_buffer_size(512).write_buffer_size(0)
}

/// The answer to a plain HTTP request on a WebSocket path.
pub fn upgrade_required() -> crate::error::ApiError {
    crate::error::ApiError::new(
        axum::http::StatusCode::UPGRADE_REQUIRED,
        "upgrade_required",
        "this path speaks WebSocket: send an Upgrade request",
    )
}
