//! The per-day API budget ledger and the checkpoint marker, kept in the store.
//!
//! The `api_budget` tree has one entry per UTC day (key `YYYY-MM-DD`): the calls the CRM had
//! left before leadscore's first call of the day, which the day's first run records, and the
//! calls leadscore has sent that day. The day's allowance is `api_budget_share` of the first.
//! Every request adds one to the day's count in a redb transaction committed without an
//! fsync, which reaches the disk with the store's next durable commit (each pulled page is
//! one). The ledger is also flushed when a run's budget is spent and when the connector is
//! dropped at the end of the run. A run that crashes still leaves the calls it sent before
//! the last durable commit counted.
//!
//! NOTE: the day is the UTC calendar day, which only approximates the CRMs' own windows:
//! Salesforce counts API requests over a rolling 24 hours, and HubSpot resets its daily limit
//! at midnight in the account's time zone.
//!
//! This file is a child module of `store`, so redb stays inside the store module.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use leadscore_connector::limits::{BudgetLedger, DailyBudget};
use serde::{Deserialize, Serialize};

use redb::ReadableTable;

use super::store_db::{table, Commit};
use super::{Store, StoreError};

const BUDGET_TREE: &str = "api_budget";

/// The clock that decides which UTC day a call belongs to.
pub type BudgetClock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// One day's entry as stored.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct DayEntry {
    remaining_at_start: Option<u64>,
    used: u64,
}

impl From<DayEntry> for DailyBudget {
    fn from(entry: DayEntry) -> DailyBudget {
        DailyBudget {
            remaining_at_start: entry.remaining_at_start,
            used: entry.used,
        }
    }
}

/// The store's [`BudgetLedger`]: it counts the calls of the day its clock returns.
#[derive(Clone)]
pub struct StoreBudgetLedger {
    store: Store,
    clock: BudgetClock,
    /// Set after the first failed read or write, so that a failing store logs one warning per
    /// ledger, not one per request.
    warned: Arc<AtomicBool>,
}

impl fmt::Debug for StoreBudgetLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBudgetLedger")
            .field("store", &self.store.path)
            .field("day", &self.day())
            .finish()
    }
}

impl StoreBudgetLedger {
    fn day(&self) -> NaiveDate {
        (self.clock)().date_naive()
    }

    fn warn_once(&self, action: &str, err: &StoreError) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                store = %self.store.path.display(),
                error = %err,
                "{action} the API budget ledger failed; this run goes on with its own count, so \
                 later runs today may get more calls than the day's allowance leaves"
            );
        }
    }

    /// Applies `change` to the day's entry atomically and returns the entry after it.
    fn update(&self, change: impl Fn(&mut DayEntry)) -> Result<DayEntry, StoreError> {
        let key = day_key(self.day());
        // Counting a call must not cost an fsync per request, so the change is committed
        // without one and reaches the disk with the next durable commit of the store.
        self.store.db.write(Commit::Deferred, |transaction| {
            let mut tree = transaction.open_table(table(BUDGET_TREE))?;
            let mut entry = match tree.get(key.as_bytes())? {
                None => DayEntry::default(),
                // Left as it is on a decoding error, so the error is reported instead of
                // the count restarting.
                Some(bytes) => {
                    super::decode::<DayEntry>(BUDGET_TREE, key.as_bytes(), bytes.value())?
                }
            };
            change(&mut entry);
            tree.insert(key.as_bytes(), super::encode(&entry).as_slice())?;
            Ok(entry)
        })
    }
}

impl BudgetLedger for StoreBudgetLedger {
    fn today(&self) -> DailyBudget {
        match self.store.api_budget_day(self.day()) {
            Ok(day) => day,
            Err(err) => {
                self.warn_once("reading", &err);
                DailyBudget::default()
            }
        }
    }

    fn fix_remaining_at_start(&self, remaining: u64) -> u64 {
        let updated = self.update(|entry| {
            entry.remaining_at_start.get_or_insert(remaining);
        });
        match updated {
            Ok(entry) => entry.remaining_at_start.unwrap_or(remaining),
            Err(err) => {
                self.warn_once("updating", &err);
                remaining
            }
        }
    }

    fn record_call(&self) {
        if let Err(err) = self.update(|entry| entry.used += 1) {
            self.warn_once("updating", &err);
        }
    }

    fn flush(&self) {
        if let Err(err) = self.store.db.flush() {
            self.warn_once("flushing", &err);
        }
    }
}

fn day_key(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// A fingerprint of what a pull or a push leaves for the next run: the pull cursors, the
/// write history and the held write failures. Two equal markers mean that no page was stored
/// and no write batch settled in between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointMarker {
    cursors: Vec<(Vec<u8>, Vec<u8>)>,
    written: u64,
    failures: u64,
}

impl Store {
    /// Returns the ledger of this store's per-day API calls, with days by the system clock.
    pub fn budget_ledger(&self) -> StoreBudgetLedger {
        self.budget_ledger_with_clock(Arc::new(Utc::now))
    }

    /// Returns the ledger with days taken from `clock`, so that tests can start a new day.
    pub fn budget_ledger_with_clock(&self, clock: BudgetClock) -> StoreBudgetLedger {
        StoreBudgetLedger {
            store: self.clone(),
            clock,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Returns the stored entry of one UTC day. A day with no calls has an empty entry.
    pub fn api_budget_day(&self, day: NaiveDate) -> Result<DailyBudget, StoreError> {
        let key = day_key(day);
        match self.db.get(BUDGET_TREE, key.as_bytes())? {
            Some(bytes) => {
                let entry: DayEntry = super::decode(BUDGET_TREE, key.as_bytes(), &bytes)?;
                Ok(entry.into())
            }
            None => Ok(DailyBudget::default()),
        }
    }

    /// Returns the marker of the checkpoints stored so far. It reads the cursors and a hash
    /// of the write history and held failures, so it costs one scan of those two tables.
    ///
    /// NOTE: a settled batch whose confirmed values equal the ones already recorded, with no
    /// new failure, leaves the marker unchanged.
    pub fn checkpoint_marker(&self) -> Result<CheckpointMarker, StoreError> {
        let mut cursors = Vec::new();
        self.db.for_each("cursors", |key, value| {
            cursors.push((key.to_vec(), value.to_vec()));
            Ok(())
        })?;
        Ok(CheckpointMarker {
            cursors,
            written: self.table_hash("written")?,
            failures: self.table_hash("write_failures")?,
        })
    }

    /// Returns a hash of every key and value of the table `name`. It is only compared
    /// within one process, so the standard library's hasher, whose output may change between
    /// Rust releases, is enough.
    fn table_hash(&self, name: &str) -> Result<u64, StoreError> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        self.db.for_each(name, |key, value| {
            key.hash(&mut hasher);
            value.hash(&mut hasher);
            Ok(())
        })?;
        Ok(hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> BudgetClock {
        let time = Utc
            .with_ymd_and_hms(2026, 12, day, hour, 0, 0)
            .single()
            .expect("valid time");
        Arc::new(move || time)
    }

    #[test]
    fn ledger_counts_per_utc_day() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let morning = store.budget_ledger_with_clock(at(4, 1));
        assert_eq!(morning.today(), DailyBudget::default());
        assert_eq!(morning.fix_remaining_at_start(200), 200);
        morning.record_call();
        morning.record_call();

        // A later run the same day keeps the first run's number.
        let evening = store.budget_ledger_with_clock(at(4, 23));
        assert_eq!(evening.fix_remaining_at_start(40), 200);
        evening.record_call();
        evening.flush();
        let day = store
            .api_budget_day(NaiveDate::from_ymd_opt(2026, 12, 4).expect("date"))
            .expect("day");
        assert_eq!(day.remaining_at_start, Some(200));
        assert_eq!(day.used, 3);

        let next = store.budget_ledger_with_clock(at(5, 0));
        assert_eq!(next.today(), DailyBudget::default());
        assert_eq!(next.fix_remaining_at_start(40), 40);
    }

    #[test]
    fn marker_changes_with_cursor() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let before = store.checkpoint_marker().expect("marker");
        store.budget_ledger_with_clock(at(4, 1)).record_call();
        assert_eq!(store.checkpoint_marker().expect("marker"), before);
        let cursor = leadscore_connector::Cursor {
            modstamp: at(4, 2)(),
            id: "001".to_string(),
        };
        store.save_page("Account", &[], &cursor).expect("page");
        assert_ne!(store.checkpoint_marker().expect("marker"), before);
    }
}
