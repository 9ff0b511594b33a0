//! Scoring the open records of one level with its live model: a 0-100 score, a tier, the
//! reasons, at most one hint, and for leads the sales-ready flag.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leadscore_connector::Value;
use serde::Serialize;

use crate::config::Config;
use crate::features::{FeatureSpace, History};
use crate::hints::HintSearch;
use crate::level::Level;
use crate::levels::{self, OpenRecord};
use crate::model::TrainedModel;
use crate::pipeline::PipelineError;
use crate::score_reuse::ReasonsFingerprint;
use crate::store::{ScoreEvent, ScoreRow, Store, StoredModel};
use crate::training::load_history;

/// Maximum number of reasons that lower a score, listed after the reasons that raise it.
const NEGATIVE_REASONS: usize = 2;

#[derive(Debug, Serialize)]
pub struct ScoreReport {
    pub level: Level,
    pub model_version: String,
    pub scored: usize,
    /// Records per tier label, in tier order A to D.
    pub tiers: BTreeMap<String, usize>,
    /// Records with a hint.
    pub hints: usize,
    /// Leads at or above the hand-off score (lead level with a threshold only).
    pub sales_ready: Option<usize>,
    /// Leads that reached the hand-off score in this run.
    pub newly_sales_ready: usize,
    /// The highest-scoring records, best first.
    pub top: Vec<ScoreRow>,
}

/// Returns the accounts that get scored; see [`levels::open_accounts`].
pub fn open_accounts<'h>(
    history: &'h History,
    config: &Config,
    now: DateTime<Utc>,
) -> Vec<&'h str> {
    levels::open_accounts(history, config, now)
}

/// Turns a calibrated probability into the 0-100 score written to the CRM.
pub fn score_of(probability: f64) -> f64 {
    (probability * 100.0).round().clamp(0.0, 100.0)
}

/// Scores every open record of the store's level as of `config.scoring.as_of` (or `now`),
/// stores the scores and records leads that became sales-ready.
pub fn score(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<ScoreReport, PipelineError> {
    score_sharing(store, config, now, &mut None)
}

/// Does what [`score`] does, loading the history from the store only when `history` is
/// `None` and leaving it there. The history does not depend on the level, so scoring several
/// levels in a row with the same `history` builds it once instead of once per level.
// NOTE: `run::run_once` (and so the daemon) still calls `score` once per level.
pub fn score_sharing(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    history: &mut Option<History>,
) -> Result<ScoreReport, PipelineError> {
    let level = store.level();
    let Some(stored) = store.current_model()? else {
        return Err(PipelineError::Model(format!(
            "no trained {level} model in the store; run `leadscore train` first"
        )));
    };
    let started = std::time::Instant::now();
    phase(level, "start", started);
    let history = match history {
        Some(loaded) => &*loaded,
        None => &*history.insert(load_history(store, config)?),
    };
    phase(level, "load history", started);
    let started = std::time::Instant::now();
    let mut scores = score_records_reusing(&stored, history, config, now, store)?;
    phase(level, "score records", started);
    let scored = scores.len();
    let started = std::time::Instant::now();

    // Only the previous score and sales-ready flag are needed, so the full rows (reasons,
    // hints, names) of the last run are not kept while this run's rows are in memory.
    let mut previous: BTreeMap<String, (f64, Option<bool>)> = BTreeMap::new();
    store.for_each_score(|row| {
        previous.insert(row.id, (row.score, row.sales_ready));
    })?;
    let events: Vec<ScoreEvent> = scores
        .iter()
        .filter(|row| row.sales_ready == Some(true))
        .filter(|row| previous.get(&row.id).and_then(|p| p.1) != Some(true))
        .map(|row| ScoreEvent {
            level,
            object: row.object.clone(),
            id: row.id.clone(),
            kind: "sales_ready".to_string(),
            score: row.score,
            previous_score: previous.get(&row.id).map(|p| p.0),
            at: now,
        })
        .collect();
    store.replace_scores(&scores)?;
    store.append_score_history(&scores)?;
    store.append_events(&events)?;
    phase(level, "store scores", started);

    let mut tiers: BTreeMap<String, usize> =
        config.tiers.labels.iter().map(|l| (l.clone(), 0)).collect();
    for row in &scores {
        *tiers.entry(row.tier.clone()).or_default() += 1;
    }
    let hints = scores.iter().filter(|r| r.hint.is_some()).count();
    let sales_ready =
        (level == Level::Lead && config.lead.sales_ready_score.is_some()).then(|| {
            scores
                .iter()
                .filter(|r| r.sales_ready == Some(true))
                .count()
        });
    scores.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then_with(|| a.id.cmp(&b.id))
    });
    scores.truncate(10);
    tracing::info!(%level, scored, hints, model = %stored.version, "scored");
    Ok(ScoreReport {
        level,
        model_version: stored.version,
        scored,
        tiers,
        hints,
        sales_ready,
        newly_sales_ready: events.len(),
        top: scores,
    })
}

/// Scores every open account with `stored`; kept for callers that compare account models.
pub fn score_accounts(
    stored: &StoredModel,
    history: &History,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<ScoreRow>, PipelineError> {
    score_records(stored, history, config, now)
}

/// Scores every open record of the model's level with `stored` as of `config.scoring.as_of`
/// (or `now`) and returns the rows without storing them, so two models can be compared on
/// the same records.
pub fn score_records(
    stored: &StoredModel,
    history: &History,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<ScoreRow>, PipelineError> {
    score_records_from(stored, history, config, now, None)
}

/// Does what [`score_records`] does, but takes a record's reasons from its row stored in
/// `previous` when that row's model version and reasons fingerprint equal this run's, instead
/// of computing its Shapley contributions. The returned rows equal those of
/// [`score_records`], because equal fingerprints mean equal reasons.
pub fn score_records_reusing(
    stored: &StoredModel,
    history: &History,
    config: &Config,
    now: DateTime<Utc>,
    previous: &Store,
) -> Result<Vec<ScoreRow>, PipelineError> {
    score_records_from(stored, history, config, now, Some(previous))
}

fn score_records_from(
    stored: &StoredModel,
    history: &History,
    config: &Config,
    now: DateTime<Utc>,
    previous: Option<&Store>,
) -> Result<Vec<ScoreRow>, PipelineError> {
    let space: FeatureSpace = serde_json::from_value(stored.features.clone()).map_err(|e| {
        PipelineError::Model(format!(
            "stored feature encoding of model {} is unreadable: {e}; retrain",
            stored.version
        ))
    })?;
    let model =
        TrainedModel::from_bytes(&stored.model).map_err(|e| PipelineError::Model(e.to_string()))?;
    let at = config.scoring.as_of.unwrap_or(now);
    let level = space.level;

    let open: Vec<OpenRecord> = levels::open_records(level, history, config, now);
    let scorer = Scorer {
        space: &space,
        model: &model,
        stored,
        history,
        config,
        at,
        now,
        previous,
        fingerprint: ReasonsFingerprint::new(
            &stored.version,
            &model,
            config.scoring.reasons,
            NEGATIVE_REASONS,
        ),
        reasons_reused: Default::default(),
        timings: Default::default(),
    };
    // The model, the feature space and the history are read-only, so each thread scores its
    // own contiguous share of the records. Concatenating the shares in thread order keeps the
    // rows in the order of `open`, as a single thread would return them.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(open.len().div_ceil(BATCH_ROWS))
        .max(1);
    let share = open.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<ScoreRow>, PipelineError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = open
            .chunks(share)
            .map(|part| scope.spawn(|| scorer.score_share(part)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(PipelineError::Model(
                        "a scoring thread panicked, which is a bug: its message is on stderr"
                            .to_string(),
                    ))
                })
            })
            .collect()
    });
    let mut scores = Vec::with_capacity(open.len());
    for result in results {
        scores.extend(result?);
    }
    let seconds =
        |i: usize| scorer.timings[i].load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9;
    tracing::debug!(
        %level,
        records = open.len(),
        reasons_reused = scorer
            .reasons_reused
            .load(std::sync::atomic::Ordering::Relaxed),
        rows = seconds(0),
        predict = seconds(1),
        fingerprints = seconds(5),
        contributions = seconds(2),
        reasons = seconds(3),
        hint_rows = seconds(6),
        hints = seconds(4),
        "score thread seconds"
    );
    Ok(scores)
}

/// Open records scored per model call. Feature rows and SHAP contributions exist only for
/// one batch at a time, so their memory stays bounded however many records are open.
const BATCH_ROWS: usize = 2048;

/// The read-only inputs shared by the scoring threads.
struct Scorer<'a> {
    space: &'a FeatureSpace,
    model: &'a TrainedModel,
    stored: &'a StoredModel,
    history: &'a History,
    config: &'a Config,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    /// The store whose score rows may supply reasons; `None` computes every record's.
    // NOTE: hints are always searched again. Their inputs are the candidate rows, which are
    // most of the search's cost to build, and an activity candidate's row moves with the
    // scoring time, so a fingerprint of them would save little.
    previous: Option<&'a Store>,
    fingerprint: ReasonsFingerprint,
    /// Records whose reasons came from `previous`.
    reasons_reused: std::sync::atomic::AtomicU64,
    /// Thread nanoseconds spent on feature rows, predict, contributions, reasons, hints
    /// (predict and choice), fingerprints with their store reads, and hint candidate rows.
    timings: [std::sync::atomic::AtomicU64; 7],
}

impl Scorer<'_> {
    /// Scores `records` in batches of [`BATCH_ROWS`], returning one row per record in order.
    fn score_share(&self, records: &[OpenRecord]) -> Result<Vec<ScoreRow>, PipelineError> {
        let mut scores = Vec::with_capacity(records.len());
        for chunk in records.chunks(BATCH_ROWS) {
            self.score_chunk(chunk, &mut scores)?;
        }
        Ok(scores)
    }

    fn score_chunk(
        &self,
        records: &[OpenRecord],
        scores: &mut Vec<ScoreRow>,
    ) -> Result<(), PipelineError> {
        let (space, model, history, config) = (self.space, self.model, self.history, self.config);
        let level = space.level;
        let mut clock = std::time::Instant::now();
        let mut lap = |slot: usize| {
            let elapsed = clock.elapsed().as_nanos() as u64;
            self.timings[slot].fetch_add(elapsed, std::sync::atomic::Ordering::Relaxed);
            clock = std::time::Instant::now();
        };
        let rows: Vec<Vec<f64>> = records
            .iter()
            .map(|record| space.row(history, record.target(), self.at))
            .collect();
        lap(0);
        let probabilities = model
            .predict(&rows)
            .map_err(|e| PipelineError::Model(e.to_string()))?;
        lap(1);
        let mut keys = Vec::with_capacity(records.len());
        let mut reused: Vec<Option<Vec<String>>> = Vec::with_capacity(records.len());
        for (record, row) in records.iter().zip(&rows) {
            let key = self.fingerprint.key(space, history, record.target(), row);
            reused.push(self.previous_reasons(&record.id, &key)?);
            keys.push(key);
        }
        lap(5);
        // Only the rows without reusable reasons go through the Shapley computation.
        let needed_count = reused.iter().filter(|reasons| reasons.is_none()).count();
        let contributions = if needed_count == rows.len() {
            model.contributions(&rows)
        } else if needed_count == 0 {
            Ok(Vec::new())
        } else {
            let needed: Vec<Vec<f64>> = rows
                .iter()
                .zip(&reused)
                .filter(|(_, reasons)| reasons.is_none())
                .map(|(row, _)| row.clone())
                .collect();
            model.contributions(&needed)
        }
        .map_err(|e| PipelineError::Model(e.to_string()))?;
        let mut contributions = contributions.into_iter();
        lap(2);
        // Every record's hint candidates go to the model in one call per batch.
        let mut searches: Vec<HintSearch> = records
            .iter()
            .map(|record| HintSearch::new(space, history, record, self.at, &config.hints))
            .collect();
        lap(6);
        let counts: Vec<usize> = searches.iter().map(|search| search.rows.len()).collect();
        // The rows move into the batch rather than being copied; `choose` needs only the
        // candidates and their probabilities.
        let hint_rows: Vec<Vec<f64>> = searches
            .iter_mut()
            .flat_map(|search| std::mem::take(&mut search.rows))
            .collect();
        let hint_probabilities = if hint_rows.is_empty() {
            Vec::new()
        } else {
            model
                .predict(&hint_rows)
                .map_err(|e| PipelineError::Model(e.to_string()))?
        };
        drop(hint_rows);
        lap(4);
        let mut searches = searches.into_iter();
        let mut offset = 0;

        for (index, (record, key)) in records.iter().zip(keys).enumerate() {
            let crm_record = record.record(level, history);
            let probability = probabilities[index];
            let score = score_of(probability);
            let reasons = match reused[index].take() {
                Some(reasons) => reasons,
                None => {
                    let explained = contributions.next().ok_or_else(|| {
                        PipelineError::Model(
                            "the model returned fewer contributions than rows".to_string(),
                        )
                    })?;
                    space.reasons(
                        history,
                        record.target(),
                        &rows[index],
                        &explained.values,
                        config.scoring.reasons,
                        NEGATIVE_REASONS,
                    )
                }
            };
            lap(3);
            let hint = searches.next().and_then(|search| {
                let count = counts[index];
                let probabilities = &hint_probabilities[offset..offset + count];
                offset += count;
                search.choose(probabilities, score, &config.hints)
            });
            lap(4);
            let sales_ready = match (level, config.lead.sales_ready_score) {
                (Level::Lead, Some(threshold)) => Some(score >= threshold),
                _ => None,
            };
            let text =
                |field: &str| crm_record.and_then(|r| r.get(field).as_str().map(str::to_string));
            scores.push(ScoreRow {
                object: level.object().to_string(),
                id: record.id.clone(),
                name: text("Name").unwrap_or_default(),
                owner_id: match crm_record.map(|r| r.get("OwnerId")) {
                    Some(Value::Text(owner)) => Some(owner.clone()),
                    _ => None,
                },
                probability,
                score,
                tier: config.tiers.tier_for(score).to_string(),
                reasons,
                hint,
                sales_ready,
                model_version: self.stored.version.clone(),
                scored_at: self.now,
                reasons_key: Some(key),
            });
        }
        Ok(())
    }

    /// Returns the reasons of record `id` stored by the previous run when its model version
    /// and reasons fingerprint equal this run's `key`.
    fn previous_reasons(&self, id: &str, key: &str) -> Result<Option<Vec<String>>, PipelineError> {
        let Some(store) = self.previous else {
            return Ok(None);
        };
        let Some(row) = store.score_row(id)? else {
            return Ok(None);
        };
        if row.model_version != self.stored.version || row.reasons_key.as_deref() != Some(key) {
            return Ok(None);
        }
        self.reasons_reused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(row.reasons))
    }
}

/// Logs at debug level how long one phase of a score run took and the process's memory
/// after it, so a scale run can tell where the score step's time and memory go.
fn phase(level: Level, name: &str, started: std::time::Instant) {
    // Reading /proc costs a file read, so it happens only when the line is logged.
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    tracing::debug!(
        %level,
        phase = name,
        seconds = started.elapsed().as_secs_f64(),
        rss_mib = memory_mib("VmRSS"),
        peak_rss_mib = memory_mib("VmHWM"),
        "score phase"
    );
}

/// Reads a `kB` line such as `VmHWM` from `/proc/self/status`, in MiB; `None` off Linux.
fn memory_mib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
