//! The writer's copies of the documents nearly every command loads: conversations, customers
//! and integrations.
//!
//! A message loads its conversation, the conversation's integration and its customer, each a
//! statement and a JSON parse on the one writer thread (a fifth of its time under `ingest`).
//! While the server runs, its writer is the connection that changes the file, so it can keep
//! what it read or wrote, as long as:
//! - a document is kept after its row was written, and forgotten when the write failed (it may
//!   have gone part of the way);
//! - anything a command wrote can be undone: when a command or a batch is rolled back, the whole
//!   cache is dropped;
//! - another process (the `parley` CLI on the same file) may commit: `PRAGMA data_version`,
//!   checked at the start of each batch once it holds the write lock, moves then, and the cache
//!   is dropped.
//!
//! Conformance: `writes_read_what_is_committed_not_what_was_undone_or_what_was_seen_before`.

use std::collections::HashMap;

use parley_core::conversation::Conversation;
use parley_core::customer::Customer;
use parley_core::integration::Integration;
use parley_core::Uuid;
use rusqlite::{Connection, Row};

use super::activity::{self, select_conversations};
use super::conn::doc;

/// Past this many documents of one kind, that kind starts over empty: a bound on memory that
/// costs one reload of each document still in use.
const MAX_ENTRIES: usize = 16_384;

/// One kind of document by id, each with its account.
pub(crate) struct Docs<T>(HashMap<Uuid, (Uuid, T)>);

impl<T> Default for Docs<T> {
    fn default() -> Self {
        Docs(HashMap::new())
    }
}

/// A kind of document the writer keeps: how it is read by id, and where in the cache it goes.
pub(crate) trait Kept: Clone {
    /// The document by id (`?1`) and account (`?2`), read by [`Kept::read`].
    const SELECT: &'static str;
    fn read(row: &Row) -> rusqlite::Result<Self>;
    fn id(&self) -> Uuid;
    fn docs(cache: &mut WriterCache) -> &mut Docs<Self>;
}

macro_rules! kept {
    ($($doc:ty => $select:expr, $read:expr, in $field:ident),* $(,)?) => {$(
        impl Kept for $doc {
            const SELECT: &'static str = $select;
            fn read(row: &Row) -> rusqlite::Result<Self> {
                $read(row)
            }
            fn id(&self) -> Uuid {
                self.id
            }
            fn docs(cache: &mut WriterCache) -> &mut Docs<Self> {
                &mut cache.$field
            }
        }
    )*};
}

kept! {
    Conversation => concat!(select_conversations!(), " WHERE c.id = ?1 AND c.account_id = ?2"),
        |row| activity::read(row, 0), in conversations,
    Customer => "SELECT body FROM customers WHERE id = ?1 AND account_id = ?2", |row| doc(row, 0), in customers,
    Integration => "SELECT body FROM integrations WHERE id = ?1 AND account_id = ?2", |row| doc(row, 0), in integrations,
}

#[derive(Default)]
pub(crate) struct WriterCache {
    conversations: Docs<Conversation>,
    customers: Docs<Customer>,
    integrations: Docs<Integration>,
    /// `PRAGMA data_version` when the cache was last known to match the file.
    data_version: Option<i64>,
}

impl WriterCache {
    pub(crate) fn clear(&mut self) {
        self.conversations.0.clear();
        self.customers.0.clear();
        self.integrations.0.clear();
    }

    /// At the start of a batch: drops everything if another connection committed since the last
    /// batch (or if that cannot be told), and says whether it did.
    pub(crate) fn check(&mut self, db: &Connection) -> bool {
        let version =
            db.prepare_cached("PRAGMA data_version").and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0))).ok();
        let changed = version.is_none() || version != self.data_version;
        if changed {
            self.clear();
        }
        self.data_version = version;
        changed
    }

    pub(crate) fn get<T: Kept>(&mut self, account: Uuid, id: Uuid) -> Option<T> {
        match T::docs(self).0.get(&id) {
            Some((owner, doc)) if *owner == account => Some(doc.clone()),
            _ => None,
        }
    }

    /// Keeps a document just read from the file, or just written to it.
    pub(crate) fn keep<T: Kept>(&mut self, account: Uuid, doc: &T) {
        let docs = &mut T::docs(self).0;
        if docs.len() >= MAX_ENTRIES && !docs.contains_key(&doc.id()) {
            docs.clear();
        }
        docs.insert(doc.id(), (account, doc.clone()));
    }

    /// After the writer wrote `doc`: kept when the write went through, forgotten when it failed
    /// (it may have gone part of the way).
    pub(crate) fn wrote<T: Kept>(&mut self, account: Uuid, doc: &T, ok: bool) {
        if ok {
            self.keep(account, doc);
        } else {
            T::docs(self).0.remove(&doc.id());
        }
    }
}
