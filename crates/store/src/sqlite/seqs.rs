//! Each account's last `seq`, kept by the writer and written once per batch.
//!
//! Every event takes the next `seq` of its account. Taking it with an `UPDATE … RETURNING` on
//! the account's row cost each event a statement, and each command a copy of the accounts page
//! in its savepoint journal. The writer is the only connection that appends, so it keeps the
//! numbers itself: loaded from the row on first use, advanced in memory, and written to the rows
//! of the accounts a batch moved just before that batch commits — in the same transaction, so
//! the row and the log never disagree on the file.
//!
//! What a command took is given back if the command is rolled back to its savepoint; if the
//! whole batch is lost, or another connection may have appended (`PRAGMA data_version` moved),
//! everything is forgotten and read again from the rows.

use std::collections::HashMap;

use parley_core::Uuid;
use rusqlite::{Connection, OptionalExtension};

/// The account's last `seq` as committed to its row; `None` if there is no such account.
pub(crate) fn stored(db: &Connection, account: Uuid) -> rusqlite::Result<Option<i64>> {
    db.prepare_cached("SELECT last_seq FROM accounts WHERE id = ?1")?.query_row([account], |r| r.get(0)).optional()
}

#[derive(Default)]
pub(crate) struct Seqs {
    /// The last `seq` given out per account: committed, or taken in the running batch.
    last: HashMap<Uuid, i64>,
    /// Accounts whose `last` moved in the running batch, to be written before it commits.
    moved: Vec<Uuid>,
    /// What the running command changed: each account's `last` before the command first moved it.
    undo: Vec<(Uuid, i64)>,
}

impl Seqs {
    /// The account's last `seq`; `None` if there is no such account.
    pub(crate) fn current(&mut self, db: &Connection, account: Uuid) -> rusqlite::Result<Option<i64>> {
        if let Some(last) = self.last.get(&account) {
            return Ok(Some(*last));
        }
        let stored = stored(db, account)?;
        if let Some(last) = stored {
            self.last.insert(account, last);
        }
        Ok(stored)
    }

    /// Takes the account's next `seq`; `None` if there is no such account.
    pub(crate) fn take_next(&mut self, db: &Connection, account: Uuid) -> rusqlite::Result<Option<i64>> {
        let Some(last) = self.current(db, account)? else {
            return Ok(None);
        };
        if !self.undo.iter().any(|(a, _)| *a == account) {
            self.undo.push((account, last));
        }
        if !self.moved.contains(&account) {
            self.moved.push(account);
        }
        self.last.insert(account, last + 1);
        Ok(Some(last + 1))
    }

    /// The running command is kept (released from its savepoint).
    pub(crate) fn command_kept(&mut self) {
        self.undo.clear();
    }

    /// The running command was rolled back to its savepoint: its numbers are free again.
    pub(crate) fn command_undone(&mut self) {
        for (account, before) in self.undo.drain(..) {
            self.last.insert(account, before);
        }
    }

    /// Writes the accounts the batch moved; run inside the batch's transaction, before COMMIT.
    pub(crate) fn write_moved(&mut self, db: &Connection) -> rusqlite::Result<()> {
        let mut update = db.prepare_cached("UPDATE accounts SET last_seq = ?2 WHERE id = ?1")?;
        for account in self.moved.drain(..) {
            if let Some(last) = self.last.get(&account) {
                update.execute(rusqlite::params![account, last])?;
            }
        }
        Ok(())
    }

    /// The batch did not commit, or the file changed under the writer: read everything again.
    pub(crate) fn forget(&mut self) {
        self.last.clear();
        self.moved.clear();
        self.undo.clear();
    }
}
