//! Live fan-out inside one process: each account has a broadcast channel of its committed log
//! entries. Publishing never waits for a subscriber; one that falls behind is told it lagged
//! and catches up from the store by cursor, so it neither slows writers nor loses events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use parley_core::Uuid;
use parley_store::LogEntry;
use tokio::sync::broadcast;

const CHANNEL_CAPACITY: usize = 4096;

#[derive(Default)]
pub struct Hub {
    accounts: Mutex<HashMap<Uuid, broadcast::Sender<Arc<LogEntry>>>>,
}

impl Hub {
    /// Called by the store after each commit, in commit order.
    pub fn publish(&self, entries: &[LogEntry]) {
        let Ok(mut accounts) = self.accounts.lock() else { return };
        for entry in entries {
            if let Some(sender) = accounts.get(&entry.account_id) {
                if sender.send(Arc::new(entry.clone())).is_err() {
                    // Nobody listens any more.
                    accounts.remove(&entry.account_id);
                }
            }
        }
    }

    pub fn subscribe(&self, account: Uuid) -> broadcast::Receiver<Arc<LogEntry>> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        accounts.entry(account).or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0).subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.accounts.lock().map(|a| a.values().map(|s| s.receiver_count()).sum()).unwrap_or(0)
    }
}
