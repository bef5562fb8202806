//! The PostgreSQL backend, for several Parley nodes sharing one database.
//!
//! Each write command runs in its own transaction on a pooled connection (PostgreSQL batches
//! concurrent commits itself). The command takes its account's row lock at first touch, so all
//! writes of an account — from any node — are serialised, decide on current state, and give
//! out `seq` in commit order. Reads run in `REPEATABLE READ` snapshots.

mod conn;
mod schema;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parley_core::Timestamp;
use postgres::NoTls;
use tokio::sync::Semaphore;

use crate::store::{Boxed, ReadFn, WriteFn};
use crate::{CommitSink, Store, StoreError};
use conn::{PgClient, PgConn};

/// Connections kept for writes and for reads.
const WRITERS: usize = 8;
const READERS: usize = 8;

struct Pool {
    config: postgres::Config,
    idle: Mutex<Vec<PgClient>>,
    slots: Semaphore,
}

impl Pool {
    fn new(config: postgres::Config, size: usize) -> Self {
        Pool { config, idle: Mutex::new(Vec::new()), slots: Semaphore::new(size) }
    }

    fn take(&self) -> Result<PgClient, StoreError> {
        let idle = self.idle.lock().map_err(|_| StoreError::Unavailable)?.pop();
        match idle {
            Some(client) if !client.client.is_closed() => Ok(client),
            _ => Ok(PgClient::new(self.config.connect(NoTls)?)),
        }
    }

    fn give_back(&self, client: PgClient) {
        if client.client.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(client);
        }
    }
}

impl Pool {
    /// Closes the idle connections on a plain thread (closing blocks, and may be asked from
    /// async code).
    fn drain(&self) {
        let idle = self.idle.lock().map(|mut idle| std::mem::take(&mut *idle)).unwrap_or_default();
        if !idle.is_empty() {
            std::thread::spawn(move || drop(idle));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.drain();
    }
}

pub struct PgStore {
    writers: Arc<Pool>,
    readers: Arc<Pool>,
    sink: CommitSink,
    closed: std::sync::atomic::AtomicBool,
}

/// Runs blocking PostgreSQL work on a plain thread: the synchronous client may not block a
/// thread that drives async tasks, and `open` may be called from one.
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T, StoreError> + Send) -> Result<T, StoreError> {
    std::thread::scope(|scope| {
        scope.spawn(f).join().unwrap_or_else(|_| Err(StoreError::Backend("PostgreSQL setup panicked".into())))
    })
}

fn wall_clock() -> Timestamp {
    Timestamp::from_millis(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0))
}

impl PgStore {
    /// Connects to `url` (`postgres://…`), applies migrations, and is ready. `sink` is told of
    /// every committed command's events.
    pub fn open(url: &str, sink: CommitSink) -> Result<PgStore, StoreError> {
        let config = postgres::Config::from_str(url)
            .map_err(|e| StoreError::Backend(format!("the PostgreSQL URL is not valid: {e}")))?;
        let first = off_runtime(|| {
            let mut first = config.connect(NoTls)?;
            schema::migrate(&mut first)?;
            Ok(first)
        })?;
        let writers = Arc::new(Pool::new(config.clone(), WRITERS));
        writers.give_back(PgClient::new(first));
        Ok(PgStore {
            writers,
            readers: Arc::new(Pool::new(config, READERS)),
            sink,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            Err(StoreError::Unavailable)
        } else {
            Ok(())
        }
    }
}

fn run_write(db: &mut PgClient, f: WriteFn, sink: &CommitSink) -> Result<Boxed, StoreError> {
    db.client.batch_execute("BEGIN")?;
    let mut tx = PgConn::writer(db, wall_clock());
    let result = catch_unwind(AssertUnwindSafe(|| f(&mut tx)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a command panicked; it was rolled back".into())));
    let appended = std::mem::take(&mut tx.appended);
    drop(tx);
    match result {
        Ok(value) => {
            db.client.batch_execute("COMMIT")?;
            if !appended.is_empty() {
                sink(&appended);
            }
            Ok(value)
        }
        Err(e) => {
            let _ = db.client.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

fn run_read(db: &mut PgClient, f: ReadFn) -> Result<Boxed, StoreError> {
    db.client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    let result = {
        let reader = PgConn::reader(db);
        catch_unwind(AssertUnwindSafe(|| f(&reader)))
            .unwrap_or_else(|_| Err(StoreError::Backend("a read panicked".into())))
    };
    db.client.batch_execute("COMMIT")?;
    result
}

#[async_trait]
impl Store for PgStore {
    async fn write_boxed(&self, f: WriteFn) -> Result<Boxed, StoreError> {
        self.check_open()?;
        let _slot = self.writers.slots.acquire().await.map_err(|_| StoreError::Unavailable)?;
        let (pool, sink) = (self.writers.clone(), self.sink.clone());
        tokio::task::spawn_blocking(move || {
            let mut db = pool.take()?;
            let result = run_write(&mut db, f, &sink);
            pool.give_back(db);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("write task failed: {e}")))?
    }

    async fn read_boxed(&self, f: ReadFn) -> Result<Boxed, StoreError> {
        self.check_open()?;
        let _slot = self.readers.slots.acquire().await.map_err(|_| StoreError::Unavailable)?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = pool.take()?;
            let result = run_read(&mut db, f);
            pool.give_back(db);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        crate::StoreExt::read(self, |r| r.setting("ping").map(|_| ())).await
    }

    async fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wait for writes in flight, then drop the connections.
        let _all = self.writers.slots.acquire_many(WRITERS as u32).await;
        self.writers.drain();
        self.readers.drain();
    }
}

/// Creates a new, empty schema named `name` and answers `url` pointed at it: one database can
/// hold several independent Parley deployments (and every test run its own).
pub fn url_with_new_schema(url: &str, name: &str) -> Result<String, StoreError> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Backend(format!("`{name}` is not a plain schema name")));
    }
    let config = postgres::Config::from_str(url)
        .map_err(|e| StoreError::Backend(format!("the PostgreSQL URL is not valid: {e}")))?;
    off_runtime(|| {
        let mut db = config.connect(NoTls)?;
        db.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {name}"))?;
        Ok(())
    })?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}options=-c%20search_path%3D{name}"))
}
