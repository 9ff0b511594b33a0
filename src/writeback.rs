//! Write-back planning and execution: only scores whose values changed since the last
//! successful write are sent, in batches; a record counts as written only when the CRM
//! confirmed it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadscore_connector::{Connector, RecordUpdate, Value};
use serde::Serialize;

use crate::config::WritebackConfig;
use crate::pipeline::PipelineError;
use crate::store::{ScoreRow, Store, WrittenValues};

/// Joins reasons into the text written to the CRM, cut to `max_len` characters.
pub fn reasons_text(reasons: &[String], max_len: Option<u32>) -> String {
    let text = reasons.join("\n");
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

/// Returns the writes needed to bring the CRM up to `scores`, skipping records whose last
/// written score, tier, reasons and model version are unchanged.
pub fn plan(
    scores: &[ScoreRow],
    written: &BTreeMap<String, WrittenValues>,
    fields: &WritebackConfig,
    reasons_max_len: Option<u32>,
    now: DateTime<Utc>,
) -> Vec<PlannedWrite> {
    let mut planned = Vec::new();
    for row in scores {
        let reasons = reasons_text(&row.reasons, reasons_max_len);
        let values = WrittenValues {
            score: row.score,
            tier: row.tier.clone(),
            reasons,
            model_version: row.model_version.clone(),
            written_at: now,
        };
        let unchanged = written.get(&row.id).is_some_and(|last| {
            last.score == values.score
                && last.tier == values.tier
                && last.reasons == values.reasons
                && last.model_version == values.model_version
        });
        if unchanged {
            continue;
        }
        let update = RecordUpdate {
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
    pub planned: usize,
    pub written: usize,
    pub unchanged: usize,
    pub failed: Vec<FailedWrite>,
}

/// Writes changed scores back in batches of `fields.batch_size` and records each confirmed
/// write in the store as soon as its batch returns.
pub async fn push<C: Connector>(
    connector: &C,
    store: &Store,
    fields: &WritebackConfig,
    reasons_max_len: Option<u32>,
    now: DateTime<Utc>,
) -> Result<PushReport, PipelineError> {
    let scores = store.scores()?;
    let written = store.written()?;
    let planned = plan(&scores, &written, fields, reasons_max_len, now);
    let batch_size = fields.batch_size.min(connector.max_batch()).max(1);
    let mut report = PushReport {
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
        let mut confirmed = Vec::new();
        for (planned, outcome) in batch.iter().zip(outcomes) {
            match outcome.result {
                Ok(()) => confirmed.push((planned.update.id.clone(), planned.values.clone())),
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
        store.mark_written(&confirmed)?;
        report.written += confirmed.len();
    }
    tracing::info!(
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
            model_version: "gbm-1".into(),
            scored_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn unchanged_scores_not_planned() {
        let now = DateTime::UNIX_EPOCH;
        let first = plan(
            &[row("a", 50.0), row("b", 60.0)],
            &BTreeMap::new(),
            &config(),
            None,
            now,
        );
        assert_eq!(first.len(), 2);
        let written: BTreeMap<String, WrittenValues> = first
            .iter()
            .map(|p| (p.update.id.clone(), p.values.clone()))
            .collect();
        let second = plan(
            &[row("a", 50.0), row("b", 61.0)],
            &written,
            &config(),
            None,
            now,
        );
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].update.id, "b");
        assert_eq!(second[0].update.fields["S"], Value::Number(61.0));
    }

    #[test]
    fn reasons_cut_to_field_length() {
        let reasons = vec!["abcdef".to_string(), "ghij".to_string()];
        assert_eq!(reasons_text(&reasons, Some(8)), "abcdef\ng");
        assert_eq!(reasons_text(&reasons, None), "abcdef\nghij");
    }
}
