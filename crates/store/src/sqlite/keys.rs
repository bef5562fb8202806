//! An event's row key: its account's number above its `seq`, in one integer.
//!
//! The log's table was keyed by `(account_id, seq)` without a rowid. SQLite keeps such a table
//! in an index B-tree, whose inner pages hold whole rows (an event is about 900 bytes): four to
//! a page, so the tree was deep, and each split that an append caused rebalanced three pages
//! (`balance_nonroot`, 7 % of the writer in `bench ingest`). Keyed by an integer instead, the
//! inner pages hold hundreds of keys and an append at the end of an account's range splits by
//! the cheap path. `scripts/sql-floor` (`EVENTS=keyed`): the writer's SQL 8.5–8.8 µs per message
//! against 9.8–11.5, the WAL 13 % smaller (BENCHMARKS.md, `ingest`, step 26).
//!
//! Each account gets a number when it is made (`accounts.number`); its events' keys are that
//! number times 2^40 plus their `seq`, so an account's log is one range of keys in `seq` order.

use parley_core::Uuid;
use rusqlite::{Connection, OptionalExtension};

use crate::StoreError;

/// Bits of a key below the account's number: room for 2^40 (about 10^12) events an account.
const SEQ_BITS: u32 = 40;

/// The key of event `seq` of the account numbered `number`.
pub(super) fn key(number: i64, seq: i64) -> Result<i64, StoreError> {
    if !(0..1 << SEQ_BITS).contains(&seq) || !(0..1 << (62 - SEQ_BITS)).contains(&number) {
        return Err(StoreError::Backend(format!("event {seq} of account number {number} has no key")));
    }
    Ok(number << SEQ_BITS | seq)
}

/// The account's number; `None` if there is no such account.
pub(super) fn number(db: &Connection, account: Uuid) -> Result<Option<i64>, StoreError> {
    Ok(db.prepare_cached("SELECT number FROM accounts WHERE id = ?1")?.query_row([account], |r| r.get(0)).optional()?)
}

/// The keys of the account's events after `seq`: from (exclusive) and to (inclusive).
pub(super) fn after(number: i64, seq: i64) -> Result<(i64, i64), StoreError> {
    Ok((key(number, seq.max(0))?, key(number, (1 << SEQ_BITS) - 1)?))
}

/// The number a new account takes: one above the highest.
pub(super) const NEXT_NUMBER: &str = "(SELECT COALESCE(MAX(number), 0) + 1 FROM accounts)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogQuery;
    use crate::sqlite::conn::ReadConn;
    use crate::sqlite::schema;
    use crate::tx::Reads;
    use parley_core::Timestamp;
    use rusqlite::params;

    /// A log written before the keys keeps every event, each account's in its order, its
    /// conversations' links, and its pages by `seq`, by time and by conversation.
    #[test]
    fn a_log_of_the_schema_before_reads_as_it_was() {
        let mut db = Connection::open_in_memory().expect("open");
        schema::migrate_to(&mut db, 14).expect("the schema before the keys");
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let conversation = Uuid::now_v7();
        for account in [first, second] {
            db.execute("INSERT INTO accounts (id, body) VALUES (?1, '{}')", [account]).expect("account");
        }
        // Interleaved: the second account's events between the first's, a chain in the first.
        for seq in 1..=5i64 {
            for account in [second, first] {
                let (prev, n) = if account == first { ((seq > 1).then_some(seq - 1), Some(seq)) } else { (None, None) };
                let conversation = (account == first).then_some(conversation);
                db.execute(
                    "INSERT INTO events (account_id, seq, id, type, occurred_at, conversation_id, body, conversation_prev,
                        conversation_n)
                     VALUES (?1, ?2, ?3, 'tags_changed', ?4, ?5, ?6, ?7, ?8)",
                    params![account, seq, Uuid::now_v7(), 1000 * seq, conversation, format!("{{\"n\":{seq}}}"), prev, n],
                )
                .expect("event");
            }
        }
        db.execute(
            "INSERT INTO conversations (id, account_id, integration_id, customer_id, status, priority, body, tag_list)
             VALUES (?1, ?2, ?3, ?4, 'open', 0, '{}', '')",
            params![conversation, first, Uuid::now_v7(), Uuid::now_v7()],
        )
        .expect("conversation");
        db.execute(
            "INSERT INTO conversation_activity (id, last_event_seq, event_count) VALUES (?1, 5, 5)",
            [conversation],
        )
        .expect("activity");
        schema::migrate(&mut db).expect("migrates");

        let reads = ReadConn(&db);
        for account in [first, second] {
            let all = reads.log(account, &LogQuery { limit: 100, ..LogQuery::default() }).expect("log");
            assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
            assert!(all.iter().all(|e| e.account_id == account));
            let after = reads.log(account, &LogQuery { after: 3, limit: 100, ..LogQuery::default() }).expect("log");
            assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
            let since = Some(Timestamp::from_millis(2000));
            let by_time = reads.log(account, &LogQuery { since, limit: 2, ..LogQuery::default() }).expect("log");
            assert_eq!(by_time.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        }
        let q = LogQuery { conversation_ids: vec![conversation], after: 1, limit: 100, ..LogQuery::default() };
        let chain = reads.log(first, &q).expect("log");
        assert_eq!(chain.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert_eq!(&*chain[0].json, r#"{"n":2}"#);
        let numbers: Vec<i64> = db
            .prepare("SELECT number FROM accounts ORDER BY number")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(numbers, vec![1, 2], "each account numbered, none twice");
        db.execute(
            &format!("INSERT INTO accounts (id, body, number) VALUES (?1, '{{}}', {NEXT_NUMBER})"),
            [Uuid::now_v7()],
        )
        .expect("a new account");
        assert_eq!(number(&db, Uuid::now_v7()).expect("read"), None);
        let highest: i64 = db.query_row("SELECT MAX(number) FROM accounts", [], |r| r.get(0)).expect("read");
        assert_eq!(highest, 3, "a new account numbered above the others");
    }

    #[test]
    fn an_accounts_keys_are_one_range_in_seq_order_apart_from_the_next_accounts() {
        let (a, b) = (key(1, 1).unwrap(), key(1, 2).unwrap());
        assert!(a < b);
        let (from, to) = after(1, 0).unwrap();
        assert!(from < a && b <= to);
        assert!(to < key(2, 0).unwrap());
        assert!(key(1, 1 << 40).is_err(), "a seq past the key's room is refused");
        assert!(key(-1, 1).is_err());
    }
}
