//! The one `Store` trait that every backend implements, and its typed helpers.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;

use crate::model::LogEntry;
use crate::tx::{Reads, Tx};
use crate::StoreError;

pub type Boxed = Box<dyn Any + Send>;
pub type WriteFn = Box<dyn FnOnce(&mut dyn Tx) -> Result<Boxed, StoreError> + Send>;
/// A write that may be run more than once: when a backend undoes it (together with the
/// commands it shared a commit with) and runs it again on the state before. It must reach the
/// database only through its `Tx`.
pub type AgainFn = Box<dyn FnMut(&mut dyn Tx) -> Result<Boxed, StoreError> + Send>;
pub type ReadFn = Box<dyn FnOnce(&dyn Reads) -> Result<Boxed, StoreError> + Send>;

/// Told of every committed batch of log events, after the commit. Each event comes exactly
/// once; events of different commits may come out of `seq` order when a backend commits on
/// several connections, so live readers restore the order by `seq` (see the server's tail).
pub type CommitSink = Arc<dyn Fn(&[LogEntry]) + Send + Sync>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs `f` inside a write transaction: its writes and log events commit together, or
    /// not at all. Concurrent writes may share one commit (group commit).
    async fn write_boxed(&self, f: WriteFn) -> Result<Boxed, StoreError>;

    /// [`Store::write_boxed`] for a command that may be run again. The embedded backend runs a
    /// row of these under one savepoint instead of one each, and when one of them fails, undoes
    /// the row and runs the others again (`sqlite/mod.rs`); the others need not care.
    async fn write_again_boxed(&self, mut f: AgainFn) -> Result<Boxed, StoreError> {
        self.write_boxed(Box::new(move |tx| f(tx))).await
    }

    /// Runs `f` against a consistent snapshot.
    async fn read_boxed(&self, f: ReadFn) -> Result<Boxed, StoreError>;

    /// Readiness: the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stops the writer after the work already queued; later writes fail.
    async fn close(&self);
}

/// Typed wrappers over the object-safe, boxed calls.
#[async_trait]
pub trait StoreExt {
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static;

    /// [`StoreExt::write`] for a command that may be run again ([`AgainFn`]): the hot paths.
    async fn write_again<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static;

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Reads) -> Result<R, StoreError> + Send + 'static;
}

#[async_trait]
impl<S: Store + ?Sized> StoreExt for S {
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        let boxed = self.write_boxed(Box::new(move |tx| f(tx).map(|r| Box::new(r) as Boxed))).await?;
        downcast(boxed)
    }

    async fn write_again<R, F>(&self, mut f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        let boxed = self.write_again_boxed(Box::new(move |tx| f(tx).map(|r| Box::new(r) as Boxed))).await?;
        downcast(boxed)
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Reads) -> Result<R, StoreError> + Send + 'static,
    {
        let boxed = self.read_boxed(Box::new(move |r| f(r).map(|v| Box::new(v) as Boxed))).await?;
        downcast(boxed)
    }
}

fn downcast<R: 'static>(boxed: Boxed) -> Result<R, StoreError> {
    boxed
        .downcast::<R>()
        .map(|b| *b)
        .map_err(|_| StoreError::Backend("a store call answered an unexpected type".into()))
}
