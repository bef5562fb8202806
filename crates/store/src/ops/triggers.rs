//! Triggers: saving them (checked, within their limits), the facts an event shows them, and
//! carrying their actions out through the ordinary commands — each action acting as the
//! trigger, so the log says who did it and chains stay bounded.

use parley_core::agent::AgentKind;
use parley_core::conversation::Status;
use parley_core::event::{Actor, Channel, EventDraft, EventType};
use parley_core::limits::Limits;
use parley_core::message::{Author, AuthorType, Content, FormContent, FormField, FormFieldType, TextContent};
use parley_core::routing::rollup;
use parley_core::trigger::condition::PREVIOUS_CONVERSATIONS_CAP;
use parley_core::trigger::{
    fired_data, request_email_text, Action, Facts, Trigger, TriggerEvent, TriggerInput, MAX_TRIGGERS,
};
use parley_core::{DomainError, Timestamp, Uuid};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::conversations::{self, load, AssignTo};
use super::routing::{all_agents, all_groups, group_estimate};
use super::{customers, found, messages, R};
use crate::model::{ConversationFilter, LogEntry};
use crate::tx::{Reads, Tx};
use crate::StoreError;

/// The schedule's job kind for the actions after a `wait`.
pub const ACTIONS_JOB: &str = "trigger_actions";

pub fn create_trigger(tx: &mut dyn Tx, account: Uuid, input: TriggerInput) -> R<Trigger> {
    let (count, last) = tx.trigger_count(account)?;
    if count >= MAX_TRIGGERS as i64 {
        return Err(DomainError::LimitReached {
            code: "trigger_limit",
            detail: format!("an account has at most {MAX_TRIGGERS} triggers"),
        }
        .into());
    }
    let now = tx.now();
    let position = input.position.unwrap_or(last + 1);
    let trigger = input.into_trigger(Uuid::now_v7(), position, now, now)?;
    tx.put_trigger(account, &trigger)?;
    Ok(trigger)
}

/// Replaces a trigger whole (checked again: re-enabling one over a limit is refused alike).
pub fn replace_trigger(tx: &mut dyn Tx, account: Uuid, id: Uuid, input: TriggerInput) -> R<Trigger> {
    let current = found(tx.trigger(account, id)?, "trigger")?;
    let position = input.position.unwrap_or(current.position);
    let trigger = input.into_trigger(id, position, current.created_at, tx.now())?;
    tx.put_trigger(account, &trigger)?;
    Ok(trigger)
}

pub fn delete_trigger(tx: &mut dyn Tx, account: Uuid, id: Uuid) -> R<()> {
    if tx.delete_trigger(account, id)? {
        Ok(())
    } else {
        Err(StoreError::not_found("trigger"))
    }
}

/// One event a trigger may fire on, with what the event itself says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Occasion {
    pub event: TriggerEvent,
    /// The log event's id.
    pub cause: Uuid,
    pub conversation_id: Uuid,
    /// The triggers that caused this event, first cause first (empty: a person or the system).
    pub chain: Vec<Uuid>,
    pub sender: String,
    pub sender_type: String,
    pub message: String,
    pub initial_routing: bool,
}

#[derive(Deserialize)]
struct Envelope {
    id: Uuid,
    conversation_id: Option<Uuid>,
    actor: Actor,
    #[serde(default)]
    data: Value,
}

/// The text a message shows a trigger: its text, or a form answer's values.
fn message_text(message: &Value) -> String {
    let content = &message["content"];
    match content["type"].as_str() {
        Some("text") => content["text"].as_str().unwrap_or_default().to_string(),
        Some("form_response") => content["fields"]
            .as_array()
            .map(|fields| fields.iter().filter_map(|f| f["value"].as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

impl Occasion {
    /// The occasion a log entry is, if it is one of the four firing events of a conversation.
    pub fn of(entry: &LogEntry) -> Option<Occasion> {
        let event = TriggerEvent::of(entry.event_type)?;
        let envelope: Envelope = serde_json::from_str(&entry.json).ok()?;
        let conversation_id = envelope.conversation_id?;
        let (sender, sender_type, message) = if event == TriggerEvent::MessageSent {
            let author = &envelope.data["message"]["author"];
            let kind = author["type"].as_str().unwrap_or("customer").to_string();
            let name = author["name"].as_str().or(envelope.actor.name.as_deref()).unwrap_or_default().to_string();
            (name, kind, message_text(&envelope.data["message"]))
        } else {
            Default::default()
        };
        Some(Occasion {
            event,
            cause: envelope.id,
            conversation_id,
            chain: envelope.actor.triggers,
            sender,
            sender_type,
            message,
            initial_routing: envelope.data["initial_routing"].as_bool().unwrap_or(false),
        })
    }
}

/// Everything the conditions and placeholders may ask about, read now.
pub fn facts(r: &dyn Reads, account: Uuid, occasion: &Occasion, now: Timestamp) -> R<Facts> {
    let conversation = found(r.conversation(account, occasion.conversation_id)?, "conversation")?;
    let customer = found(r.customer(account, conversation.customer_id)?, "customer")?;
    let integration = found(r.integration(account, conversation.integration_id)?, "integration")?;
    let agents = all_agents(r, account)?;
    let mut facts = Facts {
        customer_previous_conversations: r.handled_conversations(
            account,
            customer.id,
            conversation.id,
            PREVIOUS_CONVERSATIONS_CAP,
        )?,
        customer_name: customer.name.clone().unwrap_or_default(),
        customer_email: customer.email.clone().unwrap_or_default(),
        customer_triggered: customer.triggered,
        account_status: rollup(agents.iter().map(|a| &a.status)),
        brand: integration.brand.clone().unwrap_or_default(),
        customer_requesting_conversation: conversation.is_waiting(),
        customer_served: conversation.assignee.is_some() && conversation.first_response_at.is_some(),
        group_id: conversation.group_id,
        sender: occasion.sender.clone(),
        sender_type: occasion.sender_type.clone(),
        message: occasion.message.clone(),
        initial_routing: occasion.initial_routing,
        queue_size: r.queue_size(account)?,
        tags: conversation.tags.clone(),
        ..Facts::default()
    };
    facts.at(now);
    for status in [Status::InProgress, Status::OnHold] {
        let filter =
            ConversationFilter { customer_id: Some(customer.id), status: Some(status), limit: 1, ..Default::default() };
        facts.customer_in_active_conversation |= !r.conversations(account, &filter)?.is_empty();
    }
    for group in all_groups(r, account)?.values() {
        let members = agents.iter().filter(|a| group.member_ids.contains(&a.id)).map(|a| &a.status);
        facts.group_status.insert(group.id, rollup(members));
        if Some(group.id) == conversation.group_id {
            facts.group = group.name.clone();
        }
    }
    if let Some(estimate) = group_estimate(r, account, conversation.group_id, now)? {
        facts.wait_time_min = Some(estimate.min_minutes);
        facts.wait_time_max = Some(estimate.max_minutes);
    }
    // The bot on the conversation, else the account's first bot.
    let bots = agents.iter().filter(|a| a.kind == AgentKind::Bot);
    let on_it = conversation.assignee.and_then(|a| agents.iter().find(|b| b.id == a.id && b.kind == AgentKind::Bot));
    facts.bot_name = on_it.or(bots.min_by_key(|b| b.id)).map(|b| b.name.clone()).unwrap_or_default();
    Ok(facts)
}

/// Who a trigger's actions act as: the trigger, with the chain that led to it.
pub fn trigger_actor(trigger_id: Uuid, name: &str, chain: &[Uuid]) -> Actor {
    let mut triggers = chain.to_vec();
    triggers.push(trigger_id);
    Actor { id: Some(trigger_id), name: Some(name.to_string()), triggers, ..Actor::system() }
}

/// The actions left after a `wait`, kept in the schedule until it is over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub trigger_id: Uuid,
    pub trigger_name: String,
    pub occasion: Occasion,
    pub actions: Vec<Action>,
}

/// Carries out `actions` in order for the conversation of `occasion`, acting as the trigger,
/// until a `wait`: what follows it goes to the schedule. Answers each action as it ran (text
/// rendered), or with the reason it was refused (a refused action does not stop the rest).
pub fn run_actions(tx: &mut dyn Tx, account: Uuid, pending: &Pending, facts: &Facts, limits: &Limits) -> R<Vec<Value>> {
    let actor = trigger_actor(pending.trigger_id, &pending.trigger_name, &pending.occasion.chain);
    let conversation = pending.occasion.conversation_id;
    let mut done = Vec::with_capacity(pending.actions.len());
    for (i, action) in pending.actions.iter().enumerate() {
        if let Action::Wait { seconds } = action {
            let rest = Pending { actions: pending.actions[i + 1..].to_vec(), ..pending.clone() };
            let due = tx.now().plus_secs(*seconds);
            if !rest.actions.is_empty() {
                let payload = serde_json::to_value(&rest).map_err(|e| StoreError::Backend(e.to_string()))?;
                tx.schedule(Some(account), ACTIONS_JOB, due, &payload)?;
            }
            done.push(json!({"type": "wait", "seconds": seconds, "until": due}));
            break;
        }
        let rendered = action.rendered(facts);
        let mut record = serde_json::to_value(&rendered).map_err(|e| StoreError::Backend(e.to_string()))?;
        match perform(tx, account, conversation, &rendered, &pending.trigger_name, actor.clone(), limits) {
            Ok(()) => {}
            Err(StoreError::Domain(refused)) => record["error"] = Value::String(refused.to_string()),
            Err(other) => return Err(other),
        }
        done.push(record);
    }
    Ok(done)
}

fn perform(
    tx: &mut dyn Tx,
    account: Uuid,
    conversation: Uuid,
    action: &Action,
    trigger_name: &str,
    actor: Actor,
    limits: &Limits,
) -> R<()> {
    let automated = |name: Option<&String>| Author {
        author_type: AuthorType::System,
        id: None,
        name: Some(name.cloned().unwrap_or_else(|| trigger_name.to_string())),
    };
    let customer = || -> R<Uuid> { Ok(found(tx.conversation(account, conversation)?, "conversation")?.customer_id) };
    match action {
        Action::SendMessage { text, sender_name } => {
            let content = Content::Text(TextContent { text: text.clone(), actions: Vec::new(), payload: None });
            let new =
                messages::NewMessage { author: automated(sender_name.as_ref()), content, client_message_id: None };
            messages::send_message(tx, account, conversation, new, actor, limits).map(|_| ())
        }
        Action::RequestEmail { text } => {
            let field = FormField {
                field_type: FormFieldType::Email,
                name: EMAIL_FIELD.into(),
                label: request_email_text(text).to_string(),
                options: Vec::new(),
            };
            let content = Content::Form(FormContent { fields: vec![field] });
            let new = messages::NewMessage { author: automated(None), content, client_message_id: None };
            messages::send_message(tx, account, conversation, new, actor, limits).map(|_| ())
        }
        Action::SetTriggered { value } => {
            let id = customer()?;
            customers::set_triggered(tx, account, id, *value, actor).map(|_| ())
        }
        Action::AddTags { tags } => {
            conversations::change_tags(tx, account, conversation, tags, &[], actor, limits).map(|_| ())
        }
        Action::RemoveTags { tags } => {
            conversations::change_tags(tx, account, conversation, &[], tags, actor, limits).map(|_| ())
        }
        Action::SuspendUser => {
            let id = customer()?;
            customers::set_suspended(tx, account, id, true, actor).map(|_| ())
        }
        Action::CloseConversation => {
            conversations::change_status(tx, account, conversation, Status::Ended, actor).map(|_| ())
        }
        Action::RouteToGroup { group_id } => {
            conversations::assign(tx, account, conversation, AssignTo::Group(*group_id), actor).map(|_| ())
        }
        Action::Wait { .. } => Ok(()),
    }
}

/// The field of the `request_email` form whose answer becomes the customer's e-mail.
pub const EMAIL_FIELD: &str = "email";

/// Logs that a trigger fired on an occasion (or that the actions its `wait` held ran), with
/// its actions as they ran.
pub fn log_fired(tx: &mut dyn Tx, account: Uuid, pending: &Pending, actions: &[Value]) -> R<()> {
    let occasion = &pending.occasion;
    let (_, integration) = load(tx, account, occasion.conversation_id)?;
    let data = fired_data(pending.trigger_id, &pending.trigger_name, occasion.event, occasion.cause, actions.to_vec());
    tx.append(
        account,
        EventDraft {
            event_type: EventType::TriggerFired,
            conversation_id: Some(occasion.conversation_id),
            channel: Some(Channel::of(&integration)),
            actor: trigger_actor(pending.trigger_id, &pending.trigger_name, &occasion.chain),
            data,
        },
    )?;
    Ok(())
}
