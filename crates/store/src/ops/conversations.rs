//! Conversations: creation, status changes, assignment and transfer, tags, read receipts.

use parley_core::conversation::{Conversation, Scene, Status};
use parley_core::customer::CustomerRef;
use parley_core::event::Actor;
use parley_core::integration::Integration;
use parley_core::limits::Limits;
use parley_core::{DomainError, Uuid};

use super::customers::resolve_customer;
use super::routing::{self, back_of_queue};
use super::{append_all, found, R};
use crate::model::ReaderRef;
use crate::tx::Tx;

/// A conversation, its integration, for a decision: both must exist in the account.
pub(crate) fn load(tx: &dyn Tx, account: Uuid, id: Uuid) -> R<(Conversation, Integration)> {
    let conversation = found(tx.conversation(account, id)?, "conversation")?;
    let integration = found(tx.integration(account, conversation.integration_id)?, "integration")?;
    Ok((conversation, integration))
}

/// Starts a conversation on behalf of a customer (found or created).
pub fn create_conversation(
    tx: &mut dyn Tx,
    account: Uuid,
    integration_id: Uuid,
    customer: CustomerRef,
    actor: Actor,
) -> R<Conversation> {
    let integration = tx
        .integration(account, integration_id)?
        .filter(|i| !i.is_deleted())
        .ok_or_else(|| DomainError::invalid("integration_id", "no such integration in this account"))?;
    let customer = resolve_customer(tx, account, customer, &actor)?;
    let scene = Scene { integration: &integration, actor, now: tx.now() };
    let (conversation, events) = Conversation::start(Uuid::now_v7(), &customer, &scene);
    tx.put_conversation(account, &conversation)?;
    append_all(tx, account, events)?;
    Ok(conversation)
}

/// Runs a core decision on a conversation and persists the outcome.
fn decide(
    tx: &mut dyn Tx,
    account: Uuid,
    id: Uuid,
    actor: Actor,
    f: impl FnOnce(&mut dyn Tx, &mut Conversation, &Scene) -> R<Vec<parley_core::event::EventDraft>>,
) -> R<Conversation> {
    let (mut conversation, integration) = load(tx, account, id)?;
    let scene = Scene { integration: &integration, actor, now: tx.now() };
    let events = f(tx, &mut conversation, &scene)?;
    if !events.is_empty() {
        tx.put_conversation(account, &conversation)?;
        append_all(tx, account, events)?;
    }
    Ok(conversation)
}

pub fn change_status(tx: &mut dyn Tx, account: Uuid, id: Uuid, to: Status, actor: Actor) -> R<Conversation> {
    decide(tx, account, id, actor, |tx, c, scene| {
        let back = if to == Status::Open { back_of_queue(tx, account, c, scene.now)? } else { 0 };
        Ok(c.request_status(to, back, scene)?)
    })
}

/// What an assignment request asks for.
#[derive(Debug, Clone, Copy)]
pub enum AssignTo {
    Agent(Uuid),
    Group(Uuid),
    /// The calling agent accepts the offer made to them.
    AcceptOffer(Uuid),
    /// The calling agent turns the offer made to them down.
    DeclineOffer(Uuid),
}

pub fn assign(tx: &mut dyn Tx, account: Uuid, id: Uuid, to: AssignTo, actor: Actor) -> R<Conversation> {
    match to {
        AssignTo::AcceptOffer(agent) => routing::accept_offer(tx, account, id, agent, actor),
        AssignTo::DeclineOffer(agent) => routing::decline_offer(tx, account, id, agent, actor),
        AssignTo::Agent(agent_id) => decide(tx, account, id, actor, |tx, c, scene| {
            let agent = tx
                .agent(account, agent_id)?
                .ok_or_else(|| DomainError::invalid("agent_id", "no such agent in this account"))?;
            Ok(c.transfer_to_agent(&agent, scene)?)
        }),
        AssignTo::Group(group_id) => decide(tx, account, id, actor, |tx, c, scene| {
            if tx.group(account, group_id)?.is_none() {
                return Err(DomainError::invalid("group_id", "no such group in this account").into());
            }
            let mut moved = c.clone();
            moved.group_id = Some(group_id);
            let position = back_of_queue(tx, account, &moved, scene.now)?;
            Ok(c.transfer_to_group(group_id, position, scene)?)
        }),
    }
}

pub fn change_tags(
    tx: &mut dyn Tx,
    account: Uuid,
    id: Uuid,
    add: &[String],
    remove: &[String],
    actor: Actor,
    limits: &Limits,
) -> R<Conversation> {
    decide(tx, account, id, actor, |_, c, scene| Ok(c.change_tags(add, remove, limits, scene)?))
}

/// Where a reader stands after a read receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub last_read_seq: i64,
    pub unread_count: i64,
}

/// Moves `reader`'s read position to `message_id` (or to the newest message). Logged as
/// `message_read` when it moves; never moves backwards.
pub fn mark_read(
    tx: &mut dyn Tx,
    account: Uuid,
    id: Uuid,
    reader: ReaderRef,
    message_id: Option<Uuid>,
    actor: Actor,
) -> R<ReadState> {
    let (conversation, integration) = load(tx, account, id)?;
    let message = match message_id {
        Some(mid) => Some(
            tx.message(conversation.id, mid)?
                .ok_or_else(|| DomainError::invalid("message_id", "no such message in this conversation"))?,
        ),
        None => tx.messages(conversation.id, crate::model::MessageWindow::Before(i64::MAX), 1)?.pop(),
    };
    if let Some(message) = message {
        if tx.advance_read_position(conversation.id, reader, message.seq)? {
            let scene = Scene { integration: &integration, actor: actor.clone(), now: tx.now() };
            let event = conversation.read_receipt(&actor, message.id, message.seq, &scene);
            tx.append(account, event)?;
        }
    }
    let last_read_seq = tx.read_position(conversation.id, reader)?;
    let unread_count = tx.count_unread(conversation.id, reader)?;
    Ok(ReadState { last_read_seq, unread_count })
}
