//! The embedded backend: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread. It takes every command waiting in its queue (up to
//! [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction — each inside its own
//! savepoint, so a refused command leaves no trace while its neighbours commit, or a row of
//! commands that may run again inside one ([`Row`]) — and commits
//! once: one fsync for the whole batch (group commit), done by the syncer thread while the writer
//! runs the next batch (`syncer.rs`); a checkpointer thread copies the WAL back into the
//! database file (`checkpointer.rs`). Reads use a small pool of read-only connections on the
//! blocking thread pool, each read in its own snapshot.

mod activity;
mod cache;
mod chains;
mod checkpointer;
mod conn;
mod keys;
mod messages;
mod queues;
mod schema;
mod seqs;
mod syncer;
mod wal_gather;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parley_core::Timestamp;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::model::LogEntry;
use crate::store::{AgainFn, Boxed, ReadFn, WriteFn};
use crate::tx::Tx;
use crate::{CommitSink, Store, StoreError};
use cache::WriterCache;
use checkpointer::{Checkpoints, WalLimits};
use conn::{ReadConn, WriteConn};
use seqs::Seqs;
use syncer::{Committed, Handoff, Reply};

/// The most commands one transaction takes.
pub const MAX_BATCH: usize = 512;
const READERS: usize = 4;
const QUEUE: usize = 8192;

/// How hard a commit is pushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync at every commit: an acknowledged write survives a power cut.
    Full,
    /// fsync at WAL checkpoints: survives a crash of Parley, not of the machine.
    Normal,
}

/// Bytes of the database file mapped into memory by each connection: all of it, on a 64-bit host
/// (address space is not memory; the mapping shares the OS page cache). A page read through the
/// map needs no `read()` copy. SQLite caps it at SQLITE_MAX_MMAP_SIZE (`.cargo/config.toml`).
const MMAP: u64 = 1 << 40;
/// The writer's page cache. Small on purpose: when a B-tree rebalances, SQLite parks a page
/// under a temporary number past 1 GiB, and at the next commit of a database smaller than that
/// it scans its whole page-cache hash table to drop pages past the end — a cost that grows
/// with the cache, paid on most commits (a quarter of the writer's time in `fanout` with 32
/// MiB). Pages the writer does not hold come from the shared mapping or the WAL.
const WRITER_CACHE_KIB: u64 = 4000;
/// The writer's nice value. Every write waits for this one thread, while the request threads
/// (and, on a shared machine, clients) do work that can wait a moment; when a core frees up the
/// kernel should hand it to the writer first. With it favoured, `bench ingest` acknowledged
/// 7–14 % more messages on 2 cores (BENCHMARKS.md, step 9).
const WRITER_NICE: i32 = -5;

#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub durability: Durability,
}

/// A queued command: one run once, or one that may be run again ([`AgainFn`]).
enum Command {
    Once(WriteFn),
    Again(AgainFn),
}

struct WriteJob {
    command: Command,
    reply: Reply,
}

pub struct SqliteStore {
    path: PathBuf,
    queue: Mutex<Option<mpsc::Sender<WriteJob>>>,
    /// The writer, the syncer (with `Durability::Full`) and the checkpointer: joined in that
    /// order on close.
    threads: Mutex<Vec<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    connection_settings(Connection::open_with_flags(path, flags)?)
}

/// The writer's connection: on the VFS that writes each commit's WAL frames at once.
fn open_writer_connection(path: &Path) -> Result<Connection, StoreError> {
    wal_gather::register().map_err(StoreError::Backend)?;
    connection_settings(Connection::open_with_flags_and_vfs(path, OpenFlags::default(), wal_gather::VFS)?)
}

fn connection_settings(db: Connection) -> Result<Connection, StoreError> {
    db.busy_timeout(std::time::Duration::from_secs(10))?;
    db.set_prepared_statement_cache_capacity(64);
    Ok(db)
}

fn wall_clock() -> Timestamp {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Timestamp::from_millis(ms)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `config.path`, applies migrations and starts
    /// the writer. `sink` is told of every committed batch of events.
    pub fn open(config: SqliteConfig, sink: CommitSink) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = config.path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let mut db = open_writer_connection(&config.path)?;
        let mode: String = db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!("cannot switch {} to WAL mode", config.path.display())));
        }
        db.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA mmap_size = {MMAP};"
        ))?;
        schema::migrate(&mut db)?;
        // temp_store = MEMORY keeps each command's savepoint journal in memory: on a file it spills
        // past 64 KiB, and from then on every page a command touches is written to it with a
        // syscall. The price: SQLite walks an in-memory journal from its start at the end of each
        // statement, so a single command that touches very many pages (thousands of messages)
        // slows down quadratically; commands are small, and bulk work goes in many of them. Set
        // after the migrations: an index built over the whole log sorts its keys, and in memory
        // that took 690 MB at 10 million events.
        db.execute_batch("PRAGMA temp_store = MEMORY;")?;
        // The commit clock resumes from the newest event, so occurred_at never runs backwards.
        let last = keys::newest_event_time(&db)?;
        let wal = match config.durability {
            Durability::Normal => None,
            Durability::Full => {
                let wal_path = format!("{}-wal", config.path.display());
                match std::fs::File::open(&wal_path) {
                    Ok(file) => Some(file),
                    Err(e) => {
                        // Then SQLite fsyncs inside each commit, on the writer's thread.
                        tracing::warn!(error = %e, path = %wal_path, "cannot open the WAL to sync it; commits sync themselves");
                        db.execute_batch("PRAGMA synchronous = FULL")?;
                        None
                    }
                }
            }
        };
        let (checkpoints, shared) = Checkpoints::take_over(&db, WalLimits::DEFAULT)?;
        let checkpointer_db = checkpointer::connect(&config.path)?;
        let checkpointer = std::thread::Builder::new()
            .name("parley-sqlite-ckpt".into())
            .spawn(move || checkpointer::run(checkpointer_db, shared))
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer thread: {e}")))?;
        let (handoff, sync_loop) = Handoff::new(wal, sink);
        let mut threads = Vec::with_capacity(3);
        if let Some(sync_loop) = sync_loop {
            let syncer = std::thread::Builder::new()
                .name("parley-sqlite-sync".into())
                .spawn(sync_loop)
                .map_err(|e| StoreError::Backend(format!("cannot start the syncer thread: {e}")))?;
            threads.push(syncer);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("parley-sqlite-writer".into())
            .spawn(move || writer_loop(db, rx, handoff, checkpoints, Timestamp::from_millis(last)))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        threads.insert(0, writer);
        threads.push(checkpointer);
        Ok(SqliteStore {
            path: config.path,
            queue: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            readers: Mutex::new(Vec::new()),
            reader_slots: Semaphore::new(READERS),
        })
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        if let Some(db) = self.readers.lock().map_err(|_| StoreError::Unavailable)?.pop() {
            return Ok(db);
        }
        let db = open_connection(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // Readers map the file: a page another connection changed is re-read from the shared
        // mapping instead of copied in by a read() per page; and their own page cache, which
        // SQLite empties (page by page) whenever the file changed, stays small.
        db.execute_batch(&format!("PRAGMA query_only = 1; PRAGMA cache_size = -2000; PRAGMA mmap_size = {MMAP};"))?;
        Ok(db)
    }

    fn give_back(&self, db: Connection) {
        if let Ok(mut pool) = self.readers.lock() {
            pool.push(db);
        }
    }
}

fn writer_loop(
    db: Connection,
    mut rx: mpsc::Receiver<WriteJob>,
    handoff: Handoff,
    mut checkpoints: Checkpoints,
    mut clock: Timestamp,
) {
    favour_this_thread(WRITER_NICE);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let memory = WriterMemory::default();
    while let Some(first) = next_job(&mut rx) {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        clock = clock.max(wall_clock());
        checkpoints.before_batch(&db);
        if let Some(done) = run_batch(&db, &mut batch, clock, &memory) {
            checkpoints.committed();
            handoff.hand(done);
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// How long the writer, out of work, keeps looking for more before it sleeps. A sleeping
/// writer is woken by a futex call from the thread that queues the next command, and on a VM
/// its idle core must first be woken too: under load that happened thousands of times a second
/// and left 14 % of the two cores idle. Looking on for 50 µs (yielding the core to any thread
/// that wants it meanwhile) gave `bench ingest` 3–6 % more messages for less server CPU per
/// message (BENCHMARKS.md, `ingest`, step 21); an idle server spins 50 µs after its last write.
const WRITER_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The next job: at once if one waits; else looked for again, yielding the core to any thread
/// that wants it, for [`WRITER_SPIN`]; then waited for asleep. `None` once the queue is closed.
fn next_job(rx: &mut mpsc::Receiver<WriteJob>) -> Option<WriteJob> {
    let started = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if started.elapsed() < WRITER_SPIN => std::thread::yield_now(),
            Err(mpsc::error::TryRecvError::Empty) => return rx.blocking_recv(),
        }
    }
}

/// Gives the calling thread the nice value `nice` (on Linux a thread has its own). Raising a
/// priority needs CAP_SYS_NICE (or root, or an RLIMIT_NICE that allows it); without it the thread
/// keeps the default, which is only slower.
fn favour_this_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if result != 0 {
            let e = std::io::Error::last_os_error();
            tracing::info!(error = %e, nice, "the SQLite writer keeps the default priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// What the writer keeps from one command and batch to the next: documents it loaded
/// (`cache.rs`), each account's last `seq` (`seqs.rs`) and each queue's waiting count (`queues.rs`).
#[derive(Default)]
pub(crate) struct WriterMemory {
    pub cache: RefCell<WriterCache>,
    pub seqs: RefCell<Seqs>,
    pub queues: RefCell<queues::Queues>,
    pub heads: RefCell<chains::Heads>,
    pub activity: RefCell<activity::Deferred>,
}

impl WriterMemory {
    /// With the batch's write lock held, so that no other connection can commit until it ends:
    /// forgets everything if one committed since the last batch.
    fn check(&self, db: &Connection) {
        if self.cache.borrow_mut().check(db) {
            self.seqs.borrow_mut().forget();
            self.queues.borrow_mut().forget();
            self.heads.borrow_mut().forget();
        }
    }

    /// A batch that did not commit.
    fn forget(&self) {
        self.cache.borrow_mut().clear();
        self.seqs.borrow_mut().forget();
        self.queues.borrow_mut().forget();
        self.heads.borrow_mut().forget();
        self.activity.borrow_mut().forget();
    }

    /// A command rolled back to its savepoint: what it wrote is undone, and so must be what was
    /// kept of it.
    fn command_undone(&self) {
        self.cache.borrow_mut().clear();
        self.seqs.borrow_mut().command_undone();
        self.queues.borrow_mut().forget();
        self.heads.borrow_mut().forget();
        self.activity.borrow_mut().forget();
    }
}

/// Runs a statement without arguments, prepared once per connection: the transaction and
/// savepoint statements run around every batch, command and read, and parsing them each time
/// cost the writer 2–3 % of its time.
fn exec_cached(db: &Connection, sql: &str) -> rusqlite::Result<()> {
    db.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs a batch in one transaction. A committed batch is returned for the syncer to answer;
/// a refused one is answered here.
fn run_batch(db: &Connection, batch: &mut Vec<WriteJob>, now: Timestamp, memory: &WriterMemory) -> Option<Committed> {
    if let Err(e) = exec_cached(db, "BEGIN IMMEDIATE") {
        syncer::refuse(batch.drain(..).map(|job| (job.reply, ())).collect(), &e.to_string());
        return None;
    }
    memory.check(db);
    let mut appended: Vec<LogEntry> = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    // SQLite rolls the whole transaction back by itself on some errors (I/O, a full disk, out of
    // memory). Then nothing of the batch is committed, and what follows must not run outside it
    // (each command would commit on its own while being told it failed).
    let mut lost: Option<String> = None;
    let mut row = Row::default();
    for job in batch.drain(..) {
        if let Some(reason) = &lost {
            outcomes.push((job.reply, Err(StoreError::Backend(reason.clone()))));
            continue;
        }
        let mut w = Writing { db, now, appended: &mut appended, memory };
        let ran = match job.command {
            Command::Once(f) => row.close(db, memory).map(|()| run_one(&mut w, f)),
            Command::Again(f) => row.run(&mut w, f, &mut outcomes),
        };
        let result = ran.unwrap_or_else(|e| {
            lost = Some(format!("the batch could not go on ({e}); nothing of it was written"));
            Err(e)
        });
        if lost.is_none() && db.is_autocommit() {
            let cause = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
            tracing::error!(error = %cause, "the database rolled the transaction back; the whole batch is refused");
            lost = Some(format!("the database rolled the transaction back ({cause}); nothing of it was written"));
        }
        outcomes.push((job.reply, result));
    }
    if lost.is_none() {
        if let Err(e) = row.close(db, memory) {
            lost = Some(format!("the batch could not go on ({e}); nothing of it was written"));
        }
    }
    if let Some(reason) = lost {
        // Lost with the transaction still open when a savepoint statement failed: end it, or
        // the next batch could not begin.
        if !db.is_autocommit() {
            let _ = exec_cached(db, "ROLLBACK");
        }
        memory.forget();
        syncer::refuse(outcomes, &reason);
        return None;
    }
    let committed = memory.seqs.borrow_mut().write_moved(db).and_then(|()| exec_cached(db, "COMMIT"));
    match committed {
        Ok(()) => Some(Committed { appended, outcomes }),
        Err(e) => {
            let _ = exec_cached(db, "ROLLBACK");
            memory.forget();
            tracing::error!(error = %e, "commit failed; the whole batch is refused");
            syncer::refuse(outcomes, &format!("commit failed: {e}"));
            None
        }
    }
}

/// What the commands of a batch run with: the writer's connection and memory, the batch's
/// clock, and the events appended so far.
struct Writing<'a> {
    db: &'a Connection,
    now: Timestamp,
    appended: &'a mut Vec<LogEntry>,
    memory: &'a WriterMemory,
}

/// Runs one command inside a savepoint; a refusal (or a panic) rolls back only this command.
fn run_one(w: &mut Writing, f: impl FnOnce(&mut dyn Tx) -> Result<Boxed, StoreError>) -> Result<Boxed, StoreError> {
    let (db, memory) = (w.db, w.memory);
    exec_cached(db, "SAVEPOINT command")?;
    let mark = w.appended.len();
    let result = call(w, f);
    if result.is_err() {
        w.appended.truncate(mark);
    }
    if db.is_autocommit() {
        // The database already rolled everything back (see `run_batch`): keep the first error.
        memory.forget();
        return result;
    }
    if result.is_err() {
        memory.command_undone();
        exec_cached(db, "ROLLBACK TO command")?;
    }
    memory.seqs.borrow_mut().command_kept();
    exec_cached(db, "RELEASE command")?;
    result
}

/// Runs a command on the writer's connection, inside whatever savepoint is open.
fn call(w: &mut Writing, f: impl FnOnce(&mut dyn Tx) -> Result<Boxed, StoreError>) -> Result<Boxed, StoreError> {
    let mut tx = WriteConn { db: w.db, now: w.now, appended: &mut *w.appended, message: None, memory: w.memory };
    let result = catch_unwind(AssertUnwindSafe(|| f(&mut tx)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a command panicked; it was rolled back".into())));
    let result = match (result, tx.message) {
        // A message lives in its event's row: without the event it would be lost.
        (Ok(_), Some(_)) => Err(StoreError::Backend("a message was stored without the event that carries it".into())),
        (result, _) => result,
    };
    // What the command held back of a conversation's activity is written inside it.
    let mut held = w.memory.activity.borrow_mut();
    match result {
        Ok(answer) => held.settle(w.db).map(|()| answer),
        Err(e) => {
            held.forget();
            Err(e)
        }
    }
}

/// Consecutive commands of a batch that may be run again, under one savepoint.
///
/// A savepoint copies each page the first time a command under it changes that page, so one
/// per command copied the pages every command of a batch shares — the end of the log and of
/// its indexes — once per command (1.7 µs of the writer per message in `scripts/sql-floor`,
/// 4–14 % of `bench ingest`). A row of such commands shares one. When one of them fails, the
/// row is rolled back — that command with the others — and the others run again, each under a
/// savepoint of its own, as every command did before; the failed one is not run again: its
/// answer is its error. Conformance: `a_command_that_fails_among_others_that_may_run_again_leaves_no_trace`.
///
/// A row that begins its batch takes no savepoint at all: the transaction stands for it, and
/// rolling the row back is rolling the transaction back and beginning it again. Even one
/// savepoint per row copied every page the row changed (7–9 % of the writer in `bench ingest`,
/// where every command is such a row's). Should the transaction not begin again (another
/// process holding the file's write lock past the busy timeout), the rest of the batch is
/// refused, as when any savepoint statement fails: nothing of it was committed.
#[derive(Default)]
struct Row {
    /// Where the row's commands' answers start in the batch's outcomes.
    first: usize,
    /// The batch's appended events before the row.
    mark: usize,
    /// The row's commands so far (all succeeded), to run again; the row is open while it holds
    /// any.
    commands: Vec<AgainFn>,
}

impl Row {
    /// The row began its batch's transaction (nothing of the batch came before it: a refused
    /// command among them rolled back to its own savepoint and left nothing), and has no
    /// savepoint of its own.
    fn bare(&self) -> bool {
        self.first == 0
    }

    /// Runs `f` in the row (opening it if need be). The outer error means the batch cannot go
    /// on; the inner result is the command's.
    fn run(
        &mut self,
        w: &mut Writing,
        mut f: AgainFn,
        outcomes: &mut [(Reply, Result<Boxed, StoreError>)],
    ) -> Result<Result<Boxed, StoreError>, StoreError> {
        let (db, memory) = (w.db, w.memory);
        if self.commands.is_empty() {
            (self.first, self.mark) = (outcomes.len(), w.appended.len());
            if !self.bare() {
                exec_cached(db, "SAVEPOINT row")?;
            }
        }
        let result = call(w, &mut f);
        if result.is_ok() {
            self.commands.push(f);
            return Ok(result);
        }
        if db.is_autocommit() {
            memory.forget();
            return Ok(result);
        }
        if self.bare() {
            exec_cached(db, "ROLLBACK")?;
            memory.forget();
            exec_cached(db, "BEGIN IMMEDIATE")?;
            memory.check(db);
        } else {
            exec_cached(db, "ROLLBACK TO row")?;
            memory.command_undone();
        }
        w.appended.truncate(self.mark);
        for (k, mut again) in self.commands.drain(..).enumerate() {
            outcomes[self.first + k].1 = run_one(w, &mut again);
            if db.is_autocommit() {
                return Err(StoreError::Backend("the database rolled the transaction back".into()));
            }
        }
        if !self.bare() {
            exec_cached(db, "RELEASE row")?;
        }
        Ok(result)
    }

    /// Ends the row, keeping what its commands wrote.
    fn close(&mut self, db: &Connection, memory: &WriterMemory) -> Result<(), StoreError> {
        if self.commands.is_empty() {
            return Ok(());
        }
        self.commands.clear();
        memory.seqs.borrow_mut().command_kept();
        if !self.bare() {
            exec_cached(db, "RELEASE row")?;
        }
        Ok(())
    }
}

impl SqliteStore {
    /// Hands a command to the writer and waits for its answer.
    async fn queue_command(&self, command: Command) -> Result<Boxed, StoreError> {
        let queue = self.queue.lock().map_err(|_| StoreError::Unavailable)?.clone().ok_or(StoreError::Unavailable)?;
        let (reply, answer) = oneshot::channel();
        queue.send(WriteJob { command, reply }).await.map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn write_boxed(&self, f: WriteFn) -> Result<Boxed, StoreError> {
        self.queue_command(Command::Once(f)).await
    }

    async fn write_again_boxed(&self, f: AgainFn) -> Result<Boxed, StoreError> {
        self.queue_command(Command::Again(f)).await
    }

    async fn read_boxed(&self, f: ReadFn) -> Result<Boxed, StoreError> {
        let _slot = self.reader_slots.acquire().await.map_err(|_| StoreError::Unavailable)?;
        let db = self.take_reader()?;
        let (db, result) = tokio::task::spawn_blocking(move || {
            let result = (|| {
                exec_cached(&db, "BEGIN")?;
                let out = catch_unwind(AssertUnwindSafe(|| f(&ReadConn(&db))))
                    .unwrap_or_else(|_| Err(StoreError::Backend("a read panicked".into())));
                exec_cached(&db, "COMMIT")?;
                out
            })();
            (db, result)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?;
        if db.is_autocommit() {
            self.give_back(db);
        }
        result
    }

    async fn ping(&self) -> Result<(), StoreError> {
        crate::StoreExt::read(self, |r| r.setting("ping").map(|_| ())).await
    }

    async fn close(&self) {
        let queue = self.queue.lock().ok().and_then(|mut q| q.take());
        drop(queue);
        let threads = self.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
