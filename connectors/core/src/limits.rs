//! The per-run API budget and the retry delays that both connectors share.
//!
//! A run may spend a share of the CRM's remaining daily calls on reads and writes together.
//! The share is fixed when the run first learns the CRM's usage, and every request the
//! connector sends afterwards counts against it, retries and token-renewed repeats included.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use crate::{ApiUsage, ConnectorError};

/// Default share of the remaining daily calls one run may use.
pub const DEFAULT_BUDGET_SHARE: f64 = 0.25;

/// Maximum wait honoured from a `Retry-After` header, so that one response cannot stall a run
/// for hours. A longer wait is shortened to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct BudgetState {
    /// Calls this run may send, once known.
    allowed: Option<u64>,
    /// Calls this run has sent.
    used: u64,
}

/// The calls one run may send to one CRM: `share` of the daily calls that remained when the
/// run first saw the CRM's usage.
#[derive(Debug)]
pub struct ApiBudget {
    share: f64,
    /// Daily allowance assumed when the CRM reports no usage after the first response.
    fallback_daily: Option<u64>,
    state: Mutex<BudgetState>,
}

impl ApiBudget {
    /// Returns a budget of `share` (0 to 1] of the remaining daily calls. `fallback_daily` is
    /// the daily allowance to assume when the CRM's responses carry no usage.
    pub fn new(share: f64, fallback_daily: Option<u64>) -> ApiBudget {
        ApiBudget {
            share: share.clamp(0.0, 1.0),
            fallback_daily,
            state: Mutex::new(BudgetState::default()),
        }
    }

    /// Counts one request, or returns `BudgetSpent` when the run has used its allowance.
    /// Requests before the usage is known are counted and allowed.
    pub fn admit(&self) -> Result<(), ConnectorError> {
        let mut state = self.lock();
        if let Some(allowed) = state.allowed {
            if state.used >= allowed {
                return Err(ConnectorError::BudgetSpent(format!(
                    "this run used {} of the {allowed} API calls it may use ({:.0}% of the \
                     calls the CRM had left today); the work done so far is saved and the next \
                     run resumes from there",
                    state.used,
                    self.share * 100.0
                )));
            }
        }
        state.used += 1;
        Ok(())
    }

    /// Fixes the allowance from the CRM's reported usage, the first time one is seen, and
    /// returns the new allowance then (`None` when it was already fixed). The reported usage
    /// already includes the calls this run sent, so they are added back.
    pub fn observe(&self, usage: ApiUsage) -> Option<u64> {
        let mut state = self.lock();
        if state.allowed.is_some() || usage.max == 0 {
            return None;
        }
        let remaining = usage.max.saturating_sub(usage.used) + state.used;
        let allowed = (remaining as f64 * self.share).floor() as u64;
        state.allowed = Some(allowed);
        Some(allowed)
    }

    /// Fixes the allowance from the fallback daily allowance when a response carried no
    /// usage and none is known yet, and returns the new allowance then.
    pub fn observe_missing(&self) -> Option<u64> {
        let daily = self.fallback_daily?;
        // The calls already sent come out of the assumed allowance.
        let used = self.lock().used;
        self.observe(ApiUsage { used, max: daily })
    }

    /// Returns (calls sent, calls allowed), the allowance `None` until it is known.
    pub fn spent(&self) -> (u64, Option<u64>) {
        let state = self.lock();
        (state.used, state.allowed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        // The state is two counters; a panic elsewhere cannot leave it inconsistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Parses a `Retry-After` value, in seconds or as an HTTP date, capped at
/// [`MAX_RETRY_AFTER`]. A date in the past gives zero.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let text = value.trim();
    let wait = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64()))
        }
        Ok(_) => return None,
        Err(_) => {
            let at = crate::http_date(text)?;
            (at - now).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
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
