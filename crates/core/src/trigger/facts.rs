//! What a trigger sees: the field values of one event, and the placeholders of its messages.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::routing::RollupStatus;
use crate::Timestamp;

/// The values of every condition field (and placeholder) at the moment an event is handled.
/// In a dry run, the `context` gives them; an absent one is empty (0, "", false, invisible).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Facts {
    /// 0–23, UTC.
    pub hour_of_day: i64,
    /// 0 = Monday … 6 = Sunday.
    pub day_of_week: i64,
    pub customer_previous_conversations: i64,
    pub customer_name: String,
    pub customer_email: String,
    pub customer_triggered: bool,
    pub account_status: RollupStatus,
    /// Each group's status, by group id.
    pub group_status: HashMap<Uuid, RollupStatus>,
    pub brand: String,
    pub customer_in_active_conversation: bool,
    pub customer_requesting_conversation: bool,
    pub customer_served: bool,
    /// The conversation's group: its name (and id).
    pub group: String,
    pub group_id: Option<Uuid>,
    pub sender: String,
    /// `agent` or `customer`.
    pub sender_type: String,
    pub message: String,
    pub initial_routing: bool,
    pub queue_size: i64,
    pub bot_name: String,
    pub wait_time_min: Option<i64>,
    pub wait_time_max: Option<i64>,
    /// The conversation's tags.
    pub tags: Vec<String>,
}

impl Facts {
    /// Sets the clock fields from `now` (UTC).
    pub fn at(&mut self, now: Timestamp) {
        let hours = now.millis().div_euclid(3_600_000);
        self.hour_of_day = hours.rem_euclid(24);
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        self.day_of_week = (hours.div_euclid(24) + 3).rem_euclid(7);
    }

    fn placeholder(&self, name: &str) -> Option<String> {
        let flag = |b: bool| if b { "true" } else { "false" }.to_string();
        let status = |s: RollupStatus| serde_json::to_value(s).ok()?.as_str().map(str::to_string);
        let minutes = |m: Option<i64>| m.map(|m| m.to_string()).unwrap_or_default();
        Some(match name {
            "hour_of_day" => self.hour_of_day.to_string(),
            "day_of_week" => self.day_of_week.to_string(),
            "customer_prev_conversations" => self.customer_previous_conversations.to_string(),
            "customer_name" => self.customer_name.clone(),
            "customer_email" => self.customer_email.clone(),
            "customer_triggered" => flag(self.customer_triggered),
            "account_status" => status(self.account_status)?,
            "bot_name" => self.bot_name.clone(),
            "customer_is_in_active_conversation" => flag(self.customer_in_active_conversation),
            "customer_requesting_conversation" => flag(self.customer_requesting_conversation),
            "customer_served" => flag(self.customer_served),
            "sender" => self.sender.clone(),
            "sender_type" => self.sender_type.clone(),
            "message" => self.message.clone(),
            "queue_size" => self.queue_size.to_string(),
            "wait_time_min" => minutes(self.wait_time_min),
            "wait_time_max" => minutes(self.wait_time_max),
            _ => return None,
        })
    }

    /// `text` with each `@placeholder` replaced by its value. The longest name that fits wins
    /// (`@customer_name` is not `@customer` + `_name`); a name must end where the word does, and
    /// an unknown `@word` is left as written.
    pub fn render(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('@') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let word_len = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
            let found = PLACEHOLDERS
                .iter()
                .filter(|name| name.len() == word_len && after.starts_with(**name))
                .find_map(|name| self.placeholder(name).map(|value| (name.len(), value)));
            match found {
                Some((len, value)) => {
                    out.push_str(&value);
                    rest = &after[len..];
                }
                None => {
                    out.push('@');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Every placeholder name, longest first.
pub const PLACEHOLDERS: &[&str] = &[
    "customer_is_in_active_conversation",
    "customer_requesting_conversation",
    "customer_prev_conversations",
    "customer_triggered",
    "customer_served",
    "customer_email",
    "account_status",
    "customer_name",
    "wait_time_min",
    "wait_time_max",
    "hour_of_day",
    "day_of_week",
    "sender_type",
    "queue_size",
    "bot_name",
    "message",
    "sender",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_by_the_longest_name_and_leave_unknown_words() {
        let facts = Facts {
            customer_name: "Kamal".into(),
            customer_email: "k@example.com".into(),
            queue_size: 3,
            wait_time_min: Some(2),
            wait_time_max: None,
            account_status: RollupStatus::Away,
            customer_triggered: true,
            ..Facts::default()
        };
        assert_eq!(facts.render("Hi @customer_name, you are #@queue_size."), "Hi Kamal, you are #3.");
        assert_eq!(facts.render("@customer @customer_names @nobody"), "@customer @customer_names @nobody");
        assert_eq!(facts.render("wait @wait_time_min–@wait_time_max min"), "wait 2– min");
        assert_eq!(facts.render("@account_status/@customer_triggered"), "away/true");
        assert_eq!(facts.render("mail me at x@customer_email"), "mail me at xk@example.com");
        assert_eq!(facts.render("@@customer_name@"), "@Kamal@");
        assert_eq!(facts.render("naïve @message ünïcode"), "naïve  ünïcode");
    }

    #[test]
    fn the_clock_fields_are_utc() {
        let mut facts = Facts::default();
        // 2026-11-23T14:05:00Z is a Monday.
        facts.at(Timestamp::from_millis(1_795_442_700_000));
        assert_eq!((facts.hour_of_day, facts.day_of_week), (14, 0));
        facts.at(Timestamp::from_millis(0));
        assert_eq!((facts.hour_of_day, facts.day_of_week), (0, 3));
    }
}
