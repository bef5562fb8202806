//! How many conversations wait in each queue, kept by the writer.
//!
//! A conversation entering its group's queue is told its position (its `conversation_queued`
//! event carries it): everyone waiting in the group with a higher priority, or the same one and
//! queued before it. SQLite counts a range of an index entry by entry, so a `COUNT(*)` over the
//! waiting conversations made every new conversation cost time in proportion to its queue:
//! `parley bench ingest --conversations 20000`, where nearly every message is a conversation's
//! first, acknowledged under 800 messages/s, the writer spending 86 % of its time counting
//! (BENCHMARKS.md, "A cost that grows with the queue").
//!
//! The writer, the only connection that writes, keeps instead each queue's number of waiting
//! conversations per priority: counted once from the file when first needed, then moved by every
//! conversation it writes (from the stored place to the new one). A position is then those
//! counts less the few that wait behind it at its own priority, counted from the back (for a
//! conversation queued now: none). Like the writer's other memory (`seqs.rs`, `cache.rs`), it is
//! forgotten when a command is undone, a batch is lost, or another connection wrote.
//!
//! "Waiting" is exactly what the reader's count says: `status = 'open' AND assignee_id IS NULL`;
//! the priority orders the queue, then `queued_at` (a waiting row without one is ahead of no one
//! at its priority, as in SQL, where `NULL < x` is not true), then the id.

use std::collections::{BTreeMap, HashMap};

use parley_core::conversation::{Conversation, Status};
use parley_core::Uuid;
use rusqlite::{params, Connection, OptionalExtension};

/// An account's group (or its conversations without one).
type Queue = (Uuid, Option<Uuid>);

/// Where a conversation stands as its row says: waiting in a queue at a priority, since
/// `queued_at` — or not waiting (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    queue: Queue,
    priority: i64,
    queued_at: Option<i64>,
}

impl Place {
    /// Where `c` waits once written.
    pub(crate) fn of(account: Uuid, c: &Conversation) -> Option<Place> {
        (c.status == Status::Open && c.assignee.is_none()).then(|| Place {
            queue: (account, c.group_id),
            priority: c.priority,
            queued_at: c.queued_at.map(|t| t.millis()),
        })
    }

    /// Where the conversation `id` waits as stored (in this transaction).
    pub(crate) fn stored(db: &Connection, account: Uuid, id: Uuid) -> rusqlite::Result<Option<Place>> {
        let row = db
            .prepare_cached(
                "SELECT group_id, priority, queued_at FROM conversations
                 WHERE id = ?1 AND account_id = ?2 AND status = 'open' AND assignee_id IS NULL",
            )?
            .query_row(params![id, account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        Ok(row.map(|(group, priority, queued_at)| Place { queue: (account, group), priority, queued_at }))
    }
}

/// A queue's waiting conversations at one priority: all of them, and those without `queued_at`.
#[derive(Debug, Default, Clone, Copy)]
struct Waiting {
    all: i64,
    unqueued: i64,
}

#[derive(Default)]
pub(crate) struct Queues {
    counted: HashMap<Queue, BTreeMap<i64, Waiting>>,
}

impl Queues {
    pub(crate) fn forget(&mut self) {
        self.counted.clear();
    }

    /// A conversation written from `before` (as stored) to `after`; queues not yet counted are
    /// left to be counted from the file.
    pub(crate) fn moved(&mut self, before: Option<Place>, after: Option<Place>) {
        if before == after {
            return;
        }
        for (place, by) in [(before, -1), (after, 1)] {
            let Some(place) = place else { continue };
            if let Some(counts) = self.counted.get_mut(&place.queue) {
                let waiting = counts.entry(place.priority).or_default();
                waiting.all += by;
                if place.queued_at.is_none() {
                    waiting.unqueued += by;
                }
            }
        }
    }

    /// The conversations ahead of `c` in its queue (were it waiting, queued at `c.queued_at`, or
    /// at its creation without one), as the reader's `COUNT(*)` has them. `stored`: where `c`
    /// waits as stored.
    pub(crate) fn ahead_of(
        &mut self,
        db: &Connection,
        account: Uuid,
        c: &Conversation,
        stored: Option<Place>,
    ) -> rusqlite::Result<i64> {
        let queue = (account, c.group_id);
        let queued = c.queued_at.unwrap_or(c.created_at).millis();
        let counts = match self.counted.get(&queue) {
            Some(counts) => counts,
            None => {
                let counts = count(db, queue)?;
                self.counted.entry(queue).or_insert(counts)
            }
        };
        let higher: i64 = counts.range(c.priority.saturating_add(1)..).map(|(_, w)| w.all).sum();
        let same = counts.get(&c.priority).map_or(0, |w| w.all - w.unqueued);
        // At its own priority, those queued after it (or with it, and a larger id) are not ahead:
        // counted from the back, where a conversation queued now has almost no one.
        let behind: i64 = db
            .prepare_cached(
                "SELECT COUNT(*) FROM conversations WHERE account_id = ?1 AND group_id IS ?2 AND status = 'open'
                 AND assignee_id IS NULL AND priority = ?3 AND (queued_at > ?4 OR (queued_at = ?4 AND id >= ?5))",
            )?
            .query_row(params![account, c.group_id, c.priority, queued, c.id], |r| r.get(0))?;
        // The conversation itself is never ahead of itself; the counts hold it if it waits in this
        // queue, and `behind` only when it stands at or after `queued` at its own priority.
        let itself = match stored {
            Some(p) if p.queue == queue => {
                p.priority > c.priority || (p.priority == c.priority && p.queued_at.is_some_and(|q| q < queued))
            }
            _ => false,
        };
        Ok(higher + same - behind - i64::from(itself))
    }
}

/// A queue's waiting conversations per priority, counted from the file.
fn count(db: &Connection, (account, group): Queue) -> rusqlite::Result<BTreeMap<i64, Waiting>> {
    let mut stmt = db.prepare_cached(
        "SELECT priority, COUNT(*), COUNT(*) - COUNT(queued_at) FROM conversations
         WHERE account_id = ?1 AND group_id IS ?2 AND status = 'open' AND assignee_id IS NULL GROUP BY priority",
    )?;
    let rows =
        stmt.query_map(params![account, group], |r| Ok((r.get(0)?, Waiting { all: r.get(1)?, unqueued: r.get(2)? })))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use parley_core::agent::AgentKind;
    use parley_core::conversation::Assignee;
    use parley_core::Timestamp;

    use super::*;
    use crate::sqlite::conn::{ReadConn, WriteConn};
    use crate::sqlite::{schema, WriterMemory};
    use crate::tx::{Reads, Tx};

    /// xorshift: the same walk on every run.
    struct Walk(u64);

    impl Walk {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn conversation(id: Uuid) -> Conversation {
        Conversation {
            id,
            integration_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            status: Status::Created,
            assignee: None,
            group_id: None,
            tags: vec![],
            messages_count: 0,
            priority: 0,
            created_at: Timestamp::from_millis(1_000),
            updated_at: Timestamp::from_millis(1_000),
            first_response_at: None,
            last_customer_message_at: None,
            ended_at: None,
            queued_at: None,
        }
    }

    /// Conversations moved at random between queues, priorities, times (with ties), states and
    /// assignees, with the writer's memory now and then forgotten or undone: at every step the
    /// writer's position of a conversation — as it stands, or as it would stand queued now — is
    /// the reader's `COUNT(*)`.
    #[test]
    fn the_writers_counted_positions_are_the_readers_counts() {
        let mut db = Connection::open_in_memory().expect("open");
        schema::migrate(&mut db).expect("schema");
        db.execute_batch("BEGIN").expect("begin");
        let memory = WriterMemory::default();
        let mut appended = Vec::new();
        let (account, groups) = (Uuid::now_v7(), [None, Some(Uuid::now_v7()), Some(Uuid::now_v7())]);
        let statuses = [Status::Created, Status::Open, Status::Open, Status::Open, Status::InProgress, Status::Ended];
        let mut all: Vec<Conversation> = (0..40).map(|_| conversation(Uuid::now_v7())).collect();
        let mut walk = Walk(0x2545_F491_4F6C_DD1D);
        let (mut compared, mut waiting_seen) = (0, 0);
        for step in 0..1_500 {
            let i = walk.below(all.len() as u64) as usize;
            let c = &mut all[i];
            match walk.below(5) {
                0 => c.status = statuses[walk.below(statuses.len() as u64) as usize],
                1 => c.group_id = groups[walk.below(3) as usize],
                2 => c.priority = walk.below(3) as i64,
                3 => c.queued_at = (walk.below(4) > 0).then(|| Timestamp::from_millis(1_000 + walk.below(6) as i64)),
                _ => c.assignee = (walk.below(3) == 0).then(|| Assignee { kind: AgentKind::Agent, id: Uuid::now_v7() }),
            }
            let now = Timestamp::from_millis(1_000 + walk.below(8) as i64);
            let mut tx = WriteConn { db: &db, now, appended: &mut appended, message: None, memory: &memory };
            tx.put_conversation(account, &all[i]).expect("write");
            match step % 97 {
                13 => memory.forget(),
                41 => memory.command_undone(),
                _ => {}
            }
            for _ in 0..3 {
                let mut probe = all[walk.below(all.len() as u64) as usize].clone();
                if walk.below(2) == 0 {
                    // As `back_of_queue` asks: this conversation, were it queued now.
                    probe.queued_at = Some(now);
                    probe.status = Status::Open;
                    probe.assignee = None;
                }
                waiting_seen += i64::from(probe.status == Status::Open && probe.assignee.is_none());
                let tx = WriteConn { db: &db, now, appended: &mut appended, message: None, memory: &memory };
                let counted = tx.queue_position(account, &probe).expect("writer");
                let read = ReadConn(&db).queue_position(account, &probe).expect("reader");
                assert_eq!(counted, read, "step {step}: {probe:?}");
                compared += 1;
            }
        }
        assert!(compared >= 4_500 && waiting_seen > 1_000, "the walk compared too little");
        let waiting: i64 = db
            .query_row("SELECT COUNT(*) FROM conversations WHERE status = 'open' AND assignee_id IS NULL", [], |r| {
                r.get(0)
            })
            .expect("count");
        assert!(waiting > 0, "no conversation waits at the end: the walk is too weak");
    }
}
