//! Checks of the generated demo org against the sandbox schema, the CMS files and the
//! documented ground-truth formula.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use leadscore_demo_org::truth::{self, DealFeatures};
use leadscore_demo_org::{
    generate, generate_from, DemoError, DemoOptions, DemoOrg, RecordMap, HOSPITALS_CSV,
    READMISSIONS_CSV,
};
use leadscore_sandbox::schema::{self, FieldType};
use serde_json::Value;

/// Returns the full default org, generated once per test binary.
fn full_org() -> &'static DemoOrg {
    static ORG: OnceLock<DemoOrg> = OnceLock::new();
    ORG.get_or_init(|| generate(&DemoOptions::default()).expect("the embedded CMS files generate"))
}

fn small_options(max_hospitals: usize) -> DemoOptions {
    DemoOptions {
        max_hospitals: Some(max_hospitals),
        ..DemoOptions::default()
    }
}

fn records<'a>(org: &'a DemoOrg, object: &str) -> &'a [RecordMap] {
    org.records.get(object).map_or(&[], Vec::as_slice)
}

fn text<'a>(record: &'a RecordMap, field: &str) -> &'a str {
    record
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{field} is not text in {record:?}"))
}

fn parse_timestamp(value: &str) -> DateTime<Utc> {
    assert_eq!(
        value.len(),
        24,
        "timestamp {value} is not YYYY-MM-DDTHH:MM:SS.mmmZ"
    );
    DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.3fZ")
        .map(|time| time.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.3fZ")
                .map(|time| time.and_utc())
        })
        .unwrap_or_else(|error| panic!("invalid timestamp {value}: {error}"))
}

fn parse_date(value: &str) -> NaiveDate {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .unwrap_or_else(|error| panic!("invalid date {value}: {error}"))
}

fn checksum(id15: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let mut bits = 0;
            for (position, byte) in chunk.iter().enumerate() {
                if byte.is_ascii_uppercase() {
                    bits |= 1 << position;
                }
            }
            char::from(ALPHABET[bits])
        })
        .collect()
}

#[test]
fn same_options_give_identical_output() {
    let first = generate(&small_options(300)).expect("first run");
    let second = generate(&small_options(300)).expect("second run");
    let first_json = serde_json::to_string(&first.records).expect("records serialize");
    let second_json = serde_json::to_string(&second.records).expect("records serialize");
    assert_eq!(first_json, second_json);
    assert_eq!(first.win_probability, second.win_probability);
    assert_eq!(first.conversion_probability, second.conversion_probability);

    let other_seed = generate(&DemoOptions {
        seed: 7,
        ..small_options(300)
    })
    .expect("other seed");
    let other_json = serde_json::to_string(&other_seed.records).expect("records serialize");
    assert_ne!(first_json, other_json);
}

#[test]
fn max_hospitals_keeps_subset() {
    let org = generate(&small_options(300)).expect("subset generates");
    let hospitals = records(&org, "Account")
        .iter()
        .filter(|r| text(r, "Type") == "Hospital")
        .count();
    assert_eq!(hospitals, 300);
    let error = generate(&small_options(0)).expect_err("zero hospitals is rejected");
    assert!(
        matches!(
            error,
            DemoError::InvalidOption {
                option: "max_hospitals",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn header_only_files_give_empty_org() {
    let hospitals_header = HOSPITALS_CSV.lines().next().expect("header line");
    let readmissions_header = READMISSIONS_CSV.lines().next().expect("header line");
    let org = generate_from(
        hospitals_header,
        readmissions_header,
        &DemoOptions::default(),
    )
    .expect("files with only a header generate");
    assert!(records(&org, "Account").is_empty());
    assert!(records(&org, "Opportunity").is_empty());
    assert!(org.win_probability.is_empty());
    assert_eq!(records(&org, "User").len(), 40);
}

#[test]
fn out_of_range_as_of_is_rejected() {
    let as_of = DateTime::<Utc>::MIN_UTC;
    let error = generate(&DemoOptions {
        as_of,
        ..small_options(10)
    })
    .expect_err("year -262143 is rejected");
    assert!(
        matches!(
            error,
            DemoError::InvalidOption {
                option: "as_of",
                ..
            }
        ),
        "{error}"
    );
}

/// Schema fields the demo org leaves empty: a one-currency org with city and state only in
/// its addresses, and no merges.
const NOT_GENERATED: [&str; 7] = [
    "AnnualRevenue",
    "BillingAddress",
    "BillingCountry",
    "BillingPostalCode",
    "BillingStreet",
    "CurrencyIsoCode",
    "MasterRecordId",
];

/// Sandbox objects the demo org seeds no rows into.
const SETUP_OBJECTS: [&str; 4] = [
    "CurrencyType",
    "PermissionSet",
    "FieldPermissions",
    "PermissionSetAssignment",
];

#[test]
fn records_match_sandbox_schema() {
    let org = full_org();
    let objects = schema::objects();
    let object_names: BTreeSet<&str> = objects.iter().map(|object| object.name).collect();
    let mut generated_names: BTreeSet<&str> = org.records.keys().map(String::as_str).collect();
    // The demo org uses one currency, so it has no rows of currency rates, and its setup
    // objects (the permission set `check --fix` creates) start empty.
    for empty in SETUP_OBJECTS {
        assert!(
            !generated_names.contains(empty),
            "{empty} has generated rows"
        );
        generated_names.insert(empty);
    }
    assert_eq!(object_names, generated_names);

    let mut ids_by_object: HashMap<&str, HashSet<&str>> = HashMap::new();
    for object in &objects {
        let ids = records(org, object.name)
            .iter()
            .map(|record| text(record, "Id"))
            .collect();
        ids_by_object.insert(object.name, ids);
    }

    for object in objects.iter().filter(|o| !SETUP_OBJECTS.contains(&o.name)) {
        let expected: BTreeSet<&str> = object
            .fields
            .iter()
            .map(|field| field.name)
            .filter(|name| !name.starts_with("LS_") && !NOT_GENERATED.contains(name))
            .collect();
        let list = records(org, object.name);
        assert!(!list.is_empty(), "{} has no records", object.name);
        let mut previous_id = String::new();
        for record in list {
            let fields: BTreeSet<&str> = record.keys().map(String::as_str).collect();
            assert_eq!(fields, expected, "fields of {}", object.name);

            let id = text(record, "Id");
            assert_eq!(id.len(), 18, "{id}");
            assert!(id.starts_with(object.key_prefix), "{id} of {}", object.name);
            assert_eq!(id[15..], checksum(&id[..15]), "checksum of {id}");
            assert!(
                id > previous_id.as_str(),
                "{} ids are not sorted at {id}",
                object.name
            );
            previous_id = id.to_string();
            assert_eq!(record["IsDeleted"], Value::Bool(false));

            for field in object.fields.iter().filter(|field| {
                !field.name.starts_with("LS_") && !NOT_GENERATED.contains(&field.name)
            }) {
                let value = &record[field.name];
                if value.is_null() {
                    continue;
                }
                let context = format!("{}.{} = {value}", object.name, field.name);
                match field.field_type {
                    FieldType::Boolean => assert!(value.is_boolean(), "{context}"),
                    FieldType::Double | FieldType::Currency | FieldType::Int => {
                        assert!(value.is_number(), "{context}")
                    }
                    FieldType::Date => {
                        parse_date(value.as_str().unwrap_or_else(|| panic!("{context}")));
                    }
                    FieldType::Datetime => {
                        parse_timestamp(value.as_str().unwrap_or_else(|| panic!("{context}")));
                    }
                    FieldType::Email => {
                        let email = value.as_str().unwrap_or_else(|| panic!("{context}"));
                        assert!(
                            email.contains('@') && email.ends_with(".example"),
                            "{context}"
                        );
                    }
                    FieldType::Picklist => {
                        let chosen = value.as_str().unwrap_or_else(|| panic!("{context}"));
                        assert!(
                            field.picklist.iter().any(|(allowed, _)| *allowed == chosen),
                            "{context}"
                        );
                    }
                    FieldType::Reference => {
                        let target = value.as_str().unwrap_or_else(|| panic!("{context}"));
                        let (_, targets) = field
                            .relationship
                            .as_ref()
                            .expect("references have targets");
                        let found = targets
                            .iter()
                            .any(|object| ids_by_object[object].contains(target));
                        assert!(found, "{context} points at no record of {targets:?}");
                    }
                    FieldType::Address => assert!(value.is_object(), "{context}"),
                    FieldType::Id | FieldType::String | FieldType::Textarea => {
                        assert!(value.is_string(), "{context}")
                    }
                }
            }
        }
    }
}

#[test]
fn timestamps_are_ordered_before_as_of() {
    let org = full_org();
    for (object, list) in &org.records {
        for record in list {
            let created = parse_timestamp(text(record, "CreatedDate"));
            let modified = parse_timestamp(text(record, "LastModifiedDate"));
            let stamp = parse_timestamp(text(record, "SystemModstamp"));
            let id = text(record, "Id");
            assert!(
                created <= modified,
                "{object} {id}: CreatedDate after LastModifiedDate"
            );
            assert!(
                modified <= stamp,
                "{object} {id}: LastModifiedDate after SystemModstamp"
            );
            assert!(
                stamp <= org.as_of,
                "{object} {id}: SystemModstamp after as_of"
            );
        }
    }
    for event in records(org, "Event") {
        let start = parse_timestamp(text(event, "StartDateTime"));
        let end = parse_timestamp(text(event, "EndDateTime"));
        assert!(start < end, "{event:?}");
        assert!(end <= org.as_of, "{event:?}");
        assert!(
            parse_timestamp(text(event, "CreatedDate")) <= start,
            "{event:?}"
        );
    }
    // Children are created after the records they point at.
    let created_by_id: HashMap<&str, DateTime<Utc>> = org
        .records
        .values()
        .flatten()
        .map(|record| {
            (
                text(record, "Id"),
                parse_timestamp(text(record, "CreatedDate")),
            )
        })
        .collect();
    let parents = [
        ("Contact", "AccountId"),
        ("Opportunity", "AccountId"),
        ("OpportunityContactRole", "OpportunityId"),
        ("OpportunityContactRole", "ContactId"),
        ("Task", "WhoId"),
        ("Event", "WhoId"),
    ];
    for (object, field) in parents {
        for record in records(org, object) {
            let created = created_by_id[text(record, "Id")];
            let parent = created_by_id[text(record, field)];
            assert!(
                parent < created,
                "{object} {} was created before its {field}",
                text(record, "Id")
            );
        }
    }

    let history_start = org.as_of.date_naive() - TimeDelta::days(3 * 366);
    for task in records(org, "Task") {
        let day = parse_date(text(task, "ActivityDate"));
        assert!(
            day >= history_start && day < org.as_of.date_naive(),
            "{task:?}"
        );
        assert_eq!(
            parse_timestamp(text(task, "CreatedDate")).date_naive(),
            day,
            "{task:?}"
        );
    }
}

/// An activity of an account: its date, its record's CreatedDate and its contact's buying role.
type AccountActivity<'a> = (NaiveDate, DateTime<Utc>, &'a str);

/// Recomputes the ground-truth features of each opportunity from the records alone.
fn features_from_records(org: &DemoOrg) -> BTreeMap<String, (DealFeatures, bool)> {
    let accounts: HashMap<&str, &RecordMap> = records(org, "Account")
        .iter()
        .map(|record| (text(record, "Id"), record))
        .collect();
    let contact_roles: HashMap<&str, &str> = records(org, "Contact")
        .iter()
        .map(|record| (text(record, "Id"), text(record, "Buying_Role__c")))
        .collect();
    let mut activities: HashMap<&str, Vec<AccountActivity>> = HashMap::new();
    // Lead activities have no WhatId and do not count for deals.
    let account_activity = |record: &&RecordMap| !record["WhatId"].is_null();
    for task in records(org, "Task").iter().filter(account_activity) {
        let day = parse_date(text(task, "ActivityDate"));
        let created = parse_timestamp(text(task, "CreatedDate"));
        let role = contact_roles[text(task, "WhoId")];
        activities
            .entry(text(task, "WhatId"))
            .or_default()
            .push((day, created, role));
    }
    for event in records(org, "Event").iter().filter(account_activity) {
        let day = parse_timestamp(text(event, "StartDateTime")).date_naive();
        let created = parse_timestamp(text(event, "CreatedDate"));
        let role = contact_roles[text(event, "WhoId")];
        activities
            .entry(text(event, "WhatId"))
            .or_default()
            .push((day, created, role));
    }

    let number = |record: &RecordMap, field: &str| record[field].as_f64();
    let mut features = BTreeMap::new();
    for deal in records(org, "Opportunity") {
        let account_id = text(deal, "AccountId");
        let account = accounts[account_id];
        let created = parse_timestamp(text(deal, "CreatedDate"));
        let creation_day = created.date_naive();
        let window_start = creation_day - TimeDelta::days(365);
        let mut roles = BTreeSet::new();
        let mut last: Option<NaiveDate> = None;
        let mut all_created_before = true;
        for (day, record_created, role) in activities.get(account_id).map_or(&[][..], Vec::as_slice)
        {
            if *day >= creation_day {
                continue;
            }
            all_created_before &= *record_created < created;
            if *day >= window_start {
                roles.insert(*role);
            }
            last = Some(last.map_or(*day, |seen| seen.max(*day)));
        }
        let deal_features = DealFeatures {
            hip_knee_discharges: number(account, "Hip_Knee_Discharges__c"),
            cabg_discharges: number(account, "CABG_Discharges__c"),
            ami_discharges: number(account, "AMI_Discharges__c"),
            hospital_type: text(account, "Hospital_Type__c").to_string(),
            star_rating: number(account, "CMS_Overall_Rating__c"),
            engaged_roles: roles.len(),
            days_since_last_activity: last.map(|day| (creation_day - day).num_days()),
            has_incumbent_competitor: !account["Incumbent_Competitor__c"].is_null(),
        };
        features.insert(
            text(deal, "Id").to_string(),
            (deal_features, all_created_before),
        );
    }
    features
}

#[test]
fn win_probability_follows_records_before_creation() {
    let org = full_org();
    let features = features_from_records(org);
    let deal_ids: BTreeSet<&String> = org.win_probability.keys().collect();
    assert_eq!(deal_ids, features.keys().collect::<BTreeSet<_>>());
    let mut engaged_deals = 0;
    for (id, (deal_features, all_created_before)) in &features {
        assert!(
            all_created_before,
            "{id}: an activity dated before the deal was created after it"
        );
        let expected = truth::win_probability(deal_features);
        let actual = org.win_probability[id];
        assert!(
            (expected - actual).abs() < 1e-12,
            "{id}: P {actual} but the records give {expected}"
        );
        if deal_features.engaged_roles > 0 {
            engaged_deals += 1;
        }
    }
    // The activity terms must actually vary, or the formula reduces to account attributes.
    assert!(
        engaged_deals > features.len() / 2,
        "only {engaged_deals} deals have engaged roles"
    );
    assert!(
        engaged_deals < features.len(),
        "every deal has engaged roles"
    );
}

#[test]
fn probabilities_are_strictly_between_zero_and_one() {
    let org = full_org();
    assert_eq!(org.win_probability.len(), records(org, "Opportunity").len());
    for (id, probability) in &org.win_probability {
        assert!(
            *probability > 0.0 && *probability < 1.0,
            "{id}: {probability}"
        );
    }
    for record in records(org, "Opportunity") {
        for value in record.values() {
            if let Some(number) = value.as_f64() {
                assert!(
                    !org.win_probability.values().any(|p| *p == number),
                    "P appears in {record:?}"
                );
            }
        }
    }
}

#[test]
fn oracle_auc_on_latest_fifth_is_in_band() {
    let org = full_org();
    let mut closed: Vec<(NaiveDate, bool, f64)> = records(org, "Opportunity")
        .iter()
        .filter(|record| record["IsClosed"] == Value::Bool(true))
        .map(|record| {
            let won = record["IsWon"] == Value::Bool(true);
            (
                parse_date(text(record, "CloseDate")),
                won,
                org.win_probability[text(record, "Id")],
            )
        })
        .collect();
    assert!(
        (3000..=4000).contains(&closed.len()),
        "{} closed deals",
        closed.len()
    );
    let won_share = closed.iter().filter(|deal| deal.1).count() as f64 / closed.len() as f64;
    assert!((0.30..=0.50).contains(&won_share), "won share {won_share}");

    closed.sort_by_key(|deal| deal.0);
    let holdout = &closed[closed.len() - closed.len() / 5..];
    let scores: Vec<f64> = holdout.iter().map(|deal| deal.2).collect();
    let labels: Vec<bool> = holdout.iter().map(|deal| deal.1).collect();
    let auc = truth::roc_auc(&scores, &labels).expect("the holdout has both classes");
    assert!(
        (0.80..=0.88).contains(&auc),
        "oracle AUC {auc} on the latest 20%"
    );
}

#[test]
fn opportunities_have_valid_cycles_and_stages() {
    let org = full_org();
    let today = org.as_of.date_naive();
    let mut open = 0;
    for deal in records(org, "Opportunity") {
        let created = parse_timestamp(text(deal, "CreatedDate")).date_naive();
        let close = parse_date(text(deal, "CloseDate"));
        let cycle = (close - created).num_days();
        assert!((365..=549).contains(&cycle), "{deal:?}");
        let stage = text(deal, "StageName");
        if deal["IsClosed"] == Value::Bool(true) {
            assert!(close < today, "{deal:?}");
            let won = deal["IsWon"] == Value::Bool(true);
            assert_eq!(stage, if won { "Closed Won" } else { "Closed Lost" });
        } else {
            open += 1;
            assert!(close > today, "{deal:?}");
            assert_eq!(deal["IsWon"], Value::Bool(false));
            assert!(!stage.starts_with("Closed"), "{deal:?}");
        }
        assert!(
            deal["Amount"].as_f64().is_some_and(|amount| amount > 0.0),
            "{deal:?}"
        );
    }
    assert!(open > 1000, "only {open} open deals");
}

#[test]
fn contact_roles_link_account_contacts() {
    let org = full_org();
    let contacts: HashMap<&str, &RecordMap> = records(org, "Contact")
        .iter()
        .map(|record| (text(record, "Id"), record))
        .collect();
    let deals: HashMap<&str, &RecordMap> = records(org, "Opportunity")
        .iter()
        .map(|record| (text(record, "Id"), record))
        .collect();
    let mut per_deal: HashMap<&str, Vec<&RecordMap>> = HashMap::new();
    for role in records(org, "OpportunityContactRole") {
        per_deal
            .entry(text(role, "OpportunityId"))
            .or_default()
            .push(role);
    }
    assert_eq!(
        per_deal.len(),
        deals.len(),
        "every opportunity has contact roles"
    );
    // A lead conversion creates a contact and sometimes an opportunity with that contact as
    // its primary role.
    let mut converted_contacts = HashSet::new();
    let mut lead_contact_by_deal = HashMap::new();
    for lead in records(org, "Lead") {
        if let Some(contact) = lead["ConvertedContactId"].as_str() {
            converted_contacts.insert(contact);
            if let Some(deal) = lead["ConvertedOpportunityId"].as_str() {
                lead_contact_by_deal.insert(deal, contact);
            }
        }
    }
    assert!(!lead_contact_by_deal.is_empty(), "no lead created a deal");
    for (deal_id, roles) in per_deal {
        if let Some(contact) = lead_contact_by_deal.get(deal_id) {
            let primary: Vec<&str> = roles
                .iter()
                .filter(|role| role["IsPrimary"] == Value::Bool(true))
                .map(|role| text(role, "ContactId"))
                .collect();
            assert_eq!(primary, [*contact], "primary role of {deal_id}");
        }
        assert!(
            (1..=4).contains(&roles.len()),
            "{deal_id}: {} roles",
            roles.len()
        );
        let primaries = roles
            .iter()
            .filter(|role| role["IsPrimary"] == Value::Bool(true))
            .count();
        assert_eq!(primaries, 1, "{deal_id}");
        for role in roles {
            let contact = contacts[text(role, "ContactId")];
            assert_eq!(
                text(contact, "AccountId"),
                text(deals[deal_id], "AccountId")
            );
            assert_eq!(text(role, "Role"), text(contact, "Buying_Role__c"));
        }
    }

    let mut per_account: HashMap<&str, usize> = HashMap::new();
    for contact in contacts.values() {
        if !converted_contacts.contains(text(contact, "Id")) {
            *per_account.entry(text(contact, "AccountId")).or_default() += 1;
        }
        let role = text(contact, "Buying_Role__c");
        if role == "Surgeon Champion" {
            assert!(!contact["Specialty__c"].is_null(), "{contact:?}");
        }
    }
    for count in per_account.values() {
        assert!((3..=8).contains(count), "{count} contacts on one account");
    }
}

#[test]
fn reps_cover_each_state_once() {
    let org = full_org();
    let users = records(org, "User");
    assert_eq!(users.len(), 40);
    let inactive = users
        .iter()
        .filter(|user| user["IsActive"] == Value::Bool(false))
        .count();
    assert!((1..=2).contains(&inactive), "{inactive} inactive users");

    let mut state_owner: HashMap<String, &str> = HashMap::new();
    for user in users
        .iter()
        .filter(|user| user["IsActive"] == Value::Bool(true))
    {
        let Some(territory) = user["Territory__c"].as_str() else {
            continue;
        };
        for state in territory.split(';') {
            let previous = state_owner.insert(state.to_string(), text(user, "Id"));
            assert!(previous.is_none(), "{state} has two active reps");
        }
    }
    for account in records(org, "Account") {
        let state = text(account, "BillingState");
        let owner = state_owner
            .get(state)
            .unwrap_or_else(|| panic!("no active rep covers {state}"));
        assert_eq!(text(account, "OwnerId"), *owner, "{account:?}");
    }
}

#[test]
fn health_systems_group_same_state_hospitals() {
    let org = full_org();
    let accounts = records(org, "Account");
    let systems: HashMap<&str, &RecordMap> = accounts
        .iter()
        .filter(|record| text(record, "Type") == "Health System")
        .map(|record| (text(record, "Id"), record))
        .collect();
    let hospitals: Vec<&RecordMap> = accounts
        .iter()
        .filter(|record| text(record, "Type") == "Hospital")
        .collect();
    let mut members: HashMap<&str, usize> = HashMap::new();
    for hospital in &hospitals {
        if let Some(parent) = hospital["ParentId"].as_str() {
            let system = systems
                .get(parent)
                .unwrap_or_else(|| panic!("parent {parent} is not a health system"));
            assert_eq!(text(system, "BillingState"), text(hospital, "BillingState"));
            *members.entry(parent).or_default() += 1;
        }
    }
    assert_eq!(
        members.len(),
        systems.len(),
        "a health system has no hospitals"
    );
    for count in members.values() {
        assert!((2..=15).contains(count), "a system has {count} hospitals");
    }
    let grouped = members.values().sum::<usize>() as f64 / hospitals.len() as f64;
    assert!(
        (0.35..=0.45).contains(&grouped),
        "{grouped} of hospitals are in a system"
    );
}

#[test]
fn missing_cms_values_stay_null() {
    let org = full_org();
    let hospitals: HashMap<&str, &RecordMap> = records(org, "Account")
        .iter()
        .filter(|record| text(record, "Type") == "Hospital")
        .map(|record| (text(record, "CMS_Certification_Number__c"), record))
        .collect();
    assert_eq!(hospitals.len(), 5421);

    // 010001 reports N/A hip/knee discharges and counts for the other five measures.
    let southeast = hospitals["010001"];
    assert!(southeast["Hip_Knee_Discharges__c"].is_null());
    assert_eq!(southeast["AMI_Discharges__c"].as_f64(), Some(296.0));
    assert_eq!(southeast["CABG_Discharges__c"].as_f64(), Some(151.0));
    assert_eq!(southeast["HF_Discharges__c"].as_f64(), Some(681.0));
    assert_eq!(southeast["CMS_Overall_Rating__c"].as_f64(), Some(4.0));
    assert_eq!(southeast["Emergency_Services__c"], Value::Bool(true));

    // 010008 has no star rating, and 01014F has no readmission rows at all.
    assert!(hospitals["010008"]["CMS_Overall_Rating__c"].is_null());
    for field in [
        "Hip_Knee_Discharges__c",
        "CABG_Discharges__c",
        "AMI_Discharges__c",
    ] {
        assert!(hospitals["01014F"][field].is_null(), "{field}");
    }

    // Read the two sparse measures from the file itself and compare hospital by hospital:
    // N/A and Too Few to Report stay null, and a reported 0 (no qualifying cases) stays 0.
    let mut reader = csv::Reader::from_reader(READMISSIONS_CSV.as_bytes());
    let headers = reader.headers().expect("header row").clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|header| header == name)
            .expect(name)
    };
    let (ccn_column, measure_column, count_column) = (
        column("Facility ID"),
        column("Measure Name"),
        column("Number of Discharges"),
    );
    let mut expected: HashMap<(&str, String), Option<f64>> = HashMap::new();
    for row in reader.records() {
        let row = row.expect("valid row");
        let field = match &row[measure_column] {
            "READM-30-HIP-KNEE-HRRP" => "Hip_Knee_Discharges__c",
            "READM-30-CABG-HRRP" => "CABG_Discharges__c",
            _ => continue,
        };
        let count = row[count_column].parse::<u32>().ok().map(f64::from);
        expected.insert((field, row[ccn_column].to_string()), count);
    }
    for field in ["Hip_Knee_Discharges__c", "CABG_Discharges__c"] {
        let mut present = 0;
        for (ccn, record) in &hospitals {
            let want = expected
                .get(&(field, (*ccn).to_string()))
                .copied()
                .flatten();
            assert_eq!(record[field].as_f64(), want, "{field} of {ccn}");
            present += usize::from(want.is_some());
        }
        assert!(present < 500, "{field} is set on {present} hospitals");
    }
}

/// Replaces the text of one cell on one line (1-based) of a CSV with no quoted commas.
fn replace_cell(csv_text: &str, line: usize, column: usize, value: &str) -> String {
    csv_text
        .lines()
        .enumerate()
        .map(|(index, row)| {
            if index + 1 != line {
                return row.to_string();
            }
            let mut cells: Vec<&str> = row.split(',').collect();
            cells[column] = value;
            cells.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn broken_rows_name_file_line_column_value() {
    let options = small_options(10);
    // Line 3 is MARSHALL MEDICAL CENTERS, and column 12 is its star rating.
    let bad_rating = replace_cell(HOSPITALS_CSV, 3, 12, "6");
    let error =
        generate_from(&bad_rating, READMISSIONS_CSV, &options).expect_err("rating 6 is rejected");
    let message = error.to_string();
    match error {
        DemoError::InvalidCsv {
            file,
            line,
            column,
            value,
            ..
        } => {
            assert_eq!(file, "Hospital_General_Information.csv");
            assert_eq!(line, 3);
            assert_eq!(column, "Hospital overall rating");
            assert_eq!(value, "6");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(message.contains("1 to 5"), "{message}");

    // Column 4 of line 5 of the readmissions file is its discharge count.
    let bad_count = replace_cell(READMISSIONS_CSV, 5, 4, "lots");
    let error =
        generate_from(HOSPITALS_CSV, &bad_count, &options).expect_err("a text count is rejected");
    match error {
        DemoError::InvalidCsv {
            file,
            line,
            column,
            value,
            ..
        } => {
            assert_eq!(file, "Hospital_Readmissions_Reduction_Program_Hospital.csv");
            assert_eq!(line, 5);
            assert_eq!(column, "Number of Discharges");
            assert_eq!(value, "lots");
        }
        other => panic!("unexpected error {other:?}"),
    }

    let truncated: String = HOSPITALS_CSV
        .lines()
        .enumerate()
        .map(|(index, row)| if index == 9 { "999999,CUT SHORT" } else { row })
        .collect::<Vec<_>>()
        .join("\n");
    let error =
        generate_from(&truncated, READMISSIONS_CSV, &options).expect_err("a short row is rejected");
    match error {
        DemoError::InvalidCsv { line, value, .. } => {
            assert_eq!(line, 10);
            assert_eq!(value, "2 fields");
        }
        other => panic!("unexpected error {other:?}"),
    }

    let no_state = HOSPITALS_CSV.replacen("\"State\"", "\"Region\"", 1);
    let error = generate_from(&no_state, READMISSIONS_CSV, &options)
        .expect_err("a missing column is rejected");
    match error {
        DemoError::InvalidCsv { line, column, .. } => {
            assert_eq!(line, 1);
            assert_eq!(column, "State");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn sandbox_accepts_generated_org() {
    let org = generate(&small_options(300)).expect("subset generates");
    let sandbox =
        leadscore_sandbox::Sandbox::new(org.records, leadscore_sandbox::SandboxOptions::default());
    assert!(
        sandbox.is_ok(),
        "the sandbox rejected the org: {:?}",
        sandbox.err()
    );
}
