//! Sending messages: from the customer (which may reopen or start a conversation) and from the
//! business (allowed by the reply status), idempotent by `client_message_id`.

use parley_core::conversation::{Conversation, Scene, Status};
use parley_core::customer::{Customer, CustomerProfile};
use parley_core::event::Actor;
use parley_core::integration::Integration;
use parley_core::limits::Limits;
use parley_core::message::{Author, AuthorType, Content, FormResponseContent, Message};
use parley_core::{text, Uuid};

use super::conversations::load;
use super::customers;
use super::routing::back_of_queue;
use super::triggers::EMAIL_FIELD;
use super::{append_all, found, R};
use crate::tx::Tx;
use crate::StoreError;

pub struct NewMessage {
    pub author: Author,
    pub content: Content,
    pub client_message_id: Option<String>,
}

/// A customer's answer to an e-mail request (a form field named `email`) becomes their e-mail.
fn take_email(tx: &mut dyn Tx, account: Uuid, customer: &Customer, answer: &FormResponseContent) -> R<()> {
    let Some((i, field)) = answer.fields.iter().enumerate().find(|(_, f)| f.name == EMAIL_FIELD) else {
        return Ok(());
    };
    let email = field.value.trim();
    text::email(&format!("content.fields[{i}].value"), email)?;
    let profile = CustomerProfile { email: Some(email.to_string()), ..CustomerProfile::default() };
    customers::update_customer(tx, account, customer.id, profile, customer.actor())?;
    Ok(())
}

pub struct Sent {
    pub message: Message,
    /// False when `client_message_id` matched an earlier message, which is answered instead.
    pub created: bool,
}

/// A conversation with what a message into it is decided on. Whoever checks the sender loads it
/// once and hands it to [`send_in`], so the write reads nothing twice.
pub struct Thread {
    pub conversation: Conversation,
    pub integration: Integration,
    pub customer: Customer,
}

impl Thread {
    pub fn load(tx: &dyn Tx, account: Uuid, conversation_id: Uuid) -> R<Thread> {
        let (conversation, integration) = load(tx, account, conversation_id)?;
        let customer = found(tx.customer(account, conversation.customer_id)?, "customer")?;
        Ok(Thread { conversation, integration, customer })
    }
}

pub fn send_message(
    tx: &mut dyn Tx,
    account: Uuid,
    conversation_id: Uuid,
    new: NewMessage,
    actor: Actor,
    limits: &Limits,
) -> R<Sent> {
    let thread = Thread::load(tx, account, conversation_id)?;
    send_in(tx, account, thread, new, actor, limits)
}

/// [`send_message`] into a thread already loaded.
pub fn send_in(
    tx: &mut dyn Tx,
    account: Uuid,
    thread: Thread,
    new: NewMessage,
    actor: Actor,
    limits: &Limits,
) -> R<Sent> {
    if let Some(cmid) = &new.client_message_id {
        text::required("client_message_id", cmid, 128)?;
    }
    let Thread { mut conversation, integration, customer } = thread;
    let now = tx.now();

    if new.author.author_type == AuthorType::Customer
        && conversation.status == Status::Ended
        && !conversation.reopens_at(&integration, now)
    {
        // Past the reopen window the customer's message belongs to a newer conversation:
        // the one already started since, or a new one.
        let newest = tx.latest_conversation(account, customer.id, integration.id)?;
        conversation = match newest {
            Some(c) if c.id != conversation.id && c.status != Status::Ended => c,
            _ => {
                let scene = Scene { integration: &integration, actor: actor.clone(), now };
                let (fresh, events) = Conversation::start(Uuid::now_v7(), &customer, &scene);
                tx.put_conversation(account, &fresh)?;
                append_all(tx, account, events)?;
                fresh
            }
        };
    }

    if let Some(cmid) = &new.client_message_id {
        if let Some(existing) = tx.message_by_client_id(conversation.id, cmid)? {
            return Ok(Sent { message: existing, created: false });
        }
    }

    let message = Message {
        id: Uuid::now_v7(),
        conversation_id: conversation.id,
        seq: conversation.messages_count + 1,
        author: new.author,
        content: new.content,
        client_message_id: new.client_message_id,
        created_at: now,
    };
    let scene = Scene { integration: &integration, actor, now };
    let events = if message.author.author_type == AuthorType::Customer {
        let starts = matches!(conversation.status, Status::Created | Status::Ended);
        let back = if starts { back_of_queue(tx, account, &conversation, now)? } else { 0 };
        conversation.receive_customer_message(&message, &customer, limits, back, &scene)?
    } else {
        conversation.send_business_message(&message, limits, &scene)?
    };
    tx.put_conversation(account, &conversation)?;
    match tx.insert_message(account, &message) {
        Err(StoreError::Duplicate { .. }) => {
            return Err(StoreError::Backend("message sequence collision".into()));
        }
        other => other?,
    }
    append_all(tx, account, events)?;
    if let Content::FormResponse(answer) = &message.content {
        take_email(tx, account, &customer, answer)?;
    }
    Ok(Sent { message, created: true })
}
