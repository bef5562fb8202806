//! Live fan-out inside one process: each account has a broadcast channel of what happens live —
//! committed log entries and ephemeral signals (typing), which are never stored. Publishing
//! never waits for a subscriber; one that falls behind is told it lagged and either catches up
//! from the store by cursor (SSE) or is closed with its cursor (WebSocket), so it slows neither
//! writers nor other subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use parley_core::message::AuthorType;
use parley_core::Uuid;
use parley_store::LogEntry;
use tokio::sync::broadcast;

const CHANNEL_CAPACITY: usize = 4096;

/// A typing indicator: live only, never logged.
#[derive(Debug)]
pub struct Typing {
    pub conversation_id: Uuid,
    pub author: AuthorType,
    pub author_id: Uuid,
    /// The frame as sockets send it, serialised once for every subscriber.
    pub frame: String,
}

#[derive(Debug, Clone)]
pub enum Live {
    Event(Arc<LogEntry>),
    Typing(Arc<Typing>),
    /// An event of someone else's conversation that moves queues or presence (customer feeds).
    Signal(Arc<LogEntry>),
}

/// Wakes a background worker when an event it cares about commits (on any node).
struct Watch {
    wants: fn(&LogEntry) -> bool,
    wake: Arc<Wake>,
}

/// A worker's doorbell, with the accounts whose events rang it: the worker can go straight to
/// them instead of first listing every account.
#[derive(Default)]
pub struct Wake {
    notify: tokio::sync::Notify,
    /// A set: a batch may carry hundreds of accounts, and this runs on every commit.
    accounts: Mutex<HashSet<Uuid>>,
}

impl Wake {
    fn ring(&self, accounts: impl Iterator<Item = Uuid>) {
        if let Ok(mut waiting) = self.accounts.lock() {
            waiting.extend(accounts);
        }
        // A permit is stored when the worker is busy, so a ring is never lost.
        self.notify.notify_one();
    }

    /// Waits for a ring; the accounts rung for since the last call (possibly none, when their
    /// ring was already taken by the previous call).
    pub async fn rung(&self) -> Vec<Uuid> {
        self.notify.notified().await;
        self.accounts.lock().map(|mut waiting| waiting.drain().collect()).unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Hub {
    accounts: Mutex<HashMap<Uuid, broadcast::Sender<Live>>>,
    watches: Mutex<Vec<Watch>>,
    /// Customers' own feeds, used while this hub sees every account's events in order.
    customers: crate::customer_feeds::CustomerFeeds,
    ordered: std::sync::atomic::AtomicBool,
    /// Where this node's live traffic goes to reach other nodes, when there are several.
    fanout: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<crate::fanout::Outgoing>>,
}

impl Hub {
    fn send(&self, account: Uuid, item: Live) {
        let Ok(mut accounts) = self.accounts.lock() else { return };
        if let Some(sender) = accounts.get(&account) {
            if sender.send(item).is_err() {
                // Nobody listens any more.
                accounts.remove(&account);
            }
        }
    }

    pub fn attach_fanout(&self, to: tokio::sync::mpsc::UnboundedSender<crate::fanout::Outgoing>) {
        let _ = self.fanout.set(to);
    }

    /// Called by the store after each commit: to local subscribers and to the other nodes.
    pub fn publish(&self, entries: &[LogEntry]) {
        self.publish_local(entries);
        if let Some(fanout) = self.fanout.get() {
            for entry in entries {
                let _ = fanout.send(crate::fanout::Outgoing::Event(entry.clone()));
            }
        }
    }

    /// To this node's subscribers only (what another node committed).
    pub fn publish_local(&self, entries: &[LogEntry]) {
        let ordered = self.is_ordered();
        for entry in entries {
            let entry = Arc::new(entry.clone());
            if ordered {
                self.customers.route(&entry);
            }
            self.send(entry.account_id, Live::Event(entry));
        }
        if let Ok(watches) = self.watches.lock() {
            for watch in watches.iter() {
                let mut wanted = entries.iter().filter(|e| (watch.wants)(e)).map(|e| e.account_id).peekable();
                if wanted.peek().is_some() {
                    watch.wake.ring(wanted);
                }
            }
        }
    }

    /// A doorbell rung whenever an event `wants` accepts commits.
    pub fn watch(&self, wants: fn(&LogEntry) -> bool) -> Arc<Wake> {
        let wake = Arc::new(Wake::default());
        if let Ok(mut watches) = self.watches.lock() {
            watches.push(Watch { wants, wake: wake.clone() });
        }
        wake
    }

    pub fn typing(&self, account: Uuid, typing: Typing) {
        let typing = Arc::new(typing);
        if self.is_ordered() {
            self.customers.route_typing(&typing);
        }
        if let Some(fanout) = self.fanout.get() {
            let _ = fanout.send(crate::fanout::Outgoing::Typing(account, typing.clone()));
        }
        self.send(account, Live::Typing(typing));
    }

    pub fn typing_local(&self, account: Uuid, typing: Typing) {
        self.send(account, Live::Typing(Arc::new(typing)));
    }

    /// Declares that this hub sees every account's events in `seq` order (the embedded store on
    /// one node): customer sockets then get their own routed feeds.
    pub fn set_ordered(&self, ordered: bool) {
        self.ordered.store(ordered, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_ordered(&self) -> bool {
        self.ordered.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn customer_feeds(&self) -> &crate::customer_feeds::CustomerFeeds {
        &self.customers
    }

    pub fn subscribe(&self, account: Uuid) -> broadcast::Receiver<Live> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        accounts.entry(account).or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0).subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.accounts.lock().map(|a| a.values().map(|s| s.receiver_count()).sum()).unwrap_or(0)
    }
}
