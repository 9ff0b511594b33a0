//! Score hints: for each record, the actionable change a rep could make that raises the score
//! most, found by re-scoring the record with that change applied.

use chrono::{DateTime, Duration, DurationRound, Utc};
use leadscore_connector::Value;
use serde::{Deserialize, Serialize};

use crate::config::{AttributeKind, HintConfig};
use crate::features::{Change, FeatureSpace, History, Source};
use crate::level::Level;
use crate::levels::OpenRecord;
use crate::model::TrainedModel;
use crate::scoring::score_of;

/// Aggregates a rep can change, as accepted in `[hints] actionable`.
pub const ACTIONABLE_AGGREGATES: &[&str] = &[
    "roles_engaged",
    "contacts_engaged",
    "meetings",
    "days_since_last_touch",
];

/// A suggested action and the score change it would bring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hint {
    /// Plain words, for example `+9 if a Materials Manager engages`.
    pub text: String,
    /// Score points gained, on the 0-100 scale.
    pub points: f64,
    pub action: HintAction,
}

/// The change a hint was computed with, precise enough to carry it out and check the claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HintAction {
    /// A task (or, with `meeting`, an event) with `who` on `date`.
    Activity {
        who: String,
        role: Option<String>,
        meeting: bool,
        date: DateTime<Utc>,
    },
    /// A field of the account (`person` false) or of the contact or lead set to `value`.
    Field {
        person: bool,
        field: String,
        value: Value,
    },
}

/// Returns the day an action is assumed to happen: midnight UTC of the day before the scoring
/// time, so that it falls strictly before the time the record is scored as of.
pub fn action_date(at: DateTime<Utc>) -> DateTime<Utc> {
    let previous = at - Duration::days(1);
    previous
        .duration_trunc(Duration::days(1))
        .unwrap_or(previous)
}

struct Candidate {
    text: String,
    action: HintAction,
    change: Change,
}

fn activity(
    who: &str,
    role: Option<&str>,
    meeting: bool,
    date: DateTime<Utc>,
    text: String,
) -> Candidate {
    Candidate {
        text,
        action: HintAction::Activity {
            who: who.to_string(),
            role: role.map(str::to_string),
            meeting,
            date,
        },
        change: Change::Activity {
            who: Some(who.to_string()),
            at: date,
            meeting,
        },
    }
}

/// Lists the changes to try for one record, from the actionable features its model uses.
fn candidates(
    space: &FeatureSpace,
    history: &History,
    record: &OpenRecord,
    at: DateTime<Utc>,
    config: &HintConfig,
) -> Vec<Candidate> {
    let date = action_date(at);
    let uses = |feature: &str| space.columns.iter().any(|c| c.feature == feature);
    let person = record.person;
    let since = at - Duration::days(space.engagement_window_days);
    // Contacts are handled by position, which follows id order, and named by id only in
    // the candidates.
    let contacts: Vec<u32> = record
        .account
        .map(|a| history.contact_positions_at(a, at))
        .unwrap_or_default();
    let engaged = record
        .account
        .map(|a| history.engaged_contact_positions(a, since, at))
        .unwrap_or_default();
    let id = |position: u32| history.contact_id(position).unwrap_or_default();
    let mut out = Vec::new();
    for name in &config.actionable {
        match name.as_str() {
            "roles_engaged" if uses("roles_engaged") => {
                let engaged_roles: std::collections::BTreeSet<&str> = engaged
                    .iter()
                    .filter_map(|&c| history.contact_role_at(c as usize))
                    .collect();
                let mut tried = std::collections::BTreeSet::new();
                for &contact in &contacts {
                    let Some(role) = history.contact_role_at(contact as usize) else {
                        continue;
                    };
                    if engaged_roles.contains(role) || !tried.insert(role) {
                        continue;
                    }
                    let article = if role.starts_with(['A', 'E', 'I', 'O', 'U']) {
                        "an"
                    } else {
                        "a"
                    };
                    out.push(activity(
                        id(contact),
                        Some(role),
                        false,
                        date,
                        format!("if {article} {role} engages"),
                    ));
                }
            }
            "contacts_engaged" if uses("contacts_engaged") => {
                if let Some(&contact) = contacts.iter().find(|c| !engaged.contains(*c)) {
                    out.push(activity(
                        id(contact),
                        history.contact_role_at(contact as usize),
                        false,
                        date,
                        "if one more contact engages".to_string(),
                    ));
                }
            }
            "meetings" => {
                let level = space.level;
                let person_meetings = format!("{level}_meetings");
                match person {
                    Some(p)
                        if uses(&person_meetings)
                            || (level == Level::Contact && uses("meetings")) =>
                    {
                        out.push(activity(
                            p,
                            None,
                            true,
                            date,
                            format!("with a meeting with this {level}"),
                        ));
                    }
                    _ if uses("meetings") => {
                        let with = engaged.iter().next().copied().or(contacts.first().copied());
                        if let Some(contact) = with {
                            out.push(activity(
                                id(contact),
                                history.contact_role_at(contact as usize),
                                true,
                                date,
                                "with a demo or meeting".to_string(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            "days_since_last_touch" => {
                let level = space.level;
                match person {
                    Some(p) if uses(&format!("{level}_days_since_last_touch")) => {
                        out.push(activity(
                            p,
                            None,
                            false,
                            date,
                            format!("if this {level} is contacted now"),
                        ));
                    }
                    _ if uses("days_since_last_touch") => {
                        let with = engaged.iter().next().copied().or(contacts.first().copied());
                        if let Some(contact) = with {
                            out.push(activity(
                                id(contact),
                                history.contact_role_at(contact as usize),
                                false,
                                date,
                                "if the account is contacted now".to_string(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            feature => {
                let Some(column) = space.columns.iter().find(|c| c.feature == feature) else {
                    continue;
                };
                let (is_person, field, kind) = match &column.source {
                    Source::Attribute { field, kind, .. } => (false, field, *kind),
                    Source::PersonAttribute { field, kind, .. } => (true, field, *kind),
                    _ => continue,
                };
                let value = match kind {
                    AttributeKind::Flag => Value::Bool(true),
                    AttributeKind::Present => Value::Text("yes".to_string()),
                    _ => continue,
                };
                out.push(Candidate {
                    text: format!("if {}", column.label),
                    action: HintAction::Field {
                        person: is_person,
                        field: field.clone(),
                        value: value.clone(),
                    },
                    change: Change::Field {
                        person: is_person,
                        field: field.clone(),
                        value,
                    },
                });
            }
        }
    }
    out
}

/// Returns the hint that raises `record`'s score most, if it adds at least
/// `config.min_points`. `score` is the record's current 0-100 score.
pub fn best_hint(
    space: &FeatureSpace,
    model: &TrainedModel,
    history: &History,
    record: &OpenRecord,
    at: DateTime<Utc>,
    score: f64,
    config: &HintConfig,
) -> Option<Hint> {
    let search = HintSearch::new(space, history, record, at, config, None);
    if search.rows.is_empty() {
        return None;
    }
    let probabilities = model.predict(&search.rows).ok()?;
    search.choose(&probabilities, score, config)
}

/// The changes tried for one record, with the record's feature row for each change. The rows
/// of many records can go to the model in one call, which costs far less than one call per
/// record. [`HintSearch::choose`] then picks the hint from their probabilities.
pub struct HintSearch {
    candidates: Vec<Candidate>,
    /// One row per candidate, in the same order.
    pub rows: Vec<Vec<f64>>,
}

impl HintSearch {
    /// Lists the candidates for `record` and computes their rows. Given `base`, the record's
    /// own row as of `at`, each candidate row recomputes only the columns its change moves,
    /// which gives the same rows for less work. Without actionable features the search has
    /// no candidates.
    pub fn new(
        space: &FeatureSpace,
        history: &History,
        record: &OpenRecord,
        at: DateTime<Utc>,
        config: &HintConfig,
        base: Option<&[f64]>,
    ) -> HintSearch {
        if config.actionable.is_empty() {
            return HintSearch {
                candidates: Vec::new(),
                rows: Vec::new(),
            };
        }
        let candidates = candidates(space, history, record, at, config);
        let rows = candidates
            .iter()
            .map(|c| match base {
                Some(base) => space.row_changed(history, record.target(), at, &c.change, base),
                None => space.row_with(history, record.target(), at, Some(&c.change)),
            })
            .collect();
        HintSearch { candidates, rows }
    }

    /// Picks the candidate with the highest probability (one per row, in order). Returns
    /// `None` when it adds less than `config.min_points` to `score` or nothing at all.
    pub fn choose(self, probabilities: &[f64], score: f64, config: &HintConfig) -> Option<Hint> {
        if probabilities.len() != self.candidates.len() {
            return None;
        }
        let (best, probability) = self
            .candidates
            .into_iter()
            .zip(probabilities.iter().copied())
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let points = score_of(probability) - score;
        if points < config.min_points || points <= 0.0 {
            return None;
        }
        Some(Hint {
            text: format!("+{points:.0} {}", best.text),
            points,
            action: best.action,
        })
    }
}
