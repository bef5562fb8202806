//! The frames waiting to be written to one socket, and the writing itself.
//!
//! A socket is served by one task: the driver reads the peer, follows the live feed and writes
//! this queue, all in the same task. An idle connection then holds no second task, no channel
//! block and no split lock, which is most of what a connection used to cost beyond its buffers
//! (`parley bench connections`).
//!
//! The queue is bounded: live frames never wait for room (a full outbox means the peer is too
//! slow), while catch-up from storage waits its turn — which is why everything the session
//! does runs inside [`Outbox::serve`], writing while it waits.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{Sink, Stream};

use super::Close;

/// A frame, and the `seq` of the event it carries, if any.
struct Frame {
    message: Message,
    seq: Option<i64>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// A `push` waiting for room.
    waiting: Option<Waker>,
    /// The peer can no longer be written to.
    broken: bool,
    /// The last event handed to the connection: a slow peer resumes after it.
    last_written: Option<i64>,
}

pub struct Outbox {
    queue: Mutex<Queue>,
    capacity: usize,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Outbox { queue: Mutex::new(Queue::default()), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Only the socket's own task takes the lock, and never across an await.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_room(&self, queue: &Queue) -> bool {
        !queue.broken && queue.frames.len() < self.capacity
    }

    fn try_queue(&self, frame: Frame) -> bool {
        let mut queue = self.lock();
        if !self.has_room(&queue) {
            return false;
        }
        queue.frames.push_back(frame);
        true
    }

    /// Queues a live frame; false when the outbox is full.
    pub fn offer(&self, text: String) -> bool {
        self.try_queue(Frame { message: Message::text(text), seq: None })
    }

    /// Queues a live event frame; false when the outbox is full.
    pub fn offer_event(&self, seq: i64, json: &str) -> bool {
        self.try_queue(Frame { message: Message::text(event_frame(seq, json)), seq: Some(seq) })
    }

    /// Queues a frame, waiting for room (for backlog, not live traffic).
    pub async fn push(&self, text: String) -> Result<(), Close> {
        self.wait_to_queue(Frame { message: Message::text(text), seq: None }).await
    }

    /// Queues an event frame of the backlog, waiting for room.
    pub async fn push_event(&self, seq: i64, json: &str) -> Result<(), Close> {
        self.wait_to_queue(Frame { message: Message::text(event_frame(seq, json)), seq: Some(seq) }).await
    }

    async fn wait_to_queue(&self, frame: Frame) -> Result<(), Close> {
        let mut frame = Some(frame);
        std::future::poll_fn(|cx| {
            let mut queue = self.lock();
            if queue.broken {
                return Poll::Ready(Err(Close::error("connection closed")));
            }
            if self.has_room(&queue) {
                if let Some(frame) = frame.take() {
                    queue.frames.push_back(frame);
                }
                return Poll::Ready(Ok(()));
            }
            queue.waiting = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub(super) fn ping(&self) {
        self.try_queue(Frame { message: Message::Ping(Default::default()), seq: None });
    }

    pub(super) fn last_written(&self) -> Option<i64> {
        self.lock().last_written
    }

    /// Drops what is still queued and takes nothing more (the connection is being closed, or
    /// the peer can no longer be written to); a `push` waiting for room learns it.
    pub(super) fn discard(&self) {
        let mut queue = self.lock();
        queue.broken = true;
        queue.frames = VecDeque::new();
        if let Some(waiting) = queue.waiting.take() {
            waiting.wake();
        }
    }

    /// Hands queued frames to the socket while it accepts them, then flushes. Ready when
    /// everything queued is written (or the peer is gone); the socket wakes the task otherwise.
    pub(super) fn poll_write(&self, socket: &mut WebSocket, cx: &mut Context<'_>) -> Poll<()> {
        let mut socket = std::pin::Pin::new(socket);
        loop {
            let mut queue = self.lock();
            if queue.broken {
                return Poll::Ready(());
            }
            if queue.frames.is_empty() {
                // An idle connection keeps no queue memory.
                queue.frames = VecDeque::new();
                break;
            }
            drop(queue);
            match socket.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return self.broke(),
                Poll::Pending => return Poll::Pending,
            }
            let mut queue = self.lock();
            let Some(frame) = queue.frames.pop_front() else { continue };
            if frame.seq.is_some() {
                queue.last_written = frame.seq;
            }
            if let Some(waiting) = queue.waiting.take() {
                waiting.wake();
            }
            drop(queue);
            if socket.as_mut().start_send(frame.message).is_err() {
                return self.broke();
            }
        }
        match socket.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(_)) => self.broke(),
            Poll::Pending => Poll::Pending,
        }
    }

    fn broke(&self) -> Poll<()> {
        self.discard();
        Poll::Ready(())
    }

    /// Runs `work` (which may queue frames, and wait for room) while writing the queue.
    pub(super) fn serve<'a, W: Future>(&'a self, socket: &'a mut WebSocket, work: W) -> Serve<'a, W> {
        Serve { out: self, socket, work }
    }

    /// The next frame from the peer, writing the queue meanwhile.
    pub(super) fn poll_incoming(
        &self,
        socket: &mut WebSocket,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, axum::Error>>> {
        let _ = self.poll_write(socket, cx);
        std::pin::Pin::new(socket).poll_next(cx)
    }
}

/// [`Outbox::serve`]'s future. A struct rather than an `async fn`, which would hold `work`
/// twice (as its argument and as the pinned local), in every socket's task.
pub(super) struct Serve<'a, W> {
    out: &'a Outbox,
    socket: &'a mut WebSocket,
    work: W,
}

impl<W: Future> Future for Serve<'_, W> {
    type Output = W::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<W::Output> {
        // SAFETY: `work` is pinned with the struct and never moved out of it; the other fields
        // are references, which are `Unpin`.
        let this = unsafe { self.get_unchecked_mut() };
        let mut work = unsafe { std::pin::Pin::new_unchecked(&mut this.work) };
        loop {
            if let Poll::Ready(done) = work.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            let before = this.out.lock().frames.len();
            let _ = this.out.poll_write(this.socket, cx);
            // Room was made for a `push` that waits: let it go on now.
            if this.out.lock().frames.len() >= before {
                return Poll::Pending;
            }
        }
    }
}

/// An event frame, built around the stored JSON without re-encoding it.
fn event_frame(seq: i64, json: &str) -> String {
    format!(r#"{{"type":"event","cursor":"{}","event":{}}}"#, crate::cursor::encode_seq(seq), json)
}
