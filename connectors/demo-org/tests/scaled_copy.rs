//! Checks of the scaled copies that load tests seed a sandbox with.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use leadscore_demo_org::scale::{scaled_copy, shift_days};
use leadscore_demo_org::{generate, DemoError, DemoOptions, DemoOrg, RecordMap};
use serde_json::Value;

const REFERENCE_FIELDS: [&str; 9] = [
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

fn small_org() -> DemoOrg {
    let options = DemoOptions {
        max_hospitals: Some(60),
        ..DemoOptions::default()
    };
    generate(&options).expect("60 hospitals generate")
}

fn ids(records: &[RecordMap]) -> HashSet<String> {
    records
        .iter()
        .filter_map(|record| record.get("Id")?.as_str().map(str::to_string))
        .collect()
}

fn created(record: &RecordMap) -> DateTime<Utc> {
    let text = record["CreatedDate"].as_str().unwrap_or_default();
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_else(|error| panic!("invalid CreatedDate {text}: {error}"))
}

#[test]
fn copy_is_deterministic() {
    let org = small_org();
    let first = scaled_copy(&org, 1, 7).expect("copy 1");
    let again = scaled_copy(&org, 1, 7).expect("copy 1 again");
    assert_eq!(first, again);
    let other_seed = scaled_copy(&org, 1, 8).expect("copy 1, seed 8");
    let amounts = |copy: &std::collections::BTreeMap<String, Vec<RecordMap>>| {
        copy["Opportunity"]
            .iter()
            .map(|record| record["Amount"].clone())
            .collect::<Vec<Value>>()
    };
    assert_ne!(amounts(&first), amounts(&other_seed));
}

#[test]
fn copy_has_same_counts_without_users() {
    let org = small_org();
    let copy = scaled_copy(&org, 1, 7).expect("copy 1");
    assert!(!copy.contains_key("User"));
    for (object, records) in &org.records {
        if object == "User" {
            continue;
        }
        assert_eq!(copy[object].len(), records.len(), "{object} count");
    }
}

#[test]
fn copy_ids_are_new_and_references_resolve() {
    let org = small_org();
    let first = scaled_copy(&org, 1, 7).expect("copy 1");
    let second = scaled_copy(&org, 2, 7).expect("copy 2");
    let mut copied_ids = HashSet::new();
    for (object, records) in &first {
        let base_ids = ids(&org.records[object]);
        let first_ids = ids(records);
        let second_ids = ids(&second[object]);
        assert_eq!(first_ids.len(), records.len(), "{object} ids are unique");
        assert!(
            base_ids.is_disjoint(&first_ids),
            "{object} copy 1 reuses ids"
        );
        assert!(
            first_ids.is_disjoint(&second_ids),
            "{object} copies share ids"
        );
        copied_ids.extend(first_ids);
    }
    let users = ids(&org.records["User"]);
    for (object, records) in &first {
        for record in records {
            for field in REFERENCE_FIELDS {
                if let Some(Value::String(target)) = record.get(field) {
                    assert!(
                        copied_ids.contains(target),
                        "{object}.{field} {target} points outside copy 1"
                    );
                }
            }
            if let Some(Value::String(owner)) = record.get("OwnerId") {
                assert!(users.contains(owner), "{object}.OwnerId {owner} is no user");
            }
        }
    }
}

#[test]
fn copy_moves_dates_back_by_its_shift() {
    let org = small_org();
    let copy = scaled_copy(&org, 3, 7).expect("copy 3");
    let shift = TimeDelta::days(shift_days(7, 3));
    assert!(shift > TimeDelta::zero());
    for (object, records) in &copy {
        for (base, copied) in org.records[object].iter().zip(records) {
            assert_eq!(
                created(copied),
                created(base) - shift,
                "{object} CreatedDate"
            );
            assert!(created(copied) <= org.as_of);
        }
    }
}

#[test]
fn copy_zero_is_rejected() {
    let org = small_org();
    let error = scaled_copy(&org, 0, 7).expect_err("copy 0 is the org itself");
    assert!(matches!(
        error,
        DemoError::InvalidOption { option: "copy", .. }
    ));
}

#[test]
fn sandbox_accepts_org_and_copies() {
    let org = small_org();
    let sandbox = leadscore_sandbox::Sandbox::new(org.records.clone(), Default::default())
        .expect("the org seeds a sandbox");
    for copy in 1..3 {
        let records = scaled_copy(&org, copy, 7).expect("copy");
        sandbox
            .add_records(records)
            .unwrap_or_else(|error| panic!("copy {copy} does not seed: {error}"));
    }
    let duplicate = scaled_copy(&org, 1, 7).expect("copy 1");
    assert!(
        sandbox.add_records(duplicate).is_err(),
        "seeding copy 1 twice must fail on a duplicate id"
    );
}
