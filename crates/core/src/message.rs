//! Messages, their authors, and every content type and action, with validation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::limits::Limits;
use crate::{text, DomainError, Timestamp};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AuthorType {
    Customer,
    Agent,
    Bot,
    System,
}

impl AuthorType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorType::Customer => "customer",
            AuthorType::Agent => "agent",
            AuthorType::Bot => "bot",
            AuthorType::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(AuthorType::Customer),
            "agent" => Some(AuthorType::Agent),
            "bot" => Some(AuthorType::Bot),
            "system" => Some(AuthorType::System),
            _ => None,
        }
    }

    pub fn is_business(self) -> bool {
        self != AuthorType::Customer
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Author {
    #[serde(rename = "type")]
    pub author_type: AuthorType,
    pub id: Option<Uuid>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// Position in the conversation, from 1, without gaps.
    pub seq: i64,
    pub author: Author,
    pub content: Content,
    pub client_message_id: Option<String>,
    pub created_at: Timestamp,
}

/// A button or quick reply attached to a text message or a carousel item.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A quick reply: pressing it sends `text` back with `payload`.
    Reply { text: String, payload: String },
    /// A button whose `payload` goes to the business without a visible message.
    Postback { text: String, payload: String },
    /// A button that opens `uri`.
    Link { text: String, uri: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Media {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CarouselItem {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Coordinates {
    pub lat: f64,
    pub long: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FormFieldType {
    Text,
    Email,
    Select,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SelectOption {
    pub name: String,
    pub label: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    #[serde(rename = "type")]
    pub field_type: FormFieldType,
    pub name: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<SelectOption>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FormResponseField {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextContent {
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// Set by a customer who pressed a quick reply: the reply's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CarouselContent {
    pub items: Vec<CarouselItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocationContent {
    pub coordinates: Coordinates,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FormContent {
    pub fields: Vec<FormField>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FormResponseContent {
    pub fields: Vec<FormResponseField>,
}

/// What a message says. `content.type` selects the variant.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text(TextContent),
    Image(Media),
    File(Media),
    Carousel(CarouselContent),
    Location(LocationContent),
    Form(FormContent),
    FormResponse(FormResponseContent),
}

/// Parsing dispatches on `type` by hand rather than with serde's internally tagged enums,
/// which buffer the content and so lose the path of an error inside it: here an error says
/// where it is, as `at `<path>`: <reason>` (the HTTP layer turns that into the field).
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let kind = match map.remove("type") {
            Some(serde_json::Value::String(kind)) => kind,
            Some(_) => return Err(D::Error::custom("at `type`: must be a string")),
            None => return Err(D::Error::missing_field("type")),
        };
        fn part<T: serde::de::DeserializeOwned, E: Error>(
            map: serde_json::Map<String, serde_json::Value>,
        ) -> Result<T, E> {
            serde_path_to_error::deserialize(serde_json::Value::Object(map)).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." || path == "?" {
                    E::custom(inner)
                } else {
                    E::custom(format!("at `{path}`: {inner}"))
                }
            })
        }
        Ok(match kind.as_str() {
            "text" => Content::Text(part(map)?),
            "image" => Content::Image(part(map)?),
            "file" => Content::File(part(map)?),
            "carousel" => Content::Carousel(part(map)?),
            "location" => Content::Location(part(map)?),
            "form" => Content::Form(part(map)?),
            "form_response" => Content::FormResponse(part(map)?),
            other => return Err(D::Error::unknown_variant(other, Content::TYPES)),
        })
    }
}

const ACTION_TEXT_MAX: usize = 128;
const PAYLOAD_MAX: usize = 1000;
const MAX_ACTIONS: usize = 10;
const MAX_CAROUSEL_ITEMS: usize = 10;
const MAX_FORM_FIELDS: usize = 20;
const MAX_SELECT_OPTIONS: usize = 50;
const WEB_SCHEMES: &[&str] = &["https", "http"];
const LINK_SCHEMES: &[&str] = &["https", "http", "mailto", "tel"];

impl Content {
    pub const TYPES: &'static [&'static str] =
        &["text", "image", "file", "carousel", "location", "form", "form_response"];

    pub fn type_name(&self) -> &'static str {
        match self {
            Content::Text(_) => "text",
            Content::Image(_) => "image",
            Content::File(_) => "file",
            Content::Carousel(_) => "carousel",
            Content::Location(_) => "location",
            Content::Form(_) => "form",
            Content::FormResponse(_) => "form_response",
        }
    }

    /// The human-readable text of the message, if it has any.
    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(content) => Some(&content.text),
            Content::Image(media) | Content::File(media) => media.text.as_deref(),
            _ => None,
        }
    }

    /// Checks every field against the spec's rules, for a message written by `author`.
    pub fn validate(&self, author: AuthorType, limits: &Limits) -> Result<(), DomainError> {
        let f = |rest: &str| format!("content.{rest}");
        match self {
            Content::Text(TextContent { text, actions, payload }) => {
                text::required(&f("text"), text, limits.text_chars)?;
                validate_actions(&f("actions"), actions)?;
                if let Some(payload) = payload {
                    if author != AuthorType::Customer {
                        return Err(DomainError::invalid(
                            f("payload"),
                            "only a customer's quick-reply answer carries a payload",
                        ));
                    }
                    text::required(&f("payload"), payload, PAYLOAD_MAX)?;
                }
                if !actions.is_empty() && author == AuthorType::Customer {
                    return Err(DomainError::invalid(f("actions"), "customers cannot send actions"));
                }
            }
            Content::Image(media) => validate_media(media, true, limits)?,
            Content::File(media) => validate_media(media, false, limits)?,
            Content::Carousel(CarouselContent { items }) => {
                if items.is_empty() || items.len() > MAX_CAROUSEL_ITEMS {
                    return Err(DomainError::invalid(f("items"), format!("must hold 1 to {MAX_CAROUSEL_ITEMS} items")));
                }
                for (i, item) in items.iter().enumerate() {
                    let p = |rest: &str| format!("content.items[{i}].{rest}");
                    text::required(&p("title"), &item.title, ACTION_TEXT_MAX)?;
                    text::optional(&p("description"), item.description.as_deref(), 1024)?;
                    if let Some(url) = &item.media_url {
                        text::url(&p("media_url"), url, WEB_SCHEMES)?;
                    }
                    validate_actions(&p("actions"), &item.actions)?;
                }
            }
            Content::Location(LocationContent { coordinates, name, address }) => {
                let Coordinates { lat, long } = *coordinates;
                if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
                    return Err(DomainError::invalid(f("coordinates.lat"), "must be between -90 and 90"));
                }
                if !long.is_finite() || !(-180.0..=180.0).contains(&long) {
                    return Err(DomainError::invalid(f("coordinates.long"), "must be between -180 and 180"));
                }
                text::optional(&f("name"), name.as_deref(), 200)?;
                text::optional(&f("address"), address.as_deref(), 500)?;
            }
            Content::Form(FormContent { fields }) => {
                validate_field_count(fields.len())?;
                let mut names = std::collections::HashSet::new();
                for (i, field) in fields.iter().enumerate() {
                    let p = |rest: &str| format!("content.fields[{i}].{rest}");
                    text::required(&p("name"), &field.name, 128)?;
                    text::required(&p("label"), &field.label, 128)?;
                    if !names.insert(field.name.as_str()) {
                        return Err(DomainError::invalid(p("name"), "field names must be unique"));
                    }
                    match field.field_type {
                        FormFieldType::Select => {
                            if field.options.is_empty() || field.options.len() > MAX_SELECT_OPTIONS {
                                return Err(DomainError::invalid(
                                    p("options"),
                                    format!("a select needs 1 to {MAX_SELECT_OPTIONS} options"),
                                ));
                            }
                            for (j, option) in field.options.iter().enumerate() {
                                text::required(&p(&format!("options[{j}].name")), &option.name, 128)?;
                                text::required(&p(&format!("options[{j}].label")), &option.label, 128)?;
                            }
                        }
                        FormFieldType::Text | FormFieldType::Email => {
                            if !field.options.is_empty() {
                                return Err(DomainError::invalid(p("options"), "only a select field has options"));
                            }
                        }
                    }
                }
                if author == AuthorType::Customer {
                    return Err(DomainError::invalid("content.type", "customers answer forms with `form_response`"));
                }
            }
            Content::FormResponse(FormResponseContent { fields }) => {
                validate_field_count(fields.len())?;
                for (i, field) in fields.iter().enumerate() {
                    text::required(&format!("content.fields[{i}].name"), &field.name, 128)?;
                    text::bounded(&format!("content.fields[{i}].value"), &field.value, limits.text_chars)?;
                }
                if author != AuthorType::Customer {
                    return Err(DomainError::invalid("content.type", "only a customer sends a `form_response`"));
                }
            }
        }
        Ok(())
    }
}

fn validate_field_count(n: usize) -> Result<(), DomainError> {
    if n == 0 || n > MAX_FORM_FIELDS {
        return Err(DomainError::invalid("content.fields", format!("must hold 1 to {MAX_FORM_FIELDS} fields")));
    }
    Ok(())
}

fn validate_actions(field: &str, actions: &[Action]) -> Result<(), DomainError> {
    if actions.len() > MAX_ACTIONS {
        return Err(DomainError::invalid(field, format!("at most {MAX_ACTIONS} actions")));
    }
    for (i, action) in actions.iter().enumerate() {
        let p = |rest: &str| format!("{field}[{i}].{rest}");
        match action {
            Action::Reply { text, payload } | Action::Postback { text, payload } => {
                text::required(&p("text"), text, ACTION_TEXT_MAX)?;
                text::required(&p("payload"), payload, PAYLOAD_MAX)?;
            }
            Action::Link { text, uri } => {
                text::required(&p("text"), text, ACTION_TEXT_MAX)?;
                text::url(&p("uri"), uri, LINK_SCHEMES)?;
            }
        }
    }
    Ok(())
}

fn validate_media(media: &Media, image: bool, limits: &Limits) -> Result<(), DomainError> {
    match (&media.media_url, &media.media_id) {
        (Some(url), None) => text::url("content.media_url", url, WEB_SCHEMES)?,
        (None, Some(id)) => text::required("content.media_id", id, 200)?,
        _ => return Err(DomainError::invalid("content.media_url", "give exactly one of `media_url` and `media_id`")),
    }
    let mime = media.media_type.as_str();
    let well_formed = mime
        .split_once('/')
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !mime.contains(char::is_whitespace));
    if !well_formed || mime.len() > 255 {
        return Err(DomainError::invalid("content.media_type", "must be a MIME type such as image/png"));
    }
    if image && !mime.starts_with("image/") {
        return Err(DomainError::invalid("content.media_type", "an image must have an image/* type"));
    }
    if let Some(size) = media.media_size {
        if size > limits.attachment_bytes {
            return Err(DomainError::invalid(
                "content.media_size",
                format!("must be at most {} bytes", limits.attachment_bytes),
            ));
        }
    }
    text::optional("content.alt_text", media.alt_text.as_deref(), 1000)?;
    text::optional("content.text", media.text.as_deref(), limits.text_chars)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Content, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn check(v: serde_json::Value, author: AuthorType) -> Result<(), DomainError> {
        parse(v).expect("parses").validate(author, &Limits::default())
    }

    #[test]
    fn every_content_type_parses_and_validates() {
        let agent = AuthorType::Agent;
        check(
            json!({"type": "text", "text": "hi", "actions": [
            {"type": "reply", "text": "Yes", "payload": "Y"},
            {"type": "postback", "text": "Buy", "payload": "BUY"},
            {"type": "link", "text": "Site", "uri": "https://example.com"}]}),
            agent,
        )
        .unwrap();
        check(json!({"type": "image", "media_url": "https://x.io/a.png", "media_type": "image/png", "media_size": 10, "alt_text": "a"}), agent).unwrap();
        check(json!({"type": "file", "media_id": "m1", "media_type": "application/pdf"}), agent).unwrap();
        check(
            json!({"type": "carousel", "items": [{"title": "A", "description": "d", "media_url": "https://x.io/a.png",
            "actions": [{"type": "postback", "text": "Pick", "payload": "A"}]}]}),
            agent,
        )
        .unwrap();
        check(json!({"type": "location", "coordinates": {"lat": 45.5, "long": -73.6}, "name": "Office"}), agent)
            .unwrap();
        check(json!({"type": "form", "fields": [{"type": "email", "name": "email", "label": "Your e-mail"},
            {"type": "select", "name": "topic", "label": "Topic", "options": [{"name": "billing", "label": "Billing"}]}]}), AuthorType::Bot).unwrap();
        check(json!({"type": "form_response", "fields": [{"name": "email", "value": "a@b.co"}]}), AuthorType::Customer)
            .unwrap();
        check(json!({"type": "text", "text": "Yes", "payload": "Y"}), AuthorType::Customer).unwrap();
    }

    #[test]
    fn refusals_name_the_field() {
        let agent = AuthorType::Agent;
        let field = |r: Result<(), DomainError>| match r {
            Err(DomainError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        };
        assert_eq!(field(check(json!({"type": "text", "text": ""}), agent)), "content.text");
        assert_eq!(field(check(json!({"type": "text", "text": "a".repeat(4097)}), agent)), "content.text");
        assert!(check(json!({"type": "text", "text": "é".repeat(4096)}), agent).is_ok());
        assert_eq!(
            field(check(json!({"type": "location", "coordinates": {"lat": 91, "long": 0}}), agent)),
            "content.coordinates.lat"
        );
        assert_eq!(field(check(json!({"type": "image", "media_type": "image/png"}), agent)), "content.media_url");
        assert_eq!(
            field(check(json!({"type": "image", "media_url": "https://x.io/a", "media_type": "text/plain"}), agent)),
            "content.media_type"
        );
        assert_eq!(field(check(json!({"type": "carousel", "items": []}), agent)), "content.items");
        assert_eq!(
            field(check(
                json!({"type": "text", "text": "x", "actions": [{"type": "link", "text": "t", "uri": "javascript:alert(1)"}]}),
                agent
            )),
            "content.actions[0].uri"
        );
        assert_eq!(
            field(check(json!({"type": "form", "fields": [{"type": "select", "name": "a", "label": "A"}]}), agent)),
            "content.fields[0].options"
        );
        assert_eq!(
            field(check(json!({"type": "form_response", "fields": [{"name": "a", "value": "b"}]}), agent)),
            "content.type"
        );
        assert_eq!(field(check(json!({"type": "text", "text": "x", "payload": "p"}), agent)), "content.payload");
    }

    #[test]
    fn unknown_types_and_fields_do_not_parse() {
        assert!(parse(json!({"type": "video", "url": "x"})).is_err());
        assert!(parse(json!({"type": "text", "text": "x", "colour": "red"})).is_err());
        assert!(parse(json!({"type": "image", "media_url": "https://x.io/a", "media_type": "image/png", "extra": 1}))
            .is_err());
    }
}
