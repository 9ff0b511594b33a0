//! Cron expressions and their fire times in an IANA time zone, daylight-saving changes included.
//!
//! tokio-cron-scheduler 0.15 converts a zone to the fixed UTC offset it has when the job is
//! created and keeps using that offset, so a daily job in a zone with daylight saving fires an
//! hour off after the next change. The daemon therefore computes every fire time here, in the
//! zone, and hands the scheduler one-shot jobs.
//!
//! Accepted syntax: five fields (`minute hour day-of-month month day-of-week`) or six with a
//! leading seconds field. A field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a
//! comma-separated list of those. Months take `JAN`-`DEC`, days of the week `SUN`-`SAT` or
//! 0-7 (0 and 7 are Sunday). When both day fields are restricted, a day matching either one
//! matches, as in Vixie cron. `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` are
//! accepted too.
//!
//! Daylight-saving rules: a local time that a spring-forward change skips fires once, at the
//! first minute after the gap (02:30 on that night in America/New_York fires at 03:00 EDT). A
//! local time that a fall-back change repeats fires once, at its first occurrence (01:30 EDT,
//! not again at 01:30 EST).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Whether the day-of-month field is `*`, so that only the day of week restricts days.
    any_day_of_month: bool,
    /// Whether the day-of-week field is `*`.
    any_day_of_week: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Days searched for the next fire time: eight years, so that `0 0 29 2 *` finds a leap day.
const SEARCH_DAYS: u32 = 8 * 366;

impl CronSchedule {
    /// Parses a five- or six-field cron expression or an `@` shorthand.
    pub fn parse(text: &str) -> Result<CronSchedule, String> {
        let trimmed = text.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "{text:?} has {n} fields; a cron expression has 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
                ))
            }
        };
        let field = |value: &str, name: &str, min: u32, max: u32, names: &[&str]| {
            parse_field(value, min, max, names)
                .map_err(|err| format!("{text:?}: the {name} field {value:?} {err}"))
        };
        let mut days_of_week = field(rest[4], "day-of-week", 0, 7, &WEEKDAY_NAMES)?;
        // 7 is Sunday as well as 0.
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(CronSchedule {
            text: trimmed.to_string(),
            seconds: field(seconds, "seconds", 0, 59, &[])?,
            minutes: field(rest[0], "minute", 0, 59, &[])?,
            hours: field(rest[1], "hour", 0, 23, &[])?,
            days_of_month: field(rest[2], "day-of-month", 1, 31, &[])?,
            months: field(rest[3], "month", 1, 12, &MONTH_NAMES)?,
            days_of_week,
            any_day_of_month: matches!(rest[2], "*" | "?"),
            any_day_of_week: matches!(rest[4], "*" | "?"),
        })
    }

    /// Returns the expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns the first fire time strictly after `after`, with the fields read as local time
    /// in `zone`, or `None` when no fire time falls within eight years.
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local_after = after.with_timezone(&zone).naive_local();
        // A local time resolves to an instant at most a few hours from its face value (a gap
        // or a repeated hour), so times further before `after` than that are skipped unresolved.
        let earliest = local_after - Duration::hours(3);
        let mut date = local_after.date().pred_opt()?;
        for _ in 0..SEARCH_DAYS {
            if self.matches_date(date) {
                for hour in bits(self.hours) {
                    for minute in bits(self.minutes) {
                        for second in bits(self.seconds) {
                            let naive = date.and_hms_opt(hour, minute, second)?;
                            if naive < earliest {
                                continue;
                            }
                            match resolve(zone, naive) {
                                Some(at) if at > after => return Some(at),
                                _ => {}
                            }
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    fn matches_date(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let by_month_day = self.days_of_month & (1 << date.day()) != 0;
        let by_weekday = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.any_day_of_month, self.any_day_of_week) {
            (false, false) => by_month_day || by_weekday,
            _ => by_month_day && by_weekday,
        }
    }
}

/// Returns the set bits of a mask, lowest first.
fn bits(mask: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |bit| mask & (1u64 << bit) != 0)
}

/// Returns the instant of a local time: the earlier one when a fall-back change repeats it, and
/// the first whole minute after the gap when a spring-forward change skips it.
fn resolve(zone: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&naive) {
        chrono::LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        chrono::LocalResult::None => {
            let mut probe = naive.with_second(0)?;
            // Gaps in the tz database last at most a few hours.
            for _ in 0..(6 * 60) {
                probe += Duration::minutes(1);
                match zone.from_local_datetime(&probe) {
                    chrono::LocalResult::Single(at) => return Some(at.with_timezone(&Utc)),
                    chrono::LocalResult::Ambiguous(first, _) => {
                        return Some(first.with_timezone(&Utc))
                    }
                    chrono::LocalResult::None => {}
                }
            }
            None
        }
    }
}

/// Parses one field into a bit mask of the values it allows.
fn parse_field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut mask = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("has an invalid step {step:?}; use a positive number")
                })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, min, max, names)?, value(high, min, max, names)?)
        } else {
            let low = value(range, min, max, names)?;
            // `5/15` means from 5 to the end in steps of 15.
            (low, if part.contains('/') { max } else { low })
        };
        if low > high {
            return Err(format!("has the range {low}-{high}, which runs backwards"));
        }
        for v in (low..=high).step_by(step as usize) {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

fn value(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Names count from the field's minimum: JAN is 1, SUN is 0.
        return Ok(index as u32 + min);
    }
    match text.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("has {v}, outside {min}-{max}")),
        Err(_) => Err(format!(
            "has {text:?}, which is not a number from {min} to {max}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_steps_and_lists() {
        let schedule = CronSchedule::parse("0 7 * * MON").expect("valid");
        assert_eq!(schedule.days_of_week, 1 << 1);
        let schedule = CronSchedule::parse("*/20 0-1 1,15 JAN-MAR 7").expect("valid");
        assert_eq!(schedule.minutes, (1 << 0) | (1 << 20) | (1 << 40));
        assert_eq!(schedule.months, (1 << 1) | (1 << 2) | (1 << 3));
        assert_eq!(schedule.days_of_week, 1);
        let schedule = CronSchedule::parse("*/5 * * * * *").expect("six fields");
        assert_eq!(schedule.seconds.count_ones(), 12);
    }

    #[test]
    fn rejects_bad_fields() {
        for bad in [
            "* * * *",
            "61 * * * *",
            "* * * 13 *",
            "*/0 * * * *",
            "5-1 * * * *",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn next_time_in_zone() {
        let schedule = CronSchedule::parse("0 6 1 * *").expect("valid");
        let after = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap();
        let next = schedule
            .next_after(after, chrono_tz::Europe::Berlin)
            .unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 2, 1, 5, 0, 0).unwrap());
    }
}
