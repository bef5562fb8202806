//! Routing policy, pure: how presence rolls up into account and group status, which agent the
//! router picks, where a conversation stands in its queue, and how long the wait should be.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::agent::{Agent, AgentKind, AgentStatus};
use crate::Timestamp;

/// The status of an account or a group: online if any agent is online; else away if any is
/// away; else invisible (offline agents count as neither).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RollupStatus {
    Online,
    Away,
    #[default]
    Invisible,
}

pub fn rollup<'a>(statuses: impl IntoIterator<Item = &'a AgentStatus>) -> RollupStatus {
    let mut away = false;
    for status in statuses {
        match status {
            AgentStatus::Online => return RollupStatus::Online,
            AgentStatus::Away => away = true,
            _ => {}
        }
    }
    if away {
        RollupStatus::Away
    } else {
        RollupStatus::Invisible
    }
}

/// An agent as the router sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub agent: Agent,
    /// Conversations it handles now, plus offers awaiting its answer (an offer holds a place).
    pub active: i64,
    /// How often the conversation being routed was already offered to it in this queue entry
    /// (manual accept: an offer not taken moves on to the others first). 0 for auto-accept.
    pub times_offered: usize,
}

/// The router's pick: an online human agent with spare capacity who has the fewest active
/// conversations; ties go to the longest idle (never assigned counts as idle longest), then to
/// the lowest id so the choice is stable. For an offer, agents who already let this
/// conversation pass come last, so it goes round the group before anyone sees it twice.
pub fn pick(candidates: &[Candidate]) -> Option<Uuid> {
    candidates
        .iter()
        .filter(|c| {
            c.agent.kind == AgentKind::Agent && c.agent.status == AgentStatus::Online && c.active < c.agent.capacity
        })
        .min_by_key(|c| {
            (c.times_offered, c.active, c.agent.last_assigned_at.map_or(i64::MIN, Timestamp::millis), c.agent.id)
        })
        .map(|c| c.agent.id)
}

/// Where an offer stands. Only `pending` holds the agent's place; accept is the only way an
/// offer becomes an assignment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    Pending,
    Accepted,
    Declined,
    Expired,
    /// The conversation stopped waiting (closed, transferred, assigned otherwise) or the agent
    /// stopped being able to take it (went away, left the group).
    Withdrawn,
}

impl OfferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Pending => "pending",
            OfferStatus::Accepted => "accepted",
            OfferStatus::Declined => "declined",
            OfferStatus::Expired => "expired",
            OfferStatus::Withdrawn => "withdrawn",
        }
    }
}

/// A manual-accept offer of a waiting conversation to one agent, for a limited time.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Offer {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub agent_id: Uuid,
    pub group_id: Option<Uuid>,
    pub status: OfferStatus,
    pub offered_at: Timestamp,
    pub expires_at: Timestamp,
    /// The queue entry the offer belongs to (the conversation's `queued_at` then).
    pub queued_at: Option<Timestamp>,
}

/// How long a group's customers waited for a first response lately.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct WaitEstimate {
    pub min_minutes: i64,
    pub max_minutes: i64,
}

/// The estimate from a group's waits (queued → first response) of the last 7 days, in
/// milliseconds: the shortest and the longest, in whole minutes (the longest rounded up).
/// None when the group routed nothing in that time.
pub fn estimate(waits_ms: &[i64]) -> Option<WaitEstimate> {
    let min = *waits_ms.iter().filter(|w| **w >= 0).min()?;
    let max = *waits_ms.iter().filter(|w| **w >= 0).max()?;
    Some(WaitEstimate { min_minutes: min / 60_000, max_minutes: (max + 59_999) / 60_000 })
}

pub const ESTIMATE_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use AgentStatus::*;

    #[test]
    fn rollup_follows_the_rule_for_every_mix() {
        let cases: &[(&[AgentStatus], RollupStatus)] = &[
            (&[], RollupStatus::Invisible),
            (&[Offline], RollupStatus::Invisible),
            (&[Invisible], RollupStatus::Invisible),
            (&[Invisible, Offline], RollupStatus::Invisible),
            (&[Away], RollupStatus::Away),
            (&[Away, Invisible, Offline], RollupStatus::Away),
            (&[Online], RollupStatus::Online),
            (&[Online, Away], RollupStatus::Online),
            (&[Offline, Invisible, Away, Online], RollupStatus::Online),
        ];
        for (statuses, expected) in cases {
            assert_eq!(rollup(statuses.iter()), *expected, "{statuses:?}");
        }
    }

    fn candidate(n: u128, status: AgentStatus, active: i64, capacity: i64, last: Option<i64>) -> Candidate {
        Candidate {
            agent: Agent {
                id: Uuid::from_u128(n),
                kind: AgentKind::Agent,
                name: format!("a{n}"),
                email: None,
                capacity,
                status,
                last_assigned_at: last.map(Timestamp::from_millis),
                created_at: Timestamp::from_millis(0),
                updated_at: Timestamp::from_millis(0),
            },
            active,
            times_offered: 0,
        }
    }

    #[test]
    fn the_pick_is_online_with_room_fewest_active_then_longest_idle() {
        let c = [
            candidate(1, Online, 2, 5, Some(100)),
            candidate(2, Online, 1, 5, Some(300)),
            candidate(3, Online, 1, 5, Some(200)),
            candidate(4, Away, 0, 5, None),
            candidate(5, Online, 5, 5, None),
        ];
        assert_eq!(pick(&c), Some(Uuid::from_u128(3)), "fewest active, then idle longest");
        let never = [candidate(1, Online, 0, 5, Some(10)), candidate(2, Online, 0, 5, None)];
        assert_eq!(pick(&never), Some(Uuid::from_u128(2)), "never assigned is idle longest");
        let full = [candidate(1, Online, 5, 5, None), candidate(2, Invisible, 0, 5, None)];
        assert_eq!(pick(&full), None, "capacity is never exceeded; only online agents get work");
        let mut bot = candidate(9, Online, 0, 5, None);
        bot.agent.kind = AgentKind::Bot;
        assert_eq!(pick(&[bot]), None, "bots are not routed human conversations");
        let mut passed = candidate(1, Online, 0, 5, None);
        passed.times_offered = 1;
        let busier = candidate(2, Online, 3, 5, Some(500));
        assert_eq!(pick(&[passed.clone(), busier]), Some(Uuid::from_u128(2)), "an offer goes round before repeating");
        assert_eq!(pick(&[passed]), Some(Uuid::from_u128(1)), "and comes back when nobody else can take it");
    }

    #[test]
    fn estimates_need_history() {
        assert_eq!(estimate(&[]), None);
        assert_eq!(estimate(&[90_000, 30_000, 600_001]), Some(WaitEstimate { min_minutes: 0, max_minutes: 11 }));
        assert_eq!(estimate(&[120_000]), Some(WaitEstimate { min_minutes: 2, max_minutes: 2 }));
    }
}
