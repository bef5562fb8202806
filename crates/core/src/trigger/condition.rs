//! Conditions: a field, an operator that fits the field's type, and a value — checked when a
//! trigger is saved, and evaluated against the [`Facts`] of an event.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::facts::Facts;
use super::pattern::{Matched, Pattern};
use crate::routing::RollupStatus;
use crate::DomainError;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    HourOfDay,
    DayOfWeek,
    CustomerPreviousConversations,
    CustomerName,
    CustomerEmail,
    CustomerTriggered,
    AccountStatus,
    GroupStatus,
    Brand,
    CustomerInActiveConversation,
    CustomerRequestingConversation,
    CustomerServed,
    Group,
    Sender,
    SenderType,
    Message,
    InitialRouting,
    QueueSize,
    /// The conversation's tags (beyond the spec: lets a trigger act on what an outside
    /// classifier tagged). `is` / `is_not`: has / lacks the tag; `is_one_of` / `is_none_of`:
    /// has any / none of them.
    Tags,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Is,
    IsNot,
    LessThan,
    GreaterThan,
    LessThanOrEqual,
    GreaterThanOrEqual,
    Contains,
    ContainsCaseSensitive,
    NotContains,
    Regex,
    RegexCaseSensitive,
    IsOneOf,
    IsNoneOf,
}

/// The kinds of value a field holds, which decide the operators that fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An integer within a range.
    Integer(i64, i64),
    Text,
    Boolean,
    /// One of fixed words.
    Choice(&'static [&'static str]),
    /// Free words compared whole (a brand).
    MultiSelect,
    /// A set of words (tags).
    Set,
}

const STATUSES: &[&str] = &["online", "away", "invisible"];
const SENDER_TYPES: &[&str] = &["agent", "customer"];
/// `customer_previous_conversations` is counted up to this.
pub const PREVIOUS_CONVERSATIONS_CAP: i64 = 32_000;

impl Field {
    fn kind(self) -> Kind {
        use Field::*;
        match self {
            HourOfDay => Kind::Integer(0, 23),
            DayOfWeek => Kind::Integer(0, 6),
            CustomerPreviousConversations => Kind::Integer(0, PREVIOUS_CONVERSATIONS_CAP),
            QueueSize => Kind::Integer(0, i64::MAX),
            CustomerName | CustomerEmail | Group | Sender | Message => Kind::Text,
            CustomerTriggered
            | CustomerInActiveConversation
            | CustomerRequestingConversation
            | CustomerServed
            | InitialRouting => Kind::Boolean,
            AccountStatus | GroupStatus => Kind::Choice(STATUSES),
            SenderType => Kind::Choice(SENDER_TYPES),
            Brand => Kind::MultiSelect,
            Tags => Kind::Set,
        }
    }
}

impl Operator {
    fn fits(self, kind: Kind) -> bool {
        use Operator::*;
        match kind {
            Kind::Integer(..) => {
                matches!(self, Is | IsNot | LessThan | GreaterThan | LessThanOrEqual | GreaterThanOrEqual)
            }
            Kind::Text => matches!(
                self,
                Is | IsNot
                    | Contains
                    | ContainsCaseSensitive
                    | NotContains
                    | Regex
                    | RegexCaseSensitive
                    | IsOneOf
                    | IsNoneOf
            ),
            Kind::Boolean => matches!(self, Is | IsNot),
            Kind::Choice(_) | Kind::MultiSelect | Kind::Set => matches!(self, Is | IsNot | IsOneOf | IsNoneOf),
        }
    }

    fn takes_list(self) -> bool {
        matches!(self, Operator::IsOneOf | Operator::IsNoneOf)
    }
}

/// A condition as written in a trigger.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: Field,
    pub operator: Operator,
    pub value: Value,
    /// For `group_status`: the group whose status is meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Uuid>,
}

/// A condition checked and ready to evaluate (its pattern compiled).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub condition: Condition,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Integer(i64),
    Boolean(bool),
    Text(String),
    Texts(Vec<String>),
    Pattern(Box<Pattern>),
}

/// The result of one condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Evaluated {
    pub result: bool,
    /// Why the condition could not be decided (a pattern over its step limit): then `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Condition {
    /// Checks the condition as saved, at `at` (its path in the trigger, for errors).
    pub fn compile(&self, at: &str) -> Result<Compiled, DomainError> {
        let kind = self.field.kind();
        let invalid = |field: &str, reason: String| DomainError::invalid(format!("{at}.{field}"), reason);
        if !self.operator.fits(kind) {
            return Err(invalid(
                "operator",
                format!("`{}` does not apply to `{}`", as_word(&self.operator), as_word(&self.field)),
            ));
        }
        match (self.field, self.group) {
            (Field::GroupStatus, None) => {
                return Err(invalid("group", "`group_status` needs the `group` whose status it tests".into()))
            }
            (Field::GroupStatus, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(invalid("group", "only `group_status` takes a `group`".into())),
        }
        let test = if self.operator.takes_list() {
            let list = self
                .value
                .as_array()
                .filter(|l| !l.is_empty() && l.len() <= 100)
                .ok_or_else(|| invalid("value", "must be a list of 1 to 100 values".into()))?;
            let mut texts = Vec::with_capacity(list.len());
            for (i, item) in list.iter().enumerate() {
                let text = item.as_str().ok_or_else(|| invalid(&format!("value[{i}]"), "must be a string".into()))?;
                check_choice(kind, text).map_err(|r| invalid(&format!("value[{i}]"), r))?;
                texts.push(text.to_string());
            }
            Test::Texts(texts)
        } else {
            match kind {
                Kind::Integer(min, max) => {
                    let n = self.value.as_i64().ok_or_else(|| invalid("value", "must be an integer".into()))?;
                    if !(min..=max).contains(&n) {
                        return Err(invalid("value", format!("must be between {min} and {max}")));
                    }
                    Test::Integer(n)
                }
                Kind::Boolean => {
                    Test::Boolean(self.value.as_bool().ok_or_else(|| invalid("value", "must be true or false".into()))?)
                }
                Kind::Text | Kind::Choice(_) | Kind::MultiSelect | Kind::Set => {
                    let text = self.value.as_str().ok_or_else(|| invalid("value", "must be a string".into()))?;
                    check_choice(kind, text).map_err(|r| invalid("value", r))?;
                    match self.operator {
                        Operator::Regex | Operator::RegexCaseSensitive => {
                            let pattern = Pattern::new(text, self.operator == Operator::RegexCaseSensitive)
                                .map_err(|e| invalid("value", e.to_string()))?;
                            Test::Pattern(Box::new(pattern))
                        }
                        _ => Test::Text(text.to_string()),
                    }
                }
            }
        };
        Ok(Compiled { condition: self.clone(), test })
    }
}

fn check_choice(kind: Kind, text: &str) -> Result<(), String> {
    match kind {
        Kind::Choice(words) if !words.contains(&text) => Err(format!("must be one of {}", words.join(", "))),
        _ if text.chars().count() > 4096 => Err("at most 4096 characters".into()),
        _ => Ok(()),
    }
}

fn as_word<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn status_word(status: RollupStatus) -> &'static str {
    match status {
        RollupStatus::Online => "online",
        RollupStatus::Away => "away",
        RollupStatus::Invisible => "invisible",
    }
}

/// A field's value in the facts of an event.
enum Actual<'a> {
    Integer(i64),
    Boolean(bool),
    Text(&'a str),
    /// The group: its id and its name, either of which may be named.
    Group(Option<Uuid>, &'a str),
    Set(&'a [String]),
}

impl Compiled {
    fn actual<'a>(&self, facts: &'a Facts) -> Actual<'a> {
        use Field::*;
        match self.condition.field {
            HourOfDay => Actual::Integer(facts.hour_of_day),
            DayOfWeek => Actual::Integer(facts.day_of_week),
            CustomerPreviousConversations => Actual::Integer(facts.customer_previous_conversations),
            QueueSize => Actual::Integer(facts.queue_size),
            CustomerName => Actual::Text(&facts.customer_name),
            CustomerEmail => Actual::Text(&facts.customer_email),
            Sender => Actual::Text(&facts.sender),
            SenderType => Actual::Text(&facts.sender_type),
            Message => Actual::Text(&facts.message),
            Brand => Actual::Text(&facts.brand),
            Group => Actual::Group(facts.group_id, &facts.group),
            AccountStatus => Actual::Text(status_word(facts.account_status)),
            GroupStatus => {
                let status = self.condition.group.and_then(|g| facts.group_status.get(&g).copied()).unwrap_or_default();
                Actual::Text(status_word(status))
            }
            CustomerTriggered => Actual::Boolean(facts.customer_triggered),
            CustomerInActiveConversation => Actual::Boolean(facts.customer_in_active_conversation),
            CustomerRequestingConversation => Actual::Boolean(facts.customer_requesting_conversation),
            CustomerServed => Actual::Boolean(facts.customer_served),
            InitialRouting => Actual::Boolean(facts.initial_routing),
            Tags => Actual::Set(&facts.tags),
        }
    }

    pub fn evaluate(&self, facts: &Facts) -> Evaluated {
        use Operator::*;
        let op = self.condition.operator;
        let decided = |result: bool| Evaluated { result, error: None };
        let names_group = |id: Option<Uuid>, name: &str, v: &str| {
            name == v || id.is_some_and(|id| id.to_string() == v.to_lowercase())
        };
        let actual = match self.actual(facts) {
            // The group is named by its id or its name for `is` and lists; other operators read its name.
            Actual::Group(id, name) => match (&self.test, op) {
                (Test::Text(v), Is | IsNot) => return decided(names_group(id, name, v) == (op == Is)),
                (Test::Texts(list), _) => {
                    return decided(list.iter().any(|v| names_group(id, name, v)) == (op == IsOneOf))
                }
                _ => Actual::Text(name),
            },
            other => other,
        };
        match (actual, &self.test) {
            (Actual::Integer(a), Test::Integer(v)) => decided(match op {
                Is => a == *v,
                IsNot => a != *v,
                LessThan => a < *v,
                GreaterThan => a > *v,
                LessThanOrEqual => a <= *v,
                GreaterThanOrEqual => a >= *v,
                _ => false,
            }),
            (Actual::Boolean(a), Test::Boolean(v)) => decided((a == *v) == (op == Is)),
            (Actual::Text(name), Test::Pattern(p)) => match p.full_match(name) {
                Matched::Yes => decided(true),
                Matched::No => decided(false),
                Matched::StepLimit => Evaluated {
                    result: false,
                    error: Some(format!(
                        "the pattern gave up after {} steps: counted as no match",
                        super::pattern::STEP_LIMIT
                    )),
                },
            },
            (Actual::Text(a), Test::Text(v)) => decided(match op {
                Is => a == v,
                IsNot => a != v,
                Contains => a.to_lowercase().contains(&v.to_lowercase()),
                NotContains => !a.to_lowercase().contains(&v.to_lowercase()),
                ContainsCaseSensitive => a.contains(v.as_str()),
                _ => false,
            }),
            (Actual::Text(a), Test::Texts(list)) => decided(list.iter().any(|v| v == a) == (op == IsOneOf)),
            (Actual::Set(set), Test::Text(v)) => decided(set.iter().any(|t| t.eq_ignore_ascii_case(v)) == (op == Is)),
            (Actual::Set(set), Test::Texts(list)) => {
                decided(set.iter().any(|t| list.iter().any(|v| t.eq_ignore_ascii_case(v))) == (op == IsOneOf))
            }
            _ => decided(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn facts() -> Facts {
        let mut group_status = std::collections::HashMap::new();
        group_status.insert(Uuid::from_u128(7), RollupStatus::Away);
        Facts {
            hour_of_day: 9,
            day_of_week: 0,
            customer_previous_conversations: 32_000,
            customer_name: "Zoë Ångström".into(),
            customer_email: "".into(),
            customer_triggered: true,
            account_status: RollupStatus::Online,
            group_status,
            brand: "Acme Shoes".into(),
            customer_in_active_conversation: false,
            customer_requesting_conversation: true,
            customer_served: false,
            group: "Billing".into(),
            group_id: Some(Uuid::from_u128(7)),
            sender: "Zoë Ångström".into(),
            sender_type: "customer".into(),
            message: "Help, I need somebody".into(),
            initial_routing: true,
            queue_size: 0,
            tags: vec!["spam".into(), "billing".into()],
            ..Facts::default()
        }
    }

    fn check(field: &str, operator: &str, value: Value, expected: bool) {
        let mut condition = json!({"field": field, "operator": operator, "value": value});
        if field == "group_status" {
            condition["group"] = json!(Uuid::from_u128(7));
        }
        let condition: Condition = serde_json::from_value(condition.clone()).expect("parses");
        let compiled = condition.compile("conditions[0]").unwrap_or_else(|e| panic!("{field} {operator}: {e}"));
        assert_eq!(compiled.evaluate(&facts()).result, expected, "{field} {operator} {:?}", condition.value);
    }

    #[test]
    fn every_operator_on_every_field_type() {
        // Integers, at their boundaries.
        for (op, v, expected) in [
            ("is", 9, true),
            ("is", 10, false),
            ("is_not", 9, false),
            ("is_not", 0, true),
            ("less_than", 10, true),
            ("less_than", 9, false),
            ("greater_than", 8, true),
            ("greater_than", 9, false),
            ("less_than_or_equal", 9, true),
            ("less_than_or_equal", 8, false),
            ("greater_than_or_equal", 9, true),
            ("greater_than_or_equal", 10, false),
        ] {
            check("hour_of_day", op, json!(v), expected);
        }
        check("day_of_week", "is", json!(0), true);
        check("day_of_week", "greater_than", json!(5), false);
        check("customer_previous_conversations", "greater_than_or_equal", json!(32_000), true);
        check("customer_previous_conversations", "less_than", json!(32_000), false);
        check("queue_size", "is", json!(0), true);
        check("queue_size", "greater_than", json!(0), false);
        // Strings: case, Unicode, the empty string.
        for (op, v, expected) in [
            ("is", json!("Zoë Ångström"), true),
            ("is", json!("zoë ångström"), false),
            ("is_not", json!("Zoe"), true),
            ("contains", json!("ÅNGSTRÖM"), true),
            ("contains", json!("angstrom"), false),
            ("contains", json!(""), true),
            ("contains_case_sensitive", json!("Ångström"), true),
            ("contains_case_sensitive", json!("ångström"), false),
            ("not_contains", json!("ZOË"), false),
            ("not_contains", json!("bob"), true),
            ("regex", json!("zo. .*"), true),
            ("regex", json!("zo."), false),
            ("regex_case_sensitive", json!("zo. .*"), false),
            ("regex_case_sensitive", json!(r"Zo\w \w+"), true),
            ("is_one_of", json!(["Bob", "Zoë Ångström"]), true),
            ("is_one_of", json!(["bob"]), false),
            ("is_none_of", json!(["Bob"]), true),
            ("is_none_of", json!(["Zoë Ångström"]), false),
        ] {
            check("customer_name", op, v, expected);
        }
        check("customer_email", "is", json!(""), true);
        check("customer_email", "contains", json!("@"), false);
        check("customer_email", "regex", json!(""), true);
        check("message", "contains", json!("help"), true);
        check("message", "regex", json!(".*somebody"), true);
        check("sender", "is", json!("Zoë Ångström"), true);
        // The group, by name or id.
        check("group", "is", json!("Billing"), true);
        check("group", "is", json!(Uuid::from_u128(7).to_string().to_uppercase()), true);
        check("group", "is_not", json!("Sales"), true);
        check("group", "contains", json!("bill"), true);
        check("group", "is_one_of", json!(["Sales", Uuid::from_u128(7)]), true);
        check("group", "is_none_of", json!(["Billing"]), false);
        // Booleans.
        for field in ["customer_triggered", "customer_requesting_conversation", "initial_routing"] {
            check(field, "is", json!(true), true);
            check(field, "is_not", json!(true), false);
        }
        for field in ["customer_in_active_conversation", "customer_served"] {
            check(field, "is", json!(false), true);
            check(field, "is_not", json!(false), false);
        }
        // Choices and multi-select.
        check("account_status", "is", json!("online"), true);
        check("account_status", "is_not", json!("online"), false);
        check("account_status", "is_one_of", json!(["away", "invisible"]), false);
        check("account_status", "is_none_of", json!(["away", "invisible"]), true);
        check("group_status", "is", json!("away"), true);
        check("group_status", "is_one_of", json!(["online"]), false);
        check("sender_type", "is", json!("customer"), true);
        check("sender_type", "is_none_of", json!(["agent"]), true);
        check("brand", "is", json!("Acme Shoes"), true);
        check("brand", "is_one_of", json!(["Acme", "Acme Shoes"]), true);
        check("brand", "is_none_of", json!(["Acme Shoes"]), false);
        check("tags", "is", json!("spam"), true);
        check("tags", "is", json!("SPAM"), true);
        check("tags", "is_not", json!("vip"), true);
        check("tags", "is_one_of", json!(["vip", "spam"]), true);
        check("tags", "is_none_of", json!(["vip", "spam"]), false);
        check("tags", "is_none_of", json!(["vip"]), true);
    }

    fn refused(condition: Value) -> String {
        let condition: Condition = serde_json::from_value(condition).expect("parses");
        match condition.compile("conditions[3]") {
            Err(DomainError::Validation { field, reason }) => format!("{field}: {reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn operators_that_do_not_fit_and_bad_values_are_refused_with_the_field() {
        assert!(refused(json!({"field": "hour_of_day", "operator": "contains", "value": "1"}))
            .starts_with("conditions[3].operator"));
        assert!(refused(json!({"field": "customer_name", "operator": "less_than", "value": 3}))
            .starts_with("conditions[3].operator"));
        assert!(refused(json!({"field": "initial_routing", "operator": "regex", "value": "x"}))
            .starts_with("conditions[3].operator"));
        assert!(
            refused(json!({"field": "hour_of_day", "operator": "is", "value": 24})).starts_with("conditions[3].value")
        );
        assert!(refused(json!({"field": "customer_previous_conversations", "operator": "is", "value": 32_001}))
            .starts_with("conditions[3].value"));
        assert!(refused(json!({"field": "account_status", "operator": "is", "value": "busy"}))
            .starts_with("conditions[3].value"));
        assert!(refused(json!({"field": "group_status", "operator": "is", "value": "online"}))
            .starts_with("conditions[3].group"));
        assert_eq!(
            refused(json!({"field": "message", "operator": "regex", "value": "a(b"})),
            "conditions[3].value: invalid pattern at position 1: missing ), unterminated subpattern"
        );
        assert!(refused(json!({"field": "brand", "operator": "is_one_of", "value": "Acme"}))
            .starts_with("conditions[3].value"));
        assert!(refused(json!({"field": "message", "operator": "regex", "value": "a".repeat(1001)}))
            .contains("at most 1000 characters"));
    }
}
