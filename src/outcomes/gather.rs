//! The closed outcomes the report judges, each with the score in effect just before its
//! close, and the reps' logged activities with the record each one was on.

use std::collections::HashMap;

use crate::projection::ReadFields;
use chrono::{DateTime, Utc};
use leadscore_connector::{Record, Value};

use crate::config::Config;
use crate::features::History;
use crate::level::Level;
use crate::levels;
use crate::store::ScoreHistory;

/// One closed example of a level (a deal, a contact's role on a deal, or a decided lead) whose
/// record had a score before the close.
#[derive(Clone, Debug)]
pub struct ClosedOutcome {
    /// The example id: the deal id, `deal:contact`, or the lead id.
    pub id: String,
    /// The scored record: the account, the contact or the lead.
    pub record: String,
    /// The deal's or the lead's creation time.
    pub created: Option<DateTime<Utc>>,
    pub closed: DateTime<Utc>,
    pub won: bool,
    /// The score in effect just before the close.
    pub probability: f64,
    pub tier: String,
    /// The deal's owner (the lead's owner at the lead level).
    pub owner: Option<String>,
    /// The deal whose amount counts as revenue: the deal itself, or a lead's converted deal.
    pub deal: Option<String>,
}

/// The closed examples and how many were left out for lack of an earlier score.
pub struct Closed {
    pub outcomes: Vec<ClosedOutcome>,
    /// Closed examples whose record had no score before the close.
    pub unscored: usize,
}

fn text(record: &impl ReadFields, field: &str) -> Option<String> {
    match record.get(field) {
        Value::Text(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Collects the level's closed examples, as `src/levels.rs` labels them, whose record was
/// first scored before the close, oldest close first.
pub fn closed_outcomes(
    level: Level,
    history: &History,
    scores: &ScoreHistory,
    opportunities: &HashMap<String, Record>,
    config: &Config,
    now: DateTime<Utc>,
) -> Closed {
    let mut outcomes = Vec::new();
    let mut unscored = 0;
    for example in levels::examples(level, history, config, now) {
        let Some(record) = example.record_id(level) else {
            continue;
        };
        let closed = example.decided;
        let scored_before = scores
            .first_scored(record)
            .is_some_and(|first| first < closed);
        let entry = scored_before
            .then(|| scores.before(record, closed))
            .flatten();
        let Some(entry) = entry else {
            unscored += 1;
            continue;
        };
        let (created, owner, deal) = match level {
            Level::Account | Level::Contact => {
                let deal_id = example
                    .id
                    .split(':')
                    .next()
                    .unwrap_or(&example.id)
                    .to_string();
                let deal = opportunities.get(&deal_id);
                (
                    deal.and_then(|d| d.get("CreatedDate").as_datetime()),
                    deal.and_then(|d| text(d, "OwnerId")),
                    Some(deal_id),
                )
            }
            Level::Lead => {
                let lead = history.leads.get(record);
                (
                    lead.and_then(|l| l.get("CreatedDate").as_datetime()),
                    lead.and_then(|l| text(l, "OwnerId")),
                    lead.and_then(|l| text(l, "ConvertedOpportunityId")),
                )
            }
        };
        outcomes.push(ClosedOutcome {
            id: example.id.clone(),
            record: record.to_string(),
            created,
            closed,
            won: example.label >= 0.5,
            probability: entry.probability,
            tier: entry.tier.clone(),
            owner,
            deal,
        });
    }
    outcomes.sort_by(|a, b| a.closed.cmp(&b.closed).then_with(|| a.id.cmp(&b.id)));
    Closed { outcomes, unscored }
}

/// One logged task or event.
#[derive(Clone, Debug)]
pub struct LoggedActivity {
    pub at: DateTime<Utc>,
    pub owner: Option<String>,
    /// The record of the report's level the activity was on, when one is known.
    pub record: Option<String>,
}

/// Returns the tasks and events with their owner and the record of `level` each was on. For
/// accounts that is the `WhatId` account, else the account of a `WhatId` deal or of a `WhoId`
/// contact. For contacts and leads it is the `WhoId`.
pub fn activities(
    level: Level,
    tasks: &[Record],
    events: &[Record],
    opportunities: &HashMap<String, Record>,
    history: &History,
) -> Vec<LoggedActivity> {
    let dated = tasks
        .iter()
        .map(|t| (t, "ActivityDate"))
        .chain(events.iter().map(|e| (e, "StartDateTime")));
    let mut out = Vec::new();
    for (record, time_field) in dated {
        let at = record
            .get(time_field)
            .as_datetime()
            .or_else(|| record.get("CreatedDate").as_datetime());
        let Some(at) = at else { continue };
        let who = text(record, "WhoId");
        let target = match level {
            Level::Account => text(record, "WhatId")
                .and_then(|what| {
                    if history.accounts.contains_key(&what) {
                        Some(what)
                    } else {
                        opportunities
                            .get(&what)
                            .and_then(|deal| text(deal, "AccountId"))
                    }
                })
                .or_else(|| {
                    who.as_deref()
                        .and_then(|contact| history.contact_account(contact))
                        .map(str::to_string)
                }),
            Level::Contact => who.filter(|id| history.contacts.contains_key(id)),
            Level::Lead => who.filter(|id| history.leads.contains_key(id)),
        };
        out.push(LoggedActivity {
            at,
            owner: text(record, "OwnerId"),
            record: target,
        });
    }
    out.sort_by_key(|a| a.at);
    out
}

/// Returns the user names by id, from the pulled `User` records.
pub fn user_names(users: &[Record]) -> HashMap<String, String> {
    users
        .iter()
        .filter_map(|user| Some((user.id.clone(), text(user, "Name")?)))
        .collect()
}

/// Returns the pulled deals by id.
pub fn opportunities_by_id(records: Vec<Record>) -> HashMap<String, Record> {
    records.into_iter().map(|r| (r.id.clone(), r)).collect()
}
