//! Each account's queue as its waiting customers' sockets see it, read once per change.
//!
//! At every queue signal (a conversation queued, assigned, transferred or ended…) every waiting
//! customer's socket must learn where its conversations stand. Each socket used to count the
//! queue ahead of each of its conversations (`Reads::queue_position`, a `COUNT(*)`) and read its
//! group's wait estimate: with N customers waiting, one signal cost of the order of N² index
//! entries and N estimates (`parley bench queue`: 281 ms of CPU per end at 1,000 waiting).
//! Here the first socket to ask after a change reads the account's queue once — every waiting
//! conversation, in one read, with the log position it reflects — and each group's estimate
//! once; the sockets asking meanwhile wait for that reading and use it.
//!
//! Positions follow `queue_position`'s rule exactly: ahead of a conversation are those of its
//! group with a higher priority, and those of its priority queued before it (or at the same
//! moment with a smaller id); a conversation without `queued_at` stands at its creation and is
//! ahead of no one at its priority.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use parley_core::conversation::Conversation;
use parley_core::routing::WaitEstimate;
use parley_core::{Timestamp, Uuid};
use parley_store::ops::routing::group_estimate;
use parley_store::{Store, StoreError, StoreExt};

/// At most this many waiting conversations are read per account (beyond it, each socket counts
/// its own conversations, as before).
const MOST: usize = 200_000;

/// A customer in an integration: whose conversations a socket follows.
type CustomerKey = (Uuid, Uuid);
/// A waiting conversation and its group.
type InGroup = (Uuid, Option<Uuid>);
/// Per priority: how many wait, and the (`queued_at`, id) of those queued, in order.
type ByPriority = BTreeMap<i64, (i64, Vec<(i64, Uuid)>)>;
/// The last reading of one account's queue, behind the lock its readers wait on.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<QueueView>>>>;

/// One reading of an account's queue.
pub struct QueueView {
    /// The account's last `seq` when it was read: the view holds every change up to it.
    pub seq: i64,
    /// Whether every waiting conversation was read (see [`MOST`]).
    whole: bool,
    positions: HashMap<Uuid, i64>,
    estimates: HashMap<Option<Uuid>, Option<WaitEstimate>>,
    /// Each customer's waiting conversations (in an integration) and their groups.
    by_customer: HashMap<CustomerKey, Vec<InGroup>>,
}

impl QueueView {
    /// Where `c` stands (1 = next), if it waited when the queue was read.
    pub fn position(&self, c: Uuid) -> Option<i64> {
        self.positions.get(&c).copied()
    }

    /// The wait estimate of `group`, if read.
    pub fn estimate(&self, group: Option<Uuid>) -> Option<Option<WaitEstimate>> {
        self.estimates.get(&group).copied()
    }

    /// The customer's waiting conversations in the integration, each with its position and its
    /// group's estimate — `None` if the reading did not hold the whole queue.
    pub fn of_customer(&self, customer: Uuid, integration: Uuid) -> Option<Vec<(Uuid, i64, Option<WaitEstimate>)>> {
        if !self.whole {
            return None;
        }
        let mine = self.by_customer.get(&(customer, integration)).map(Vec::as_slice).unwrap_or_default();
        Some(
            mine.iter()
                .filter_map(|(c, group)| Some((*c, self.position(*c)?, self.estimate(*group).flatten())))
                .collect(),
        )
    }
}

/// Each waiting conversation's position, by the rule above.
fn positions(waiting: &[Conversation]) -> HashMap<Uuid, i64> {
    // Per group, per priority: how many wait, and the (queued_at, id) of those queued.
    let mut queues: HashMap<Option<Uuid>, ByPriority> = HashMap::new();
    for c in waiting {
        let at = queues.entry(c.group_id).or_default().entry(c.priority).or_default();
        at.0 += 1;
        if let Some(q) = c.queued_at {
            at.1.push((q.millis(), c.id));
        }
    }
    for by_priority in queues.values_mut() {
        for (_, queued) in by_priority.values_mut() {
            queued.sort_unstable();
        }
    }
    waiting
        .iter()
        .map(|c| {
            let by_priority = &queues[&c.group_id];
            let higher: i64 = by_priority.range(c.priority.saturating_add(1)..).map(|(_, (all, _))| *all).sum();
            let stands = (c.queued_at.unwrap_or(c.created_at).millis(), c.id);
            // Those of its own priority strictly before where it stands (never itself).
            let before = by_priority.get(&c.priority).map_or(0, |(_, queued)| queued.partition_point(|q| *q < stands));
            (c.id, 1 + higher + before as i64)
        })
        .collect()
}

#[derive(Default)]
pub struct QueueViews {
    accounts: Mutex<HashMap<Uuid, Slot>>,
}

impl QueueViews {
    /// The account's queue as of `seq` or later: the last reading if it is that recent, else a
    /// new one (read by the first caller; the others wait for it).
    pub async fn at_least(
        &self,
        store: &Arc<dyn Store>,
        account: Uuid,
        seq: i64,
        now: Timestamp,
    ) -> Result<Arc<QueueView>, StoreError> {
        let slot = {
            let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            accounts.entry(account).or_default().clone()
        };
        let mut last = slot.lock().await;
        if let Some(view) = last.as_ref().filter(|v| v.seq >= seq) {
            return Ok(view.clone());
        }
        let view = store
            .read(move |r| {
                let seq = r.last_seq(account)?;
                let waiting = r.waiting(account, MOST)?;
                let mut estimates = HashMap::new();
                for c in &waiting {
                    if let std::collections::hash_map::Entry::Vacant(e) = estimates.entry(c.group_id) {
                        e.insert(group_estimate(r, account, c.group_id, now)?);
                    }
                }
                let mut by_customer: HashMap<CustomerKey, Vec<InGroup>> = HashMap::new();
                for c in &waiting {
                    by_customer.entry((c.customer_id, c.integration_id)).or_default().push((c.id, c.group_id));
                }
                let whole = waiting.len() < MOST;
                Ok(QueueView { seq, whole, positions: positions(&waiting), estimates, by_customer })
            })
            .await?;
        let view = Arc::new(view);
        *last = Some(view.clone());
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use parley_core::conversation::Status;

    use super::*;

    fn waiting(group: u8, priority: i64, queued_at: Option<i64>, n: u128) -> Conversation {
        Conversation {
            id: Uuid::from_u128(n),
            integration_id: Uuid::nil(),
            customer_id: Uuid::nil(),
            status: Status::Open,
            assignee: None,
            group_id: (group > 0).then(|| Uuid::from_u128(1_000 + group as u128)),
            tags: vec![],
            messages_count: 1,
            priority,
            created_at: Timestamp::from_millis(500 + n as i64),
            updated_at: Timestamp::from_millis(500),
            first_response_at: None,
            last_customer_message_at: None,
            ended_at: None,
            queued_at: queued_at.map(Timestamp::from_millis),
        }
    }

    /// `queue_position`'s `COUNT(*)`, one conversation at a time.
    fn counted(all: &[Conversation], c: &Conversation) -> i64 {
        let stands = c.queued_at.unwrap_or(c.created_at).millis();
        1 + all
            .iter()
            .filter(|o| o.id != c.id && o.group_id == c.group_id)
            .filter(|o| {
                o.priority > c.priority
                    || (o.priority == c.priority
                        && o.queued_at.is_some_and(|q| q.millis() < stands || (q.millis() == stands && o.id < c.id)))
            })
            .count() as i64
    }

    /// Groups, priorities, tied times and conversations without `queued_at`, mixed at random:
    /// every position from the one reading is the conversation's own count.
    #[test]
    fn positions_from_one_reading_are_each_conversations_count() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for round in 0..50 {
            let all: Vec<Conversation> = (0..60u128)
                .map(|n| {
                    let queued = (next(5) > 0).then(|| 500 + next(40) as i64);
                    waiting(next(3) as u8, next(3) as i64, queued, n * 7 % 61)
                })
                .collect();
            let read = positions(&all);
            for c in &all {
                assert_eq!(read[&c.id], counted(&all, c), "round {round}: {c:?}");
            }
        }
    }
}
