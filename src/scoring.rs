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
use crate::score_validity::{self, InputsKey};
use crate::store::{PreviousRow, ScoreEvent, ScoreRow, Store, StoredModel};
use crate::training::load_history;

/// Maximum number of reasons that lower a score, listed after the reasons that raise it.
const NEGATIVE_REASONS: usize = 2;

#[derive(Debug, Serialize)]
pub struct ScoreReport {
    pub level: Level,
    pub model_version: String,
    pub scored: usize,
    /// Records scored again. The others kept their stored rows, because their inputs had not
    /// changed and time had not moved them (see `score_validity`).
    pub rescored: usize,
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
/// Rows go to the store batch by batch as the scoring threads produce them, so the step keeps
/// the report's counts and top rows but never every row of the level. With another model or
/// other settings than the live run's, they go into a staged run that replaces the previous
/// scores only once every row is written. Otherwise each live row that is still valid (see
/// `score_validity`) is kept, and only the other records are scored and written in place.
pub fn score_sharing(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    history: &mut Option<History>,
) -> Result<ScoreReport, PipelineError> {
    score_run(store, config, now, history, false)
}

/// Does what [`score_sharing`] does, but scores every open record again and stages a whole
/// run, even when the live run's rows are still valid (`leadscore score --whole`).
pub fn score_whole(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    history: &mut Option<History>,
) -> Result<ScoreReport, PipelineError> {
    score_run(store, config, now, history, true)
}

/// Does what [`score_sharing`] does with a history the caller holds, such as the one training
/// loaded earlier in the same run ([`crate::training::Loaded`]), so a run that trains and
/// scores keeps one history in memory.
pub fn score_loaded(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    history: &History,
) -> Result<ScoreReport, PipelineError> {
    let stored = live_model(store)?;
    score_stored(store, config, now, history, false, stored)
}

/// Returns the live model of the store's level, or an error naming `leadscore train` when
/// the level has none.
fn live_model(store: &Store) -> Result<StoredModel, PipelineError> {
    let level = store.level();
    store.current_model()?.ok_or_else(|| {
        PipelineError::Model(format!(
            "no trained {level} model in the store; run `leadscore train` first"
        ))
    })
}

fn score_run(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    history: &mut Option<History>,
    whole: bool,
) -> Result<ScoreReport, PipelineError> {
    let level = store.level();
    let stored = live_model(store)?;
    let started = std::time::Instant::now();
    phase(level, "start", started);
    let history = match history {
        Some(loaded) => &*loaded,
        None => &*history.insert(load_history(store, config)?),
    };
    phase(level, "load history", started);
    score_stored(store, config, now, history, whole, stored)
}

/// Scores the open records of the store's level with `stored`, its live model; see
/// [`score_sharing`].
fn score_stored(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    history: &History,
    whole: bool,
    stored: StoredModel,
) -> Result<ScoreReport, PipelineError> {
    let level = store.level();
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
    // Under the live run's model and settings, valid rows are kept and the others written
    // over them; otherwise a whole run is staged.
    let stamp = InputsKey::new(level, &stored.version, config).run_stamp();
    let in_place = match whole {
        true => None,
        false => store.score_writer_in_place(&stamp)?,
    };
    let (mut writer, keep) = match in_place {
        Some(writer) => (writer, true),
        None => {
            let mut writer = store.score_writer()?;
            writer.set_stamp(stamp);
            (writer, false)
        }
    };
    let mut open_ids: Vec<String> = Vec::new();
    let mut storing = std::time::Duration::ZERO;
    let options = Options {
        previous: Some(store),
        keep,
    };
    // Rows wait here until a store chunk is full: a run that keeps most rows passes a few new
    // ones per batch, and a write transaction per batch would cost a sync each.
    let mut unwritten: Vec<ScoreRow> = Vec::new();
    let mut write = |rows: &mut Vec<ScoreRow>| -> Result<(), PipelineError> {
        let writing = std::time::Instant::now();
        writer.push(rows)?;
        // NOTE: the history is appended before the run commits, so a run that stops part way
        // leaves entries for scores that never went live. Keeping the rows until the commit
        // would cost the memory that streaming saves.
        store.append_score_history(rows)?;
        rows.clear();
        storing += writing.elapsed();
        Ok(())
    };
    score_each(&stored, history, config, now, options, |batch| {
        let Batch { rows, kept } = batch;
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
        if keep {
            open_ids.extend(rows.iter().map(|row| row.id.clone()));
            open_ids.extend(kept.iter().map(|row| row.id.clone()));
        }
        summary.add(&rows);
        summary.add_kept(kept);
        unwritten.extend(rows);
        if unwritten.len() >= crate::store::SCORE_CHUNK_ROWS {
            write(&mut unwritten)?;
        }
        Ok(())
    })?;
    write(&mut unwritten)?;
    drop(previous);
    tracing::debug!(%level, seconds = storing.as_secs_f64(), "score rows stored while scoring");
    phase(level, "score records", started);
    let started = std::time::Instant::now();
    if keep {
        // Rows of records no longer open (closed, deleted, now customers) leave the run, as
        // a whole run would not have them.
        open_ids.sort_unstable();
        let removed = writer.remove_unless(|id| {
            open_ids
                .binary_search_by(|open| open.as_str().cmp(id))
                .is_ok()
        })?;
        tracing::debug!(%level, removed, "rows of records no longer open removed");
    }
    drop(open_ids);
    writer.commit()?;
    store.append_events(&events)?;
    summary.fetch_top(store)?;
    phase(level, "store scores", started);

    let RunSummary {
        scored,
        rescored,
        tiers,
        hints,
        sales_ready,
        top,
    } = summary;
    let sales_ready = tracks_sales_ready.then_some(sales_ready);
    let top = top.into_iter().filter_map(|entry| entry.row).collect();
    tracing::info!(%level, scored, rescored, hints, model = %stored.version, "scored");
    Ok(ScoreReport {
        level,
        model_version: stored.version,
        scored,
        rescored,
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
    rescored: usize,
    tiers: BTreeMap<String, usize>,
    hints: usize,
    sales_ready: usize,
    /// The best rows so far, best first: highest probability, then lowest id.
    top: Vec<TopEntry>,
}

/// One of the best rows of a run. A kept row is read from the store once the run ends, so
/// only the rows of the final top are decoded whole.
struct TopEntry {
    probability: f64,
    id: String,
    row: Option<ScoreRow>,
}

impl RunSummary {
    fn new(config: &Config) -> RunSummary {
        RunSummary {
            scored: 0,
            rescored: 0,
            tiers: config.tiers.labels.iter().map(|l| (l.clone(), 0)).collect(),
            hints: 0,
            sales_ready: 0,
            top: Vec::with_capacity(TOP_ROWS * 2),
        }
    }

    fn add(&mut self, rows: &[ScoreRow]) {
        self.scored += rows.len();
        self.rescored += rows.len();
        for row in rows {
            *self.tiers.entry(row.tier.clone()).or_default() += 1;
            self.hints += usize::from(row.hint.is_some());
            self.sales_ready += usize::from(row.sales_ready == Some(true));
        }
        // Only rows that can enter the top are copied.
        let floor = match self.top.len() {
            TOP_ROWS => self.top.last().map(|entry| entry.probability),
            _ => None,
        };
        let candidates = rows
            .iter()
            .filter(|row| floor.is_none_or(|floor| row.probability >= floor));
        self.offer_top(candidates.map(|row| TopEntry {
            probability: row.probability,
            id: row.id.clone(),
            row: Some(row.clone()),
        }));
    }

    fn add_kept(&mut self, kept: Vec<KeptRow>) {
        self.scored += kept.len();
        for row in &kept {
            *self.tiers.entry(row.tier.clone()).or_default() += 1;
            self.hints += usize::from(row.has_hint);
            self.sales_ready += usize::from(row.sales_ready == Some(true));
        }
        self.offer_top(kept.into_iter().map(|row| TopEntry {
            probability: row.probability,
            id: row.id,
            row: None,
        }));
    }

    fn offer_top(&mut self, entries: impl Iterator<Item = TopEntry>) {
        // The ordering is total (ids are unique), so keeping the best ten of each batch
        // gives the same ten as sorting every row.
        self.top.extend(entries);
        self.top.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then_with(|| a.id.cmp(&b.id))
        });
        self.top.truncate(TOP_ROWS);
    }

    /// Reads the kept rows among the top rows from `store`, where the run left them.
    fn fetch_top(&mut self, store: &Store) -> Result<(), PipelineError> {
        let missing: Vec<&str> = self
            .top
            .iter()
            .filter(|entry| entry.row.is_none())
            .map(|entry| entry.id.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut found = store.score_rows(&missing)?.into_iter();
        for entry in self.top.iter_mut().filter(|entry| entry.row.is_none()) {
            entry.row = found.next().flatten();
        }
        Ok(())
    }
}

/// The parts of a kept live row that the run summary counts.
struct KeptRow {
    id: String,
    probability: f64,
    tier: String,
    has_hint: bool,
    sales_ready: Option<bool>,
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
    let options = Options {
        previous,
        keep: false,
    };
    score_each(stored, history, config, now, options, |batch| {
        sink(batch.rows)
    })
}

/// Returns the id and tier of every open record of the model's level as [`score_records`]
/// would score it, without reasons, hints or stored rows: only the feature rows and the
/// model's probabilities, computed on every core. Comparing two models' tiers needs no more.
pub fn tiers<'h, 'c>(
    stored: &StoredModel,
    history: &'h History,
    config: &'c Config,
    now: DateTime<Utc>,
) -> Result<Vec<(&'h str, &'c str)>, PipelineError> {
    let (space, model) = decode_model(stored)?;
    let at = config.scoring.as_of.unwrap_or(now);
    let open = levels::open_records(space.level, history, config, now);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let part = open.len().div_ceil(threads).max(1);
    let (space, model) = (&space, &model);
    let parts: Vec<Result<Vec<(&'h str, &'c str)>, PipelineError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = open
            .chunks(part)
            .map(|records| {
                scope.spawn(move || {
                    let mut tiers = Vec::with_capacity(records.len());
                    for batch in records.chunks(BATCH_ROWS) {
                        let rows: Vec<Vec<f64>> = batch
                            .iter()
                            .map(|record| space.row(history, record.target(), at))
                            .collect();
                        let probabilities = model
                            .predict(&rows)
                            .map_err(|e| PipelineError::Model(e.to_string()))?;
                        for (record, probability) in batch.iter().zip(probabilities) {
                            tiers.push((record.id, config.tiers.tier_for(score_of(probability))));
                        }
                    }
                    Ok(tiers)
                })
            })
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
    let mut tiers = Vec::with_capacity(open.len());
    for part in parts {
        tiers.extend(part?);
    }
    Ok(tiers)
}

/// Reads a stored model's feature encoding and model.
fn decode_model(stored: &StoredModel) -> Result<(FeatureSpace, TrainedModel), PipelineError> {
    let space: FeatureSpace = serde_json::from_value(stored.features.clone()).map_err(|e| {
        PipelineError::Model(format!(
            "stored feature encoding of model {} is unreadable: {e}; retrain",
            stored.version
        ))
    })?;
    let model =
        TrainedModel::from_bytes(&stored.model).map_err(|e| PipelineError::Model(e.to_string()))?;
    Ok((space, model))
}

/// The choices of [`score_each`] about the live run.
#[derive(Clone, Copy)]
struct Options<'s> {
    /// The store whose live rows may supply reasons, or whole rows with `keep`.
    previous: Option<&'s Store>,
    /// Whether a live row that is still valid is kept instead of computed again. Only a run of
    /// the same model and settings as the live run may keep rows.
    keep: bool,
}

/// The output of one batch: the rows computed, and the rows kept from the live run.
struct Batch {
    rows: Vec<ScoreRow>,
    kept: Vec<KeptRow>,
}

/// Scores what [`score_records`] scores, passing each batch to `sink` in order; see
/// [`score_records_each`] and [`Options`].
fn score_each(
    stored: &StoredModel,
    history: &History,
    config: &Config,
    now: DateTime<Utc>,
    options: Options<'_>,
    mut sink: impl FnMut(Batch) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    let (space, model) = decode_model(stored)?;
    let at = config.scoring.as_of.unwrap_or(now);
    let level = space.level;

    let open: Vec<OpenRecord> = levels::open_records(level, history, config, now);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut inputs = InputsKey::new(level, &stored.version, config);
    if level == Level::Contact {
        let started = std::time::Instant::now();
        inputs.digest_accounts(history, &open, threads);
        tracing::debug!(%level, seconds = started.elapsed().as_secs_f64(), "account digests");
    }
    let scorer = Scorer {
        space: &space,
        model: &model,
        stored,
        history,
        config,
        at,
        now,
        previous: options.previous,
        keep: options.keep && options.previous.is_some(),
        fingerprint: ReasonsFingerprint::new(
            &stored.version,
            &model,
            &space,
            config.scoring.reasons,
            NEGATIVE_REASONS,
        ),
        inputs,
        splits: model.split_bins(),
        reasons_reused: Default::default(),
        timings: Default::default(),
    };
    let batches: Vec<&[OpenRecord]> = open.chunks(BATCH_ROWS).collect();
    let threads = threads.min(batches.len()).max(1);
    stream_batches(&scorer, &batches, threads, &mut sink)?;
    let seconds =
        |i: usize| scorer.timings[i].load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9;
    tracing::debug!(
        %level,
        records = open.len(),
        reasons_reused = scorer
            .reasons_reused
            .load(std::sync::atomic::Ordering::Relaxed),
        inputs_keys = seconds(7),
        live_rows = seconds(8),
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

/// A scored batch: its index in the level's batches and its output, or the error scoring it.
type ScoredBatch = (usize, Result<Batch, PipelineError>);

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
    sink: &mut impl FnMut(Batch) -> Result<(), PipelineError>,
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

        let mut waiting: BTreeMap<usize, Batch> = BTreeMap::new();
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
    /// Whether rows of `previous` that are still valid are kept.
    keep: bool,
    fingerprint: ReasonsFingerprint,
    inputs: InputsKey<'a>,
    /// The model's split values, when it reads only the side of each split a value is on.
    splits: Option<crate::model::SplitBins>,
    /// Records whose reasons came from `previous`.
    reasons_reused: std::sync::atomic::AtomicU64,
    /// Thread nanoseconds spent on feature rows, predict, contributions, reasons, hints
    /// (predict and choice), fingerprints, hint candidate rows, inputs keys, and the store
    /// reads of the live rows with the choice of the rows kept.
    timings: [std::sync::atomic::AtomicU64; 9],
}

impl Scorer<'_> {
    /// Scores one batch of at most [`BATCH_ROWS`] records. With `keep` it keeps the live rows
    /// that are still valid, and it computes a row for each other record, in order.
    fn score_batch(&self, records: &[OpenRecord]) -> Result<Batch, PipelineError> {
        let started = std::time::Instant::now();
        let keys: Vec<String> = records
            .iter()
            .map(|record| self.inputs.key(self.history, record))
            .collect();
        self.timings[7].fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let started = std::time::Instant::now();
        let previous = match self.previous {
            Some(store) => {
                let ids: Vec<&str> = records.iter().map(|record| record.id).collect();
                store.previous_rows(&ids)?
            }
            None => records.iter().map(|_| None).collect(),
        };
        let mut kept = Vec::new();
        let mut todo = Vec::with_capacity(records.len());
        for ((record, key), previous) in records.iter().zip(keys).zip(previous) {
            match previous {
                Some(row) if self.keep && self.is_valid(&row, &key) => kept.push(KeptRow {
                    id: record.id.to_string(),
                    probability: row.probability,
                    tier: row.tier,
                    has_hint: row.hint.is_some(),
                    sales_ready: row.sales_ready,
                }),
                previous => todo.push((*record, key, previous)),
            }
        }
        self.timings[8].fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let rows = self.score_anew(&todo)?;
        Ok(Batch { rows, kept })
    }

    /// Returns whether the live row `previous` is still valid for a record whose inputs key is
    /// `key`: the same model, the same inputs, and a scoring time inside the row's validity
    /// (a scoring time set back before the row's own counts as outside).
    fn is_valid(&self, previous: &PreviousRow, key: &str) -> bool {
        previous.model_version == self.stored.version
            && previous.inputs_key.as_deref() == Some(key)
            && previous.valid_from.is_some_and(|from| from <= self.at)
            && previous.valid_until.is_none_or(|until| self.at < until)
    }

    /// Computes the row of each of `todo`: the record, its inputs key, and its live row.
    fn score_anew(
        &self,
        todo: &[(OpenRecord, String, Option<PreviousRow>)],
    ) -> Result<Vec<ScoreRow>, PipelineError> {
        let mut scores = Vec::with_capacity(todo.len());
        if todo.is_empty() {
            return Ok(scores);
        }
        let (space, model, history, config) = (self.space, self.model, self.history, self.config);
        let level = space.level;
        let mut clock = std::time::Instant::now();
        let mut lap = |slot: usize| {
            let elapsed = clock.elapsed().as_nanos() as u64;
            self.timings[slot].fetch_add(elapsed, std::sync::atomic::Ordering::Relaxed);
            clock = std::time::Instant::now();
        };
        let records: Vec<OpenRecord> = todo.iter().map(|(record, _, _)| *record).collect();
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
        let mut reused = self.previous_reasons(todo, &keys);
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

        let hints = !config.hints.actionable.is_empty();
        for (index, ((record, key), (_, inputs_key, _))) in
            records.iter().zip(keys).zip(todo).enumerate()
        {
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
                inputs_key: Some(inputs_key.clone()),
                valid_from: Some(self.at),
                valid_until: score_validity::valid_until(
                    space,
                    history,
                    record,
                    self.at,
                    &rows[index],
                    self.splits.as_ref(),
                    hints,
                ),
            });
        }
        Ok(scores)
    }

    /// Returns, for each record of `todo`, the reasons of its live row when that row's model
    /// version and reasons fingerprint equal this run's `keys`.
    fn previous_reasons(
        &self,
        todo: &[(OpenRecord, String, Option<PreviousRow>)],
        keys: &[String],
    ) -> Vec<Option<Vec<String>>> {
        let mut reused = Vec::with_capacity(todo.len());
        for ((_, _, row), key) in todo.iter().zip(keys) {
            let reasons = row
                .as_ref()
                .filter(|row| {
                    row.model_version == self.stored.version
                        && row.reasons_key.as_deref() == Some(key.as_str())
                })
                .map(|row| row.reasons.clone());
            if reasons.is_some() {
                self.reasons_reused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            reused.push(reasons);
        }
        reused
    }
}

/// Ends one phase of a score run: see [`crate::memory::end_phase`].
fn phase(level: Level, name: &str, started: std::time::Instant) {
    crate::memory::end_phase("score", level, name, started);
}
