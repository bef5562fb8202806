//! Messaging triggers: a firing event, conditions (all or any), and actions run in order.
//! Validation, evaluation and the rendering of actions are pure; the runner (a log consumer in
//! the server) gathers the [`Facts`] and carries the actions out through ordinary commands.

pub mod condition;
pub mod facts;
pub mod pattern;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

pub use condition::{Compiled as CompiledCondition, Condition, Evaluated, Field, Operator};
pub use facts::Facts;

use crate::event::EventType;
use crate::{text, DomainError, Timestamp};

pub const MAX_CONDITIONS: usize = 25;
pub const MAX_ACTIONS: usize = 25;
pub const MAX_WAIT_SECONDS: i64 = 3600;
/// Triggers an account may have.
pub const MAX_TRIGGERS: usize = 1000;
/// How deep a chain of events caused by trigger actions may go before it fires nothing more.
pub const MAX_CHAIN: usize = 5;

/// The events a trigger can fire on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TriggerEvent {
    /// A customer asks for a human.
    ConversationRequested,
    /// A customer sends a message.
    MessageSent,
    ConversationQueued,
    /// Assigned from the queue (accept or auto-accept), never a transfer.
    ConversationAssigned,
}

impl TriggerEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerEvent::ConversationRequested => "conversation_requested",
            TriggerEvent::MessageSent => "message_sent",
            TriggerEvent::ConversationQueued => "conversation_queued",
            TriggerEvent::ConversationAssigned => "conversation_assigned",
        }
    }

    /// The trigger event a log event is (a customer's message is logged `message_received`).
    pub fn of(event: EventType) -> Option<TriggerEvent> {
        match event {
            EventType::ConversationRequested => Some(TriggerEvent::ConversationRequested),
            EventType::MessageReceived => Some(TriggerEvent::MessageSent),
            EventType::ConversationQueued => Some(TriggerEvent::ConversationQueued),
            EventType::ConversationAssigned => Some(TriggerEvent::ConversationAssigned),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// Every condition must hold (no conditions: always).
    #[default]
    All,
    /// At least one must hold.
    Any,
}

/// What a trigger does, in order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Sends `text` (placeholders expanded) to the customer as an automated message.
    SendMessage {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sender_name: Option<String>,
    },
    /// Delays the actions after it by `seconds` (1–3600); durable across restarts.
    Wait {
        seconds: i64,
    },
    /// Asks the customer for an e-mail address (a form); their answer updates the customer.
    RequestEmail {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    SetTriggered {
        value: bool,
    },
    AddTags {
        tags: Vec<String>,
    },
    RemoveTags {
        tags: Vec<String>,
    },
    /// Suspends the customer; only as the last action.
    SuspendUser,
    CloseConversation,
    RouteToGroup {
        group_id: Uuid,
    },
}

impl Action {
    fn validate(&self, at: &str, last: bool) -> Result<(), DomainError> {
        match self {
            Action::SendMessage { text: body, sender_name } => {
                text::required(&format!("{at}.text"), body, 4096)?;
                if let Some(name) = sender_name {
                    text::required(&format!("{at}.sender_name"), name, 200)?;
                }
            }
            Action::RequestEmail { text: Some(body) } => text::required(&format!("{at}.text"), body, 4096)?,
            Action::Wait { seconds } if !(1..=MAX_WAIT_SECONDS).contains(seconds) => {
                return Err(DomainError::invalid(
                    format!("{at}.seconds"),
                    format!("must be between 1 and {MAX_WAIT_SECONDS}"),
                ));
            }
            Action::AddTags { tags } | Action::RemoveTags { tags } => {
                if tags.is_empty() {
                    return Err(DomainError::invalid(format!("{at}.tags"), "name at least one tag"));
                }
                crate::conversation::normalize_tags(&format!("{at}.tags"), tags)?;
            }
            Action::SuspendUser if !last => {
                return Err(DomainError::invalid(at.to_string(), "`suspend_user` must be the last action"));
            }
            _ => {}
        }
        Ok(())
    }

    /// The action as it runs: its text with the placeholders expanded.
    pub fn rendered(&self, facts: &Facts) -> Action {
        match self {
            Action::SendMessage { text, sender_name } => {
                Action::SendMessage { text: facts.render(text), sender_name: sender_name.clone() }
            }
            Action::RequestEmail { text } => {
                Action::RequestEmail { text: Some(facts.render(request_email_text(text))) }
            }
            other => other.clone(),
        }
    }
}

/// The question `request_email` asks when it names none.
pub fn request_email_text(text: &Option<String>) -> &str {
    text.as_deref().unwrap_or("Leave us your e-mail address so that we can get back to you.")
}

/// A trigger as an admin writes it (create and replace).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Evaluation order among the triggers of one event (lowest first); default: after the last.
    #[serde(default)]
    pub position: Option<i64>,
    #[serde(default)]
    pub run_once_per_conversation: bool,
    pub event: TriggerEvent,
    #[serde(default, rename = "match")]
    pub match_mode: MatchMode,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Trigger {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub position: i64,
    pub run_once_per_conversation: bool,
    pub event: TriggerEvent,
    #[serde(rename = "match")]
    pub match_mode: MatchMode,
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A trigger checked and ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledTrigger {
    pub match_mode: MatchMode,
    pub conditions: Vec<CompiledCondition>,
    pub actions: Vec<Action>,
}

/// A trigger's verdict on some facts.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Verdict {
    pub matched: bool,
    pub conditions: Vec<ConditionResult>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ConditionResult {
    #[serde(flatten)]
    pub condition: Condition,
    #[serde(flatten)]
    pub outcome: Evaluated,
}

/// Checks everything a trigger says, as saved; the field of an error is its path
/// (`conditions[2].value`, `actions[0]`).
pub fn compile(
    match_mode: MatchMode,
    conditions: &[Condition],
    actions: &[Action],
) -> Result<CompiledTrigger, DomainError> {
    if conditions.len() > MAX_CONDITIONS {
        return Err(DomainError::invalid("conditions", format!("at most {MAX_CONDITIONS} conditions")));
    }
    if actions.is_empty() || actions.len() > MAX_ACTIONS {
        return Err(DomainError::invalid("actions", format!("give 1 to {MAX_ACTIONS} actions")));
    }
    let conditions = conditions
        .iter()
        .enumerate()
        .map(|(i, c)| c.compile(&format!("conditions[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, action) in actions.iter().enumerate() {
        action.validate(&format!("actions[{i}]"), i + 1 == actions.len())?;
    }
    Ok(CompiledTrigger { match_mode, conditions, actions: actions.to_vec() })
}

impl TriggerInput {
    pub fn compile(&self) -> Result<CompiledTrigger, DomainError> {
        text::required("name", &self.name, 200)?;
        compile(self.match_mode, &self.conditions, &self.actions)
    }

    /// The trigger this input makes, checked (`position` resolved by the caller).
    pub fn into_trigger(
        self,
        id: Uuid,
        position: i64,
        created_at: Timestamp,
        now: Timestamp,
    ) -> Result<Trigger, DomainError> {
        self.compile()?;
        Ok(Trigger {
            id,
            name: self.name.trim().to_string(),
            enabled: self.enabled,
            position,
            run_once_per_conversation: self.run_once_per_conversation,
            event: self.event,
            match_mode: self.match_mode,
            conditions: self.conditions,
            actions: self.actions,
            created_at,
            updated_at: now,
        })
    }
}

impl Trigger {
    pub fn compile(&self) -> Result<CompiledTrigger, DomainError> {
        compile(self.match_mode, &self.conditions, &self.actions)
    }
}

impl CompiledTrigger {
    pub fn evaluate(&self, facts: &Facts) -> Verdict {
        let conditions: Vec<ConditionResult> = self
            .conditions
            .iter()
            .map(|c| ConditionResult { condition: c.condition.clone(), outcome: c.evaluate(facts) })
            .collect();
        let matched = match self.match_mode {
            MatchMode::All => conditions.iter().all(|c| c.outcome.result),
            MatchMode::Any => conditions.is_empty() || conditions.iter().any(|c| c.outcome.result),
        };
        Verdict { matched, conditions }
    }

    /// Whether the facts match, stopping at the first condition that decides it.
    pub fn matches(&self, facts: &Facts) -> bool {
        match self.match_mode {
            MatchMode::All => self.conditions.iter().all(|c| c.evaluate(facts).result),
            MatchMode::Any => self.conditions.is_empty() || self.conditions.iter().any(|c| c.evaluate(facts).result),
        }
    }

    pub fn rendered_actions(&self, facts: &Facts) -> Vec<Action> {
        self.actions.iter().map(|a| a.rendered(facts)).collect()
    }
}

/// The `trigger_fired` event's data: the trigger, the event that fired it, and its actions as
/// they ran.
pub fn fired_data(trigger_id: Uuid, name: &str, event: TriggerEvent, cause: Uuid, actions: Vec<Value>) -> Value {
    json!({
        "trigger_id": trigger_id,
        "name": name,
        "event": event,
        "caused_by": cause,
        "actions": actions,
    })
}
