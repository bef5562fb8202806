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
//!
//! Readers look every page they read up in the part of the WAL not yet copied back (SQLite's
//! hash tables over the WAL's frames), and a WAL fed by small, repeated writes — leases and
//! cursors renewed on a quiet server — holds the same few pages over and over, which makes
//! those lookups long: on a 10-million-event log they took a third of an export's CPU. So the
//! checkpointer also copies back whatever is left once the writer has been quiet for
//! [`QUIET`], and when it starts, whatever an earlier process left in the WAL (which SQLite's
//! recovery counts as not copied at all). A reader that begins on a fully copied WAL does not
//! look in it, and the next write lets the WAL start over from its beginning.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// How long the writer must have committed nothing before the checkpointer copies back the rest
/// of the WAL.
const QUIET: Duration = Duration::from_millis(100);

thread_local! {
    /// Pages in the WAL after this thread's last commit (set by the writer's WAL hook).
    static WAL_PAGES: Cell<u32> = const { Cell::new(0) };
}

fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages.max(0) as u32));
    Ok(())
}

struct State {
    /// Pages appended to the WAL since the last pass began.
    appended: u32,
    /// When the writer last committed pages (a transaction that changed nothing writes none).
    last_commit: Instant,
    /// Pages in the WAL after the latest commit.
    pages: u32,
    /// A pass is running on the checkpointer's connection.
    running: bool,
    /// The writer is letting the WAL start over: no new pass.
    writer_waiting: bool,
    stop: bool,
}

/// What the checkpointer does next.
enum Next {
    Pass,
    WaitAtMost(Duration),
    Wait,
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

    /// A pass when one is due, or when pages are left and the writer has gone quiet.
    fn next(&self, state: &State) -> Next {
        if state.writer_waiting || state.appended == 0 {
            return Next::Wait;
        }
        let quiet = state.last_commit.elapsed();
        if self.due(state) || quiet >= QUIET {
            Next::Pass
        } else {
            Next::WaitAtMost(QUIET - quiet)
        }
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
        let state = State {
            appended: 0,
            last_commit: Instant::now(),
            pages: 0,
            running: false,
            writer_waiting: false,
            stop: false,
        };
        let shared = Arc::new(Shared { limits, state: Mutex::new(state), changed: Condvar::new() });
        Ok((Checkpoints { shared: shared.clone(), pages: 0, next_try: limits.start_over_at }, shared))
    }

    /// After each commit: counts the pages it appended, and wakes the checkpointer when due.
    pub(super) fn committed(&mut self) {
        let pages = WAL_PAGES.with(Cell::get);
        // Fewer pages than before: the WAL started over and holds only this commit's.
        let appended = if pages >= self.pages { pages - self.pages } else { pages };
        self.pages = pages;
        let Some(mut state) = self.shared.lock() else { return };
        // The first pages since the last pass start the checkpointer's quiet clock.
        let first = state.appended == 0 && appended > 0;
        state.appended = state.appended.saturating_add(appended);
        state.pages = pages;
        if appended > 0 {
            state.last_commit = Instant::now();
        }
        if first || self.shared.due(&state) {
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
        if let Err(e) = passive_checkpoint(writer) {
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

/// The checkpointer thread: a passive checkpoint whenever one is due, until stopped. The first
/// one runs at once, for whatever an earlier process left in the WAL.
pub(super) fn run(db: Connection, shared: Arc<Shared>) {
    let Some(mut state) = shared.lock() else { return };
    let mut next = Next::Pass;
    while !state.stop {
        state = match next {
            Next::Wait => match shared.changed.wait(state) {
                Ok(s) => s,
                Err(_) => return,
            },
            Next::WaitAtMost(quiet) => match shared.changed.wait_timeout(state, quiet) {
                Ok((s, _)) => s,
                Err(_) => return,
            },
            // Marked running, so that a writer about to let the WAL start over waits for it.
            Next::Pass if !state.writer_waiting => {
                state.appended = 0;
                state.running = true;
                drop(state);
                pass(&db);
                let Some(mut state) = shared.lock() else { return };
                state.running = false;
                shared.changed.notify_all();
                state
            }
            Next::Pass => state,
        };
        next = shared.next(&state);
    }
    tracing::debug!("sqlite checkpointer stopped");
}

/// The checkpointer's pass.
fn pass(db: &Connection) {
    if let Err(e) = passive_checkpoint(db) {
        tracing::warn!(error = %e, "checkpoint failed; the next one tries again");
    }
}

/// Copies back as much of the WAL as no reader still needs, without waiting for anyone.
fn passive_checkpoint(db: &Connection) -> rusqlite::Result<()> {
    db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
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

    /// `mxFrame` and `nBackfill` from the WAL index (the `-shm` file, in SQLite's documented
    /// layout: the header's `mxFrame` at byte 16, the checkpoint record's `nBackfill` at 96).
    fn wal_index(db: &Path) -> (u32, u32) {
        let shm = std::fs::read(format!("{}-shm", db.display())).expect("wal index");
        let word = |at: usize| u32::from_le_bytes([shm[at], shm[at + 1], shm[at + 2], shm[at + 3]]);
        (word(16), word(96))
    }

    /// Waits up to five seconds for the whole WAL to be copied back, calling `meanwhile` every
    /// 10 ms.
    fn copied_back(db: &Path, mut meanwhile: impl FnMut()) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            meanwhile();
            let (frames, copied) = wal_index(db);
            if frames > 0 && copied == frames {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn small_writer(path: &Path) -> Connection {
        let writer = super::super::open_connection(path, rusqlite::OpenFlags::default()).expect("open");
        writer
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB);")
            .expect("schema");
        writer
    }

    /// Far fewer pages than a pass is due at, then only transactions that change nothing (a
    /// consumer finding no work): readers would look every page up in those frames until the
    /// next pass.
    #[test]
    fn what_is_left_in_the_wal_is_copied_back_once_the_writer_is_quiet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("quiet.db");
        let writer = small_writer(&path);
        let (mut checkpoints, shared) =
            Checkpoints::take_over(&writer, WalLimits { pass_every: 10_000, start_over_at: 100_000 })
                .expect("take over");
        let checkpointer = {
            let db = connect(&path).expect("checkpointer");
            std::thread::spawn(move || run(db, shared))
        };
        for n in 0..20 {
            checkpoints.before_batch(&writer);
            writer.execute("INSERT INTO t (n, pad) VALUES (?1, zeroblob(100))", [n]).expect("insert");
            checkpoints.committed();
        }
        let (frames, _) = wal_index(&path);
        assert!(frames >= 20, "the commits are in the WAL: {frames} frames");
        let nothing_written = || {
            writer.execute_batch("BEGIN IMMEDIATE; COMMIT;").expect("empty transaction");
            checkpoints.committed();
        };
        assert!(copied_back(&path, nothing_written), "left behind: {:?}", wal_index(&path));
        drop(checkpoints);
        checkpointer.join().expect("checkpointer thread");
    }

    /// SQLite's recovery of a WAL another process left counts none of it as copied back.
    #[test]
    fn a_wal_left_from_before_is_copied_back_when_the_checkpointer_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("left.db");
        let writer = small_writer(&path);
        for n in 0..20 {
            writer.execute("INSERT INTO t (n, pad) VALUES (?1, zeroblob(100))", [n]).expect("insert");
        }
        let (frames, copied) = wal_index(&path);
        assert!(frames >= 20 && copied < frames, "nothing copied yet: {frames} frames, {copied} copied");
        let (checkpoints, shared) = Checkpoints::take_over(&writer, WalLimits::DEFAULT).expect("take over");
        let checkpointer = {
            let db = connect(&path).expect("checkpointer");
            std::thread::spawn(move || run(db, shared))
        };
        assert!(copied_back(&path, || {}), "left behind: {:?}", wal_index(&path));
        drop(checkpoints);
        checkpointer.join().expect("checkpointer thread");
    }
}
