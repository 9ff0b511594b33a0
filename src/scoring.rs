//! Scoring the open records of one level with its live model: a 0-100 score, a tier, the
//! reasons, at most one hint, and for leads the sales-ready flag.

use std::collections::{BTreeMap, HashMap};

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
///
/// Rows go to the store batch by batch as the scoring threads produce them, into a staged
/// run that replaces the previous scores only once every row is written, so the step keeps
/// the report's counts and top rows but never every row of the level.
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

    // Only leads with a hand-off threshold can become sales-ready, and an event needs only
    // the previous score and flag, so nothing of the last run is kept for other levels.
    let tracks_sales_ready = level == Level::Lead && config.lead.sales_ready_score.is_some();
    let mut previous: HashMap<String, (f64, Option<bool>)> = HashMap::new();
    if tracks_sales_ready {
        store.for_each_score(|row| {
            previous.insert(row.id, (row.score, row.sales_ready));
        })?;
    }
    let mut summary = RunSummary::new(config);
    let mut events: Vec<ScoreEvent> = Vec::new();
    let mut writer = store.score_writer()?;
    let mut storing = std::time::Duration::ZERO;
    score_records_each(&stored, history, config, now, Some(store), |rows| {
        let writing = std::time::Instant::now();
        writer.push(&rows)?;
        // NOTE: the history is appended before the run commits, so a run that stops part way
        // leaves entries for scores that never went live. Keeping the rows until the commit
        // would cost the memory that streaming saves.
        store.append_score_history(&rows)?;
        storing += writing.elapsed();
        for row in rows.iter().filter(|row| row.sales_ready == Some(true)) {
            let before = previous.get(&row.id);
            if before.and_then(|p| p.1) == Some(true) {
                continue;
            }
            events.push(ScoreEvent {
                level,
                object: row.object.clone(),
                id: row.id.clone(),
                kind: "sales_ready".to_string(),
                score: row.score,
                previous_score: before.map(|p| p.0),
                at: now,
            });
        }
        summary.add(rows);
        Ok(())
    })?;
    drop(previous);
    tracing::debug!(%level, seconds = storing.as_secs_f64(), "score rows stored while scoring");
    phase(level, "score records", started);
    let started = std::time::Instant::now();
    writer.commit()?;
    store.append_events(&events)?;
    phase(level, "store scores", started);

    let RunSummary {
        scored,
        tiers,
        hints,
        sales_ready,
        top,
    } = summary;
    let sales_ready = tracks_sales_ready.then_some(sales_ready);
    tracing::info!(%level, scored, hints, model = %stored.version, "scored");
    Ok(ScoreReport {
        level,
        model_version: stored.version,
        scored,
        tiers,
        hints,
        sales_ready,
        newly_sales_ready: events.len(),
        top,
    })
}

/// Number of highest-scoring rows a [`ScoreReport`] lists.
const TOP_ROWS: usize = 10;

/// The parts of a [`ScoreReport`] that are counted over every row, built batch by batch.
struct RunSummary {
    scored: usize,
    tiers: BTreeMap<String, usize>,
    hints: usize,
    sales_ready: usize,
    /// The best rows so far, best first: highest probability, then lowest id.
    top: Vec<ScoreRow>,
}

impl RunSummary {
    fn new(config: &Config) -> RunSummary {
        RunSummary {
            scored: 0,
            tiers: config.tiers.labels.iter().map(|l| (l.clone(), 0)).collect(),
            hints: 0,
            sales_ready: 0,
            top: Vec::with_capacity(TOP_ROWS * 2),
        }
    }

    fn add(&mut self, rows: Vec<ScoreRow>) {
        self.scored += rows.len();
        for row in &rows {
            *self.tiers.entry(row.tier.clone()).or_default() += 1;
            self.hints += usize::from(row.hint.is_some());
            self.sales_ready += usize::from(row.sales_ready == Some(true));
        }
        // The ordering is total (ids are unique), so keeping the best ten of each batch
        // gives the same ten as sorting every row.
        self.top.extend(rows);
        self.top.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then_with(|| a.id.cmp(&b.id))
        });
        self.top.truncate(TOP_ROWS);
    }
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
    let mut scores = Vec::new();
    score_records_each(stored, history, config, now, None, |rows| {
        scores.extend(rows);
        Ok(())
    })?;
    Ok(scores)
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
    let mut scores = Vec::new();
    score_records_each(stored, history, config, now, Some(previous), |rows| {
        scores.extend(rows);
        Ok(())
    })?;
    Ok(scores)
}

/// Scores what [`score_records`] scores and passes the rows to `sink` one batch of at most
/// [`BATCH_ROWS`] at a time, in the order [`score_records`] returns them. `sink` runs on the
/// calling thread while the scoring threads go on with later batches. An error from `sink`
/// stops the scoring and is returned. With `previous`, reasons are reused as
/// [`score_records_reusing`] reuses them.
pub fn score_records_each(
    stored: &StoredModel,
    history: &History,
    config: &Config,
    now: DateTime<Utc>,
    previous: Option<&Store>,
    mut sink: impl FnMut(Vec<ScoreRow>) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
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
            &space,
            config.scoring.reasons,
            NEGATIVE_REASONS,
        ),
        reasons_reused: Default::default(),
        timings: Default::default(),
    };
    let batches: Vec<&[OpenRecord]> = open.chunks(BATCH_ROWS).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(batches.len())
        .max(1);
    stream_batches(&scorer, &batches, threads, &mut sink)?;
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
    Ok(())
}

/// A scored batch: its index in the level's batches and its rows, or the error scoring it.
type ScoredBatch = (usize, Result<Vec<ScoreRow>, PipelineError>);

/// Scores `batches` on `threads` threads and passes each batch's rows to `sink` in batch
/// order. The model, the feature space and the history are read-only, so the threads take
/// the next unscored batch from a shared counter. A batch that finishes before an earlier
/// one waits until the earlier one has gone to `sink`, and the channel buffers at most two
/// batches per thread, so the rows in memory stay a few batches however many records are
/// open.
fn stream_batches(
    scorer: &Scorer<'_>,
    batches: &[&[OpenRecord]],
    threads: usize,
    sink: &mut impl FnMut(Vec<ScoreRow>) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (sender, receiver) = std::sync::mpsc::sync_channel::<ScoredBatch>(threads * 2);
    std::thread::scope(|scope| {
        let (next, stop) = (&next, &stop);
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let sender = sender.clone();
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = batches.get(index) else {
                            break;
                        };
                        let result = scorer.score_batch(batch);
                        let failed = result.is_err();
                        // A send fails only once the receiver is dropped, which happens
                        // before the end only after an error.
                        if sender.send((index, result)).is_err() || failed {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(sender);

        let mut waiting: BTreeMap<usize, Vec<ScoreRow>> = BTreeMap::new();
        let mut next_out = 0;
        let mut failure = None;
        'receive: for (index, result) in &receiver {
            match result {
                Ok(rows) => {
                    waiting.insert(index, rows);
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
            while let Some(rows) = waiting.remove(&next_out) {
                if let Err(error) = sink(rows) {
                    failure = Some(error);
                    break 'receive;
                }
                next_out += 1;
            }
        }
        // Stop the threads and unblock any that wait to send before joining them.
        stop.store(true, Ordering::Relaxed);
        drop(receiver);
        // Every handle is joined, because the scope re-raises the panic of an unjoined
        // thread instead of returning the error below.
        let mut panicked = false;
        for handle in handles {
            panicked |= handle.join().is_err();
        }
        if let Some(error) = failure {
            return Err(error);
        }
        if panicked || next_out != batches.len() {
            return Err(PipelineError::Model(
                "a scoring thread panicked, which is a bug: its message is on stderr".to_string(),
            ));
        }
        Ok(())
    })
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
    /// Scores one batch of at most [`BATCH_ROWS`] records, returning one row per record in
    /// order.
    fn score_batch(&self, records: &[OpenRecord]) -> Result<Vec<ScoreRow>, PipelineError> {
        let mut scores = Vec::with_capacity(records.len());
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
        let keys: Vec<String> = records
            .iter()
            .zip(&rows)
            .map(|(record, row)| self.fingerprint.key(space, history, record.target(), row))
            .collect();
        let mut reused = self.previous_reasons(records, &keys)?;
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
            .zip(&rows)
            .map(|(record, row)| {
                HintSearch::new(space, history, record, self.at, &config.hints, Some(row))
            })
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
                id: record.id.to_string(),
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
        Ok(scores)
    }

    /// Returns, for each record, the reasons stored by the previous run when its model version
    /// and reasons fingerprint equal this run's `keys`, reading the batch's rows in one store
    /// transaction.
    fn previous_reasons(
        &self,
        records: &[OpenRecord],
        keys: &[String],
    ) -> Result<Vec<Option<Vec<String>>>, PipelineError> {
        let Some(store) = self.previous else {
            return Ok(records.iter().map(|_| None).collect());
        };
        let ids: Vec<&str> = records.iter().map(|record| record.id).collect();
        let stored = store.stored_reasons(&ids)?;
        let mut reused = Vec::with_capacity(records.len());
        for (row, key) in stored.into_iter().zip(keys) {
            let reasons = row
                .filter(|row| {
                    row.model_version == self.stored.version
                        && row.reasons_key.as_deref() == Some(key.as_str())
                })
                .map(|row| row.reasons);
            if reasons.is_some() {
                self.reasons_reused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            reused.push(reasons);
        }
        Ok(reused)
    }
}

/// Ends one phase of a score run: see [`crate::memory::end_phase`].
fn phase(level: Level, name: &str, started: std::time::Instant) {
    crate::memory::end_phase("score", level, name, started);
}
