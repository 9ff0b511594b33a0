//! Copies of a generated org under new record ids, for load tests at many times the demo's size.
//!
//! Copy `k` (from 1) of an org repeats every record except the users under new ids, so a
//! sandbox seeded with the org and copies 1 to `n - 1` contains `n` times as many accounts,
//! contacts, leads, opportunities, contact roles, tasks and events. The users (sales reps) are
//! shared by all copies. Each copy moves every date and timestamp back by the same number of
//! days (1 to [`MAX_SHIFT_DAYS`], drawn from the seed and `k`), so the order of events inside
//! a copy, and with it the ground truth of every outcome, stays as generated. A copy also
//! varies values that the outcome formulas do not read: account names, e-mail addresses and
//! opportunity amounts. The CMS values of the hospitals repeat, because they carry the signal.
//! Ids stay in `CreatedDate` order within a copy but not across copies, because copy `k`
//! gets the id counters after those of copy `k - 1` while its dates move back.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::Value;

use crate::ids::record_id;
use crate::output::timestamp;
use crate::rng::Rng;
use crate::{DemoError, DemoOrg, RecordMap};

/// Largest number of days a copy moves its dates back.
pub const MAX_SHIFT_DAYS: i64 = 28;

/// Largest scale factor: an org and 9,999 copies. The demo org times this is far beyond
/// what one machine's memory holds, so the bound only keeps id counters in range.
pub const MAX_SCALE: u32 = 10_000;

/// Distance between the id counters of two copies: 62^7, far more than any object's count.
const COPY_STRIDE: u64 = 3_521_614_606_208;

/// Fields that hold the id of another copied record, and the record's own `Id`.
const ID_FIELDS: [&str; 10] = [
    "Id",
    "AccountId",
    "ParentId",
    "WhoId",
    "WhatId",
    "OpportunityId",
    "ContactId",
    "ConvertedAccountId",
    "ConvertedContactId",
    "ConvertedOpportunityId",
];

const TIMESTAMP_FIELDS: [&str; 5] = [
    "CreatedDate",
    "LastModifiedDate",
    "SystemModstamp",
    "StartDateTime",
    "EndDateTime",
];

const DATE_FIELDS: [&str; 3] = ["ActivityDate", "CloseDate", "ConvertedDate"];

/// Returns the number of days that copy `copy` moves its dates back.
pub fn shift_days(seed: u64, copy: u32) -> i64 {
    Rng::stream(seed, "scale-shift", u64::from(copy)).range(1, MAX_SHIFT_DAYS)
}

/// Builds copy `copy` (1 or more) of the org's records, by object name, without users.
///
/// The same org, copy and seed always give the same records. Returns
/// [`DemoError::InvalidOption`] for copy 0 or a copy of [`MAX_SCALE`] or more, and
/// [`DemoError::InvalidRecord`] for an id or date that this generator did not write.
pub fn scaled_copy(
    org: &DemoOrg,
    copy: u32,
    seed: u64,
) -> Result<BTreeMap<String, Vec<RecordMap>>, DemoError> {
    if copy == 0 || copy >= MAX_SCALE {
        return Err(DemoError::InvalidOption {
            option: "copy",
            value: copy.to_string(),
            problem: format!("use 1 to {}; copy 0 is the org itself", MAX_SCALE - 1),
        });
    }
    let shift = TimeDelta::days(shift_days(seed, copy));
    let mut copies = BTreeMap::new();
    for (object, records) in &org.records {
        if object == "User" {
            continue;
        }
        let mut copied = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let mut rng = Rng::stream(seed, "scale-values", (u64::from(copy) << 32) | index as u64);
            copied.push(copy_record(object, record, copy, shift, &mut rng)?);
        }
        copies.insert(object.clone(), copied);
    }
    Ok(copies)
}

fn copy_record(
    object: &str,
    record: &RecordMap,
    copy: u32,
    shift: TimeDelta,
    rng: &mut Rng,
) -> Result<RecordMap, DemoError> {
    let mut copied = RecordMap::new();
    for (field, value) in record {
        let invalid = |value: &str| DemoError::InvalidRecord {
            object: object.to_string(),
            field: field.clone(),
            value: value.to_string(),
        };
        let new_value = match value {
            Value::String(text) if ID_FIELDS.contains(&field.as_str()) => {
                Value::String(copy_id(text, copy).ok_or_else(|| invalid(text))?)
            }
            Value::String(text) if TIMESTAMP_FIELDS.contains(&field.as_str()) => {
                let time = DateTime::parse_from_rfc3339(text).map_err(|_| invalid(text))?;
                timestamp(time.with_timezone(&Utc) - shift)
            }
            Value::String(text) if DATE_FIELDS.contains(&field.as_str()) => {
                let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid(text))?;
                Value::String((day - shift).format("%Y-%m-%d").to_string())
            }
            Value::String(text) if field == "Email" => {
                let (local, domain) = text.split_once('@').ok_or_else(|| invalid(text))?;
                Value::String(format!("{local}.{copy}@{domain}"))
            }
            Value::String(text) if field == "Name" && object == "Account" => {
                Value::String(format!("{text} ({})", copy + 1))
            }
            Value::Number(amount) if field == "Amount" => {
                let amount = amount
                    .as_f64()
                    .ok_or_else(|| invalid(&amount.to_string()))?;
                // Between 80% and 120% of the original, rounded to whole hundreds.
                let factor = 0.8 + 0.4 * rng.unit();
                Value::from((amount * factor / 100.0).round() * 100.0)
            }
            other => other.clone(),
        };
        copied.insert(field.clone(), new_value);
    }
    Ok(copied)
}

/// Maps an 18-character id written by [`record_id`] to the same record's id in copy `copy`.
fn copy_id(id: &str, copy: u32) -> Option<String> {
    if id.len() != 18 || !id.is_ascii() {
        return None;
    }
    let mut counter: u64 = 0;
    for byte in id[3..15].bytes() {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'A'..=b'Z' => byte - b'A' + 10,
            b'a'..=b'z' => byte - b'a' + 36,
            _ => return None,
        };
        counter = counter.checked_mul(62)?.checked_add(u64::from(digit))?;
    }
    if counter >= COPY_STRIDE {
        return None;
    }
    let shifted = counter.checked_add(COPY_STRIDE.checked_mul(u64::from(copy))?)?;
    Some(record_id(&id[..3], shifted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_id_keeps_prefix_and_moves_counter() {
        let original = record_id("003", 42);
        let copied = copy_id(&original, 2).unwrap_or_default();
        assert_eq!(&copied[..3], "003");
        assert_eq!(copied, record_id("003", 42 + 2 * COPY_STRIDE));
        assert_ne!(copy_id(&original, 1), copy_id(&original, 2));
    }

    #[test]
    fn copy_id_rejects_foreign_ids() {
        assert_eq!(copy_id("short", 1), None);
        assert_eq!(copy_id("003-0000000000AAAAA", 1), None);
        assert_eq!(copy_id("00300000000000!AAA", 1), None);
    }

    #[test]
    fn stride_is_62_to_the_7th() {
        assert_eq!(COPY_STRIDE, 62u64.pow(7));
    }
}
