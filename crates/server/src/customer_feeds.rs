//! Customers' own live feeds. A customer's socket follows only that customer's conversations,
//! so rather than waking every customer socket of an account for every event of the account
//! (10,000 sockets × every message), the hub routes each event to the one customer whose
//! conversation it is, and sends the few events that move queues or presence on a separate,
//! low-rate feed of the account (`signals`).
//!
//! This needs the hub to see each account's events in `seq` order, so that a socket can trust
//! that an event arriving on its feed has nothing of its own still on the way before it: true
//! of the embedded SQLite store (one writer, commits reach the hub in order) on a single node.
//! With PostgreSQL or several nodes the hub is not ordered and customer sockets keep following
//! the account feed with their gapless tail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use parley_core::event::EventType;
use parley_core::Uuid;
use parley_store::LogEntry;
use tokio::sync::broadcast;

use crate::hub::{Live, Typing};

const FEED_CAPACITY: usize = 32;
const SIGNAL_CAPACITY: usize = 4096;

struct Feed {
    sender: broadcast::Sender<Live>,
    conversations: Vec<Uuid>,
}

#[derive(Default)]
struct Routes {
    feeds: HashMap<Uuid, Feed>,
    owners: HashMap<Uuid, Uuid>,
    signals: HashMap<Uuid, broadcast::Sender<Live>>,
}

impl Routes {
    fn drop_customer(&mut self, customer: Uuid) {
        if let Some(feed) = self.feeds.remove(&customer) {
            for conversation in feed.conversations {
                self.owners.remove(&conversation);
            }
        }
    }

    fn own(&mut self, customer: Uuid, conversation: Uuid) {
        if let Some(feed) = self.feeds.get_mut(&customer) {
            if !feed.conversations.contains(&conversation) {
                feed.conversations.push(conversation);
            }
            self.owners.insert(conversation, customer);
        }
    }
}

/// Events every waiting customer of the account may need: presence (agent availability) and
/// what moves queue positions or estimates.
pub fn is_signal(entry: &LogEntry) -> bool {
    match entry.event_type {
        EventType::AgentStatusChanged
        | EventType::ConversationQueued
        | EventType::ConversationAssigned
        | EventType::ConversationTransferred
        | EventType::ConversationClosed
        | EventType::ConversationBlocked => true,
        // A first answer is new history for the wait estimate. (The key cannot occur unescaped
        // inside a string value, so the raw envelope is enough to tell.)
        EventType::MessageSent => entry.json.contains("\"first_response\":true"),
        _ => false,
    }
}

/// The customer a `conversation_created` event names.
fn created_for(entry: &LogEntry) -> Option<Uuid> {
    let event: serde_json::Value = serde_json::from_str(&entry.json).ok()?;
    event["data"]["customer"]["id"].as_str()?.parse().ok()
}

#[derive(Default)]
pub struct CustomerFeeds {
    routes: Mutex<Routes>,
}

/// A customer's subscription: its own conversations' events and typing, and the account's
/// signals.
pub struct Subscription {
    pub own: broadcast::Receiver<Live>,
    pub signals: broadcast::Receiver<Live>,
}

impl CustomerFeeds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes a customer's socket (before it reads storage, so nothing is missed).
    pub fn subscribe(&self, account: Uuid, customer: Uuid) -> Subscription {
        let mut routes = self.lock();
        let own = routes
            .feeds
            .entry(customer)
            .or_insert_with(|| Feed { sender: broadcast::channel(FEED_CAPACITY).0, conversations: Vec::new() })
            .sender
            .subscribe();
        let signals =
            routes.signals.entry(account).or_insert_with(|| broadcast::channel(SIGNAL_CAPACITY).0).subscribe();
        Subscription { own, signals }
    }

    /// Routes these conversations' events to the customer's feed.
    pub fn own(&self, customer: Uuid, conversations: &[Uuid]) {
        let mut routes = self.lock();
        for conversation in conversations {
            routes.own(customer, *conversation);
        }
    }

    pub fn route(&self, entry: &Arc<LogEntry>) {
        let signal = is_signal(entry);
        let mut routes = self.lock();
        if routes.feeds.is_empty() {
            return;
        }
        if let (EventType::ConversationCreated, Some(conversation)) = (entry.event_type, entry.conversation_id) {
            if let Some(customer) = created_for(entry) {
                routes.own(customer, conversation);
            }
        }
        if let Some(customer) = entry.conversation_id.and_then(|c| routes.owners.get(&c).copied()) {
            let gone = routes.feeds.get(&customer).is_none_or(|f| f.sender.send(Live::Event(entry.clone())).is_err());
            if gone {
                routes.drop_customer(customer);
            }
        }
        if signal {
            if let Some(signals) = routes.signals.get(&entry.account_id) {
                if signals.send(Live::Signal(entry.clone())).is_err() {
                    routes.signals.remove(&entry.account_id);
                }
            }
        }
    }

    pub fn route_typing(&self, typing: &Arc<Typing>) {
        let mut routes = self.lock();
        if let Some(customer) = routes.owners.get(&typing.conversation_id).copied() {
            let gone = routes.feeds.get(&customer).is_none_or(|f| f.sender.send(Live::Typing(typing.clone())).is_err());
            if gone {
                routes.drop_customer(customer);
            }
        }
    }
}
