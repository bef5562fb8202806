//! Conversations: the six statuses and their legal transitions, the computed reply status, and
//! the decisions that change a conversation and the log events each change causes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::agent::{Agent, AgentKind};
use crate::customer::Customer;
use crate::event::{Actor, Channel, EventDraft, EventType};
use crate::integration::Integration;
use crate::limits::Limits;
use crate::message::{AuthorType, Content, Message, TextContent};
use crate::routing::Offer;
use crate::{DomainError, Timestamp};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Started by the customer, not yet routed.
    Created,
    /// Waiting to be picked up by an agent or a bot.
    Open,
    /// A handler is on it and owes the customer a reply.
    InProgress,
    /// The handler answered and waits for the customer.
    OnHold,
    Ended,
    /// No more messages from anyone.
    Blocked,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Created, Status::Open, Status::InProgress, Status::OnHold, Status::Ended, Status::Blocked];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Open => "open",
            Status::InProgress => "in_progress",
            Status::OnHold => "on_hold",
            Status::Ended => "ended",
            Status::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The lifecycle: every move a conversation may make. Anything else is a 409.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Created, Open | InProgress | Ended | Blocked)
                | (Open, InProgress | Ended | Blocked)
                | (InProgress, OnHold | Open | Ended | Blocked)
                | (OnHold, InProgress | Open | Ended | Blocked)
                | (Ended, Open | Blocked)
                | (Blocked, Open)
        )
    }

    pub fn is_active(self) -> bool {
        matches!(self, Status::Created | Status::Open | Status::InProgress | Status::OnHold)
    }
}

/// Whether the business can write to the customer now, and if not, why.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    Accepted,
    SessionEnded,
    SessionBlocked,
    SessionExpired,
    Unassigned,
    NotAnAssignee,
    ChannelInactive,
    ChannelDeleted,
    EndUserOffline,
    OutgoingLimitReached,
}

impl ReplyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyStatus::Accepted => "accepted",
            ReplyStatus::SessionEnded => "session_ended",
            ReplyStatus::SessionBlocked => "session_blocked",
            ReplyStatus::SessionExpired => "session_expired",
            ReplyStatus::Unassigned => "unassigned",
            ReplyStatus::NotAnAssignee => "not_an_assignee",
            ReplyStatus::ChannelInactive => "channel_inactive",
            ReplyStatus::ChannelDeleted => "channel_deleted",
            ReplyStatus::EndUserOffline => "end_user_offline",
            ReplyStatus::OutgoingLimitReached => "outgoing_limit_reached",
        }
    }
}

/// How a conversation left the queue for an agent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AssignedVia {
    AutoAccept,
    Accept,
}

/// The agent or bot handling a conversation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct Assignee {
    #[serde(rename = "type")]
    pub kind: AgentKind,
    pub id: Uuid,
}

impl Assignee {
    pub fn of(agent: &Agent) -> Self {
        Assignee { kind: agent.kind, id: agent.id }
    }

    fn author_type(self) -> AuthorType {
        match self.kind {
            AgentKind::Agent => AuthorType::Agent,
            AgentKind::Bot => AuthorType::Bot,
        }
    }

    fn left_event(self) -> EventType {
        match self.kind {
            AgentKind::Agent => EventType::AgentLeft,
            AgentKind::Bot => EventType::BotLeft,
        }
    }

    fn joined_event(self) -> EventType {
        match self.kind {
            AgentKind::Agent => EventType::AgentJoined,
            AgentKind::Bot => EventType::BotJoined,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Conversation {
    pub id: Uuid,
    pub integration_id: Uuid,
    pub customer_id: Uuid,
    pub status: Status,
    pub assignee: Option<Assignee>,
    pub group_id: Option<Uuid>,
    pub tags: Vec<String>,
    pub messages_count: i64,
    /// Higher is served first in the queue.
    pub priority: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub first_response_at: Option<Timestamp>,
    pub last_customer_message_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// When it last entered a queue (kept after assignment, to measure the wait).
    pub queued_at: Option<Timestamp>,
}

/// Who acts on a conversation, where, and when: everything a decision needs besides the state.
pub struct Scene<'a> {
    pub integration: &'a Integration,
    pub actor: Actor,
    pub now: Timestamp,
}

impl Scene<'_> {
    fn event(&self, conversation_id: Uuid, event_type: EventType, data: Value) -> EventDraft {
        EventDraft {
            event_type,
            conversation_id: Some(conversation_id),
            channel: Some(Channel::of(self.integration)),
            actor: self.actor.clone(),
            data,
        }
    }
}

/// A participant who may write or read: the customer, an agent or a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant {
    pub kind: AuthorType,
    pub id: Uuid,
}

const TAG_MAX_CHARS: usize = 64;

impl Conversation {
    /// A new conversation of `customer` on `integration`, `created` and not yet routed.
    pub fn start(id: Uuid, customer: &Customer, scene: &Scene) -> (Conversation, Vec<EventDraft>) {
        let conversation = Conversation {
            id,
            integration_id: scene.integration.id,
            customer_id: customer.id,
            status: Status::Created,
            assignee: None,
            group_id: scene.integration.default_group_id,
            tags: Vec::new(),
            messages_count: 0,
            priority: 0,
            created_at: scene.now,
            updated_at: scene.now,
            first_response_at: None,
            last_customer_message_at: None,
            ended_at: None,
            queued_at: None,
        };
        let event = scene.event(
            id,
            EventType::ConversationCreated,
            json!({
                "status": conversation.status,
                "integration_id": scene.integration.id,
                "group_id": conversation.group_id,
                "customer": {"id": customer.id, "external_id": customer.external_id, "name": customer.name},
            }),
        );
        (conversation, vec![event])
    }

    /// The reply status seen by `caller` (`None`: as the conversation's handler would see it).
    pub fn reply_status(&self, integration: &Integration, caller: Option<Participant>, now: Timestamp) -> ReplyStatus {
        if integration.is_deleted() {
            return ReplyStatus::ChannelDeleted;
        }
        if !integration.active {
            return ReplyStatus::ChannelInactive;
        }
        match self.status {
            Status::Blocked => return ReplyStatus::SessionBlocked,
            Status::Ended => return ReplyStatus::SessionEnded,
            _ => {}
        }
        if let (Some(window), Some(last)) = (integration.service_window_seconds, self.last_customer_message_at) {
            if now >= last.plus_secs(window) {
                return ReplyStatus::SessionExpired;
            }
        }
        let Some(assignee) = self.assignee else {
            return ReplyStatus::Unassigned;
        };
        match caller {
            Some(p) if p.kind.is_business() && (p.kind != assignee.author_type() || p.id != assignee.id) => {
                ReplyStatus::NotAnAssignee
            }
            _ => ReplyStatus::Accepted,
        }
    }

    /// Whether a customer message now would reopen this ended conversation (else a new one starts).
    pub fn reopens_at(&self, integration: &Integration, now: Timestamp) -> bool {
        self.status == Status::Ended
            && self.ended_at.is_some_and(|ended| now < ended.plus_secs(integration.reopen_window_seconds))
    }

    /// A status change requested through the API (`ended`, `blocked`, `open`). `open` puts the
    /// conversation back in its group's queue, at `back_of_queue` (see [`Conversation::enqueue`]).
    pub fn request_status(
        &mut self,
        to: Status,
        back_of_queue: i64,
        scene: &Scene,
    ) -> Result<Vec<EventDraft>, DomainError> {
        if !matches!(to, Status::Ended | Status::Blocked | Status::Open) {
            return Err(DomainError::invalid("status", "must be one of `ended`, `blocked`, `open`"));
        }
        let mut events = Vec::new();
        if to == Status::Open && matches!(self.status, Status::InProgress | Status::OnHold) {
            // Releasing a handled conversation puts it back to wait for a handler.
            self.release_assignee(scene, &mut events);
        }
        let from = self.status;
        self.move_to(to, scene, &mut events)?;
        if to == Status::Open {
            let reason = if matches!(from, Status::Ended | Status::Blocked) { "reopened" } else { "released" };
            self.enqueue(Some(reason), back_of_queue, scene, &mut events);
        }
        Ok(events)
    }

    /// Whether it waits in a queue for a human: open and nobody's.
    pub fn is_waiting(&self) -> bool {
        self.status == Status::Open && self.assignee.is_none()
    }

    /// Puts it at the back of its group's queue (`position`, 1 = next, counted by the caller
    /// for a conversation queued now) and logs it: `conversation_requested` when it starts
    /// needing a human (`reason`), then `conversation_queued`, with `initial_routing` true only
    /// the first time it is ever queued.
    fn enqueue(&mut self, requested: Option<&str>, position: i64, scene: &Scene, events: &mut Vec<EventDraft>) {
        let initial_routing = self.queued_at.is_none();
        self.queued_at = Some(scene.now);
        if let Some(reason) = requested {
            events.push(scene.event(
                self.id,
                EventType::ConversationRequested,
                json!({"group_id": self.group_id, "reason": reason}),
            ));
        }
        events.push(scene.event(
            self.id,
            EventType::ConversationQueued,
            json!({"group_id": self.group_id, "initial_routing": initial_routing, "queue_position": position}),
        ));
    }

    fn release_assignee(&mut self, scene: &Scene, events: &mut Vec<EventDraft>) {
        if let Some(previous) = self.assignee.take() {
            events.push(scene.event(
                self.id,
                previous.left_event(),
                json!({"agent_id": previous.id, "type": previous.kind}),
            ));
        }
    }

    /// Moves to `to` if the lifecycle allows it, recording the change and its specific event.
    fn move_to(&mut self, to: Status, scene: &Scene, events: &mut Vec<EventDraft>) -> Result<(), DomainError> {
        let from = self.status;
        if !from.can_become(to) {
            return Err(DomainError::IllegalTransition { current: from, requested: to });
        }
        self.status = to;
        self.updated_at = scene.now;
        match to {
            Status::Ended => self.ended_at = Some(scene.now),
            Status::Open | Status::InProgress if from == Status::Ended => self.ended_at = None,
            _ => {}
        }
        if to == Status::Open && matches!(from, Status::Ended | Status::Blocked) {
            // The handler left when it closed (`agent_left` was logged then); a reopened
            // conversation is a new request for whoever is free.
            self.assignee = None;
        }
        if to == Status::Blocked || to == Status::Ended {
            self.assignee_leaves_on_close(scene, events);
        }
        let reply_status = self.reply_status(scene.integration, None, scene.now);
        events.push(scene.event(
            self.id,
            EventType::ConversationStatusChanged,
            json!({
                "status": to,
                "previous_status": from,
                "reply_status": reply_status,
                "messages_count": self.messages_count,
                "assignee": self.assignee,
                "group_id": self.group_id,
            }),
        ));
        match to {
            Status::Open => events.push(scene.event(
                self.id,
                EventType::ConversationOpened,
                json!({"reopened": matches!(from, Status::Ended | Status::Blocked)}),
            )),
            Status::Ended => events.push(scene.event(
                self.id,
                EventType::ConversationClosed,
                json!({"ended_by": scene.actor, "messages_count": self.messages_count}),
            )),
            Status::Blocked => {
                events.push(scene.event(self.id, EventType::ConversationBlocked, json!({"previous_status": from})))
            }
            _ => {}
        }
        Ok(())
    }

    fn assignee_leaves_on_close(&mut self, scene: &Scene, events: &mut Vec<EventDraft>) {
        // The handler stays recorded as the assignee of an ended conversation (for reporting),
        // but is no longer in it.
        if let Some(a) = self.assignee {
            events.push(scene.event(
                self.id,
                a.left_event(),
                json!({"agent_id": a.id, "type": a.kind, "reason": "conversation_closed"}),
            ));
        }
    }

    /// A message from the customer. The caller has already decided, with [`reopens_at`], that
    /// this conversation (and not a new one) receives it. A conversation that starts (or
    /// starts again) here needs a human and is queued at `back_of_queue`.
    pub fn receive_customer_message(
        &mut self,
        message: &Message,
        customer: &Customer,
        limits: &Limits,
        back_of_queue: i64,
        scene: &Scene,
    ) -> Result<Vec<EventDraft>, DomainError> {
        message.content.validate(AuthorType::Customer, limits)?;
        if customer.suspended {
            return Err(DomainError::Conflict {
                code: "customer_suspended",
                detail: "this customer is suspended: their messages are refused until they are unsuspended".into(),
            });
        }
        if self.status == Status::Blocked {
            return Err(DomainError::Conflict {
                code: "conversation_blocked",
                detail: "this conversation is blocked: no more messages are allowed".into(),
            });
        }
        self.check_room(limits)?;
        let mut events = Vec::new();
        let requested = match self.status {
            Status::Created => Some("customer_message"),
            Status::Ended => Some("reopened"),
            _ => None,
        };
        match self.status {
            Status::Created | Status::Ended => self.move_to(Status::Open, scene, &mut events)?,
            Status::OnHold => self.move_to(Status::InProgress, scene, &mut events)?,
            _ => {}
        }
        self.messages_count += 1;
        self.last_customer_message_at = Some(scene.now);
        self.updated_at = scene.now;
        events.push(scene.event(
            self.id,
            EventType::MessageReceived,
            json!({"message": message, "direction": "in", "status": self.status}),
        ));
        if requested.is_some() && self.is_waiting() {
            self.enqueue(requested, back_of_queue, scene, &mut events);
        }
        if let Content::Text(TextContent { text, payload: Some(payload), .. }) = &message.content {
            events.push(scene.event(
                self.id,
                EventType::ActionPressed,
                json!({"message_id": message.id, "action": {"type": "reply", "text": text, "payload": payload}}),
            ));
        }
        Ok(events)
    }

    /// A message from the business (an agent or a bot), allowed only when the reply status
    /// for its author is `accepted`. An automated message (author `system`: a trigger) needs no
    /// handler — it may greet a customer who waits — and is not anyone's answer: it moves no
    /// status and is not the first response.
    pub fn send_business_message(
        &mut self,
        message: &Message,
        limits: &Limits,
        scene: &Scene,
    ) -> Result<Vec<EventDraft>, DomainError> {
        let author = &message.author;
        message.content.validate(author.author_type, limits)?;
        let caller = author.id.map(|id| Participant { kind: author.author_type, id });
        let automated = author.author_type == AuthorType::System;
        let reply_status = match self.reply_status(scene.integration, caller, scene.now) {
            ReplyStatus::Unassigned | ReplyStatus::NotAnAssignee if automated => ReplyStatus::Accepted,
            other => other,
        };
        if reply_status != ReplyStatus::Accepted {
            return Err(DomainError::ReplyNotAllowed { reply_status });
        }
        self.check_room(limits)?;
        let mut events = Vec::new();
        if self.status == Status::InProgress && !automated {
            self.move_to(Status::OnHold, scene, &mut events)?;
        }
        self.messages_count += 1;
        let first_response = !automated && self.first_response_at.is_none();
        if !automated {
            self.first_response_at.get_or_insert(scene.now);
        }
        self.updated_at = scene.now;
        events.push(scene.event(
            self.id,
            EventType::MessageSent,
            json!({
                "message": message,
                "direction": "out",
                "recipient": {"type": "customer", "id": self.customer_id},
                "status": self.status,
                "first_response": first_response,
            }),
        ));
        Ok(events)
    }

    fn check_room(&self, limits: &Limits) -> Result<(), DomainError> {
        if self.messages_count >= limits.messages_per_conversation {
            return Err(DomainError::LimitReached {
                code: "conversation_message_limit",
                detail: format!("a conversation holds at most {} messages", limits.messages_per_conversation),
            });
        }
        Ok(())
    }

    fn refuse_if_closed(&self, requested: Status) -> Result<(), DomainError> {
        if matches!(self.status, Status::Ended | Status::Blocked) {
            return Err(DomainError::IllegalTransition { current: self.status, requested });
        }
        Ok(())
    }

    /// Direct assignment (or reassignment) to an agent or bot: a transfer, not a queue assignment.
    pub fn transfer_to_agent(&mut self, agent: &Agent, scene: &Scene) -> Result<Vec<EventDraft>, DomainError> {
        self.refuse_if_closed(Status::InProgress)?;
        let to = Assignee::of(agent);
        if self.assignee == Some(to) {
            return Err(DomainError::Conflict {
                code: "already_assigned",
                detail: "the conversation is already assigned to this agent".into(),
            });
        }
        let from = self.handler_ref();
        let mut events = Vec::new();
        self.release_assignee(scene, &mut events);
        self.assignee = Some(to);
        events.push(scene.event(
            self.id,
            to.joined_event(),
            json!({"agent_id": to.id, "type": to.kind, "name": agent.name}),
        ));
        events.push(scene.event(
            self.id,
            EventType::ConversationTransferred,
            json!({"from": from, "to": {"type": to.kind, "id": to.id}}),
        ));
        if matches!(self.status, Status::Created | Status::Open) {
            self.move_to(Status::InProgress, scene, &mut events)?;
        }
        self.updated_at = scene.now;
        Ok(events)
    }

    /// Transfer to a group: the handler leaves and the conversation waits in the group's queue
    /// again (`initial_routing: false`). `queue_position` is its place in that queue (1 = next).
    pub fn transfer_to_group(
        &mut self,
        group_id: Uuid,
        queue_position: i64,
        scene: &Scene,
    ) -> Result<Vec<EventDraft>, DomainError> {
        self.refuse_if_closed(Status::Open)?;
        if self.group_id == Some(group_id) && self.assignee.is_none() && self.status == Status::Open {
            return Err(DomainError::Conflict {
                code: "already_queued",
                detail: "the conversation already waits in this group's queue".into(),
            });
        }
        let from = self.handler_ref();
        let mut events = Vec::new();
        self.release_assignee(scene, &mut events);
        self.group_id = Some(group_id);
        self.queued_at = Some(scene.now);
        events.push(scene.event(
            self.id,
            EventType::ConversationTransferred,
            json!({"from": from, "to": {"type": "group", "id": group_id}}),
        ));
        if self.status != Status::Open {
            self.move_to(Status::Open, scene, &mut events)?;
        }
        // A transfer is never initial routing, even of a conversation that was handled
        // without ever waiting in a queue.
        self.queued_at.get_or_insert(scene.now);
        self.enqueue(None, queue_position, scene, &mut events);
        self.updated_at = scene.now;
        Ok(events)
    }

    /// The router's assignment from the queue, by auto-accept or by the agent accepting an
    /// offer (`via`): logged `conversation_assigned`, never `conversation_transferred`.
    pub fn assign_from_queue(
        &mut self,
        agent: &Agent,
        via: AssignedVia,
        offer_id: Option<Uuid>,
        scene: &Scene,
    ) -> Result<Vec<EventDraft>, DomainError> {
        if !self.is_waiting() {
            return Err(DomainError::Conflict {
                code: "not_waiting",
                detail: "the conversation no longer waits in a queue".into(),
            });
        }
        let to = Assignee::of(agent);
        self.assignee = Some(to);
        let mut events = vec![scene.event(
            self.id,
            to.joined_event(),
            json!({"agent_id": to.id, "type": to.kind, "name": agent.name}),
        )];
        events.push(scene.event(
            self.id,
            EventType::ConversationAssigned,
            json!({
                "assignee": {"type": to.kind, "id": to.id},
                "agent_id": to.id,
                "via": via,
                "group_id": self.group_id,
                "offer_id": offer_id,
            }),
        ));
        self.move_to(Status::InProgress, scene, &mut events)?;
        self.updated_at = scene.now;
        Ok(events)
    }

    /// `conversation_offered`: the router offers it to an agent until `offer.expires_at`.
    pub fn offered(&self, offer: &Offer, scene: &Scene) -> EventDraft {
        scene.event(
            self.id,
            EventType::ConversationOffered,
            json!({
                "offer_id": offer.id,
                "agent_id": offer.agent_id,
                "group_id": offer.group_id,
                "expires_at": offer.expires_at,
            }),
        )
    }

    /// `conversation_offer_withdrawn`: an offer ended without an assignment (`offer.status`
    /// says how: declined, expired or withdrawn).
    pub fn offer_ended(&self, offer: &Offer, scene: &Scene) -> EventDraft {
        scene.event(
            self.id,
            EventType::ConversationOfferWithdrawn,
            json!({"offer_id": offer.id, "agent_id": offer.agent_id, "reason": offer.status}),
        )
    }

    /// The current handler, or else the group, as `{type, id}` (null when neither).
    fn handler_ref(&self) -> Value {
        match (self.assignee, self.group_id) {
            (Some(a), _) => json!({"type": a.kind, "id": a.id}),
            (None, Some(g)) => json!({"type": "group", "id": g}),
            (None, None) => Value::Null,
        }
    }

    /// Adds and removes tags; answers no event when nothing changes.
    pub fn change_tags(
        &mut self,
        add: &[String],
        remove: &[String],
        limits: &Limits,
        scene: &Scene,
    ) -> Result<Vec<EventDraft>, DomainError> {
        let add = normalize_tags("add", add)?;
        let remove = normalize_tags("remove", remove)?;
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for tag in remove {
            if let Some(i) = self.tags.iter().position(|t| *t == tag) {
                self.tags.remove(i);
                removed.push(tag);
            }
        }
        for tag in add {
            if !self.tags.contains(&tag) {
                self.tags.push(tag.clone());
                added.push(tag);
            }
        }
        if self.tags.len() > limits.tags_per_conversation {
            return Err(DomainError::invalid(
                "add",
                format!("a conversation has at most {} tags", limits.tags_per_conversation),
            ));
        }
        if added.is_empty() && removed.is_empty() {
            return Ok(Vec::new());
        }
        self.updated_at = scene.now;
        Ok(vec![scene.event(
            self.id,
            EventType::TagsChanged,
            json!({"added": added, "removed": removed, "tags": self.tags}),
        )])
    }

    /// A read receipt: `reader` has read up to and including message `seq`.
    pub fn read_receipt(&self, reader: &Actor, message_id: Uuid, seq: i64, scene: &Scene) -> EventDraft {
        scene.event(
            self.id,
            EventType::MessageRead,
            json!({"message_id": message_id, "seq": seq, "reader": {"type": reader.actor_type, "id": reader.id}}),
        )
    }
}

/// Tags are lower-case words: no spaces or commas, at most 64 characters.
pub fn normalize_tags(field: &str, tags: &[String]) -> Result<Vec<String>, DomainError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.trim().to_lowercase();
        let field = format!("{field}[{i}]");
        if tag.is_empty() {
            return Err(DomainError::invalid(field, "a tag must not be empty"));
        }
        if tag.chars().count() > TAG_MAX_CHARS {
            return Err(DomainError::invalid(field, format!("a tag has at most {TAG_MAX_CHARS} characters")));
        }
        if tag.contains(|c: char| c.is_whitespace() || c == ',') {
            return Err(DomainError::invalid(field, "a tag has no spaces or commas"));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_table() {
        use Status::*;
        let legal = [
            (Created, Open),
            (Created, InProgress),
            (Created, Ended),
            (Created, Blocked),
            (Open, InProgress),
            (Open, Ended),
            (Open, Blocked),
            (InProgress, OnHold),
            (InProgress, Open),
            (InProgress, Ended),
            (InProgress, Blocked),
            (OnHold, InProgress),
            (OnHold, Open),
            (OnHold, Ended),
            (OnHold, Blocked),
            (Ended, Open),
            (Ended, Blocked),
            (Blocked, Open),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(from.can_become(to), legal.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn tags_are_normalized() {
        assert_eq!(normalize_tags("add", &["VIP".into(), " vip ".into(), "spam".into()]).unwrap(), vec!["vip", "spam"]);
        assert!(normalize_tags("add", &["two words".into()]).is_err());
        assert!(normalize_tags("add", &["".into()]).is_err());
    }
}
