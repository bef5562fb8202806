//! Making committed batches durable off the writer's thread, then answering them.
//!
//! The connection commits with `synchronous = NORMAL`: a commit appends its frames to the WAL
//! without an fsync. With [`Durability::Full`](super::Durability::Full) the syncer then fsyncs the
//! WAL file once for every batch that has committed since its last fsync, and only then publishes
//! their events and answers their commands. The writer meanwhile runs the next batch, so the
//! fsync of one batch overlaps the work of the next instead of stopping the only writer; an
//! acknowledged write is on the disk exactly as with `synchronous = FULL`. (Another connection
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
pub(super) const IN_FLIGHT: usize = 8;

pub(super) fn channel() -> (SyncSender<Committed>, Receiver<Committed>) {
    std::sync::mpsc::sync_channel(IN_FLIGHT)
}

/// Runs until the writer drops its sender. `wal` is the open WAL file to fsync, or `None` when
/// commits need no fsync of their own.
pub(super) fn sync_loop(wal: Option<File>, batches: Receiver<Committed>, sink: CommitSink) {
    while let Ok(first) = batches.recv() {
        let mut ready = vec![first];
        ready.extend(batches.try_iter());
        let synced = match &wal {
            Some(file) => file.sync_data().map_err(|e| {
                tracing::error!(error = %e, "fsync of the WAL failed; the batches it covers are refused");
                format!("the commit could not be made durable: {e}")
            }),
            None => Ok(()),
        };
        for batch in ready {
            match &synced {
                Ok(()) => {
                    if !batch.appended.is_empty() {
                        sink(&batch.appended);
                    }
                    for (reply, result) in batch.outcomes {
                        let _ = reply.send(result);
                    }
                }
                Err(reason) => refuse(batch.outcomes, reason),
            }
        }
    }
}
