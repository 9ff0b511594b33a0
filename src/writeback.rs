//! Write-back planning and execution: only scores whose values changed since the last
//! successful write are sent, in batches; a record counts as written only when the CRM
//! confirmed it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use leadscore_connector::{Connector, Record, RecordUpdate, Value};
use serde::Serialize;

use crate::config::{Config, WritebackConfig};
use crate::level::Level;
use crate::pipeline::PipelineError;
use crate::store::{ConfirmedWrite, ScoreRow, Store, WrittenValues};

/// Joins reasons, and the hint after them, into the text written to the CRM, cut to
/// `max_len` characters. The hint goes last so a short field keeps the reasons.
pub fn reasons_text(reasons: &[String], hint: Option<&str>, max_len: Option<u32>) -> String {
    let mut text = reasons.join("\n");
    if let Some(hint) = hint {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("Next: ");
        text.push_str(hint);
    }
    match max_len {
        Some(max) if text.chars().count() > max as usize => {
            text.chars().take(max as usize).collect()
        }
        _ => text,
    }
}

/// One planned write with the values it records on success.
#[derive(Clone, Debug)]
pub struct PlannedWrite {
    pub update: RecordUpdate,
    pub values: WrittenValues,
}

/// The values a score row should leave in the CRM.
fn desired_values(
    row: &ScoreRow,
    reasons_max_len: Option<u32>,
    now: DateTime<Utc>,
) -> WrittenValues {
    WrittenValues {
        score: row.score,
        tier: row.tier.clone(),
        reasons: reasons_text(
            &row.reasons,
            row.hint.as_ref().map(|h| h.text.as_str()),
            reasons_max_len,
        ),
        sales_ready: row.sales_ready,
        model_version: row.model_version.clone(),
        written_at: now,
    }
}

/// Returns true when the CRM's copy of a record, as last pulled or written, already contains
/// `values` in the write-back fields.
fn crm_contains(
    record: &Record,
    fields: &WritebackConfig,
    sales_ready_field: Option<&str>,
    values: &WrittenValues,
) -> bool {
    let sales_ready_same = match (sales_ready_field, values.sales_ready) {
        (Some(field), Some(ready)) => record.get(field).as_bool().unwrap_or(false) == ready,
        _ => true,
    };
    sales_ready_same
        && record.get(&fields.score_field).as_f64() == Some(values.score)
        && record.get(&fields.tier_field).as_str() == Some(values.tier.as_str())
        && record.get(&fields.reasons_field).as_str() == Some(values.reasons.as_str())
        && record.get(&fields.model_version_field).as_str() == Some(values.model_version.as_str())
}

/// Returns the writes needed to bring the CRM up to `scores`. A record is skipped when the
/// stored copy of the CRM record already contains the score, tier, reasons and model version, so
/// a value cleared or changed in the CRM by someone else is written again.
/// `sales_ready_field` names the lead checkbox written from each row's sales-ready flag.
pub fn plan(
    scores: &[ScoreRow],
    crm_copies: &HashMap<String, Record>,
    fields: &WritebackConfig,
    sales_ready_field: Option<&str>,
    reasons_max_len: Option<u32>,
    now: DateTime<Utc>,
) -> Vec<PlannedWrite> {
    let mut planned = Vec::new();
    for row in scores {
        let values = desired_values(row, reasons_max_len, now);
        let unchanged = crm_copies
            .get(&row.id)
            .is_some_and(|record| crm_contains(record, fields, sales_ready_field, &values));
        if unchanged {
            continue;
        }
        let mut update = RecordUpdate {
            object: row.object.clone(),
            id: row.id.clone(),
            fields: BTreeMap::from([
                (fields.score_field.clone(), Value::Number(values.score)),
                (fields.tier_field.clone(), Value::Text(values.tier.clone())),
                (
                    fields.reasons_field.clone(),
                    Value::Text(values.reasons.clone()),
                ),
                (
                    fields.model_version_field.clone(),
                    Value::Text(values.model_version.clone()),
                ),
                (
                    fields.scored_at_field.clone(),
                    Value::DateTime(row.scored_at),
                ),
            ]),
        };
        if let (Some(field), Some(ready)) = (sales_ready_field, values.sales_ready) {
            update.fields.insert(field.to_string(), Value::Bool(ready));
        }
        planned.push(PlannedWrite { update, values });
    }
    planned
}

/// A record the CRM refused to update.
#[derive(Clone, Debug, Serialize)]
pub struct FailedWrite {
    pub id: String,
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

#[derive(Debug, Serialize)]
pub struct PushReport {
    pub level: crate::level::Level,
    pub planned: usize,
    pub written: usize,
    pub unchanged: usize,
    pub failed: Vec<FailedWrite>,
}

/// Writes the changed scores of the store's level back to that level's object, in batches of
/// its `batch_size`, and records each confirmed write in the store as soon as its batch
/// returns. `reasons_max_len` comes from `check`.
pub async fn push<C: Connector>(
    connector: &C,
    store: &Store,
    config: &Config,
    reasons_max_len: &BTreeMap<Level, u32>,
    now: DateTime<Utc>,
) -> Result<PushReport, PipelineError> {
    let level = store.level();
    let fields = config.writeback_for(level);
    let sales_ready_field = match (level, config.lead.sales_ready_score) {
        (Level::Lead, Some(_)) => Some(config.lead.sales_ready_field.as_str()),
        _ => None,
    };
    let reasons_max_len = reasons_max_len.get(&level).copied();
    let scores = store.scores()?;
    if scores.is_empty() {
        return Err(PipelineError::Model(format!(
            "no {level} scores in the store; run `leadscore score` first"
        )));
    }
    let mut crm_copies = HashMap::new();
    for object in scores
        .iter()
        .map(|s| s.object.as_str())
        .collect::<std::collections::BTreeSet<_>>()
    {
        for record in store.records(object)? {
            crm_copies.insert(record.id.clone(), record);
        }
    }
    let planned = plan(
        &scores,
        &crm_copies,
        fields,
        sales_ready_field,
        reasons_max_len,
        now,
    );
    let batch_size = fields.batch_size.min(connector.max_batch()).max(1);
    let mut report = PushReport {
        level,
        planned: planned.len(),
        written: 0,
        unchanged: scores.len() - planned.len(),
        failed: Vec::new(),
    };
    for batch in planned.chunks(batch_size) {
        let updates: Vec<RecordUpdate> = batch.iter().map(|p| p.update.clone()).collect();
        let outcomes = connector.update(&updates).await?;
        if outcomes.len() != batch.len() {
            return Err(PipelineError::Connector(
                leadscore_connector::ConnectorError::Payload(format!(
                    "{} returned {} results for {} updates; none of this batch is marked written",
                    connector.name(),
                    outcomes.len(),
                    batch.len()
                )),
            ));
        }
        // A batch may span objects, and each object's confirmed writes go to its own tree.
        let mut confirmed: BTreeMap<&str, Vec<ConfirmedWrite>> = BTreeMap::new();
        for (planned, outcome) in batch.iter().zip(outcomes) {
            match outcome.result {
                Ok(()) => confirmed
                    .entry(planned.update.object.as_str())
                    .or_default()
                    .push(ConfirmedWrite {
                        id: planned.update.id.clone(),
                        values: planned.values.clone(),
                        fields: planned.update.fields.clone(),
                    }),
                Err(error) => {
                    tracing::warn!(id = %planned.update.id, code = %error.code, message = %error.message, "write rejected");
                    report.failed.push(FailedWrite {
                        id: planned.update.id.clone(),
                        code: error.code,
                        message: error.message,
                        retryable: error.retryable,
                    });
                }
            }
        }
        for (object, writes) in &confirmed {
            store.record_writes(object, writes)?;
            report.written += writes.len();
        }
    }
    tracing::info!(
        %level,
        written = report.written,
        failed = report.failed.len(),
        unchanged = report.unchanged,
        "pushed"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WritebackConfig {
        WritebackConfig {
            score_field: "S".into(),
            tier_field: "T".into(),
            reasons_field: "R".into(),
            model_version_field: "V".into(),
            scored_at_field: "At".into(),
            batch_size: 200,
        }
    }

    fn row(id: &str, score: f64) -> ScoreRow {
        ScoreRow {
            object: "Account".into(),
            id: id.into(),
            name: String::new(),
            owner_id: None,
            probability: score / 100.0,
            score,
            tier: "B".into(),
            reasons: vec!["+ high volume".into()],
            hint: None,
            sales_ready: None,
            model_version: "gbm-1".into(),
            scored_at: DateTime::UNIX_EPOCH,
        }
    }

    fn crm_copy(planned: &PlannedWrite) -> Record {
        Record {
            object: "Account".into(),
            id: planned.update.id.clone(),
            modstamp: DateTime::UNIX_EPOCH,
            deleted: false,
            fields: planned.update.fields.clone(),
        }
    }

    #[test]
    fn unchanged_scores_not_planned() {
        let now = DateTime::UNIX_EPOCH;
        let rows = [row("a", 50.0), row("b", 60.0)];
        let first = plan(&rows, &HashMap::new(), &config(), None, None, now);
        assert_eq!(first.len(), 2);
        let copies: HashMap<String, Record> = first
            .iter()
            .map(|p| (p.update.id.clone(), crm_copy(p)))
            .collect();
        let second = plan(
            &[row("a", 50.0), row("b", 61.0)],
            &copies,
            &config(),
            None,
            None,
            now,
        );
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].update.id, "b");
        assert_eq!(second[0].update.fields["S"], Value::Number(61.0));
    }

    #[test]
    fn value_cleared_in_crm_planned_again() {
        let now = DateTime::UNIX_EPOCH;
        let first = plan(
            &[row("a", 50.0)],
            &HashMap::new(),
            &config(),
            None,
            None,
            now,
        );
        let mut copy = crm_copy(&first[0]);
        copy.fields.insert("S".into(), Value::Null);
        let copies = HashMap::from([("a".to_string(), copy)]);
        let again = plan(&[row("a", 50.0)], &copies, &config(), None, None, now);
        assert_eq!(again.len(), 1, "a score someone cleared is written again");
    }

    #[test]
    fn reasons_cut_to_field_length() {
        let reasons = vec!["abcdef".to_string(), "ghij".to_string()];
        assert_eq!(reasons_text(&reasons, None, Some(8)), "abcdef\ng");
        assert_eq!(reasons_text(&reasons, None, None), "abcdef\nghij");
        assert_eq!(
            reasons_text(&reasons, Some("+9 if a Finance contact engages"), None),
            "abcdef\nghij\nNext: +9 if a Finance contact engages"
        );
    }
}
