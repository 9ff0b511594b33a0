//! The API budget and the retry delays that both connectors share.
//!
//! leadscore may spend a share of the CRM's remaining daily calls per day, on reads and writes
//! together. Without a [`BudgetLedger`] the share is fixed per connector instance, so per run.
//! With a ledger, the day's first run records the calls the CRM had left before leadscore's
//! first call of the day, and the day's allowance is the share of those. Every later run that
//! day gets what earlier runs left of it, so raising the share takes effect the same day.
//! Every request the connector sends counts against it, retries and token-renewed repeats
//! included.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::{ApiUsage, ConnectorError};

/// Default share of the remaining daily calls leadscore may use per day.
pub const DEFAULT_BUDGET_SHARE: f64 = 0.25;

/// Maximum wait honoured from a `Retry-After` header, so that one response cannot stall a run
/// for hours. A longer wait is shortened to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// One day's entry of a [`BudgetLedger`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DailyBudget {
    /// Calls the CRM had left before leadscore's first call of the day, `None` until a run of
    /// the day learns the CRM's usage. The day's allowance is the budget share of this.
    pub remaining_at_start: Option<u64>,
    /// Calls leadscore has sent today.
    pub used: u64,
}

/// Durable per-day record of the API calls sent, kept by the caller (leadscore's store), so
/// that the runs of one day share one allowance.
///
/// The methods return no error, so an implementation that cannot persist should log the
/// problem. The run then goes on with its in-memory count.
pub trait BudgetLedger: Send + Sync + fmt::Debug {
    /// Returns today's entry.
    fn today(&self) -> DailyBudget;
    /// Records the calls the CRM had left before today's first call unless a run has already
    /// recorded them, and returns the recorded number.
    fn fix_remaining_at_start(&self, remaining: u64) -> u64;
    /// Counts one call sent today. This is called once per request, so it should be cheap.
    fn record_call(&self);
    /// Makes the counted calls durable.
    fn flush(&self);
}

/// The budget figures a run reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BudgetUsage {
    /// Calls this connector instance (this run) has sent.
    pub used_this_run: u64,
    /// Calls leadscore has sent today, this run included. Without a ledger it equals
    /// `used_this_run`.
    pub used_today: u64,
    /// Calls leadscore may send today, `None` until the CRM's usage is known. Without a ledger
    /// it is this run's allowance.
    pub allowance_today: Option<u64>,
}

#[derive(Debug, Default)]
struct BudgetState {
    /// Calls this run may send, once known.
    allowed: Option<u64>,
    /// Calls this run has sent.
    used: u64,
    /// Calls earlier runs sent today, as the ledger had them when it was attached.
    earlier_today: u64,
    /// The day's allowance, once known.
    day_allowance: Option<u64>,
}

/// The calls one connector instance may send to one CRM: what is left of the day's allowance
/// in the ledger, or without a ledger `share` of the daily calls that remained when the
/// instance first saw the CRM's usage.
#[derive(Debug)]
pub struct ApiBudget {
    share: f64,
    /// Daily allowance assumed when the CRM reports no usage after the first response.
    fallback_daily: Option<u64>,
    state: Mutex<BudgetState>,
    ledger: Option<Arc<dyn BudgetLedger>>,
}

impl ApiBudget {
    /// Returns a budget of `share` (0 to 1] of the remaining daily calls. `fallback_daily` is
    /// the daily allowance to assume when the CRM's responses carry no usage.
    pub fn new(share: f64, fallback_daily: Option<u64>) -> ApiBudget {
        ApiBudget {
            share: share.clamp(0.0, 1.0),
            fallback_daily,
            state: Mutex::new(BudgetState::default()),
            ledger: None,
        }
    }

    /// Shares the day's allowance with earlier and later runs through `ledger`. When the
    /// ledger already has today's allowance, this run may send what earlier runs left of it,
    /// which can be nothing. Attach the ledger before the first request.
    pub fn attach_ledger(&mut self, ledger: Arc<dyn BudgetLedger>) {
        let today = ledger.today();
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.earlier_today = today.used;
        if let Some(remaining) = today.remaining_at_start {
            let allowance = share_of(remaining, self.share);
            state.day_allowance = Some(allowance);
            state.allowed = Some(allowance.saturating_sub(today.used));
        }
        self.ledger = Some(ledger);
    }

    /// Counts one request, or returns `BudgetSpent` when the run has used its allowance.
    /// Requests before the usage is known are counted and allowed.
    pub fn admit(&self) -> Result<(), ConnectorError> {
        let mut state = self.lock();
        if let Some(allowed) = state.allowed {
            if state.used >= allowed {
                let message = self.spent_message(&state);
                drop(state);
                if let Some(ledger) = &self.ledger {
                    ledger.flush();
                }
                return Err(ConnectorError::BudgetSpent(message));
            }
        }
        state.used += 1;
        let now_spent = state.allowed == Some(state.used);
        drop(state);
        if let Some(ledger) = &self.ledger {
            ledger.record_call();
            if now_spent {
                ledger.flush();
            }
        }
        Ok(())
    }

    fn spent_message(&self, state: &BudgetState) -> String {
        let percent = self.share * 100.0;
        match (&self.ledger, state.day_allowance) {
            (Some(_), Some(day_allowance)) => format!(
                "leadscore used {} of the {day_allowance} API calls it may send today \
                 ({percent:.0}% of the calls the CRM had left before its first call of the \
                 day), {} of them in this run; the work done so far is saved and the next run \
                 resumes from there. The allowance renews at 00:00 UTC",
                state.earlier_today + state.used,
                state.used
            ),
            _ => format!(
                "this run used {} of the {} API calls it may use ({percent:.0}% of the calls \
                 the CRM had left today); the work done so far is saved and the next run \
                 resumes from there",
                state.used,
                state.allowed.unwrap_or_default()
            ),
        }
    }

    /// Fixes the allowance from the CRM's reported usage, the first time one is seen, and
    /// returns this run's allowance then (`None` when it was already fixed).
    ///
    /// The reported usage already includes the calls this run and the earlier runs of the day
    /// sent, so they are added back. The day's allowance is then the share of what the CRM had
    /// left before leadscore's first call of the day. When another run recorded that number in
    /// the ledger meanwhile, the recorded number wins.
    pub fn observe(&self, usage: ApiUsage) -> Option<u64> {
        let mut state = self.lock();
        if state.allowed.is_some() || usage.max == 0 {
            return None;
        }
        let remaining = usage.max.saturating_sub(usage.used);
        let mut before_today = (remaining + state.used + state.earlier_today).min(usage.max);
        if let Some(ledger) = &self.ledger {
            before_today = ledger.fix_remaining_at_start(before_today);
        }
        let day_allowance = share_of(before_today, self.share);
        let allowed = day_allowance.saturating_sub(state.earlier_today);
        state.day_allowance = Some(day_allowance);
        state.allowed = Some(allowed);
        Some(allowed)
    }

    /// Fixes the allowance from the fallback daily allowance when a response carried no
    /// usage and none is known yet, and returns the new allowance then.
    pub fn observe_missing(&self) -> Option<u64> {
        let daily = self.fallback_daily?;
        // The calls already sent today come out of the assumed allowance.
        let used = {
            let state = self.lock();
            state.used + state.earlier_today
        };
        self.observe(ApiUsage { used, max: daily })
    }

    /// Returns (calls sent, calls allowed) of this run, the allowance `None` until it is known.
    pub fn spent(&self) -> (u64, Option<u64>) {
        let state = self.lock();
        (state.used, state.allowed)
    }

    /// Returns the calls of this run and of the day, and the day's allowance.
    pub fn usage(&self) -> BudgetUsage {
        let state = self.lock();
        BudgetUsage {
            used_this_run: state.used,
            used_today: state.earlier_today + state.used,
            allowance_today: state.day_allowance,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        // The state is four counters, so a panic elsewhere cannot leave it inconsistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Returns `share` of `calls`, rounded down.
fn share_of(calls: u64, share: f64) -> u64 {
    (calls as f64 * share).floor() as u64
}

impl Drop for ApiBudget {
    /// Flushes the ledger, so the run's last calls are durable when the connector is dropped
    /// at the end of the run.
    fn drop(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.flush();
        }
    }
}

/// Parses a `Retry-After` value, in seconds or as an HTTP date, capped at
/// [`MAX_RETRY_AFTER`]. A date in the past gives zero.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    parse_retry_after_uncapped(value, now).map(|wait| wait.min(MAX_RETRY_AFTER))
}

/// Parses a `Retry-After` value as [`parse_retry_after`] does, without the cap, for callers
/// that report a wait too long to sit out. Waits beyond a year are cut to a year.
pub fn parse_retry_after_uncapped(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    const YEAR_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
    let text = value.trim();
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Some(Duration::from_secs_f64(seconds.min(YEAR_SECONDS)))
        }
        Ok(_) => None,
        Err(_) => {
            let at = crate::http_date(text)?;
            Some((at - now).to_std().unwrap_or(Duration::ZERO))
        }
    }
}

/// Returns the delay before retry number `attempt` (counting from 0): `base * 2^attempt`,
/// capped at `max`, with full jitter over its upper half, so that clients that failed together
/// do not retry together.
pub fn backoff_with_jitter(base: Duration, attempt: u32, max: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    let floor = ceiling / 2;
    let span = (ceiling - floor).as_nanos() as u64;
    if span == 0 {
        return ceiling;
    }
    floor + Duration::from_nanos(random_u64() % (span + 1))
}

/// Returns a random number from the standard library's per-process hash keys, which is
/// enough for jitter and needs no random-number crate.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_share_of_remaining() {
        let budget = ApiBudget::new(0.25, None);
        budget.admit().unwrap();
        // 1 call of this run is already in the reported 60.
        budget.observe(ApiUsage { used: 60, max: 100 });
        assert_eq!(budget.spent(), (1, Some(10)));
        for _ in 1..10 {
            budget.admit().unwrap();
        }
        let error = budget.admit().unwrap_err();
        assert!(matches!(error, ConnectorError::BudgetSpent(_)));
        let text = error.to_string();
        assert!(text.contains("used 10 of the 10"), "{text}");
        assert!(text.contains("next run resumes"), "{text}");
    }

    /// A ledger in memory, standing in for leadscore's store.
    #[derive(Debug, Default)]
    struct MemoryLedger {
        day: Mutex<DailyBudget>,
        flushes: Mutex<u32>,
    }

    impl BudgetLedger for MemoryLedger {
        fn today(&self) -> DailyBudget {
            *self.day.lock().unwrap()
        }
        fn fix_remaining_at_start(&self, remaining: u64) -> u64 {
            *self
                .day
                .lock()
                .unwrap()
                .remaining_at_start
                .get_or_insert(remaining)
        }
        fn record_call(&self) {
            self.day.lock().unwrap().used += 1;
        }
        fn flush(&self) {
            *self.flushes.lock().unwrap() += 1;
        }
    }

    #[test]
    fn ledger_shares_day_allowance_across_runs() {
        let ledger = Arc::new(MemoryLedger::default());
        let mut first = ApiBudget::new(0.25, None);
        first.attach_ledger(ledger.clone());
        first.admit().unwrap();
        // 200 calls were left before this run's first call, which the CRM already counts.
        assert_eq!(
            first.observe(ApiUsage {
                used: 801,
                max: 1000
            }),
            Some(50)
        );
        for _ in 1..30 {
            first.admit().unwrap();
        }
        drop(first);
        assert_eq!(ledger.today().used, 30);
        assert!(*ledger.flushes.lock().unwrap() >= 1, "flushed on drop");

        // The next run gets what is left of the day's 50, not a quarter of what is left now.
        let mut second = ApiBudget::new(0.25, None);
        second.attach_ledger(ledger.clone());
        assert_eq!(second.spent(), (0, Some(20)));
        for _ in 0..20 {
            second.admit().unwrap();
        }
        let text = second.admit().unwrap_err().to_string();
        assert!(text.contains("used 50 of the 50"), "{text}");
        assert!(text.contains("20 of them in this run"), "{text}");
        assert_eq!(
            second.usage(),
            BudgetUsage {
                used_this_run: 20,
                used_today: 50,
                allowance_today: Some(50)
            }
        );

        let mut third = ApiBudget::new(0.25, None);
        third.attach_ledger(ledger.clone());
        assert!(matches!(third.admit(), Err(ConnectorError::BudgetSpent(_))));
        assert_eq!(ledger.today().used, 50);
    }

    #[test]
    fn raised_share_applies_same_day() {
        let ledger = Arc::new(MemoryLedger::default());
        *ledger.day.lock().unwrap() = DailyBudget {
            remaining_at_start: Some(200),
            used: 50,
        };
        let mut quarter = ApiBudget::new(0.25, None);
        quarter.attach_ledger(ledger.clone());
        assert_eq!(quarter.spent(), (0, Some(0)));
        let mut half = ApiBudget::new(0.5, None);
        half.attach_ledger(ledger.clone());
        assert_eq!(half.spent(), (0, Some(50)));
        assert_eq!(half.usage().allowance_today, Some(100));
    }

    #[test]
    fn ledger_counts_earlier_calls_before_allowance() {
        // Earlier runs sent 10 calls before any usage was known; the CRM counted them too.
        let ledger = Arc::new(MemoryLedger::default());
        ledger.day.lock().unwrap().used = 10;
        let mut budget = ApiBudget::new(0.5, None);
        budget.attach_ledger(ledger.clone());
        budget.admit().unwrap();
        // 100 were left before the day's first call: 89 now, plus 1 + 10 sent today.
        assert_eq!(budget.observe(ApiUsage { used: 11, max: 100 }), Some(40));
        assert_eq!(ledger.today().remaining_at_start, Some(100));
        assert_eq!(budget.usage().allowance_today, Some(50));
    }

    #[test]
    fn budget_is_fixed_once() {
        let budget = ApiBudget::new(0.5, None);
        budget.observe(ApiUsage { used: 0, max: 100 });
        budget.observe(ApiUsage { used: 0, max: 10 });
        assert_eq!(budget.spent(), (0, Some(50)));
    }

    #[test]
    fn budget_without_usage_is_unlimited_or_fallback() {
        let open = ApiBudget::new(0.25, None);
        open.observe_missing();
        for _ in 0..1000 {
            open.admit().unwrap();
        }
        assert_eq!(open.spent(), (1000, None));

        let fallback = ApiBudget::new(0.25, Some(8));
        fallback.admit().unwrap();
        assert_eq!(fallback.observe_missing(), Some(2));
        assert_eq!(fallback.spent(), (1, Some(2)));
        assert_eq!(fallback.observe_missing(), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T20:50:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 20:50:03 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 20:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn uncapped_retry_after_keeps_long_waits() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T20:50:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after_uncapped("86400", now),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(
            parse_retry_after_uncapped("Sat, 05 Dec 2026 20:50:00 GMT", now),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(
            parse_retry_after_uncapped("1e300", now),
            Some(Duration::from_secs(365 * 24 * 3600))
        );
        assert_eq!(parse_retry_after_uncapped("soon", now), None);
    }

    #[test]
    fn jittered_backoff_stays_in_upper_half() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 0..6 {
            let ceiling = (base * (1 << attempt)).min(max);
            for _ in 0..20 {
                let delay = backoff_with_jitter(base, attempt, max);
                assert!(delay <= ceiling, "attempt {attempt}: {delay:?}");
                assert!(delay >= ceiling / 2, "attempt {attempt}: {delay:?}");
            }
        }
        assert_eq!(backoff_with_jitter(Duration::ZERO, 3, max), Duration::ZERO);
    }
}
