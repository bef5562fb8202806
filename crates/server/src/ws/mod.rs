//! WebSockets: one driver for every socket (heartbeats, a bounded outbox, closing slow or dead
//! peers) and a [`SocketSession`] per kind of client: agents (`/v1/ws`) and
//! customers (`/v1/sdk/ws`). The frame protocol is in `docs/websocket.md`.

pub mod agent;
pub mod customer;

use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use parley_core::Uuid;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};

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

/// A frame, and the `seq` of the event it carries, if any.
struct Frame {
    message: Message,
    seq: Option<i64>,
}

/// The frames waiting to be written to one socket. Bounded: live frames never wait for room (a
/// full outbox means the peer is too slow), while catch-up from storage waits its turn.
pub struct Outbox {
    frames: mpsc::Sender<Frame>,
}

impl Outbox {
    /// Queues a live frame; false when the outbox is full.
    pub fn offer(&self, text: String) -> bool {
        self.frames.try_send(Frame { message: Message::text(text), seq: None }).is_ok()
    }

    /// Queues a live event frame; false when the outbox is full.
    pub fn offer_event(&self, seq: i64, json: &str) -> bool {
        self.frames.try_send(Frame { message: Message::text(event_frame(seq, json)), seq: Some(seq) }).is_ok()
    }

    /// Queues a frame, waiting for room (for backlog, not live traffic).
    pub async fn push(&self, text: String) -> Result<(), Close> {
        self.send(Frame { message: Message::text(text), seq: None }).await
    }

    /// Queues an event frame of the backlog, waiting for room.
    pub async fn push_event(&self, seq: i64, json: &str) -> Result<(), Close> {
        self.send(Frame { message: Message::text(event_frame(seq, json)), seq: Some(seq) }).await
    }

    async fn send(&self, frame: Frame) -> Result<(), Close> {
        self.frames.send(frame).await.map_err(|_| Close::error("connection closed"))
    }

    fn raw(&self, message: Message) -> bool {
        self.frames.try_send(Frame { message, seq: None }).is_ok()
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
    fn closed(self) -> impl std::future::Future<Output = ()> + Send;
}

/// Socket settings.
#[derive(Debug, Clone, Copy)]
pub struct SocketConfig {
    pub ping_every: Duration,
    /// Frames queued for one socket before it counts as too slow.
    pub outbox: usize,
}

async fn writer(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut frames: mpsc::Receiver<Frame>,
    mut close: oneshot::Receiver<Close>,
) {
    // The last event handed to the connection: a slow peer resumes after it.
    let mut last_written: Option<i64> = None;
    let goodbye = |c: Close, last_written: Option<i64>| {
        let reason = match last_written.or(c.resume_from) {
            Some(seq) if c.code == CLOSE_TOO_SLOW => {
                format!("too slow: resume with after={}", crate::cursor::encode_seq(seq))
            }
            _ => c.reason,
        };
        Message::Close(Some(CloseFrame { code: c.code, reason: reason.into() }))
    };
    loop {
        tokio::select! {
            biased;
            reason = &mut close => {
                if let Ok(reason) = reason {
                    let _ = tokio::time::timeout(CLOSE_FLUSH, sink.send(goodbye(reason, last_written))).await;
                }
                break;
            }
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                tokio::select! {
                    sent = sink.send(frame.message) => {
                        if sent.is_err() {
                            break;
                        }
                        if frame.seq.is_some() {
                            last_written = frame.seq;
                        }
                    },
                    reason = &mut close => {
                        if let Ok(reason) = reason {
                            let _ = tokio::time::timeout(CLOSE_FLUSH, sink.send(goodbye(reason, last_written))).await;
                        }
                        break;
                    }
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

fn error_frame(code: &str, detail: &str) -> String {
    serde_json::json!({"type": "error", "code": code, "detail": detail}).to_string()
}

/// Drives one socket until the peer leaves, goes silent, falls behind, or the server stops.
pub async fn drive<S: SocketSession>(socket: WebSocket, ctx: ApiContext, config: SocketConfig, mut session: S) {
    let (sink, mut stream) = socket.split();
    let (frames, queue) = mpsc::channel(config.outbox.max(16));
    let (close_tx, close_rx) = oneshot::channel();
    let writer = tokio::spawn(writer(sink, queue, close_rx));
    let out = Outbox { frames };
    // Subscribe before anything is read from storage, so nothing committed in between is missed.
    let mut live = session.feed(&ctx.hub);
    let mut shutdown = ctx.shutdown.clone();
    let mut ping = tokio::time::interval(config.ping_every);
    ping.tick().await;
    let mut last_heard = Instant::now();

    let mut outcome = if *shutdown.borrow() { Err(Close::going_away()) } else { session.open(&out).await };
    while outcome.is_ok() {
        outcome = tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    match serde_json::from_str::<Value>(text.as_str()) {
                        Ok(frame @ Value::Object(_)) => session.client(frame, &out).await,
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
                Ok(item) => session.live(item, &out).await,
                Err(RecvError::Lagged(_)) => Err(Close::too_slow(session.cursor())),
                Err(RecvError::Closed) => Err(Close::going_away()),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > config.ping_every * 2 {
                    // No pong, no frame: the peer is gone. Drop it without ceremony.
                    break;
                }
                out.raw(Message::Ping(Default::default()));
                Ok(())
            }
            _ = shutdown.changed() => Err(Close::going_away()),
        };
    }
    if let Err(close) = outcome {
        tracing::debug!(code = close.code, reason = %close.reason, "closing a socket");
        let _ = close_tx.send(close);
    }
    drop(out);
    let _ = writer.await;
    session.closed().await;
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

/// An event frame, built around the stored JSON without re-encoding it.
fn event_frame(seq: i64, json: &str) -> String {
    format!(r#"{{"type":"event","cursor":"{}","event":{}}}"#, crate::cursor::encode_seq(seq), json)
}

pub fn unread_frame(conversation: Uuid, count: i64) -> String {
    serde_json::json!({"type": "unread", "conversation_id": conversation, "count": count}).to_string()
}

/// Frame limits and buffers for every socket. Client frames are small (typing, subscribe), and
/// a connection's buffers are most of what an idle one costs: 2 KiB to read instead of the
/// library's 128 KiB, and frames written as they come instead of gathered in a second buffer.
pub fn configured(upgrade: axum::extract::ws::WebSocketUpgrade) -> axum::extract::ws::WebSocketUpgrade {
    upgrade.max_message_size(64 * 1024).read_buffer_size(2048).write_buffer_size(0)
}

/// The answer to a plain HTTP request on a WebSocket path.
pub fn upgrade_required() -> crate::error::ApiError {
    crate::error::ApiError::new(
        axum::http::StatusCode::UPGRADE_REQUIRED,
        "upgrade_required",
        "this path speaks WebSocket: send an Upgrade request",
    )
}
