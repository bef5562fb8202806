//! WAL checkpoints on their own thread, so the writer neither copies pages back into the
//! database file nor waits for that file's fsync.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages, on the
//! committing thread — here the only writer: a quarter of its CPU under load, and its waits on
//! the disk. Instead, the writer never checkpoints on its own and the checkpointer thread runs a
//! passive checkpoint every [`WalLimits::pass_every`] appended pages: it copies the pages the
//! WAL holds into the database file and fsyncs it, while the writer goes on appending. A page
//! written many times between two passes is copied once.
//!
//! A WAL only starts over from its beginning when a write transaction begins with every frame
//! copied back, and under steady load the checkpointer is always a little behind. So once the
//! WAL nears [`WalLimits::start_over_at`] pages the checkpointer runs after every commit (little
//! is left behind), and past it the writer, between two batches, waits for the running pass,
//! copies what is left itself and begins its next batch on a fully copied WAL, which that
//! batch's commit then writes from the start. Every copy is fsynced before SQLite counts it as
//! done, as with SQLite's own checkpoints: a crash loses nothing that was committed.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

use crate::StoreError;

/// When the checkpointer runs and when the WAL starts over, in WAL pages.
#[derive(Debug, Clone, Copy)]
pub(super) struct WalLimits {
    /// Pages appended between two passes of the checkpointer.
    pub pass_every: u32,
    /// Pages past which the writer lets the WAL start over.
    pub start_over_at: u32,
}

impl WalLimits {
    /// Chosen with `parley bench ingest` (BENCHMARKS.md, `ingest`, step 6): of the pairs tried,
    /// the best rate with the p99 inside its target. A WAL of up to 50,000 pages (about
    /// 200 MiB) starts over every one to two seconds at full load, each time stopping the
    /// writer for a few milliseconds.
    pub const DEFAULT: WalLimits = WalLimits { pass_every: 4_000, start_over_at: 50_000 };
}

thread_local! {
    /// Pages in the WAL after this thread's last commit (set by the writer's WAL hook).
    static WAL_PAGES: Cell<u32> = const { Cell::new(0) };
}

fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages.max(0) as u32));
    Ok(())
}

#[derive(Default)]
struct State {
    /// Pages appended to the WAL since the last pass began.
    appended: u32,
    /// Pages in the WAL after the latest commit.
    pages: u32,
    /// A pass is running on the checkpointer's connection.
    running: bool,
    /// The writer is letting the WAL start over: no new pass.
    writer_waiting: bool,
    stop: bool,
}

/// What the writer and the checkpointer share.
pub(super) struct Shared {
    limits: WalLimits,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.lock().ok()
    }

    /// Whether a pass is due: every `pass_every` pages, and after every commit once the WAL
    /// nears `start_over_at`, so that little is left for the writer when it lets the WAL start
    /// over.
    fn due(&self, state: &State) -> bool {
        let near = state.pages.saturating_add(self.limits.pass_every) >= self.limits.start_over_at;
        state.appended >= self.limits.pass_every || (state.appended > 0 && near)
    }
}

/// The writer's side.
pub(super) struct Checkpoints {
    shared: Arc<Shared>,
    /// WAL pages after the previous commit.
    pages: u32,
    /// The WAL size at which the writer next tries to let it start over.
    next_try: u32,
}

impl Checkpoints {
    /// Takes checkpoints away from `writer`, whose thread must then call
    /// [`before_batch`](Self::before_batch) and [`committed`](Self::committed); the checkpointer
    /// thread runs [`run`] with the returned state.
    pub(super) fn take_over(writer: &Connection, limits: WalLimits) -> Result<(Checkpoints, Arc<Shared>), StoreError> {
        writer.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
        writer.wal_hook(Some(note_wal_pages));
        let shared = Arc::new(Shared { limits, state: Mutex::default(), changed: Condvar::new() });
        Ok((Checkpoints { shared: shared.clone(), pages: 0, next_try: limits.start_over_at }, shared))
    }

    /// After each commit: counts the pages it appended, and wakes the checkpointer when due.
    pub(super) fn committed(&mut self) {
        let pages = WAL_PAGES.with(Cell::get);
        // Fewer pages than before: the WAL started over and holds only this commit's.
        let appended = if pages >= self.pages { pages - self.pages } else { pages };
        self.pages = pages;
        let Some(mut state) = self.shared.lock() else { return };
        state.appended = state.appended.saturating_add(appended);
        state.pages = pages;
        if self.shared.due(&state) {
            self.shared.changed.notify_all();
        }
    }

    /// Before each batch's `BEGIN`: past `start_over_at`, copies the rest of the WAL so the
    /// batch's commit can write it from the start.
    pub(super) fn before_batch(&mut self, writer: &Connection) {
        let limit = self.shared.limits.start_over_at;
        if self.pages < limit {
            self.next_try = limit;
            return;
        }
        if self.pages < self.next_try {
            return;
        }
        let started = Instant::now();
        let Some(mut state) = self.shared.lock() else { return };
        state.writer_waiting = true;
        state.appended = 0;
        let Ok(state) = self.shared.changed.wait_while(state, |s| s.running) else { return };
        drop(state);
        let waited = started.elapsed();
        if let Err(e) = writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "the writer's checkpoint failed; the WAL goes on growing");
        }
        // If a reader still held an older snapshot the WAL cannot start over yet; try again
        // a little later rather than before every batch.
        self.next_try = self.pages.saturating_add(self.shared.limits.pass_every);
        tracing::debug!(pages = self.pages, ?waited, took = ?started.elapsed(), "the WAL starts over");
        if let Some(mut state) = self.shared.lock() {
            state.writer_waiting = false;
            self.shared.changed.notify_all();
        }
    }
}

/// Dropped with the writer: the checkpointer stops after its current pass.
impl Drop for Checkpoints {
    fn drop(&mut self) {
        if let Some(mut state) = self.shared.lock() {
            state.stop = true;
            self.shared.changed.notify_all();
        }
    }
}

/// Opens the checkpointer's own connection.
pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let db = super::open_connection(path, rusqlite::OpenFlags::default())?;
    // NORMAL: a checkpoint fsyncs the database file before it counts its pages as copied.
    db.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")?;
    Ok(db)
}

/// The checkpointer thread: a passive checkpoint whenever one is due, until stopped.
pub(super) fn run(db: Connection, shared: Arc<Shared>) {
    let Some(mut state) = shared.lock() else { return };
    loop {
        state = match shared.changed.wait_while(state, |s| !s.stop && (s.writer_waiting || !shared.due(s))) {
            Ok(s) => s,
            Err(_) => return,
        };
        if state.stop {
            break;
        }
        state.appended = 0;
        state.running = true;
        drop(state);
        if let Err(e) = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "checkpoint failed; the next one tries again");
        }
        state = match shared.lock() {
            Some(s) => s,
            None => return,
        };
        state.running = false;
        shared.changed.notify_all();
    }
    tracing::debug!("sqlite checkpointer stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer and a checkpointer on one file, as the store runs them, with small limits.
    #[test]
    fn the_wal_starts_over_under_steady_writes_and_keeps_every_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal.db");
        let writer = super::super::open_connection(&path, rusqlite::OpenFlags::default()).expect("open");
        writer
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB);")
            .expect("schema");
        let limits = WalLimits { pass_every: 40, start_over_at: 400 };
        let (mut checkpoints, shared) = Checkpoints::take_over(&writer, limits).expect("take over");
        let checkpointer = {
            let db = connect(&path).expect("checkpointer");
            std::thread::spawn(move || run(db, shared))
        };
        let mut largest = 0;
        let mut started_over = 0;
        for n in 0..3_000 {
            checkpoints.before_batch(&writer);
            let before = checkpoints.pages;
            // About two pages a commit: the new row's page and the table's root.
            writer.execute("INSERT INTO t (n, pad) VALUES (?1, zeroblob(3000))", [n]).expect("insert");
            checkpoints.committed();
            largest = largest.max(checkpoints.pages);
            if checkpoints.pages < before {
                started_over += 1;
            }
        }
        drop(checkpoints);
        checkpointer.join().expect("checkpointer thread");
        assert!(started_over >= 5, "the WAL started over {started_over} times");
        assert!(largest < 400 + 40, "the WAL grew to {largest} pages");
        drop(writer);
        let reopened = Connection::open(&path).expect("reopen");
        let count: i64 = reopened.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).expect("count");
        assert_eq!(count, 3_000);
    }
}
