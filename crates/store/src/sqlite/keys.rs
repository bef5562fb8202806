//! An event's row key: its account's number above its `seq`, in one integer.
//!
//! The log's table was keyed by `(account_id, seq)` without a rowid. SQLite keeps such a table
//! in an index B-tree, whose inner pages hold whole rows (an event is about 900 bytes): two to
//! four to a page, so at 10 million events the tree was 11 levels deep, and each split that an
//! append caused rebalanced three pages (`balance_nonroot`). Keyed by an integer instead, the
//! inner pages hold hundreds of keys (4 levels at 10 million events) and an append at the end of
//! an account's range splits by the cheap path. The gain grows with the log: on a new one it is
//! inside the machine's noise, and `bench ingest` into a log of 10 million events took 24.0–24.2
//! µs of server CPU per message against 27.8–29.6 (BENCHMARKS.md, `ingest`, step 29).
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

/// The number of an account that must exist (one whose conversation is being read).
pub(super) fn existing_number(db: &Connection, account: Uuid) -> Result<i64, StoreError> {
    number(db, account)?.ok_or_else(|| StoreError::not_found("account"))
}

/// The keys of the account's events after `seq`: from (exclusive) and to (inclusive).
pub(super) fn after(number: i64, seq: i64) -> Result<(i64, i64), StoreError> {
    Ok((key(number, seq.max(0))?, key(number, (1 << SEQ_BITS) - 1)?))
}

/// The number a new account takes: one above the highest.
pub(super) const NEXT_NUMBER: &str = "(SELECT COALESCE(MAX(number), 0) + 1 FROM accounts)";

/// When the newest event in the log occurred (0 for an empty log). The commit clock never runs
/// backwards, so each account's last event is its newest: one lookup by key per account, where
/// `MAX(occurred_at)` over the log read its whole time index at every start (1 s at 10 million
/// events).
pub(super) fn newest_event_time(db: &Connection) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT COALESCE(MAX(e.occurred_at), 0) FROM accounts a JOIN events e ON e.k = (a.number << {SEQ_BITS}) | a.last_seq"
    );
    Ok(db.query_row(&sql, [], |r| r.get(0))?)
}

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

    /// The rekeying rewrites the whole log: on a database in WAL mode it goes through a rollback
    /// journal, so the log is written once into the file rather than into a WAL as large as
    /// itself, and the database is in WAL mode again afterwards.
    #[test]
    fn a_log_is_rekeyed_outside_the_wal_and_the_database_left_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        let mut db = Connection::open(&path).expect("open");
        let mode: String = db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).expect("wal");
        assert_eq!(mode, "wal");
        schema::migrate_to(&mut db, 14).expect("the schema before the keys");
        let account = Uuid::now_v7();
        db.execute("INSERT INTO accounts (id, body) VALUES (?1, '{}')", [account]).expect("account");
        let body = "x".repeat(900);
        for seq in 1..=2000i64 {
            db.execute(
                "INSERT INTO events (account_id, seq, id, type, occurred_at, body) VALUES (?1, ?2, ?3, 'tags_changed', ?2, ?4)",
                params![account, seq, Uuid::now_v7(), body],
            )
            .expect("event");
        }
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
        schema::migrate(&mut db).expect("migrates");

        let mode: String = db.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("mode");
        assert_eq!(mode, "wal", "back in WAL mode for the readers");
        let wal = std::fs::metadata(dir.path().join("p.db-wal")).map_or(0, |m| m.len());
        assert!(wal < 256 * 1024, "the rewritten log (about 2 MB) went through the WAL: {wal} bytes");
        let all = ReadConn(&db).log(account, &LogQuery { limit: 5000, ..LogQuery::default() }).expect("log");
        assert_eq!(all.len(), 2000);
        assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    }

    /// After a restart the commit clock goes on from the newest event of any account, even one
    /// stamped ahead of the wall clock (written before the machine's clock was set back).
    #[tokio::test]
    async fn the_commit_clock_resumes_from_the_newest_event_of_any_account() {
        use crate::ops::accounts::{create_account, NewKey};
        use crate::sqlite::{Durability, SqliteConfig, SqliteStore};
        use crate::store::Store;
        use crate::StoreExt;
        use parley_core::account::Role;
        use parley_core::event::{Actor, EventDraft, EventType};

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        let open = || {
            let config = SqliteConfig { path: path.clone(), durability: Durability::Normal };
            SqliteStore::open(config, std::sync::Arc::new(|_| {})).expect("store")
        };
        let note = || EventDraft {
            event_type: EventType::TagsChanged,
            conversation_id: None,
            channel: None,
            actor: Actor::system(),
            data: serde_json::json!({}),
        };
        let key = || NewKey {
            name: "k".into(),
            role: Role::Admin,
            agent_id: None,
            hash: Uuid::now_v7().to_string(),
            prefix: "p".into(),
        };
        let store = open();
        let (first, second) = store
            .write(move |tx| {
                let (first, _) = create_account(tx, "First".into(), key())?;
                let (second, _) = create_account(tx, "Second".into(), key())?;
                tx.append(first.id, note())?;
                tx.append(second.id, note())?;
                Ok((first.id, second.id))
            })
            .await
            .expect("write");
        store.close().await;

        let ahead = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()
            as i64
            + 3_600_000;
        let db = Connection::open(&path).expect("open");
        let moved = db
            .execute(
                "UPDATE events SET occurred_at = ?1 WHERE account_id = ?2 AND seq = (SELECT last_seq FROM accounts WHERE id = ?2)",
                params![ahead, first],
            )
            .expect("update");
        assert_eq!(moved, 1);
        drop(db);

        let store = open();
        let event = store.write(move |tx| tx.append(second, note())).await.expect("write");
        assert!(event.occurred_at.millis() >= ahead, "{} before {ahead}", event.occurred_at.millis());
        store.close().await;
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
