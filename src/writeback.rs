//! Write-back planning and execution: only scores whose values changed since the last
//! successful write are sent, in batches; a record counts as written only when the CRM
//! confirmed it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use leadscore_connector::{
    Connector, ConnectorError, FieldKind, ObjectSchema, Record, RecordError, RecordUpdate, Value,
};
use serde::Serialize;

use crate::config::{Config, WritebackConfig};
use crate::level::Level;
use crate::pipeline::PipelineError;
use crate::store::{
    ConfirmedWrite, JournalEntry, JournalWrite, PendingKind, ScoreRow, Store, StoreError,
    WriteFailure, WrittenValues,
};

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
    /// The change stamp of the stored CRM copy when the write was planned (`None` when the
    /// store has no copy). A permanent failure stores it, so the write is held until it moves.
    pub modstamp: Option<DateTime<Utc>>,
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
        let copy = crm_copies.get(&row.id);
        let unchanged =
            copy.is_some_and(|record| crm_contains(record, fields, sales_ready_field, &values));
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
        planned.push(PlannedWrite {
            update,
            values,
            modstamp: copy.map(|record| record.modstamp),
        });
    }
    planned
}

/// A record the CRM refused to update.
#[derive(Clone, Debug, Serialize)]
pub struct FailedWrite {
    pub object: String,
    pub id: String,
    pub code: String,
    pub message: String,
    /// True for failures that the next push sends again (row locks, server errors that
    /// outlasted the retries within this push).
    pub retryable: bool,
    /// The change an admin can make so that the write succeeds.
    pub hint: String,
    /// True when this push did not send the record, because the CRM rejected the same values
    /// before and neither the record nor the values changed since.
    pub held: bool,
}

#[derive(Debug, Serialize)]
pub struct PushReport {
    pub level: crate::level::Level,
    /// Records whose CRM values differ from their scores, including held ones.
    pub planned: usize,
    pub written: usize,
    pub unchanged: usize,
    /// Scored records that the store marks deleted or no longer holds, which are never written.
    pub skipped_deleted: usize,
    /// Records of interrupted pushes that the CRM already held and that were not sent again.
    pub reconciled: usize,
    /// Sends of records repeated within this push after a transient failure.
    pub retried: usize,
    pub failed: Vec<FailedWrite>,
}

/// The error code Salesforce gives the innocent records of an `allOrNone` batch that another
/// record made fail.
const ROLLED_BACK: &str = "ALL_OR_NONE_OPERATION_ROLLED_BACK";
/// Resends allowed per batch within one push, for records whose write failed transiently and
/// for requests that failed as a whole, together. This layer owns per-record retries (the
/// connectors send each update request once), so a locked record is sent at most
/// `1 + TRANSIENT_ROUNDS` times per push.
const TRANSIENT_ROUNDS: u32 = 3;
/// Delay before the first resend; each later round doubles it.
const TRANSIENT_BASE_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// Returns what an admin can do about a per-record write failure, by the CRM's error code.
pub fn failure_hint(code: &str) -> &'static str {
    match code {
        "UNABLE_TO_LOCK_ROW" | "LOCKED" => {
            "another process held the record; the next push sends it again"
        }
        "ENTITY_IS_DELETED" | "OBJECT_NOT_FOUND" | "INVALID_CROSS_REFERENCE_KEY" => {
            "the record was deleted or merged away in the CRM; the next pull removes it from the store"
        }
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" | "INVALID_OPTION" => {
            "the tier is not an allowed value of the tier field; add it to the picklist or change [tiers] labels"
        }
        "INACTIVE_OWNER_OR_USER" => {
            "the record's owner is an inactive user; reassign the record to an active user"
        }
        "FIELD_CUSTOM_VALIDATION_EXCEPTION" => {
            "a validation rule rejected the write; exempt the integration user from the rule or correct the record"
        }
        "INVALID_FIELD_FOR_INSERT_UPDATE" | "READ_ONLY_VALUE" | "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY"
        | "INSUFFICIENT_ACCESS_OR_READONLY" => {
            "the integration user cannot edit this field or record; grant it field-level edit access"
        }
        "CANNOT_UPDATE_CONVERTED_LEAD" => {
            "converted leads are read-only; score the converted contact instead"
        }
        "STRING_TOO_LONG" => "a value is longer than its field; lengthen the field",
        "VALIDATION_ERROR" | "INVALID_VALUE" | "INVALID_FIELD" | "PROPERTY_DOESNT_EXIST" => {
            "the CRM rejected a value; run `leadscore check` and correct the write-back fields"
        }
        _ => "read the CRM's message; the record is sent again when it changes in the CRM or its values change",
    }
}

/// Returns true for per-record failures that a later attempt can clear.
fn is_transient(error: &RecordError) -> bool {
    error.retryable
        || matches!(
            error.code.as_str(),
            "UNABLE_TO_LOCK_ROW" | "SERVER_UNAVAILABLE" | "RATE_LIMITS" | "RATE_LIMIT"
        )
}

/// Returns true when two values are the same as far as a CRM round trip can tell: numbers
/// within a relative 1e-9, datetimes within a millisecond, an empty text equal to null.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        (Value::Number(_), Value::Text(_)) | (Value::Text(_), Value::Number(_)) => {
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                _ => false,
            }
        }
        (Value::DateTime(x), Value::DateTime(y)) => (*x - *y).num_milliseconds().abs() < 1,
        (Value::Null, Value::Text(t)) | (Value::Text(t), Value::Null) => t.is_empty(),
        _ => a == b,
    }
}

/// Returns true when `record` contains every value in `fields`.
pub fn contains_values(record: &Record, fields: &BTreeMap<String, Value>) -> bool {
    fields
        .iter()
        .all(|(field, value)| same_value(record.get(field), value))
}

/// Returns the problems of a tier field whose allowed values (Salesforce picklist values,
/// HubSpot enumeration options) do not include every configured tier label.
pub fn tier_problems(
    schema: &ObjectSchema,
    writeback: &WritebackConfig,
    labels: &[String],
) -> Vec<String> {
    let Some(field) = schema.field(&writeback.tier_field) else {
        return Vec::new();
    };
    if field.kind != FieldKind::Picklist || field.picklist_values.is_empty() {
        return Vec::new();
    }
    labels
        .iter()
        .filter(|label| !field.picklist_values.contains(label))
        .map(|label| {
            format!(
                "[tiers] labels: {label:?} is not an allowed value of {}.{} (allowed values: {}); change the label or add the value to the field",
                schema.name,
                field.name,
                field.picklist_values.join(", ")
            )
        })
        .collect()
}

/// Score rows that a push plans at a time. A push keeps one chunk's score rows, stored CRM
/// copies and planned writes, plus at most one unsent batch per object, so its memory follows
/// this number and not the number of scored records.
pub const PLAN_CHUNK_ROWS: usize = 2_000;

/// The writes one chunk of a level's scores needs, before anything is sent.
#[derive(Debug)]
pub struct PushPlan {
    pub level: Level,
    /// Writes to send, in score order.
    pub writes: Vec<PlannedWrite>,
    /// Writes not sent, because the CRM rejected the same values for the same record version.
    pub held: Vec<FailedWrite>,
    pub unchanged: usize,
    pub skipped_deleted: usize,
    /// The stored CRM copies of the chunk's live scored records, by id.
    pub crm_copies: HashMap<String, Record>,
}

/// Returns the values of a write without the time it was made, for comparing two writes.
fn comparable(values: &WrittenValues) -> WrittenValues {
    WrittenValues {
        written_at: DateTime::UNIX_EPOCH,
        ..values.clone()
    }
}

/// Plans the writes of the store's level one chunk of score rows at a time, in id order:
/// changed scores of records that the store contains and does not mark deleted, minus those
/// held back by a stored permanent failure. Each chunk reads the store when it is planned, so
/// writes settled for earlier chunks are seen.
///
/// Once a push has read every score row while the pull marks the level's changes, later
/// planners read only the rows marked since: records pulled with changes and rows whose
/// written values changed (see `Store::track_changes`). Any other row needs no write, as
/// its score and its CRM copy are both as the last push left them.
pub struct PushPlanner<'a> {
    store: &'a Store,
    fields: &'a WritebackConfig,
    sales_ready_field: Option<&'a str>,
    reasons_max_len: Option<u32>,
    now: DateTime<Utc>,
    chunk_rows: usize,
    /// The id of the last score row read, where the next chunk starts after.
    after: Option<String>,
    finished: bool,
    /// The tracking epoch and write-back settings the reading depends on, `None` when the
    /// level's changes are not tracked.
    stamp: Option<String>,
    /// True when only the marked rows are read.
    marked_only: bool,
    /// The start of a push's reading (see [`PushPlanner::begin`]).
    start: Option<u64>,
    /// Score rows read so far.
    read: usize,
}

impl<'a> PushPlanner<'a> {
    /// Starts planning the store's level in chunks of `chunk_rows` score rows (at least 1).
    pub fn new(
        store: &'a Store,
        config: &'a Config,
        reasons_max_len: &BTreeMap<Level, u32>,
        now: DateTime<Utc>,
        chunk_rows: usize,
    ) -> Result<Self, StoreError> {
        let level = store.level();
        let sales_ready_field = match (level, config.lead.sales_ready_score) {
            (Level::Lead, Some(_)) => Some(config.lead.sales_ready_field.as_str()),
            _ => None,
        };
        let fields = config.writeback_for(level);
        let reasons_max_len = reasons_max_len.get(&level).copied();
        let stamp = store.tracking_epoch(level.object())?.map(|epoch| {
            // The written values depend on these settings too, so a change to any of them
            // sends the planner back to every row.
            format!(
                "{epoch} {:?} {sales_ready_field:?} {reasons_max_len:?}",
                [
                    &fields.score_field,
                    &fields.tier_field,
                    &fields.reasons_field,
                    &fields.model_version_field,
                    &fields.scored_at_field,
                ]
            )
        });
        let marked_only =
            stamp.is_some() && store.pending_scanned(PendingKind::Push, level.object())? == stamp;
        Ok(PushPlanner {
            store,
            fields,
            sales_ready_field,
            reasons_max_len,
            now,
            chunk_rows: chunk_rows.max(1),
            after: None,
            finished: false,
            stamp,
            marked_only,
            start: None,
            read: 0,
        })
    }

    /// Plans the next chunk, or returns `None` after the last one. Fails when the level has
    /// no scores at all.
    pub fn next_chunk(&mut self) -> Result<Option<PushPlan>, PipelineError> {
        if self.finished {
            return Ok(None);
        }
        let level = self.store.level();
        let rows = if self.marked_only {
            self.next_marked_rows()?
        } else {
            self.store
                .score_page(self.after.as_deref(), self.chunk_rows)?
        };
        if rows.is_empty() && self.after.is_none() && self.store.score_count()? == 0 {
            return Err(PipelineError::Model(format!(
                "no {level} scores in the store; run `leadscore score` first"
            )));
        }
        if !self.marked_only {
            self.finished = rows.len() < self.chunk_rows;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            self.after = Some(last.id.clone());
        }
        self.read += rows.len();
        self.plan_rows(rows).map(Some)
    }

    /// Returns the score rows of the next chunk of marked ids. An id without a live score,
    /// such as a deleted record's, is skipped.
    fn next_marked_rows(&mut self) -> Result<Vec<ScoreRow>, PipelineError> {
        let object = self.store.level().object();
        let ids = self.store.pending_ids(
            PendingKind::Push,
            object,
            self.after.as_deref(),
            self.chunk_rows,
        )?;
        self.finished = ids.len() < self.chunk_rows;
        if let Some(last) = ids.last() {
            self.after = Some(last.clone());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        Ok(self.store.score_rows(&ids)?.into_iter().flatten().collect())
    }

    /// Returns the number of live score rows the planner did not read because nothing
    /// marked them; each is unchanged.
    pub fn unread(&self) -> Result<usize, StoreError> {
        if !self.marked_only {
            return Ok(0);
        }
        Ok(self.store.score_count()?.saturating_sub(self.read))
    }

    /// Records where a push's reading starts, before the first chunk, so marks made later
    /// stay for the next push. Before reading every row, it also requests marks from now on.
    /// A preview, which writes nothing, does not call it.
    pub fn begin(&mut self) -> Result<(), StoreError> {
        let object = self.store.level().object();
        self.start = Some(if self.marked_only {
            self.store.pending_start()?
        } else {
            self.store.begin_whole_scan(PendingKind::Push, object)?
        });
        Ok(())
    }

    /// Clears the marks made before the push began, except those of `keep`, and lets the
    /// next planner read the marked rows only. Called after a push that planned and settled
    /// every chunk.
    pub fn finish(self, keep: &[&str]) -> Result<(), StoreError> {
        let Some(start) = self.start else {
            return Ok(());
        };
        let object = self.store.level().object();
        self.store
            .clear_pending(PendingKind::Push, object, start, keep)?;
        if let Some(stamp) = &self.stamp {
            self.store
                .set_pending_scanned(PendingKind::Push, object, stamp)?;
        }
        Ok(())
    }

    /// Plans one chunk of score rows against the store as it is now.
    fn plan_rows(&self, rows: Vec<ScoreRow>) -> Result<PushPlan, PipelineError> {
        let scored = rows.len();
        let mut ids_by_object: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for row in &rows {
            ids_by_object
                .entry(row.object.as_str())
                .or_default()
                .push(row.id.as_str());
        }

        let mut crm_copies = HashMap::with_capacity(scored);
        for (object, ids) in ids_by_object {
            let copies = self.store.stored_records(object, &ids)?;
            for record in copies.into_iter().flatten() {
                crm_copies.insert(record.id.clone(), record);
            }
        }

        // No write goes to a record the store no longer contains or marks deleted. A
        // merged-away record is dead too: its survivor is a live record with a score of its own.
        let mut live: Vec<ScoreRow> = Vec::with_capacity(rows.len());
        for row in rows {
            let stored = crm_copies.get(&row.id).is_some_and(|r| !r.deleted);
            if stored && self.store.tombstone(&row.object, &row.id)?.is_none() {
                live.push(row);
            } else {
                crm_copies.remove(&row.id);
            }
        }
        let skipped_deleted = scored - live.len();

        let planned = plan(
            &live,
            &crm_copies,
            self.fields,
            self.sales_ready_field,
            self.reasons_max_len,
            self.now,
        );

        let ids: Vec<&str> = planned.iter().map(|w| w.update.id.as_str()).collect();
        let failures = self.store.write_failures_of(&ids)?;
        let mut writes = Vec::with_capacity(planned.len());
        let mut held = Vec::new();
        for (write, failure) in planned.into_iter().zip(failures) {
            match failure {
                Some(failure)
                    if failure.modstamp == write.modstamp
                        && comparable(&failure.values) == comparable(&write.values) =>
                {
                    held.push(FailedWrite {
                        object: failure.object,
                        id: failure.id,
                        code: failure.code,
                        message: failure.message,
                        retryable: false,
                        hint: failure.hint,
                        held: true,
                    });
                }
                _ => writes.push(write),
            }
        }
        Ok(PushPlan {
            level: self.store.level(),
            unchanged: live.len() - writes.len() - held.len(),
            writes,
            held,
            skipped_deleted,
            crm_copies,
        })
    }
}

/// Returns true when a pulled record is the echo of leadscore's own write. The CRM's change
/// stamp moved, but every pulled field equals the stored copy, which already contains the
/// values leadscore last wrote. The score and model version must be among the pulled values.
// NOTE: a later change that touches only fields the pull does not select, such as a system
// process bumping the stamp, also counts as an echo. Either way it needs no write.
pub fn is_echo(stored: &Record, pulled: &Record, written: &WrittenValues) -> bool {
    if pulled.deleted || pulled.modstamp <= stored.modstamp {
        return false;
    }
    let score = Value::Number(written.score);
    let version = Value::Text(written.model_version.clone());
    let holds_score = pulled.fields.values().any(|v| same_value(v, &score));
    let holds_version = pulled.fields.values().any(|v| same_value(v, &version));
    holds_score
        && holds_version
        && pulled
            .fields
            .iter()
            .all(|(field, value)| same_value(stored.get(field), value))
}

/// Counts the echoes of leadscore's own writes among a page of pulled records, comparing each
/// with its stored copy (`stored`, in the same order) before the page replaces it. The pull stores echoes like any other
/// record; their values equal what was written, so no push writes them again.
pub fn count_echoes(
    store: &Store,
    object: &str,
    records: &[Record],
    stored: &[Option<Record>],
) -> Result<usize, StoreError> {
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let written = store.written_values(&ids)?;
    let echoes = records
        .iter()
        .zip(stored.iter().zip(&written))
        .filter(|(pulled, (stored, written))| match (stored, written) {
            (Some(stored), Some(written)) => is_echo(stored, pulled, written),
            _ => false,
        })
        .count();
    if echoes > 0 {
        tracing::debug!(
            object,
            echoes,
            "pulled records changed only by leadscore's own writes"
        );
    }
    Ok(echoes)
}

/// One field a planned write changes.
#[derive(Clone, Debug, Serialize)]
pub struct FieldChange {
    pub field: String,
    /// The value in the stored copy of the CRM record (null when it has none).
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// One record a push would write.
#[derive(Clone, Debug, Serialize)]
pub struct RecordChange {
    pub level: Level,
    pub object: String,
    pub id: String,
    pub fields: Vec<FieldChange>,
}

/// The output of `push --plan`: the writes a push would send, without sending or storing
/// anything.
#[derive(Debug, Serialize)]
pub struct PlanPreview {
    /// Records that would be written.
    pub changes: usize,
    pub by_object: BTreeMap<String, usize>,
    /// Records per changed field.
    pub by_field: BTreeMap<String, usize>,
    /// Records not sent, because the CRM rejected the same values before.
    pub held: Vec<FailedWrite>,
    pub unchanged: usize,
    pub skipped_deleted: usize,
    /// Batches of an interrupted push; the next push reads their records back first.
    pub unsettled_batches: usize,
    pub records: Vec<RecordChange>,
}

/// Converts a value to plain JSON: text, number, boolean, null, or an ISO 8601 string.
fn plain_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        Value::Number(number) => serde_json::Number::from_f64(*number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        other => serde_json::Value::String(other.to_string()),
    }
}

/// Plans the writes of `levels` as a push would, and returns them with the fields each
/// changes. Reads only the store. The chunks are planned as in a push, but the preview keeps
/// every change for its output, so its memory grows with the number of changed records.
pub fn preview(
    store: &Store,
    config: &Config,
    levels: &[Level],
    reasons_max_len: &BTreeMap<Level, u32>,
    now: DateTime<Utc>,
) -> Result<PlanPreview, PipelineError> {
    let mut preview = PlanPreview {
        changes: 0,
        by_object: BTreeMap::new(),
        by_field: BTreeMap::new(),
        held: Vec::new(),
        unchanged: 0,
        skipped_deleted: 0,
        unsettled_batches: store.journal()?.len(),
        records: Vec::new(),
    };
    for &level in levels {
        let at_level = store.at_level(level);
        let mut planner =
            PushPlanner::new(&at_level, config, reasons_max_len, now, PLAN_CHUNK_ROWS)?;
        while let Some(plan) = planner.next_chunk()? {
            add_to_preview(&mut preview, level, plan);
        }
        preview.unchanged += planner.unread()?;
    }
    preview.changes = preview.records.len();
    Ok(preview)
}

/// Adds one planned chunk to a preview, with the fields each write changes.
fn add_to_preview(preview: &mut PlanPreview, level: Level, plan: PushPlan) {
    preview.unchanged += plan.unchanged;
    preview.skipped_deleted += plan.skipped_deleted;
    preview.held.extend(plan.held);
    for write in &plan.writes {
        let copy = plan.crm_copies.get(&write.update.id);
        let fields: Vec<FieldChange> = write
            .update
            .fields
            .iter()
            .filter_map(|(field, new)| {
                let old = copy.map_or(&Value::Null, |r| r.get(field));
                (!same_value(old, new)).then(|| FieldChange {
                    field: field.clone(),
                    old: plain_json(old),
                    new: plain_json(new),
                })
            })
            .collect();
        for change in &fields {
            *preview.by_field.entry(change.field.clone()).or_default() += 1;
        }
        *preview
            .by_object
            .entry(write.update.object.clone())
            .or_default() += 1;
        preview.records.push(RecordChange {
            level,
            object: write.update.object.clone(),
            id: write.update.id.clone(),
            fields,
        });
    }
}

/// Describes the level's object and rejects tier labels its tier field does not allow, before
/// anything is written.
async fn check_tier_field<C: Connector>(
    connector: &C,
    config: &Config,
    level: Level,
) -> Result<(), PipelineError> {
    let schema = connector.describe(level.object()).await?;
    let problems = tier_problems(&schema, config.writeback_for(level), &config.tiers.labels);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PipelineError::Config(problems.join("\n")))
    }
}

/// Counts from reconciling the journal.
#[derive(Debug, Default, Serialize)]
pub struct ReconcileReport {
    /// Unsettled batches found.
    pub batches: usize,
    /// Records the CRM already held with the journalled values, recorded as written.
    pub confirmed: usize,
    /// Records the CRM did not hold, left for planning again.
    pub unconfirmed: usize,
}

/// Settles the batches an interrupted push left in the journal. Each record is read back, and
/// one that contains the journalled values is recorded as written, so it is not sent again.
/// The others are planned again like any changed score.
pub async fn reconcile<C: Connector>(
    connector: &C,
    store: &Store,
) -> Result<ReconcileReport, PipelineError> {
    let mut report = ReconcileReport::default();
    for (key, mut entry) in store.journal()? {
        // A record merged away since the batch was sent lives on as its survivor, so the
        // survivor is read back in its place.
        for write in &mut entry.writes {
            if let Some(survivor) = store.survivor(&entry.object, &write.id)? {
                tracing::info!(object = %entry.object, merged = %write.id, %survivor, "journalled write retargeted to the merge survivor");
                write.id = survivor;
            }
        }
        let ids: Vec<String> = entry.writes.iter().map(|w| w.id.clone()).collect();
        let mut fields: Vec<String> = Vec::new();
        for write in &entry.writes {
            for field in write.fields.keys() {
                if !fields.contains(field) {
                    fields.push(field.clone());
                }
            }
        }
        let records: HashMap<String, Record> = connector
            .fetch(&entry.object, &ids, &fields)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let confirmed: Vec<ConfirmedWrite> = entry
            .writes
            .iter()
            .filter(|w| {
                records
                    .get(&w.id)
                    .is_some_and(|r| contains_values(r, &w.fields))
            })
            .map(|w| ConfirmedWrite {
                id: w.id.clone(),
                values: w.values.clone(),
                fields: w.fields.clone(),
            })
            .collect();
        tracing::info!(
            object = %entry.object,
            batch = key,
            records = entry.writes.len(),
            confirmed = confirmed.len(),
            "reconciled an interrupted write batch"
        );
        report.batches += 1;
        report.confirmed += confirmed.len();
        report.unconfirmed += entry.writes.len() - confirmed.len();
        store.settle_batch(key, &entry.object, &confirmed, &[])?;
    }
    Ok(report)
}

/// Writes the changed scores of the store's level back to that level's object, in batches of
/// its `batch_size`. Batches left by an interrupted push are reconciled first, and before
/// anything is sent the tier labels are checked against the tier field. Each batch is journalled
/// before it is sent and settled after its outcomes are stored. `reasons_max_len` comes from
/// `check`. The scores are planned [`PLAN_CHUNK_ROWS`] rows at a time, see [`push_in_chunks`].
pub async fn push<C: Connector>(
    connector: &C,
    store: &Store,
    config: &Config,
    reasons_max_len: &BTreeMap<Level, u32>,
    now: DateTime<Utc>,
) -> Result<PushReport, PipelineError> {
    push_in_chunks(
        connector,
        store,
        config,
        reasons_max_len,
        now,
        PLAN_CHUNK_ROWS,
    )
    .await
}

/// Runs [`push`], planning `chunk_rows` score rows at a time. Writes are sent in full batches
/// as the chunks are planned, and a batch may take writes from several chunks, so the batches
/// and requests are the same as if the whole level were planned at once. A push stopped by a shutdown request
/// reports the counts of the chunks it planned.
pub async fn push_in_chunks<C: Connector>(
    connector: &C,
    store: &Store,
    config: &Config,
    reasons_max_len: &BTreeMap<Level, u32>,
    now: DateTime<Utc>,
    chunk_rows: usize,
) -> Result<PushReport, PipelineError> {
    let level = store.level();
    let reconciled = reconcile(connector, store).await?;
    let fields = config.writeback_for(level);
    let batch_size = fields.batch_size.min(connector.max_batch()).max(1);
    let mut report = PushReport {
        level,
        planned: 0,
        written: 0,
        unchanged: 0,
        skipped_deleted: 0,
        reconciled: reconciled.confirmed,
        retried: 0,
        failed: Vec::new(),
    };
    let mut planner = PushPlanner::new(store, config, reasons_max_len, now, chunk_rows)?;
    planner.begin()?;
    // Planned writes not sent yet, by object, because one journal entry covers one object.
    // Only full batches leave it until the last chunk is planned.
    let mut unsent: BTreeMap<String, Vec<PlannedWrite>> = BTreeMap::new();
    let mut tier_checked = false;
    let mut stopped = false;
    'chunks: while let Some(plan) = planner.next_chunk()? {
        report.planned += plan.writes.len() + plan.held.len();
        report.unchanged += plan.unchanged;
        report.skipped_deleted += plan.skipped_deleted;
        report.failed.extend(plan.held);
        // A push with nothing to write sends no request at all.
        if !plan.writes.is_empty() && !tier_checked {
            check_tier_field(connector, config, level).await?;
            tier_checked = true;
        }
        for write in plan.writes {
            unsent
                .entry(write.update.object.clone())
                .or_default()
                .push(write);
        }
        for (object, writes) in &mut unsent {
            while writes.len() >= batch_size {
                let batch: Vec<PlannedWrite> = writes.drain(..batch_size).collect();
                if !send_batch(connector, store, level, object, &batch, now, &mut report).await? {
                    stopped = true;
                    break 'chunks;
                }
            }
        }
    }
    if !stopped {
        for (object, writes) in &unsent {
            if !writes.is_empty()
                && !send_batch(connector, store, level, object, writes, now, &mut report).await?
            {
                stopped = true;
                break;
            }
        }
    }
    report.unchanged += planner.unread()?;
    // A stopped push leaves every mark, so the next one plans what this one did not send.
    // Failed writes keep theirs: the next push sends them again or, for a failure held until
    // the record or its values change, reports them again.
    if !stopped {
        let failed: Vec<&str> = report
            .failed
            .iter()
            .map(|failure| failure.id.as_str())
            .collect();
        planner.finish(&failed)?;
    }
    tracing::info!(
        %level,
        written = report.written,
        failed = report.failed.len(),
        unchanged = report.unchanged,
        reconciled = report.reconciled,
        "pushed"
    );
    Ok(report)
}

/// Sends one batch unless a shutdown was requested, and returns whether it was sent.
async fn send_batch<C: Connector>(
    connector: &C,
    store: &Store,
    level: Level,
    object: &str,
    batch: &[PlannedWrite],
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<bool, PipelineError> {
    // Every batch sent so far is settled, so the next push writes only what is left.
    if crate::daemon::shutdown_requested() {
        tracing::info!(%level, %object, written = report.written, "stop requested; the push ends before the next batch");
        return Ok(false);
    }
    let sender = BatchSender {
        connector,
        store,
        level,
        object,
        now,
    };
    let batch: Vec<&PlannedWrite> = batch.iter().collect();
    sender.send(&batch, report).await?;
    Ok(true)
}

/// Sends one journalled batch of writes to one object.
struct BatchSender<'a, C> {
    connector: &'a C,
    store: &'a Store,
    level: Level,
    object: &'a str,
    now: DateTime<Utc>,
}

/// The outcomes of one batch so far.
#[derive(Default)]
struct BatchOutcomes<'p> {
    confirmed: Vec<ConfirmedWrite>,
    permanent: Vec<WriteFailure>,
    /// Writes that failed transiently in the last round, with their errors.
    transient: Vec<(&'p PlannedWrite, RecordError)>,
    /// Resends used so far, of `TRANSIENT_ROUNDS`.
    resends: u32,
}

impl<'a, C: Connector> BatchSender<'a, C> {
    async fn send(
        &self,
        batch: &[&PlannedWrite],
        report: &mut PushReport,
    ) -> Result<(), PipelineError> {
        let entry = JournalEntry {
            object: self.object.to_string(),
            level: self.level,
            started_at: self.now,
            writes: batch
                .iter()
                .map(|w| JournalWrite {
                    id: w.update.id.clone(),
                    fields: w.update.fields.clone(),
                    values: w.values.clone(),
                })
                .collect(),
        };
        let key = self.store.begin_batch(&entry)?;
        let mut outcomes = BatchOutcomes::default();
        let mut pending: Vec<&PlannedWrite> = batch.to_vec();
        loop {
            self.send_round(pending, &mut outcomes).await?;
            if outcomes.transient.is_empty() || outcomes.resends >= TRANSIENT_ROUNDS {
                break;
            }
            let delay = TRANSIENT_BASE_DELAY * 2u32.pow(outcomes.resends);
            tracing::warn!(
                object = %self.object,
                records = outcomes.transient.len(),
                round = outcomes.resends + 1,
                ?delay,
                "records failed transiently; sending them again"
            );
            tokio::time::sleep(delay).await;
            outcomes.resends += 1;
            report.retried += outcomes.transient.len();
            pending = outcomes.transient.drain(..).map(|(w, _)| w).collect();
        }
        for (write, error) in &outcomes.transient {
            tracing::warn!(id = %write.update.id, code = %error.code, message = %error.message, "write failed after retries; the next push sends it again");
            report.failed.push(FailedWrite {
                object: self.object.to_string(),
                id: write.update.id.clone(),
                code: error.code.clone(),
                message: error.message.clone(),
                retryable: true,
                hint: failure_hint(&error.code).to_string(),
                held: false,
            });
        }
        for failure in &outcomes.permanent {
            report.failed.push(FailedWrite {
                object: failure.object.clone(),
                id: failure.id.clone(),
                code: failure.code.clone(),
                message: failure.message.clone(),
                retryable: false,
                hint: failure.hint.clone(),
                held: false,
            });
        }
        self.store
            .settle_batch(key, self.object, &outcomes.confirmed, &outcomes.permanent)?;
        report.written += outcomes.confirmed.len();
        Ok(())
    }

    /// Sends `writes` once, splitting groups the CRM rejected as a whole, and sorts every
    /// outcome into `outcomes`. A group whose request failed is read back and its unwritten
    /// records sent again, which uses one of the batch's resends.
    async fn send_round<'p>(
        &self,
        writes: Vec<&'p PlannedWrite>,
        outcomes: &mut BatchOutcomes<'p>,
    ) -> Result<(), PipelineError> {
        let mut queue: VecDeque<Vec<&'p PlannedWrite>> = VecDeque::from([writes]);
        while let Some(group) = queue.pop_front() {
            let updates: Vec<RecordUpdate> = group.iter().map(|w| w.update.clone()).collect();
            let results = match self.connector.update(&updates).await {
                Ok(results) => results,
                Err(ConnectorError::Transport(message)) if outcomes.resends < TRANSIENT_ROUNDS => {
                    // The request may have reached the CRM, so the records are read back and
                    // only those that lack the values are sent again.
                    // NOTE: the Salesforce transport resends a PATCH whose response body was
                    // lost before it returns this error, so a cut response can still write a
                    // record twice (with the same values).
                    outcomes.resends += 1;
                    tracing::warn!(object = %self.object, records = group.len(), %message, "write request failed; reading the records back");
                    tokio::time::sleep(TRANSIENT_BASE_DELAY * 2u32.pow(outcomes.resends)).await;
                    let unsent = self.read_back(group, outcomes).await?;
                    if !unsent.is_empty() {
                        queue.push_front(unsent);
                    }
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if results.len() != group.len() {
                return Err(PipelineError::Connector(ConnectorError::Payload(format!(
                    "{} returned {} results for {} updates; none of this batch is marked written",
                    self.connector.name(),
                    results.len(),
                    group.len()
                ))));
            }
            let culprit = results
                .iter()
                .any(|r| matches!(&r.result, Err(e) if e.code != ROLLED_BACK));
            let mut rolled_back = Vec::new();
            for (write, result) in group.iter().zip(results) {
                match result.result {
                    Ok(()) => outcomes.confirmed.push(confirmed(write)),
                    Err(error) if error.code == ROLLED_BACK => rolled_back.push(*write),
                    Err(error) if is_transient(&error) => outcomes.transient.push((write, error)),
                    Err(error) => {
                        tracing::warn!(id = %write.update.id, code = %error.code, message = %error.message, "write rejected");
                        outcomes.permanent.push(self.failure(write, error));
                    }
                }
            }
            if rolled_back.is_empty() {
                continue;
            }
            if culprit {
                // The records at fault are known, so the rest can go through on their own.
                queue.push_back(rolled_back);
            } else if rolled_back.len() > 1 {
                let second = rolled_back.split_off(rolled_back.len() / 2);
                queue.push_back(rolled_back);
                queue.push_back(second);
            } else {
                let error = RecordError {
                    code: ROLLED_BACK.to_string(),
                    message: "the CRM rejected every batch that contained this record, also \
                              when it was sent alone, without naming an error"
                        .to_string(),
                    fields: Vec::new(),
                    retryable: false,
                };
                outcomes.permanent.push(self.failure(rolled_back[0], error));
            }
        }
        Ok(())
    }

    /// Reads a group back after a failed request, records those that already contain their
    /// values as confirmed, and returns the others.
    async fn read_back<'p>(
        &self,
        group: Vec<&'p PlannedWrite>,
        outcomes: &mut BatchOutcomes<'p>,
    ) -> Result<Vec<&'p PlannedWrite>, PipelineError> {
        let ids: Vec<String> = group.iter().map(|w| w.update.id.clone()).collect();
        let fields: Vec<String> = group
            .first()
            .map(|w| w.update.fields.keys().cloned().collect())
            .unwrap_or_default();
        let records: HashMap<String, Record> = self
            .connector
            .fetch(self.object, &ids, &fields)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut unsent = Vec::new();
        for write in group {
            match records.get(&write.update.id) {
                Some(record) if contains_values(record, &write.update.fields) => {
                    outcomes.confirmed.push(confirmed(write));
                }
                _ => unsent.push(write),
            }
        }
        Ok(unsent)
    }

    fn failure(&self, write: &PlannedWrite, error: RecordError) -> WriteFailure {
        WriteFailure {
            object: self.object.to_string(),
            id: write.update.id.clone(),
            hint: failure_hint(&error.code).to_string(),
            code: error.code,
            message: error.message,
            fields: error.fields,
            modstamp: write.modstamp,
            values: write.values.clone(),
            failed_at: self.now,
        }
    }
}

fn confirmed(write: &PlannedWrite) -> ConfirmedWrite {
    ConfirmedWrite {
        id: write.update.id.clone(),
        values: write.values.clone(),
        fields: write.update.fields.clone(),
    }
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
            reasons_key: None,
            inputs_key: None,
            valid_from: None,
            valid_until: None,
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

    /// A CRM that rejects a whole batch when it contains the bad id, as Salesforce does with
    /// `allOrNone`. With `name_culprit` the bad record gets its own error, otherwise every
    /// record of the batch gets the rolled-back code.
    struct AllOrNone {
        bad: String,
        name_culprit: bool,
        calls: std::sync::Mutex<Vec<Vec<String>>>,
    }

    impl Connector for AllOrNone {
        fn name(&self) -> &'static str {
            "all-or-none"
        }

        fn max_batch(&self) -> usize {
            200
        }

        async fn check(&self) -> Result<leadscore_connector::ApiUsage, ConnectorError> {
            Ok(leadscore_connector::ApiUsage::default())
        }

        async fn describe(&self, object: &str) -> Result<ObjectSchema, ConnectorError> {
            Ok(ObjectSchema {
                name: object.to_string(),
                fields: Vec::new(),
            })
        }

        async fn pull_first(
            &self,
            _: &leadscore_connector::PullSpec,
            _: Option<&leadscore_connector::Cursor>,
        ) -> Result<leadscore_connector::Page, ConnectorError> {
            Ok(leadscore_connector::Page::default())
        }

        async fn pull_next(
            &self,
            _: &leadscore_connector::PullSpec,
            _: Option<&leadscore_connector::Cursor>,
            _: &str,
        ) -> Result<leadscore_connector::Page, ConnectorError> {
            Ok(leadscore_connector::Page::default())
        }

        async fn update(
            &self,
            updates: &[RecordUpdate],
        ) -> Result<Vec<leadscore_connector::WriteOutcome>, ConnectorError> {
            let ids: Vec<String> = updates.iter().map(|u| u.id.clone()).collect();
            let rejected = ids.contains(&self.bad);
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(ids.clone());
            }
            let error = |code: &str| RecordError {
                code: code.to_string(),
                message: String::new(),
                fields: Vec::new(),
                retryable: false,
            };
            Ok(ids
                .into_iter()
                .map(|id| {
                    let result = if !rejected {
                        Ok(())
                    } else if self.name_culprit && id == self.bad {
                        Err(error("FIELD_CUSTOM_VALIDATION_EXCEPTION"))
                    } else {
                        Err(error(ROLLED_BACK))
                    };
                    leadscore_connector::WriteOutcome { id, result }
                })
                .collect())
        }

        fn usage(&self) -> Option<leadscore_connector::ApiUsage> {
            None
        }
    }

    /// Sends six writes, with `c` bad, as one batch and returns the report and the requests.
    fn send_all_or_none(
        name_culprit: bool,
    ) -> (PushReport, Vec<Vec<String>>, Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let connector = AllOrNone {
            bad: "c".into(),
            name_culprit,
            calls: std::sync::Mutex::new(Vec::new()),
        };
        let rows: Vec<ScoreRow> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|id| row(id, 40.0))
            .collect();
        let planned = plan(
            &rows,
            &HashMap::new(),
            &config(),
            None,
            None,
            DateTime::UNIX_EPOCH,
        );
        let batch: Vec<&PlannedWrite> = planned.iter().collect();
        let mut report = PushReport {
            level: Level::Account,
            planned: batch.len(),
            written: 0,
            unchanged: 0,
            skipped_deleted: 0,
            reconciled: 0,
            retried: 0,
            failed: Vec::new(),
        };
        let sender = BatchSender {
            connector: &connector,
            store: &store,
            level: Level::Account,
            object: "Account",
            now: DateTime::UNIX_EPOCH,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime
            .block_on(sender.send(&batch, &mut report))
            .expect("batch sent");
        let calls = connector
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        (report, calls, store, dir)
    }

    #[test]
    fn rolled_back_records_sent_again() {
        let (report, calls, store, _dir) = send_all_or_none(true);
        assert_eq!(report.written, 5, "{report:?}");
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].id, "c");
        assert_eq!(report.failed[0].code, "FIELD_CUSTOM_VALIDATION_EXCEPTION");
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[1], ["a", "b", "d", "e", "f"]);
        assert!(store.journal().expect("journal").is_empty());
        assert!(store.write_failures().expect("failures").contains_key("c"));
    }

    #[test]
    fn unattributed_rejection_split_in_halves() {
        let (report, calls, store, _dir) = send_all_or_none(false);
        assert_eq!(report.written, 5, "{report:?}");
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].id, "c");
        assert_eq!(report.failed[0].code, ROLLED_BACK);
        assert!(calls.iter().all(|call| call.len() <= 6));
        assert!(calls.contains(&vec!["c".to_string()]), "{calls:?}");
        assert_eq!(store.written().expect("written").len(), 5);
    }

    #[test]
    fn values_compared_as_crm_returns_them() {
        let at = DateTime::UNIX_EPOCH + chrono::Duration::microseconds(1_500);
        let truncated = DateTime::UNIX_EPOCH + chrono::Duration::milliseconds(1);
        assert!(same_value(
            &Value::DateTime(at),
            &Value::DateTime(truncated)
        ));
        assert!(same_value(
            &Value::Number(87.5),
            &Value::Text("87.5".into())
        ));
        assert!(same_value(&Value::Null, &Value::Text(String::new())));
        assert!(!same_value(&Value::Number(87.5), &Value::Number(87.6)));
        assert!(!same_value(&Value::Text("B".into()), &Value::Null));
    }

    #[test]
    fn echo_needs_written_values_and_no_other_change() {
        let first = plan(
            &[row("a", 50.0)],
            &HashMap::new(),
            &config(),
            None,
            None,
            DateTime::UNIX_EPOCH,
        );
        let stored = crm_copy(&first[0]);
        let mut pulled = stored.clone();
        pulled.modstamp = stored.modstamp + chrono::Duration::seconds(5);
        assert!(is_echo(&stored, &pulled, &first[0].values));

        let mut edited = pulled.clone();
        edited
            .fields
            .insert("Name".into(), Value::Text("New".into()));
        assert!(!is_echo(&stored, &edited, &first[0].values));

        let mut other_score = first[0].values.clone();
        other_score.score = 51.0;
        assert!(!is_echo(&stored, &pulled, &other_score));
        assert!(
            !is_echo(&stored, &stored, &first[0].values),
            "an unchanged stamp is no echo"
        );
    }

    #[test]
    fn tier_labels_checked_against_options() {
        let field = |values: &[&str]| leadscore_connector::FieldSchema {
            name: "T".into(),
            kind: FieldKind::Picklist,
            updateable: true,
            picklist_values: values.iter().map(|v| v.to_string()).collect(),
            restricted_picklist: true,
            length: None,
            relationship_name: None,
            reference_to: Vec::new(),
        };
        let labels: Vec<String> = ["A", "B", "C", "D"].map(String::from).to_vec();
        let schema = ObjectSchema {
            name: "Account".into(),
            fields: vec![field(&["A", "B", "C"])],
        };
        let problems = tier_problems(&schema, &config(), &labels);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("\"D\""), "{}", problems[0]);
        assert!(problems[0].contains("A, B, C"), "{}", problems[0]);
        let schema = ObjectSchema {
            name: "Account".into(),
            fields: vec![field(&["A", "B", "C", "D"])],
        };
        assert!(tier_problems(&schema, &config(), &labels).is_empty());
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
