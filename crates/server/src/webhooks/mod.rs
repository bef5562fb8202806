//! Outbound webhooks: the dispatcher (log → durable delivery queue → signed POSTs with
//! retries), Standard Webhooks signing, and the rules on where a webhook may point.

pub mod dispatcher;
pub mod sign;
pub mod target;

pub use dispatcher::{Sender, WebhookConfig};
