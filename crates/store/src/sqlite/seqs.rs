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
    Ok(stored_row(db, account)?.map(|row| row.last))
}

/// What the writer keeps of an account.
#[derive(Clone, Copy)]
struct Kept {
    /// The last `seq` given out.
    last: i64,
    /// The account's number, which its events' keys begin with (`keys.rs`).
    number: i64,
}

fn stored_row(db: &Connection, account: Uuid) -> rusqlite::Result<Option<Kept>> {
    db.prepare_cached("SELECT last_seq, number FROM accounts WHERE id = ?1")?
        .query_row([account], |r| Ok(Kept { last: r.get(0)?, number: r.get(1)? }))
        .optional()
}

#[derive(Default)]
pub(crate) struct Seqs {
    /// The last `seq` given out per account: committed, or taken in the running batch.
    last: HashMap<Uuid, Kept>,
    /// Accounts whose `last` moved in the running batch, to be written before it commits.
    moved: Vec<Uuid>,
    /// What the running command changed: each account's `last` before the command first moved it.
    undo: Vec<(Uuid, i64)>,
}

impl Seqs {
    /// The account's last `seq`; `None` if there is no such account.
    pub(crate) fn current(&mut self, db: &Connection, account: Uuid) -> rusqlite::Result<Option<i64>> {
        Ok(self.kept(db, account)?.map(|kept| kept.last))
    }

    fn kept(&mut self, db: &Connection, account: Uuid) -> rusqlite::Result<Option<Kept>> {
        if let Some(kept) = self.last.get(&account) {
            return Ok(Some(*kept));
        }
        let stored = stored_row(db, account)?;
        if let Some(kept) = stored {
            self.last.insert(account, kept);
        }
        Ok(stored)
    }

    /// Takes the account's next `seq`, with the account's number; `None` if there is no such
    /// account.
    pub(crate) fn take_next(&mut self, db: &Connection, account: Uuid) -> rusqlite::Result<Option<(i64, i64)>> {
        let Some(kept) = self.kept(db, account)? else {
            return Ok(None);
        };
        if !self.undo.iter().any(|(a, _)| *a == account) {
            self.undo.push((account, kept.last));
        }
        if !self.moved.contains(&account) {
            self.moved.push(account);
        }
        let seq = kept.last + 1;
        self.last.insert(account, Kept { last: seq, ..kept });
        Ok(Some((seq, kept.number)))
    }

    /// The running command is kept (released from its savepoint).
    pub(crate) fn command_kept(&mut self) {
        self.undo.clear();
    }

    /// The running command was rolled back to its savepoint: its numbers are free again.
    pub(crate) fn command_undone(&mut self) {
        for (account, before) in self.undo.drain(..) {
            if let Some(kept) = self.last.get_mut(&account) {
                kept.last = before;
            }
        }
    }

    /// Writes the accounts the batch moved; run inside the batch's transaction, before COMMIT.
    pub(crate) fn write_moved(&mut self, db: &Connection) -> rusqlite::Result<()> {
        let mut update = db.prepare_cached("UPDATE accounts SET last_seq = ?2 WHERE id = ?1")?;
        for account in self.moved.drain(..) {
            if let Some(kept) = self.last.get(&account) {
                update.execute(rusqlite::params![account, kept.last])?;
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
