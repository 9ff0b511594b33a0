//! Whether a stored score row is still valid, so that a later run can keep it instead of
//! scoring the record again. Two parts decide it: a key over every input the row reads apart
//! from the time, and the earliest time at which the passing of time alone can change the row.
//!
//! A row, its reasons and its hint read the scored record, its account, the account's
//! contacts (id, creation time, buying role), activities and deals with their contacts, the
//! size of the account's health system, and the record's own activities. [`InputsKey`] hashes
//! all of them as loaded, after the enrichment joins and the currency conversion, together
//! with the model version and the settings that shape a row. Equal keys mean equal inputs.
//!
//! Time changes a row in a few ways. An activity's date passes, or the activity leaves a
//! window. A contact's creation date or a deal's close date passes. A days-since value crosses
//! one of the model's split values or the next whole day its phrase shows. The day a hint's
//! action is dated moves at midnight UTC. [`valid_until`] returns the earliest of these. A
//! model that reads exact values (one blended with logistic regression) changes with every
//! second of a days-since value, so its rows are valid only at the time they were scored.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use leadscore_connector::Value;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::features::{Aggregate, FeatureSpace, History, PersonAggregate, Source};
use crate::level::Level;
use crate::levels::OpenRecord;
use crate::model::SplitBins;
use crate::projection::ProjectedRecord;
use crate::score_reuse::{hex_key, write_text};

/// Name of the key layout. Change it whenever a row reads an input the key leaves out, so
/// that rows stored by an earlier build are scored again instead of kept.
const SCHEME: &str = "leadscore-score-inputs-1";

/// The computation of each record's inputs key, built once per score run.
pub(crate) struct InputsKey<'h> {
    /// The hash state after the inputs shared by every row of the run.
    prefix: Sha256,
    level: Level,
    /// Digests of accounts computed ahead, for levels that score several records per account.
    accounts: HashMap<&'h str, [u8; 32]>,
}

impl<'h> InputsKey<'h> {
    /// Starts the keys of one run of `level` with the model `model_version`.
    pub(crate) fn new(level: Level, model_version: &str, config: &Config) -> InputsKey<'h> {
        let mut prefix = Sha256::new();
        write_text(&mut prefix, SCHEME);
        write_text(&mut prefix, env!("CARGO_PKG_VERSION"));
        write_text(&mut prefix, level.name());
        write_text(&mut prefix, model_version);
        write_text(&mut prefix, &settings_text(config));
        InputsKey {
            prefix,
            level,
            accounts: HashMap::new(),
        }
    }

    /// Computes the digest of each account of `records` ahead, on `threads` threads, so that
    /// the keys of records that share an account hash its contacts, activities and deals once.
    pub(crate) fn digest_accounts(
        &mut self,
        history: &'h History,
        records: &[OpenRecord<'h>],
        threads: usize,
    ) {
        let mut accounts: Vec<&'h str> = records.iter().filter_map(|r| r.account).collect();
        accounts.sort_unstable();
        accounts.dedup();
        if accounts.is_empty() {
            return;
        }
        let chunk = accounts.len().div_ceil(threads.max(1));
        let parts: Vec<Vec<(&'h str, [u8; 32])>> = std::thread::scope(|scope| {
            let handles: Vec<_> = accounts
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|&account| (account, account_digest(history, account)))
                            .collect()
                    })
                })
                .collect();
            // A thread that panicked leaves its accounts to be digested again per record.
            handles
                .into_iter()
                .filter_map(|handle| handle.join().ok())
                .collect()
        });
        self.accounts = parts.into_iter().flatten().collect();
    }

    /// Returns a stamp of the run's shared inputs: two runs with equal stamps score with the
    /// same model and settings.
    pub(crate) fn run_stamp(&self) -> String {
        hex_key(self.prefix.clone())
    }

    /// Returns the key of `record`'s inputs in `history`.
    pub(crate) fn key(&self, history: &History, record: &OpenRecord<'_>) -> String {
        let mut hash = self.prefix.clone();
        write_text(&mut hash, record.id);
        write_optional(&mut hash, record.account);
        write_optional(&mut hash, record.person);
        if let Some(person) = record.person {
            write_record(&mut hash, history.person(self.level, person));
            // A lead's own activities include those of the contact it became.
            for own in history.lead_selves(person) {
                write_text(&mut hash, own);
                for activity in history.activities_of_person(own) {
                    write_activity(&mut hash, history, activity);
                }
            }
        }
        if let Some(account) = record.account {
            match self.accounts.get(account) {
                Some(digest) => hash.update(digest),
                None => hash.update(account_digest(history, account)),
            }
        }
        hex_key(hash)
    }
}

/// Returns the settings a row depends on, as text. Connection settings, the schedule and the
/// write-back fields change no row, so changing them keeps the rows. The scoring time is not
/// among them, because each row carries the interval of scoring times it is valid for.
fn settings_text(config: &Config) -> String {
    format!(
        "{:?}",
        (
            &config.features,
            &config.tiers,
            (config.scoring.reasons, config.scoring.skip_customers),
            &config.lead,
            &config.contact,
            &config.hints,
            &config.enrichment,
            &config.currency,
            &config.field_map,
            &config.sync,
        )
    )
}

/// Returns the digest of what the rows of an account and of its contacts and leads read
/// about the account.
fn account_digest(history: &History, account: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    write_account(&mut hash, history, account);
    hash.finalize().into()
}

/// Hashes what the rows of an account and of its contacts and leads read about the account.
fn write_account(hash: &mut Sha256, history: &History, account: &str) {
    write_text(hash, account);
    let record = history.accounts.get(account);
    write_record(hash, record);
    let parent = record.and_then(|r| match r.get("ParentId") {
        Value::Text(parent) if !parent.is_empty() => Some(parent.as_str()),
        _ => None,
    });
    write_optional(hash, parent);
    let size = parent.and_then(|p| history.system_size_of(p));
    hash.update((size.map_or(u64::MAX, |s| s as u64)).to_le_bytes());

    let contacts = history.account_contact_positions(account);
    hash.update((contacts.len() as u64).to_le_bytes());
    for &position in contacts {
        write_contact(hash, history, Some(position as usize));
        write_time(hash, history.contact_created_at(position));
    }

    let activities = history.account_activities(account);
    hash.update((activities.len() as u64).to_le_bytes());
    for activity in activities {
        write_activity(hash, history, activity);
    }

    for deal in history.account_deals(account) {
        write_text(hash, &deal.id);
        write_time(hash, Some(deal.created));
        write_time(hash, deal.close_date);
        hash.update([u8::from(deal.closed), u8::from(deal.won)]);
        write_optional(hash, deal.stage.as_deref());
        for contact in history.deal_contacts(&deal.id) {
            write_text(hash, contact);
        }
        hash.update(b"end of deal");
    }
}

/// Hashes one activity: its time, kind and contact with the contact's role.
fn write_activity(hash: &mut Sha256, history: &History, activity: &crate::features::Activity) {
    hash.update(activity.millis().to_le_bytes());
    hash.update([u8::from(activity.meeting())]);
    write_contact(hash, history, activity.contact());
}

/// Hashes a contact named by position: its id and buying role.
fn write_contact(hash: &mut Sha256, history: &History, position: Option<usize>) {
    let position = position.and_then(|p| u32::try_from(p).ok());
    write_optional(hash, position.and_then(|p| history.contact_id(p)));
    write_optional(
        hash,
        position.and_then(|p| history.contact_role_at(p as usize)),
    );
}

/// Hashes every field a projected record holds, with its id.
fn write_record(hash: &mut Sha256, record: Option<&ProjectedRecord>) {
    let Some(record) = record else {
        hash.update(b"no record");
        return;
    };
    write_text(hash, &record.id);
    for (name, value) in record.fields() {
        write_text(hash, name);
        write_value(hash, value);
    }
    hash.update(b"end of record");
}

fn write_value(hash: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hash.update([0]),
        Value::Bool(flag) => hash.update([1, u8::from(*flag)]),
        Value::Number(number) => {
            hash.update([2]);
            hash.update(number.to_bits().to_le_bytes());
        }
        Value::Text(text) => {
            hash.update([3]);
            write_text(hash, text);
        }
        Value::Date(date) => {
            hash.update([4]);
            hash.update(date.to_string().as_bytes());
        }
        Value::DateTime(time) => {
            hash.update([5]);
            write_time(hash, Some(*time));
        }
    }
}

fn write_time(hash: &mut Sha256, time: Option<DateTime<Utc>>) {
    match time {
        Some(time) => {
            hash.update([1]);
            hash.update(time.timestamp().to_le_bytes());
            hash.update(time.timestamp_subsec_nanos().to_le_bytes());
        }
        None => hash.update([0]),
    }
}

fn write_optional(hash: &mut Sha256, text: Option<&str>) {
    match text {
        Some(text) => {
            hash.update([1]);
            write_text(hash, text);
        }
        None => hash.update([0]),
    }
}

/// The earliest of the times offered to it that are not before the scoring time.
struct Earliest {
    at: DateTime<Utc>,
    earliest: Option<DateTime<Utc>>,
}

impl Earliest {
    /// Offers a time at which an input changes. A time before the scoring time has passed
    /// already, so the row reflects it.
    fn offer(&mut self, time: DateTime<Utc>) {
        if time >= self.at && self.earliest.is_none_or(|earliest| time < earliest) {
            self.earliest = Some(time);
        }
    }

    /// Offers the time at which a days-since value `value` at the scoring time reaches
    /// `target`. The value counts whole seconds, so the time offered is two seconds early,
    /// and never before the scoring time.
    fn offer_days_later(&mut self, value: f64, target: f64) {
        let seconds = (target - value) * 86_400.0 - 2.0;
        let millis = (seconds * 1000.0).floor().clamp(0.0, 1e15) as i64;
        self.offer(self.at + Duration::milliseconds(millis));
    }
}

/// Returns the earliest time after `at` at which the passing of time alone may change the row
/// `row` of `record`, scored as of `at`, or `None` when time alone never changes it.
/// `splits` are the split values of a model that reads only which side of each split a value
/// falls on, and `None` for a model that reads exact values. `hints` is true when the run
/// searches hints, because their actions are dated the day before the scoring time.
pub(crate) fn valid_until(
    space: &FeatureSpace,
    history: &History,
    record: &OpenRecord<'_>,
    at: DateTime<Utc>,
    row: &[f64],
    splits: Option<&SplitBins>,
    hints: bool,
) -> Option<DateTime<Utc>> {
    let mut earliest = Earliest { at, earliest: None };
    let Some(splits) = splits else {
        // Every second moves a days-since value, and with it the prediction of an
        // exact-value model: the record's own values and those of its hints' candidates.
        if space.columns.iter().any(|c| is_days_since(&c.source)) {
            return Some(at);
        }
        return valid_until_by_dates(space, history, record, at, hints, &mut earliest);
    };
    let date = crate::hints::action_date(at);
    let since_action = (at - date).num_milliseconds() as f64 / 86_400_000.0;
    for (column, (spec, &value)) in space.columns.iter().zip(row).enumerate() {
        if !is_days_since(&spec.source) {
            continue;
        }
        let list = splits.splits(column);
        if value.is_finite() {
            if let Some(&next) = list.get(list.partition_point(|split| *split <= value)) {
                earliest.offer_days_later(value, next);
            }
            // Reasons phrase the value in whole days.
            earliest.offer_days_later(value, value.floor() + 1.0);
        }
        if hints {
            // A hint's activity on the action date gives this column a value between one
            // and two days, which moves with the scoring time.
            for &split in list.iter().filter(|s| (1.0..=2.0).contains(*s)) {
                earliest.offer_days_later(since_action, split);
            }
        }
    }
    valid_until_by_dates(space, history, record, at, hints, &mut earliest)
}

/// Offers the times at which an activity, contact, deal or conversion date passes, an activity
/// leaves a window, or the action date of a hint moves. Returns the earliest time offered.
fn valid_until_by_dates(
    space: &FeatureSpace,
    history: &History,
    record: &OpenRecord<'_>,
    at: DateTime<Utc>,
    hints: bool,
    earliest: &mut Earliest,
) -> Option<DateTime<Utc>> {
    let windows = windows(space);
    let mut lists = Vec::new();
    if let Some(account) = record.account {
        lists.push(history.account_activities(account));
        for &position in history.account_contact_positions(account) {
            if let Some(created) = history.contact_created_at(position) {
                earliest.offer(created);
            }
        }
        for deal in history.account_deals(account) {
            earliest.offer(deal.created);
            if let Some(closed) = deal.close_date {
                earliest.offer(closed);
            }
        }
    }
    if let Some(person) = record.person {
        for own in history.lead_selves(person) {
            lists.push(history.activities_of_person(own));
        }
        if let Some(lead) = history.leads.get(person) {
            if let Some(converted) = lead.get("ConvertedDate").as_datetime() {
                earliest.offer(converted);
            }
        }
    }
    for list in lists {
        for activity in list {
            let time = activity.at();
            earliest.offer(time);
            for &days in &windows {
                earliest.offer(time + Duration::days(days));
            }
        }
    }
    if hints {
        let date = crate::hints::action_date(at);
        for &days in &windows {
            earliest.offer(date + Duration::days(days));
        }
        let day = Duration::days(1);
        let midnight = at.duration_trunc(day).unwrap_or(at) + day;
        earliest.offer(midnight);
    }
    earliest.earliest
}

/// Returns the lengths in days of every activity window a row counts in.
fn windows(space: &FeatureSpace) -> Vec<i64> {
    let mut windows = vec![space.engagement_window_days];
    for column in &space.columns {
        match column.source {
            Source::Aggregate(Aggregate::Activities { days })
            | Source::PersonAggregate(PersonAggregate::Activities { days }) => windows.push(days),
            _ => {}
        }
    }
    windows.sort_unstable();
    windows.dedup();
    windows
}

fn is_days_since(source: &Source) -> bool {
    matches!(
        source,
        Source::Aggregate(Aggregate::DaysSinceLastTouch | Aggregate::DaysSinceFirstTouch)
            | Source::PersonAggregate(
                PersonAggregate::DaysSinceLastTouch | PersonAggregate::DaysSinceFirstTouch
            )
    )
}
