//! Account features from the TOML mapping: the account's own fields plus aggregates of its
//! contacts and activities, all computed as of a point in time so that training examples see
//! only what existed when their deal was created.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use leadscore_connector::{Record, Value};
use serde::{Deserialize, Serialize};

use crate::config::{AttributeKind, FeatureConfig};

/// Salesforce object and field names the pipeline reads besides the configured features.
pub mod fields {
    pub const ACCOUNT: &str = "Account";
    pub const CONTACT: &str = "Contact";
    pub const OPPORTUNITY: &str = "Opportunity";
    pub const CONTACT_ROLE: &str = "OpportunityContactRole";
    pub const TASK: &str = "Task";
    pub const EVENT: &str = "Event";
    pub const USER: &str = "User";
}

/// Categories kept per feature, the most frequent in training first.
const MAX_CATEGORIES: usize = 20;
/// A category must occur this often among training rows to get its own column.
const MIN_CATEGORY_COUNT: usize = 10;

#[derive(Clone, Debug)]
struct Activity {
    at: DateTime<Utc>,
    contact: Option<String>,
    meeting: bool,
}

/// One closed or open deal.
#[derive(Clone, Debug)]
pub struct Deal {
    pub id: String,
    pub account_id: String,
    pub created: DateTime<Utc>,
    pub close_date: Option<DateTime<Utc>>,
    pub closed: bool,
    pub won: bool,
    /// StageName, for the stage-based label rule.
    pub stage: Option<String>,
}

/// Everything pulled, indexed for feature computation.
pub struct History {
    pub accounts: BTreeMap<String, Record>,
    contact_account: HashMap<String, String>,
    contact_role: HashMap<String, String>,
    contact_created: HashMap<String, DateTime<Utc>>,
    contacts_by_account: HashMap<String, Vec<String>>,
    activities: HashMap<String, Vec<Activity>>,
    pub deals: Vec<Deal>,
    system_size: HashMap<String, usize>,
}

fn text(record: &Record, field: &str) -> Option<String> {
    match record.get(field) {
        Value::Text(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl History {
    /// Indexes pulled records. `role_field` names the contact's buying-role field.
    pub fn build(
        accounts: Vec<Record>,
        contacts: Vec<Record>,
        opportunities: Vec<Record>,
        tasks: Vec<Record>,
        events: Vec<Record>,
        role_field: &str,
    ) -> History {
        let accounts: BTreeMap<String, Record> =
            accounts.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut system_size: HashMap<String, usize> = HashMap::new();
        for account in accounts.values() {
            if let Some(parent) = text(account, "ParentId") {
                *system_size.entry(parent).or_default() += 1;
            }
        }

        let mut history = History {
            accounts,
            contact_account: HashMap::new(),
            contact_role: HashMap::new(),
            contact_created: HashMap::new(),
            contacts_by_account: HashMap::new(),
            activities: HashMap::new(),
            deals: Vec::new(),
            system_size,
        };
        for contact in contacts {
            if let Some(account) = text(&contact, "AccountId") {
                history
                    .contacts_by_account
                    .entry(account.clone())
                    .or_default()
                    .push(contact.id.clone());
                history.contact_account.insert(contact.id.clone(), account);
            }
            if let Some(role) = text(&contact, role_field) {
                history.contact_role.insert(contact.id.clone(), role);
            }
            if let Some(created) = contact.get("CreatedDate").as_datetime() {
                history.contact_created.insert(contact.id.clone(), created);
            }
        }
        let mut deal_account = HashMap::new();
        for opportunity in opportunities {
            let Some(account_id) = text(&opportunity, "AccountId") else {
                continue;
            };
            let Some(created) = opportunity.get("CreatedDate").as_datetime() else {
                continue;
            };
            deal_account.insert(opportunity.id.clone(), account_id.clone());
            history.deals.push(Deal {
                id: opportunity.id.clone(),
                account_id,
                created,
                close_date: opportunity.get("CloseDate").as_datetime(),
                closed: opportunity.get("IsClosed").as_bool().unwrap_or(false),
                won: opportunity.get("IsWon").as_bool().unwrap_or(false),
                stage: text(&opportunity, "StageName"),
            });
        }
        let activities = tasks
            .iter()
            .map(|t| (t, "ActivityDate", false))
            .chain(events.iter().map(|e| (e, "StartDateTime", true)));
        for (record, time_field, meeting) in activities {
            let at = record
                .get(time_field)
                .as_datetime()
                .or_else(|| record.get("CreatedDate").as_datetime());
            let Some(at) = at else { continue };
            let contact =
                text(record, "WhoId").filter(|id| history.contact_account.contains_key(id));
            let account = text(record, "WhatId")
                .and_then(|what| {
                    if history.accounts.contains_key(&what) {
                        Some(what)
                    } else {
                        deal_account.get(&what).cloned()
                    }
                })
                .or_else(|| {
                    contact
                        .as_ref()
                        .and_then(|c| history.contact_account.get(c).cloned())
                });
            let Some(account) = account else { continue };
            history
                .activities
                .entry(account)
                .or_default()
                .push(Activity {
                    at,
                    contact,
                    meeting,
                });
        }
        for list in history.activities.values_mut() {
            list.sort_by_key(|a| a.at);
        }
        history
    }

    /// Activities of an account strictly before `at`.
    fn activities_before(&self, account: &str, at: DateTime<Utc>) -> &[Activity] {
        let Some(list) = self.activities.get(account) else {
            return &[];
        };
        let end = list.partition_point(|a| a.at < at);
        &list[..end]
    }

    /// Returns true when the account has a won deal.
    pub fn is_customer(&self, account: &str) -> bool {
        self.deals.iter().any(|d| d.account_id == account && d.won)
    }

    /// Returns true when the account has contacts or deals, so there is something to score.
    pub fn has_activity_data(&self, account: &str) -> bool {
        self.contacts_by_account.contains_key(account)
            || self.deals.iter().any(|d| d.account_id == account)
    }
}

/// Aggregates computed from contacts, activities and the account hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Aggregate {
    RolesEngaged,
    ContactsEngaged,
    Meetings,
    Activities { days: i64 },
    DaysSinceLastTouch,
    DaysSinceFirstTouch,
    ContactsKnown,
    SystemSize,
}

/// Source of one model input column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    Attribute {
        field: String,
        kind: AttributeKind,
        /// For one-hot category columns: the category this column stands for.
        category: Option<String>,
    },
    Aggregate(Aggregate),
}

/// One model input column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Column name, unique, for example `hospital_type=Acute Care Hospitals`.
    pub name: String,
    /// The configured feature the column belongs to; reasons group columns by it.
    pub feature: String,
    /// Plain words for reasons.
    pub label: String,
    pub source: Source,
}

/// The mapping from history to model input, fixed when a model is trained and stored with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpace {
    pub columns: Vec<Column>,
    pub engagement_window_days: i64,
}

impl FeatureSpace {
    /// Builds the columns from the configuration; category columns come from the values
    /// frequent among `training_accounts`.
    pub fn fit(config: &FeatureConfig, history: &History, training_accounts: &[&str]) -> Self {
        let mut columns = Vec::new();
        for attribute in &config.attributes {
            let source = |category: Option<String>| Source::Attribute {
                field: attribute.field.clone(),
                kind: attribute.kind,
                category,
            };
            if attribute.kind != AttributeKind::Category {
                columns.push(Column {
                    name: attribute.name.clone(),
                    feature: attribute.name.clone(),
                    label: attribute.label.clone(),
                    source: source(None),
                });
                continue;
            }
            for category in frequent_values(history, training_accounts, &attribute.field) {
                columns.push(Column {
                    name: format!("{}={category}", attribute.name),
                    feature: attribute.name.clone(),
                    label: attribute.label.clone(),
                    source: source(Some(category)),
                });
            }
        }
        let window = config.engagement_window_days;
        let mut aggregates = vec![
            (
                "roles_engaged",
                "buying roles engaged",
                Aggregate::RolesEngaged,
            ),
            (
                "contacts_engaged",
                "contacts engaged",
                Aggregate::ContactsEngaged,
            ),
            ("meetings", "demos and meetings", Aggregate::Meetings),
            (
                "days_since_last_touch",
                "last touch",
                Aggregate::DaysSinceLastTouch,
            ),
            (
                "days_since_first_touch",
                "first touch",
                Aggregate::DaysSinceFirstTouch,
            ),
            (
                "contacts_known",
                "contacts on file",
                Aggregate::ContactsKnown,
            ),
            ("system_size", "health-system size", Aggregate::SystemSize),
        ];
        let windows: BTreeSet<i64> = config.activity_windows_days.iter().copied().collect();
        let activity_names: Vec<(String, i64)> = windows
            .into_iter()
            .map(|days| (format!("activities_{days}d"), days))
            .collect();
        for (name, days) in &activity_names {
            aggregates.push((
                name.as_str(),
                "activities",
                Aggregate::Activities { days: *days },
            ));
        }
        for (name, label, aggregate) in aggregates {
            columns.push(Column {
                name: name.to_string(),
                feature: name.to_string(),
                label: label.to_string(),
                source: Source::Aggregate(aggregate),
            });
        }
        FeatureSpace {
            columns,
            engagement_window_days: window,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Computes the model input of one account as of `at`; missing values are NaN.
    pub fn row(&self, history: &History, account_id: &str, at: DateTime<Utc>) -> Vec<f64> {
        let account = history.accounts.get(account_id);
        let before = history.activities_before(account_id, at);
        let engaged_since = at - Duration::days(self.engagement_window_days);
        let engaged: Vec<&Activity> = before.iter().filter(|a| a.at >= engaged_since).collect();
        self.columns
            .iter()
            .map(|column| match &column.source {
                Source::Attribute {
                    field,
                    kind,
                    category,
                } => match account {
                    Some(account) => {
                        attribute_value(account.get(field), *kind, category.as_deref())
                    }
                    None => f64::NAN,
                },
                Source::Aggregate(aggregate) => {
                    aggregate_value(*aggregate, history, account_id, at, before, &engaged)
                }
            })
            .collect()
    }

    /// Phrases the configured features that raised the score most (up to `positive`, largest
    /// first), then those that lowered it most (up to `negative`). `contributions` are per
    /// column, in log-odds; one-hot columns of a feature are summed first.
    pub fn reasons(
        &self,
        history: &History,
        account_id: &str,
        row: &[f64],
        contributions: &[f64],
        positive: usize,
        negative: usize,
    ) -> Vec<String> {
        let mut by_feature: Vec<(&str, f64)> = Vec::new();
        for (column, contribution) in self.columns.iter().zip(contributions) {
            match by_feature.iter_mut().find(|(f, _)| *f == column.feature) {
                Some((_, total)) => *total += contribution,
                None => by_feature.push((&column.feature, *contribution)),
            }
        }
        by_feature.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let raising = by_feature.iter().filter(|(_, c)| *c > 1e-6).take(positive);
        let lowering = by_feature.iter().filter(|(_, c)| *c < -1e-6).take(negative);
        raising
            .chain(lowering)
            .map(|&(feature, contribution)| {
                let phrase = self.phrase(history, account_id, feature, row);
                let sign = if contribution > 0.0 { '+' } else { '-' };
                format!("{sign} {phrase}")
            })
            .collect()
    }

    fn phrase(&self, history: &History, account_id: &str, feature: &str, row: &[f64]) -> String {
        let Some(index) = self.columns.iter().position(|c| c.feature == feature) else {
            return feature.to_string();
        };
        let column = &self.columns[index];
        let value = row.get(index).copied().unwrap_or(f64::NAN);
        let window = self.engagement_window_days;
        match &column.source {
            Source::Attribute { field, kind, .. } => {
                let raw = history
                    .accounts
                    .get(account_id)
                    .map(|a| a.get(field).clone())
                    .unwrap_or(Value::Null);
                attribute_phrase(&column.label, *kind, &raw, value)
            }
            Source::Aggregate(aggregate) => aggregate_phrase(*aggregate, value, window),
        }
    }
}

fn frequent_values(history: &History, accounts: &[&str], field: &str) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in accounts {
        if let Some(Value::Text(value)) = history.accounts.get(*id).map(|a| a.get(field)) {
            *counts.entry(value.clone()).or_default() += 1;
        }
    }
    let mut values: Vec<(String, usize)> = counts
        .into_iter()
        .filter(|(_, n)| *n >= MIN_CATEGORY_COUNT)
        .collect();
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values.truncate(MAX_CATEGORIES);
    values.into_iter().map(|(v, _)| v).collect()
}

fn attribute_value(value: &Value, kind: AttributeKind, category: Option<&str>) -> f64 {
    match kind {
        AttributeKind::Number => value.as_f64().unwrap_or(f64::NAN),
        AttributeKind::Flag => match value {
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Text(s) if s.eq_ignore_ascii_case("yes") || s.eq_ignore_ascii_case("true") => {
                1.0
            }
            Value::Text(s) if s.eq_ignore_ascii_case("no") || s.eq_ignore_ascii_case("false") => {
                0.0
            }
            _ => f64::NAN,
        },
        AttributeKind::Present => match value {
            Value::Null => 0.0,
            Value::Text(s) if s.trim().is_empty() => 0.0,
            _ => 1.0,
        },
        AttributeKind::Category => match value {
            Value::Null => f64::NAN,
            other => f64::from(u8::from(Some(other.to_string().as_str()) == category)),
        },
    }
}

fn aggregate_value(
    aggregate: Aggregate,
    history: &History,
    account_id: &str,
    at: DateTime<Utc>,
    before: &[Activity],
    engaged: &[&Activity],
) -> f64 {
    let days_between = |earlier: DateTime<Utc>| (at - earlier).num_seconds() as f64 / 86_400.0;
    match aggregate {
        Aggregate::RolesEngaged => {
            let roles: BTreeSet<&String> = engaged
                .iter()
                .filter_map(|a| a.contact.as_ref())
                .filter_map(|c| history.contact_role.get(c))
                .collect();
            roles.len() as f64
        }
        Aggregate::ContactsEngaged => {
            let contacts: BTreeSet<&String> =
                engaged.iter().filter_map(|a| a.contact.as_ref()).collect();
            contacts.len() as f64
        }
        Aggregate::Meetings => engaged.iter().filter(|a| a.meeting).count() as f64,
        Aggregate::Activities { days } => {
            let since = at - Duration::days(days);
            before.iter().rev().take_while(|a| a.at >= since).count() as f64
        }
        Aggregate::DaysSinceLastTouch => before.last().map_or(f64::NAN, |a| days_between(a.at)),
        Aggregate::DaysSinceFirstTouch => before.first().map_or(f64::NAN, |a| days_between(a.at)),
        Aggregate::ContactsKnown => history
            .contacts_by_account
            .get(account_id)
            .map_or(0, |ids| {
                ids.iter()
                    .filter(|id| history.contact_created.get(*id).is_none_or(|c| *c < at))
                    .count()
            }) as f64,
        Aggregate::SystemSize => {
            let parent = history
                .accounts
                .get(account_id)
                .and_then(|a| text(a, "ParentId"));
            parent
                .and_then(|p| history.system_size.get(&p).copied())
                .unwrap_or(1) as f64
        }
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn attribute_phrase(label: &str, kind: AttributeKind, raw: &Value, value: f64) -> String {
    match kind {
        AttributeKind::Number if value.is_nan() => format!("{label} not reported"),
        // The sign in front of the phrase gives the direction. "High" or "low" would need
        // the training distribution, which the feature space does not keep.
        AttributeKind::Number => format!("{label} {}", format_number(value)),
        AttributeKind::Category if raw.is_null() => format!("{label} unknown"),
        AttributeKind::Category => format!("{label}: {raw}"),
        AttributeKind::Flag if value.is_nan() => format!("{label} unknown"),
        AttributeKind::Flag if value > 0.5 => label.to_string(),
        AttributeKind::Flag => format!("no {label}"),
        AttributeKind::Present if value > 0.5 => format!("{label}: {raw}"),
        AttributeKind::Present => format!("no {label}"),
    }
}

fn aggregate_phrase(aggregate: Aggregate, value: f64, window: i64) -> String {
    let n = format_number(value);
    match aggregate {
        Aggregate::RolesEngaged if value == 1.0 => {
            format!("1 buying role engaged in {window} days")
        }
        Aggregate::RolesEngaged => format!("{n} buying roles engaged in {window} days"),
        Aggregate::ContactsEngaged => format!("{n} contacts engaged in {window} days"),
        Aggregate::Meetings => format!("{n} demos and meetings in {window} days"),
        Aggregate::Activities { days } if value == 1.0 => {
            format!("1 activity in the last {days} days")
        }
        Aggregate::Activities { days } => format!("{n} activities in the last {days} days"),
        Aggregate::DaysSinceLastTouch if value.is_nan() => "never contacted".to_string(),
        Aggregate::DaysSinceLastTouch => format!("last touch {:.0} days ago", value.floor()),
        Aggregate::DaysSinceFirstTouch if value.is_nan() => "never contacted".to_string(),
        Aggregate::DaysSinceFirstTouch => format!("first touch {:.0} days ago", value.floor()),
        Aggregate::ContactsKnown => format!("{n} contacts on file"),
        Aggregate::SystemSize if value <= 1.0 => "independent hospital".to_string(),
        Aggregate::SystemSize => format!("part of a {n}-hospital system"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttributeFeature;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn record(object: &str, id: &str, fields: &[(&str, Value)]) -> Record {
        Record {
            object: object.into(),
            id: id.into(),
            modstamp: time("2026-01-01T00:00:00Z"),
            deleted: false,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn history() -> History {
        let account = record(
            "Account",
            "001A",
            &[
                ("Hip_Knee_Discharges__c", Value::Number(412.0)),
                ("CABG_Discharges__c", Value::Null),
            ],
        );
        let contact = |id: &str, role: &str| {
            record(
                "Contact",
                id,
                &[
                    ("AccountId", Value::Text("001A".into())),
                    ("Buying_Role__c", Value::Text(role.into())),
                    ("CreatedDate", Value::DateTime(time("2024-01-01T00:00:00Z"))),
                ],
            )
        };
        let task = |id: &str, who: &str, day: &str| {
            record(
                "Task",
                id,
                &[
                    ("WhoId", Value::Text(who.into())),
                    ("ActivityDate", Value::DateTime(time(day))),
                ],
            )
        };
        History::build(
            vec![account],
            vec![
                contact("003a", "Finance"),
                contact("003b", "Surgeon Champion"),
            ],
            vec![],
            vec![
                task("00T1", "003a", "2025-01-10T00:00:00Z"),
                task("00T2", "003b", "2025-06-01T00:00:00Z"),
                task("00T3", "003b", "2025-09-01T00:00:00Z"),
            ],
            vec![],
            "Buying_Role__c",
        )
    }

    fn space() -> FeatureSpace {
        let config = FeatureConfig {
            attributes: vec![
                AttributeFeature {
                    name: "hip_knee_volume".into(),
                    field: "Hip_Knee_Discharges__c".into(),
                    kind: AttributeKind::Number,
                    label: "hip/knee volume".into(),
                },
                AttributeFeature {
                    name: "cabg_volume".into(),
                    field: "CABG_Discharges__c".into(),
                    kind: AttributeKind::Number,
                    label: "CABG volume".into(),
                },
            ],
            role_field: "Buying_Role__c".into(),
            engagement_window_days: 365,
            activity_windows_days: vec![90],
        };
        FeatureSpace::fit(&config, &history(), &["001A"])
    }

    fn column(space: &FeatureSpace, row: &[f64], name: &str) -> f64 {
        let index = space
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        row[index]
    }

    #[test]
    fn activities_after_cutoff_not_counted() {
        let space = space();
        let history = history();
        let row = space.row(&history, "001A", time("2025-07-01T00:00:00Z"));
        assert_eq!(column(&space, &row, "roles_engaged"), 2.0);
        assert_eq!(column(&space, &row, "contacts_engaged"), 2.0);
        assert_eq!(column(&space, &row, "activities_90d"), 1.0);
        assert_eq!(column(&space, &row, "days_since_last_touch"), 30.0);

        let early = space.row(&history, "001A", time("2025-01-10T00:00:00Z"));
        assert_eq!(column(&space, &early, "roles_engaged"), 0.0);
        assert!(column(&space, &early, "days_since_last_touch").is_nan());
    }

    #[test]
    fn missing_number_stays_missing() {
        let space = space();
        let row = space.row(&history(), "001A", time("2025-07-01T00:00:00Z"));
        assert_eq!(column(&space, &row, "hip_knee_volume"), 412.0);
        assert!(column(&space, &row, "cabg_volume").is_nan());
    }

    #[test]
    fn reasons_follow_largest_contributions() {
        let space = space();
        let history = history();
        let row = space.row(&history, "001A", time("2025-07-01T00:00:00Z"));
        let mut contributions = vec![0.0; row.len()];
        let index = |name: &str| {
            space
                .columns
                .iter()
                .position(|c| c.name == name)
                .expect("column")
        };
        contributions[index("hip_knee_volume")] = 0.9;
        contributions[index("roles_engaged")] = 0.4;
        contributions[index("contacts_engaged")] = 0.2;
        contributions[index("meetings")] = 0.1;
        contributions[index("days_since_last_touch")] = -0.6;
        contributions[index("activities_90d")] = -0.3;
        contributions[index("contacts_known")] = -0.05;
        let reasons = space.reasons(&history, "001A", &row, &contributions, 3, 2);
        assert_eq!(
            reasons,
            vec![
                "+ hip/knee volume 412".to_string(),
                "+ 2 buying roles engaged in 365 days".to_string(),
                "+ 2 contacts engaged in 365 days".to_string(),
                "- last touch 30 days ago".to_string(),
                "- 1 activity in the last 90 days".to_string(),
            ]
        );
    }
}
