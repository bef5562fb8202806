//! The conversation log: a page (`GET /v1/log`), a live stream (`/v1/log/stream`, SSE), and an
//! NDJSON export (`/v1/log/export`). All three share the filters and return the stored event
//! JSON as it is.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use parley_core::event::{Event, EventType};
use parley_core::Uuid;
use parley_store::{LogEntry, LogQuery, StoreError, StoreExt};
use schemars::JsonSchema;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::task::JoinHandle;

use crate::auth::Caller;
use crate::context::ApiContext;
use crate::cursor;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::hub::Live;
use crate::openapi::{Api, Op};
use crate::tail::{Step, Tail};

/// A page of the log, oldest first.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct LogPage {
    events: Vec<Event>,
    /// The cursor after the last event returned (pass as `after`); the given cursor when the
    /// page is empty, so a poller can keep asking.
    next_cursor: Option<String>,
}

const FILTERS: &[&str] = &["conversation_id", "since", "until", "type", "after"];
const PAGE: usize = 1000;
/// Events an export reads at a time: fewer, larger reads (each its own snapshot and trip to a
/// blocking thread), still a bounded amount in memory (a few MiB).
const EXPORT_PAGE: usize = 5000;

fn with_filters(mut op: Op) -> Op {
    op = op
        .query("conversation_id", "repeatable: only these conversations")
        .query("since", "RFC 3339, inclusive")
        .query("until", "RFC 3339, exclusive")
        .query("type", "repeatable: only these event types")
        .query("after", "cursor: events after it");
    op.tag("log")
}

pub fn routes(api: Api) -> Api {
    api.route(
        with_filters(Op::get("/v1/log", "A page of the conversation log"))
            .query("limit", "1–1000, default 50")
            .answers::<LogPage>(200),
        get(page),
    )
    .route(
        with_filters(Op::get("/v1/log/stream", "Follow the log live (Server-Sent Events; resumes by Last-Event-ID)"))
            .query("access_token", "the credential, for clients that cannot set headers")
            .answers_as::<Event>(200, "text/event-stream"),
        get(follow),
    )
    .route(
        with_filters(Op::get("/v1/log/export", "Export the log as NDJSON, one event per line"))
            .answers_as::<Event>(200, "application/x-ndjson"),
        get(export),
    )
}

/// The filters shared by all three calls.
fn query(params: &Params) -> ApiResult<LogQuery> {
    let types = params
        .all("type")
        .map(|t| {
            EventType::parse(t).ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", "type", format!("`{t}` is not an event type"))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let conversation_ids: Vec<Uuid> = params.uuids("conversation_id")?;
    if conversation_ids.len() > 100 {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "conversation_id",
            "at most 100 conversations per query",
        ));
    }
    let since = params.timestamp("since")?;
    let until = params.timestamp("until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            return Err(ApiError::bad_request("invalid_parameter", "until", "`until` must not be before `since`"));
        }
    }
    let after = params.one("after")?.map(|c| cursor::decode_seq("after", c)).transpose()?.unwrap_or(0);
    Ok(LogQuery { conversation_ids, since, until, types, after, limit: PAGE })
}

fn json_array(entries: &[LogEntry]) -> String {
    let mut out = String::with_capacity(entries.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&entry.json);
    }
    out.push(']');
    out
}

async fn page(State(ctx): State<ApiContext>, Caller(caller): Caller, params: Params) -> ApiResult<Response> {
    params.only(&[FILTERS, &["limit"]].concat())?;
    let mut q = query(&params)?;
    q.limit = params.limit()?;
    let given = params.one("after")?.map(str::to_string);
    let account = caller.account_id;
    let entries = ctx.store.read(move |r| r.log(account, &q)).await?;
    let next = entries.last().map(|e| cursor::encode_seq(e.seq)).or(given);
    let body = format!("{{\"events\":{},\"next_cursor\":{}}}", json_array(&entries), serde_json::json!(next));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A live follower of one account's log for SSE: catches up from storage, then takes commits
/// from the hub through a gapless [`Tail`]; if the hub says it fell behind, it catches up from
/// storage again.
struct Follower {
    ctx: ApiContext,
    tail: Tail,
    live: Receiver<Live>,
    pending: VecDeque<LogEntry>,
    catching_up: bool,
}

impl Follower {
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                let event = SseEvent::default()
                    .id(cursor::encode_seq(entry.seq))
                    .event(entry.event_type.as_str())
                    .data(&*entry.json);
                return Some((Ok(event), self));
            }
            if *self.ctx.shutdown.borrow() {
                return None;
            }
            if self.catching_up {
                match self.tail.catch_up(&self.ctx.store).await {
                    Ok((page, more)) => {
                        self.catching_up = more;
                        self.pending.extend(page);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "log stream ended: the store could not be read");
                        return None;
                    }
                }
                continue;
            }
            let mut shutdown = self.ctx.shutdown.clone();
            tokio::select! {
                _ = shutdown.changed() => return None,
                received = self.live.recv() => match received {
                    Ok(Live::Event(entry)) => match self.tail.offer(&entry) {
                        Step::Deliver => self.pending.push_back((*entry).clone()),
                        Step::Skip => {}
                        Step::Gap => self.catching_up = true,
                    },
                    Ok(Live::Typing(_) | Live::Signal(_)) => {}
                    Err(RecvError::Lagged(_)) => self.catching_up = true,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

async fn follow(
    State(ctx): State<ApiContext>,
    Caller(caller): Caller,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    params.only(FILTERS)?;
    let mut q = query(&params)?;
    if let Some(last) = headers.get("last-event-id") {
        let last =
            last.to_str().map_err(|_| ApiError::bad_request("invalid_cursor", "Last-Event-ID", "unreadable header"))?;
        q.after = cursor::decode_seq("Last-Event-ID", last)?;
    }
    // Subscribe before the first read, so a commit in between is seen once (by seq) and not lost.
    let live = ctx.hub.subscribe(caller.account_id);
    let heartbeat = ctx.sse_heartbeat;
    let tail = Tail::new(caller.account_id, q.clone(), q.after);
    let follower = Follower { tail, live, pending: VecDeque::new(), catching_up: true, ctx };
    let events = stream::unfold(follower, Follower::next);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")))
}

async fn export(State(ctx): State<ApiContext>, Caller(caller): Caller, params: Params) -> ApiResult<Response> {
    params.only(FILTERS)?;
    let q = LogQuery { limit: EXPORT_PAGE, ..query(&params)? };
    let account = caller.account_id;
    // One page being sent and the next one being read, whatever the size of the range: the read
    // (a blocking thread, the disk) and the send (the socket) overlap instead of taking turns.
    let first = read_page(&ctx, account, q.clone());
    let lines = stream::unfold(Some((ctx, q, first)), move |state| async move {
        let (ctx, mut q, reading) = state?;
        let page = reading.await.unwrap_or_else(|e| Err(StoreError::Backend(e.to_string())));
        match page {
            Ok(page) if page.is_empty() => None,
            Ok(page) => {
                let done = page.len() < q.limit;
                q.after = page.last().map_or(q.after, |e| e.seq);
                let next = if done {
                    None
                } else {
                    let reading = read_page(&ctx, account, q.clone());
                    Some((ctx, q, reading))
                };
                let mut chunk = String::with_capacity(page.iter().map(|e| e.json.len() + 1).sum());
                for entry in &page {
                    chunk.push_str(&entry.json);
                    chunk.push('\n');
                }
                Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), next))
            }
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response())
}

/// Starts reading an export's page. If the client goes away meanwhile, the read still finishes
/// (one bounded page) and is dropped.
fn read_page(ctx: &ApiContext, account: Uuid, q: LogQuery) -> JoinHandle<Result<Vec<LogEntry>, StoreError>> {
    let store = ctx.store.clone();
    tokio::spawn(async move { store.read(move |r| r.log(account, &q)).await })
}
