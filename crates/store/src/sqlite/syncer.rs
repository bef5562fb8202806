//! Making committed batches durable off the writer's thread, then answering them.
//!
//! The connection commits with `synchronous = NORMAL`: a commit appends its frames to the WAL
//! without an fsync. With [`Durability::Normal`](super::Durability::Normal) the writer answers
//! each batch as soon as it commits. With [`Durability::Full`](super::Durability::Full) the
//! syncer fsyncs the WAL file once for every batch that has committed since its last fsync, and
//! only then publishes their events and answers their commands. The writer meanwhile runs the
//! next batch, so the fsync of one batch overlaps the work of the next instead of stopping the
//! only writer; an acknowledged write is on the disk exactly as with `synchronous = FULL`. (Another connection
//! may read a batch in the moment between its commit and its fsync.)

use std::fs::File;
use std::sync::mpsc::{Receiver, SyncSender};

use tokio::sync::oneshot;

use crate::model::LogEntry;
use crate::store::Boxed;
use crate::{CommitSink, StoreError};

pub(super) type Reply = oneshot::Sender<Result<Boxed, StoreError>>;

/// A batch the database has committed: its events and its commands' answers.
pub(super) struct Committed {
    pub appended: Vec<LogEntry>,
    pub outcomes: Vec<(Reply, Result<Boxed, StoreError>)>,
}

/// Answers every command of a batch that did not (or could not be made to) last with `reason`.
pub(super) fn refuse<T>(outcomes: Vec<(Reply, T)>, reason: &str) {
    for (reply, _) in outcomes {
        let _ = reply.send(Err(StoreError::Backend(reason.to_string())));
    }
}

/// Committed batches the writer hands over before the syncer has caught up; past it the writer
/// waits (back-pressure, not an unbounded queue).
const IN_FLIGHT: usize = 8;

/// Who answers a committed batch. Without an fsync to wait for, the writer answers it itself:
/// a hop through another thread would only add a wake-up (and, with every core busy, a wait for
/// one) to each acknowledgement, which in a closed loop of clients is throughput lost.
pub(super) enum Handoff {
    Writer(CommitSink),
    Syncer(SyncSender<Committed>),
}

impl Handoff {
    /// The handoff for commits that need `wal` fsynced before they are answered (`None`: none
    /// do), and the syncer thread's loop to run when there is one.
    pub(super) fn new(wal: Option<File>, sink: CommitSink) -> (Handoff, Option<impl FnOnce() + Send>) {
        match wal {
            None => (Handoff::Writer(sink), None),
            Some(wal) => {
                let (committed, batches) = std::sync::mpsc::sync_channel(IN_FLIGHT);
                (Handoff::Syncer(committed), Some(move || sync_loop(wal, batches, sink)))
            }
        }
    }

    pub(super) fn hand(&self, batch: Committed) {
        match self {
            Handoff::Writer(sink) => deliver(batch, sink),
            Handoff::Syncer(committed) => {
                if let Err(std::sync::mpsc::SendError(batch)) = committed.send(batch) {
                    // Only if the syncer panicked: answer here rather than leave the callers waiting.
                    tracing::error!("the syncer has stopped; a committed batch is answered without its fsync");
                    for (reply, result) in batch.outcomes {
                        let _ = reply.send(result);
                    }
                }
            }
        }
    }
}

/// Publishes a durable batch's events and answers its commands.
fn deliver(batch: Committed, sink: &CommitSink) {
    if !batch.appended.is_empty() {
        sink(&batch.appended);
    }
    for (reply, result) in batch.outcomes {
        let _ = reply.send(result);
    }
}

/// Runs until the writer drops its sender: fsyncs `wal` once for every batch committed since the
/// last fsync, then delivers them.
fn sync_loop(wal: File, batches: Receiver<Committed>, sink: CommitSink) {
    while let Ok(first) = batches.recv() {
        let mut ready = vec![first];
        ready.extend(batches.try_iter());
        let synced = wal.sync_data().map_err(|e| {
            tracing::error!(error = %e, "fsync of the WAL failed; the batches it covers are refused");
            format!("the commit could not be made durable: {e}")
        });
        for batch in ready {
            match &synced {
                Ok(()) => deliver(batch, &sink),
                Err(reason) => refuse(batch.outcomes, reason),
            }
        }
    }
}
